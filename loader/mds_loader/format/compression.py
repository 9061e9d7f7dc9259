"""Shard compression: the names, levels and byte streams of mosaicml-streaming 0.13.0, plus ``lz4``.

A compression name is a family (``zstd``, ``gz``, ``bz2``, ``br``, ``snappy``, ``lz4``) or
``family:LEVEL``. The whole raw shard file is compressed as one blob, and the compressed file's
extension is the family name (``zstd:7`` writes ``shard.00000.mds.zstd``).

Output is byte-identical to the reference for the same level, except ``gz``: the reference embeds
the current time in the gzip header, we write mtime 0 so that files are reproducible (the other
header bytes and the deflate stream are identical). ``lz4`` (an LZ4 frame) is our extension; the
reference cannot read it.
"""

from __future__ import annotations

import bz2
import gzip
import io
from dataclasses import dataclass
from functools import lru_cache

from ..errors import MDSConfigError, MDSFormatError

__all__ = ["Codec", "get_codec", "compressions", "REFERENCE_FAMILIES"]

# family -> (accepted levels, default level); None: the family takes no level.
_FAMILIES: dict[str, tuple[range | None, int | None]] = {
    "br": (range(0, 12), 11),
    "bz2": (range(1, 10), 9),
    "gz": (range(0, 10), 9),
    "snappy": (None, None),
    "zstd": (range(1, 23), 3),
    "lz4": (None, None),
}

#: Families the reference can read (everything but our ``lz4`` extension).
REFERENCE_FAMILIES = frozenset(_FAMILIES) - {"lz4"}


@dataclass(frozen=True)
class Codec:
    """One compression setting, e.g. ``zstd:7``.

    Attributes:
        name: the name exactly as given and as stored in ``index.json`` (``"zstd:7"``).
        family: the algorithm family, also the file extension (``"zstd"``).
        level: the effective level (the family's default when the name has none), or None for
            families without levels.
    """

    name: str
    family: str
    level: int | None

    @property
    def extension(self) -> str:
        """File name extension of compressed shards (the family name)."""
        return self.family

    @property
    def reference_readable(self) -> bool:
        """Whether mosaicml-streaming can read files compressed with this codec."""
        return self.family in REFERENCE_FAMILIES

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        """Compresses ``data`` exactly as the reference does (see the module docstring)."""
        family, level = self.family, self.level
        if family == "zstd":
            import zstandard

            return zstandard.ZstdCompressor(level=level).compress(data)
        if family == "gz":
            # GzipFile (not gzip.compress) so that the header matches the reference's except the
            # mtime, which is 0 here.
            out = io.BytesIO()
            with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=level, mtime=0) as gz:
                gz.write(data)
            return out.getvalue()
        if family == "bz2":
            return bz2.compress(data, level)
        if family == "br":
            # The `brotli` package: cramjam's brotli output differs from the reference's.
            import brotli

            return brotli.compress(bytes(data), quality=level)
        if family == "snappy":
            import cramjam

            return bytes(cramjam.snappy.compress_raw(data))
        if family == "lz4":
            import cramjam

            return bytes(cramjam.lz4.compress(data))
        raise AssertionError(family)

    def decompress(self, data: bytes | bytearray | memoryview, *, source: str = "data") -> bytes:
        """Decompresses ``data``; ``source`` (a file name) is named in the error if it fails.

        Raises:
            MDSFormatError: the data is not a valid stream of this codec.
        """
        try:
            return self._decompress(data)
        except MDSFormatError:
            raise
        except Exception as exc:  # each library has its own error types
            raise MDSFormatError(
                f"{source}: cannot decompress as {self.name!r}: {exc}; the file is corrupt or "
                f"was written with another compression"
            ) from exc

    def _decompress(self, data: bytes | bytearray | memoryview) -> bytes:
        family = self.family
        if family == "zstd":
            import zstandard

            if not len(data):
                raise MDSFormatError("empty input")
            # A stream reader also handles frames without a content size and several frames.
            with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True) as reader:
                return reader.readall()
        if family == "gz":
            return gzip.decompress(data)
        if family == "bz2":
            return bz2.decompress(data)
        if family == "br":
            import brotli

            return brotli.decompress(bytes(data))
        if family == "snappy":
            import cramjam

            return bytes(cramjam.snappy.decompress_raw(data))
        if family == "lz4":
            import cramjam

            return bytes(cramjam.lz4.decompress(data))
        raise AssertionError(family)


@lru_cache(maxsize=None)
def _parse(name: str) -> Codec:
    family, sep, level_text = name.partition(":")
    if family not in _FAMILIES:
        raise MDSConfigError(
            f"unknown compression {name!r}; use one of {sorted(_FAMILIES)}, optionally with a "
            f"level as 'family:LEVEL' (e.g. 'zstd:7'), or None"
        )
    levels, default = _FAMILIES[family]
    if not sep:
        return Codec(name, family, default)
    if levels is None:
        raise MDSConfigError(f"compression {family!r} takes no level, got {name!r}; use {family!r}")
    # The reference accepts exactly str(level): no signs, spaces or leading zeros.
    if not level_text.isdigit() or str(int(level_text)) != level_text or int(level_text) not in levels:
        raise MDSConfigError(
            f"invalid compression level in {name!r}; {family} levels are "
            f"{levels.start}..{levels.stop - 1}"
        )
    return Codec(name, family, int(level_text))


def get_codec(name: str | None) -> Codec | None:
    """Returns the codec of a compression name, or None for no compression (None or ``""``).

    Raises:
        MDSConfigError: the name is unknown or its level is out of range.
    """
    if not name:
        return None
    if not isinstance(name, str):
        raise MDSConfigError(f"compression must be a string or None, got {type(name).__name__}")
    return _parse(name)


def compressions() -> frozenset[str]:
    """Every valid compression name (the reference's 58 and ``lz4``)."""
    names = set()
    for family, (levels, _) in _FAMILIES.items():
        names.add(family)
        names.update(f"{family}:{level}" for level in levels or ())
    return frozenset(names)

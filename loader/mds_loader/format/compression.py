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

    def decompress(self, data: bytes | bytearray | memoryview, *, source: str = "data", max_size: int | None = None) -> bytes:
        """Decompresses ``data``; ``source`` (a file name) is named in the error if it fails.

        Args:
            max_size: the most bytes the output may have (a shard's ``raw_data.bytes``): the
                output never grows much beyond it, so a small hostile file (a "decompression
                bomb") cannot exhaust memory. None: no limit.

        Raises:
            MDSFormatError: the data is not a valid stream of this codec, or it decompresses to
                more than ``max_size`` bytes.
        """
        try:
            out = self._decompress(data, None if max_size is None else max_size + 1)
        except MDSFormatError as exc:
            raise MDSFormatError(f"{source}: {exc}") from None
        except MemoryError as exc:
            raise MDSFormatError(f"{source}: not enough memory to decompress ({self.name}, {max_size} bytes expected)") from exc
        except Exception as exc:  # each library has its own error types
            raise MDSFormatError(
                f"{source}: cannot decompress as {self.name!r}: {exc}; the file is corrupt or "
                f"was written with another compression"
            ) from exc
        if max_size is not None and len(out) > max_size:
            raise MDSFormatError(
                f"{source}: decompresses to more than {max_size} bytes, the size index.json gives; the file is corrupt "
                f"or is not this shard"
            )
        return out

    def _decompress(self, data: bytes | bytearray | memoryview, limit: int | None) -> bytes:
        """The decompressed bytes, or (with ``limit``) at most about ``limit`` of them."""
        family = self.family
        if family == "zstd":
            import zstandard

            if not len(data):
                raise MDSFormatError("cannot decompress as 'zstd': empty input")
            # A stream reader also handles frames without a content size and several frames.
            with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True) as reader:
                if limit is None:
                    return reader.readall()
                return _read_up_to(reader, limit)
        if family == "gz":
            if limit is None:
                return gzip.decompress(data)
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:  # several members, CRC checked
                return _read_up_to(f, limit)
        if family == "bz2":
            if limit is None:
                return bz2.decompress(data)
            with bz2.BZ2File(io.BytesIO(data)) as f:  # several streams
                return _read_up_to(f, limit)
        if family == "br":
            import brotli

            if limit is None:
                return brotli.decompress(bytes(data))
            d = brotli.Decompressor()
            parts = [d.process(bytes(data), output_buffer_limit=limit)]
            total = len(parts[0])
            while total < limit and not d.is_finished():
                chunk = d.process(b"", output_buffer_limit=limit - total)
                if not chunk:
                    break
                parts.append(chunk)
                total += len(chunk)
            if not d.is_finished() and total < limit:
                raise ValueError("truncated brotli stream")
            return b"".join(parts)
        if family == "snappy":
            import cramjam

            if limit is not None:
                size = cramjam.snappy.decompress_raw_len(data)  # the block's header: what it would allocate
                if size >= limit:
                    raise MDSFormatError(f"the snappy block holds {size} bytes, more than the {limit - 1} index.json gives")
            return bytes(cramjam.snappy.decompress_raw(data))
        if family == "lz4":
            import cramjam
            import numpy as np

            if limit is None:
                return bytes(cramjam.lz4.decompress(data))
            out = np.empty(limit, np.uint8)  # not touched beyond what is written
            try:
                n = cramjam.lz4.decompress_into(data, out)
            except cramjam.DecompressionError as exc:
                if "whole buffer" in str(exc):  # more output than the buffer holds
                    raise MDSFormatError(f"decompresses to more than {limit - 1} bytes, the size index.json gives; the "
                                         f"file is corrupt or is not this shard") from None
                raise
            return out[:n].tobytes()
        raise AssertionError(family)


#: Output read per call when decompressing with a limit: readers allocate what they are asked
#: for, so the memory used grows with the real output, not with the limit (an index's claim).
_READ_CHUNK = 256 << 20


def _read_up_to(f, limit: int) -> bytes:
    """Reads a decompressing file object until its end or until ``limit`` bytes."""
    parts = []
    total = 0
    while total < limit:
        chunk = f.read(min(limit - total, _READ_CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


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

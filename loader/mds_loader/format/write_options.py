"""The options of a write, validated once and passed down (as Spark's ``AvroOptions``):
:func:`~.writer.write_table`, :class:`~.writer.MDSWriter`, :class:`~.writer.TableWriter` and the
Python Spark source (``spark_mds.fallback.options.parse_write_options``) each build one
:class:`WriteOptions`, and the shard writer reads its settings from it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import MDSConfigError
from .compression import Codec, get_codec
from .hashing import check_hashes
from .shard import MAX_SHARD_BYTES
from .sizes import SIZE_UNITS, parse_byte_size

__all__ = ["WriteOptions", "parse_size_limit", "DEFAULT_SIZE_LIMIT"]

#: The reference's default ``size_limit`` (64 MiB of raw shard).
DEFAULT_SIZE_LIMIT = 1 << 26

NULLS = ("mask", "error")


def parse_size_limit(size_limit: int | float | str | None) -> int | None:
    """The reference's ``size_limit``: an int, or a string with a binary suffix (``"64mb"`` =
    64 MiB, ``"1.5kb"``, ``"100b"``, ``"100"``; :func:`~.sizes.parse_byte_size`); None or any
    false value means no limit.

    Raises:
        MDSConfigError: unparsable, negative, or 2**32 or more (shard offsets are u32).
    """
    if not size_limit:
        return None
    try:
        value = parse_byte_size(size_limit)
    except ValueError as exc:
        raise MDSConfigError(f"invalid size_limit {size_limit!r} ({exc}); use bytes or a suffix among b, "
                             f"{', '.join(SIZE_UNITS)}") from None
    if value < 0:
        raise MDSConfigError(f"size_limit must not be negative, got {value}")
    if value > MAX_SHARD_BYTES:
        raise MDSConfigError(f"size_limit must be less than 2**32, got {value}: sample offsets are 32-bit")
    return value or None


@dataclass(frozen=True)
class WriteOptions:
    """How a dataset is written. Constructing one validates it.

    Attributes:
        compression: the compression name (``"zstd"``, ``"zstd:7"``, ...), or None for raw shards.
        hashes: hash algorithms recorded for every file, sorted (the reference requires it).
        size_limit: maximum raw shard size in bytes, or None for one shard per writer.
        nulls: ``"mask"``: a ``__nulls__`` column when some field is nullable; ``"error"``: no
            mask column, and a null fails the write naming its column.
        encodings: encoding overrides, column name -> encoding (docs/format.md §2).
        max_workers: threads that compress, hash and write finished shards (None: ``min(4, cpus)``;
            0: synchronously; each holds one shard in memory).
        exist_ok: replace an existing dataset instead of failing.
        keep_local: with a ``(local, remote)`` destination, keep the local copy of every file.
        retry: total attempts per remote request.
        storage_options: fsspec options of a remote destination (credentials, endpoint, ...);
            not shown in the repr.

    Raises:
        MDSConfigError: an invalid value, naming the option.
    """

    compression: str | None = "zstd"
    hashes: tuple[str, ...] = ()
    size_limit: int | None = DEFAULT_SIZE_LIMIT
    nulls: str = "mask"
    encodings: Mapping[str, str] = field(default_factory=dict)
    max_workers: int | None = None
    exist_ok: bool = False
    keep_local: bool = False
    retry: int = 2
    storage_options: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        get_codec(self.compression)
        object.__setattr__(self, "hashes", tuple(check_hashes(self.hashes)))
        if self.size_limit is not None and not (isinstance(self.size_limit, int) and 0 < self.size_limit <= MAX_SHARD_BYTES):
            raise MDSConfigError(f"size_limit must be a number of bytes in 1..2**32-1 or None, got {self.size_limit!r}")
        if self.nulls not in NULLS:
            raise MDSConfigError(f"nulls must be 'mask' or 'error', got {self.nulls!r}")
        if self.max_workers is not None and self.max_workers < 0:
            raise MDSConfigError(f"max_workers must be 0 or more, got {self.max_workers}")
        if not isinstance(self.encodings, Mapping):
            raise MDSConfigError(f"columns must map column names to encodings, got {type(self.encodings).__name__}")

    @property
    def codec(self) -> Codec | None:
        """The codec of :attr:`compression` (None: raw shards)."""
        return get_codec(self.compression)

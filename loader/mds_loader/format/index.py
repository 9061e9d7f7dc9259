"""``index.json``: parsing, validation and atomic writing (version 2, plus our ``spark_mds`` key).

Parsing is strict, because an index may come from anywhere: every shard entry must have exactly
the reference's keys with the right types, counts must be possible for the file sizes, and file
names must be safe relative paths inside the dataset directory (docs/format.md §1). Errors name
the index file and the shard number.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import MDSConfigError, MDSEncodingError, MDSIndexError, MDSPathError, MDSSchemaError
from .compression import Codec, get_codec
from .encodings import Encoding, parse_encoding
from .schema import Field, parse_spark_mds

__all__ = [
    "INDEX_BASENAME",
    "SHARD_KEYS",
    "FileInfo",
    "ShardEntry",
    "Index",
    "check_basename",
    "parse_index",
    "load_index",
    "dump_index",
    "publish_index_if_unchanged",
]

INDEX_BASENAME = "index.json"
#: The keys of an MDS shard entry: exactly these, no more, no fewer (the reference is strict).
SHARD_KEYS = frozenset(
    {"column_encodings", "column_names", "column_sizes", "compression", "format", "hashes", "raw_data",
     "samples", "size_limit", "version", "zip_data"}
)  # fmt: skip
_FILE_KEYS = frozenset({"basename", "bytes", "hashes"})
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_MAX_U32 = (1 << 32) - 1


def check_basename(name: Any, where: str) -> str:
    """Checks that a file name from an index is a safe relative path: ``/``-separated, no empty,
    ``.`` or ``..`` component, not absolute, no backslash, no drive letter, no URL scheme, no NUL.

    Raises:
        MDSPathError: naming ``where`` (the index file and entry) and the offending name.
    """
    if not isinstance(name, str) or not name:
        raise MDSPathError(f"{where}: basename must be a non-empty string, got {name!r}")
    problem = None
    if "\\" in name:
        problem = "contains a backslash"
    elif "\x00" in name:
        problem = "contains a NUL character"
    elif name.startswith("/"):
        problem = "is absolute"
    elif _SCHEME_RE.match(name):
        problem = "starts with a drive letter or URL scheme"
    elif any(part in ("", ".", "..") for part in name.split("/")):
        problem = "has an empty, '.' or '..' component"
    if problem:
        raise MDSPathError(
            f"{where}: basename {name!r} {problem}; index.json may only name files inside the dataset directory"
        )
    return name


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass(frozen=True)
class FileInfo:
    """One file of a shard: ``{"basename", "bytes", "hashes"}``."""

    basename: str
    bytes: int
    hashes: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        """The JSON object of ``index.json``."""
        return {"basename": self.basename, "bytes": self.bytes, "hashes": dict(self.hashes)}

    @classmethod
    def from_json(cls, obj: Any, where: str) -> FileInfo:
        """Validates and builds a FileInfo (``where`` names it in errors)."""
        if not isinstance(obj, dict) or set(obj) != _FILE_KEYS:
            keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
            raise MDSIndexError(f"{where} must be an object with exactly the keys {sorted(_FILE_KEYS)}, got {keys}")
        basename = check_basename(obj["basename"], where)
        size = obj["bytes"]
        if not _is_int(size) or size < 0:
            raise MDSIndexError(f"{where}.bytes must be a non-negative integer, got {size!r}")
        hashes = obj["hashes"]
        if not isinstance(hashes, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in hashes.items()):
            raise MDSIndexError(f"{where}.hashes must map algorithm names to hex digests, got {hashes!r}")
        return cls(basename, size, dict(hashes))


@dataclass(frozen=True)
class ShardEntry:
    """One shard entry of ``index.json`` (the reference's keys, validated)."""

    column_encodings: list[str]
    column_names: list[str]
    column_sizes: list[int | None]
    compression: str | None
    hashes: list[str]
    raw_data: FileInfo
    samples: int
    size_limit: int | str | None
    zip_data: FileInfo | None
    format: str = "mds"
    version: int = 2

    @property
    def encodings(self) -> list[Encoding]:
        """The parsed column encodings, in column order."""
        return [parse_encoding(e) for e in self.column_encodings]

    @property
    def codec(self) -> Codec | None:
        """The compression codec, or None."""
        return get_codec(self.compression)

    def to_json(self) -> dict:
        """The JSON object of ``index.json`` (exactly the reference's keys)."""
        return {
            "column_encodings": list(self.column_encodings),
            "column_names": list(self.column_names),
            "column_sizes": list(self.column_sizes),
            "compression": self.compression,
            "format": self.format,
            "hashes": list(self.hashes),
            "raw_data": self.raw_data.to_json(),
            "samples": self.samples,
            "size_limit": self.size_limit,
            "version": self.version,
            "zip_data": self.zip_data.to_json() if self.zip_data else None,
        }

    @classmethod
    def from_json(cls, obj: Any, where: str) -> ShardEntry:
        """Validates one shard entry; ``where`` (``"<file>: shard 3"``) prefixes every error."""
        if not isinstance(obj, dict):
            raise MDSIndexError(f"{where} must be an object, got {type(obj).__name__}")
        keys = set(obj)
        if keys != SHARD_KEYS:
            missing, extra = sorted(SHARD_KEYS - keys), sorted(keys - SHARD_KEYS)
            raise MDSIndexError(
                f"{where}: a shard entry has exactly the keys {sorted(SHARD_KEYS)}; missing {missing}, unexpected {extra}"
            )
        version = obj["version"]
        if version != 2 or not _is_int(version):
            raise MDSIndexError(f"{where}: unsupported shard version {version!r}; only version 2 exists")
        if obj["format"] != "mds":
            raise MDSIndexError(f"{where}: unsupported shard format {obj['format']!r}; mds_loader reads 'mds' shards only")
        names, encodings, sizes = obj["column_names"], obj["column_encodings"], obj["column_sizes"]
        for key, value in (("column_names", names), ("column_encodings", encodings), ("column_sizes", sizes)):
            if not isinstance(value, list):
                raise MDSIndexError(f"{where}: {key} must be a list, got {type(value).__name__}")
        if not len(names) == len(encodings) == len(sizes):
            raise MDSIndexError(f"{where}: column_names, column_encodings and column_sizes have different lengths")
        if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
            raise MDSIndexError(f"{where}: column_names must be distinct strings, got {names!r}")
        for name, text, size in zip(names, encodings, sizes):
            if not isinstance(text, str):
                raise MDSIndexError(f"{where}: column {name!r} has encoding {text!r}; encodings must be strings")
            try:
                enc = parse_encoding(text)
            except MDSEncodingError as exc:
                raise MDSIndexError(f"{where}: column {name!r}: {exc}") from None
            if size != enc.size or (size is not None and not _is_int(size)):
                raise MDSIndexError(f"{where}: column {name!r} ({text}) has column size {size!r}, expected {enc.size!r}")
        compression = obj["compression"]
        if compression is not None:
            if not isinstance(compression, str):
                raise MDSIndexError(f"{where}: compression must be a string or null, got {compression!r}")
            try:
                get_codec(compression)
            except MDSConfigError as exc:
                raise MDSIndexError(f"{where}: {exc}") from None
        hashes = obj["hashes"]
        if not isinstance(hashes, list) or not all(isinstance(h, str) for h in hashes):
            raise MDSIndexError(f"{where}: hashes must be a list of algorithm names, got {hashes!r}")
        samples = obj["samples"]
        if not _is_int(samples) or not 0 <= samples <= _MAX_U32:
            raise MDSIndexError(f"{where}: samples must be an integer in 0..2**32-1, got {samples!r}")
        raw = FileInfo.from_json(obj["raw_data"], f"{where}: raw_data")
        if raw.bytes < 8 + 4 * samples or raw.bytes > _MAX_U32:
            raise MDSIndexError(
                f"{where}: raw_data.bytes is {raw.bytes}, impossible for a shard of {samples} samples "
                f"(at least {8 + 4 * samples} bytes, at most 2**32-1)"
            )
        zip_obj = obj["zip_data"]
        zip_info = None if zip_obj is None else FileInfo.from_json(zip_obj, f"{where}: zip_data")
        if zip_info is not None and compression is None:
            raise MDSIndexError(f"{where}: zip_data is set but compression is null; the file cannot be decompressed")
        if zip_info is not None and zip_info.basename == raw.basename:
            raise MDSIndexError(f"{where}: raw_data and zip_data name the same file {raw.basename!r}")
        size_limit = obj["size_limit"]
        if size_limit is not None and not (_is_int(size_limit) or isinstance(size_limit, str)):
            raise MDSIndexError(f"{where}: size_limit must be an integer or null, got {size_limit!r}")
        return cls(list(encodings), list(names), list(sizes), compression, list(hashes), raw, samples, size_limit, zip_info)


@dataclass(frozen=True)
class Index:
    """A parsed ``index.json``.

    Attributes:
        shards: the shard entries, in order.
        fields: the logical schema from ``spark_mds``, or None when the index has none.
        null_mask: the null-mask column name from ``spark_mds``, or None.
        spark_mds: the raw ``spark_mds`` value, or None.
        source: the file the index was read from (for messages).
    """

    shards: Sequence[ShardEntry]
    fields: list[Field] | None = None
    null_mask: str | None = None
    spark_mds: dict | None = None
    source: str = INDEX_BASENAME

    @property
    def num_samples(self) -> int:
        """Total number of samples."""
        return int(self.samples_per_shard.sum())

    @property
    def samples_per_shard(self) -> np.ndarray:
        """Each shard's sample count (int64), without building entries of a :class:`ShardTable`."""
        from .shard_table import ShardTable

        if isinstance(self.shards, ShardTable):
            return self.shards.samples
        return np.array([s.samples for s in self.shards], np.int64)

    @property
    def raw_bytes_per_shard(self) -> np.ndarray:
        """Each shard's raw (uncompressed) file's bytes (int64)."""
        from .shard_table import ShardTable

        if isinstance(self.shards, ShardTable):
            return self.shards.raw_bytes
        return np.array([s.raw_data.bytes for s in self.shards], np.int64)

    @property
    def stored_bytes_per_shard(self) -> np.ndarray:
        """Each shard's files' bytes, raw plus compressed (int64)."""
        from .shard_table import ShardTable

        if isinstance(self.shards, ShardTable):
            return self.shards.raw_bytes + np.maximum(self.shards.zip_bytes, 0)
        return np.array([s.raw_data.bytes + (s.zip_data.bytes if s.zip_data else 0) for s in self.shards], np.int64)

    def column_mismatch(self) -> str | None:
        """Where the shards' columns differ: a message naming the first shard whose column names
        or encodings are not shard 0's, or None when they all agree (a table, a batch and a Spark
        schema need that; per-sample reading does not)."""
        from .shard_table import ShardTable

        if not self.shards or (isinstance(self.shards, ShardTable) and self.shards.num_groups == 1):
            return None
        first = self.shards[0]
        for k, s in enumerate(self.shards[1:], 1):
            if s.column_names != first.column_names or s.column_encodings != first.column_encodings:
                return (f"{self.source}: shard {k} ({s.raw_data.basename}) has columns "
                        f"{dict(zip(s.column_names, s.column_encodings))}, shard 0 has "
                        f"{dict(zip(first.column_names, first.column_encodings))}")
        return None

    def require_same_columns(self, advice: str) -> None:
        """Raises MDSSchemaError (the :meth:`column_mismatch` message, then ``advice``) unless
        every shard has the same columns."""
        message = self.column_mismatch()
        if message is not None:
            raise MDSSchemaError(f"{message}; {advice}")

    def to_json(self) -> dict:
        """The JSON object of ``index.json``."""
        obj: dict[str, Any] = {"shards": [s.to_json() for s in self.shards], "version": 2}
        if self.spark_mds is not None:
            obj["spark_mds"] = self.spark_mds
        return obj


def parse_index(obj: Any, source: str = INDEX_BASENAME) -> Index:
    """Validates a decoded ``index.json`` object; ``source`` (its path) is named in errors.

    Raises:
        MDSIndexError: malformed index (MDSPathError for unsafe file names).
    """
    if not isinstance(obj, dict):
        raise MDSIndexError(f"{source}: an index is a JSON object, got {type(obj).__name__}")
    version = obj.get("version")
    if version != 2 or not _is_int(version):
        raise MDSIndexError(f"{source}: unsupported index version {version!r}; only version 2 exists")
    shards_obj = obj.get("shards")
    if not isinstance(shards_obj, list):
        raise MDSIndexError(f"{source}: 'shards' must be a list, got {type(shards_obj).__name__}")
    shards = [ShardEntry.from_json(s, f"{source}: shard {i}") for i, s in enumerate(shards_obj)]
    seen: dict[str, int] = {}
    for i, shard in enumerate(shards):
        for info in (shard.raw_data, shard.zip_data):
            if info is None:
                continue
            if info.basename in seen:
                raise MDSIndexError(f"{source}: shard {i} names {info.basename!r}, already used by shard {seen[info.basename]}")
            seen[info.basename] = i
    return index_with_schema(shards, obj.get("spark_mds"), source)


def index_with_schema(shards: Sequence[ShardEntry], spark_mds: Any, source: str) -> Index:
    """The :class:`Index` of validated `shards` and the raw ``spark_mds`` value (validated here)."""
    fields, null_mask = (None, None)
    if spark_mds is not None:
        fields, null_mask = parse_spark_mds(spark_mds, source)
    return Index(shards, fields, null_mask, spark_mds, source)


def load_index(path: str | os.PathLike) -> Index:
    """Reads and validates an ``index.json`` file (or the one inside a dataset directory).

    Raises:
        FileNotFoundError: no index file.
        MDSIndexError: not JSON, or malformed.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, INDEX_BASENAME)
    with open(path, "rb") as f:
        data = f.read()
    return parse_index(decode_index_json(data, path), path)


def decode_index_json(data: bytes, source: str) -> Any:
    """The JSON value of an ``index.json`` file's bytes (``source`` names it in errors).

    Raises:
        MDSIndexError: not JSON.
    """
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise MDSIndexError(f"{source}: not valid JSON ({exc}); the file is corrupt or incomplete") from None


def dump_index(shards: Sequence[dict], spark_mds: dict | None = None) -> str:
    """The text of ``index.json`` as the reference writes it: sorted keys, default separators,
    ASCII escapes, no trailing newline."""
    obj: dict[str, Any] = {"shards": list(shards), "version": 2}
    if spark_mds is not None:
        obj["spark_mds"] = spark_mds
    return json.dumps(obj, sort_keys=True)


def _lock_exclusive(fd: int, deadline: float) -> None:
    """An exclusive lock on the open file ``fd``, waiting up to ``deadline`` (monotonic): an
    open-file-description lock where the OS has them (not released when this process closes
    another descriptor of the file), else a POSIX record lock. Both kinds conflict with each other
    and with the JVM's ``FileChannel.lock``, and vanish when their process dies."""
    ofd = getattr(fcntl, "F_OFD_SETLK", None)
    while True:
        try:
            if ofd is not None:
                fcntl.fcntl(fd, ofd, struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0))
            else:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        if time.monotonic() > deadline:
            raise TimeoutError("timed out waiting for the lock on index.json held by another writer")
        time.sleep(0.005)


def publish_index_if_unchanged(directory: str | os.PathLike, data: bytes, expected: bytes | None, tmp_name: str,
                               before_publish: Callable[[], None] | None = None, timeout: float = 600.0) -> bool:
    """Replaces ``directory/index.json`` with ``data`` if it still holds ``expected`` (None: if
    there is still no index): the optimistic check of a write job (docs/format.md §6) and the
    atomic publish, as one step for every writer on this host that follows the protocol (this
    function and the JVM source's ``MdsFiles.publishIndexIfUnchanged``).

    The new index is written to ``tmp_name`` (synced), then the writer locks the current
    ``index.json`` (checking, once locked, that the file it locked is still the index: the previous
    holder may have replaced it), compares its bytes and renames the new index over it. A first
    index is created with ``link(2)``, which fails if one appeared meanwhile. Readers never lock.

    Args:
        before_publish: called once the check has passed, just before the index is replaced (a
            test hook: a writer paused there holds the lock).

    Returns:
        True when published; False when ``index.json`` had changed (nothing was written).
    """
    directory = os.fspath(directory)
    target = os.path.join(directory, INDEX_BASENAME)
    tmp = os.path.join(directory, tmp_name)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    deadline = time.monotonic() + timeout
    try:
        while True:
            before = _file_key(target)
            try:
                fd = os.open(target, os.O_RDWR)
            except FileNotFoundError:
                if before is not None:
                    continue  # replaced between the two calls: look again
                if expected is not None:
                    return False
                if before_publish is not None:
                    before_publish()
                try:
                    os.link(tmp, target)
                except FileExistsError:
                    return False
                return True
            try:
                _lock_exclusive(fd, deadline)
                st = os.fstat(fd)
                if _file_key(target) != (st.st_dev, st.st_ino) or before != (st.st_dev, st.st_ino):
                    continue  # the holder before us replaced it: lock the new one
                current = os.pread(fd, st.st_size + 1, 0)
                if current != expected:
                    return False
                if before_publish is not None:
                    before_publish()
                os.replace(tmp, target)
                return True
            finally:
                os.close(fd)  # releases the lock
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def _file_key(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino

"""From a stored shard file to verified raw bytes: the one place that reads a shard's file, checks
its size and hash against ``index.json``, and decompresses it.

Decompression is bounded by the raw size the index gives, so a small hostile file (a
"decompression bomb") is rejected after at most that many bytes of output, never after inflating
it whole (docs/format.md §3).

Every reader goes through here: ``read_table``/:class:`~.reader.MDSDataset`, the CLI,
``StreamingDataset``'s cache and the Python Spark source. Where the raw bytes go is each caller's
placement policy:

* :class:`ShardFiles` never writes: it memory-maps a local raw file that is already there (an
  uncompressed shard, or the reference's decompressed copy beside a compressed one) and keeps
  other raw shards in memory;
* ``StreamingDataset``'s cache (:mod:`mds_loader.cache`) writes them into its cache directory,
  beside the compressed file where that directory is the dataset's (as the reference does).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..errors import MDSConfigError, MDSFormatError
from .hashing import is_hash, verify_hash
from .index import FileInfo, ShardEntry, check_basename
from .reader import ReadSchema, ShardReader

__all__ = ["ShardFiles", "check_size", "check_hash", "checked", "inflate", "missing", "read_local"]


def check_size(size: int, info: FileInfo, where: str) -> None:
    """Checks a stored file's size against its index entry.

    Raises:
        MDSFormatError: naming the file, both sizes and the likely cause.
    """
    if size != info.bytes:
        raise MDSFormatError(f"{where}: {size} bytes, index.json says {info.bytes}; the file is truncated or was replaced")


def check_hash(algorithm: str, data: bytes | bytearray | memoryview, info: FileInfo, where: str) -> None:
    """Checks ``data`` (the content of file ``where``) against its recorded ``algorithm`` digest
    (:func:`~.hashing.verify_hash`).

    Raises:
        MDSConfigError: ``algorithm`` is unknown.
        MDSChecksumError: the index records no such digest for the file, or the digests differ.
    """
    if not is_hash(algorithm):
        raise MDSConfigError(f"unknown hash algorithm {algorithm!r} for validate_hash")
    verify_hash(algorithm, data, info.hashes, where)


def inflate(entry: ShardEntry, stored: bytes | bytearray | memoryview, where: str) -> bytes:
    """The raw bytes of a compressed shard from its stored bytes: decompressed with the index's
    codec, never to more than the raw size the index gives (the only decompression of shards).

    Raises:
        MDSFormatError: the data does not decompress, or not to exactly that size, naming ``where``.
    """
    codec = entry.codec
    assert codec is not None, "inflate() is for compressed shards"
    size = entry.raw_data.bytes
    out = codec.decompress(stored, source=where, max_size=size)
    if len(out) != size:
        raise MDSFormatError(f"{where}: decompresses to {len(out)} bytes, index.json says {size}; the file is corrupt")
    return out


def checked(data: bytes, info: FileInfo, where: str, validate_hash: str | None = None) -> bytes:
    """``data`` (the content of the stored file ``where``) after its size and, if asked, its hash
    are checked against its index entry."""
    check_size(len(data), info, where)
    if validate_hash:
        check_hash(validate_hash, data, info, where)
    return data


def missing(where: str) -> FileNotFoundError:
    """The error for a shard file that index.json lists but that is not there."""
    return FileNotFoundError(f"{where}: shard file listed in index.json is missing")


def read_local(path: str, info: FileInfo, validate_hash: str | None = None) -> bytes:
    """The content of a local stored file, its size and (if asked) hash checked.

    Raises:
        FileNotFoundError: the file is missing. MDSFormatError, MDSChecksumError: see above.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise missing(path) from None
    return checked(data, info, path, validate_hash)


def _local_size(path: str) -> int | None:
    try:
        return os.path.getsize(path)
    except OSError:
        return None


class ShardFiles:
    """The shard files of one dataset, read-only, on the local disk or any fsspec file system.

    Args:
        location: the dataset directory: a local path, an fsspec URL (``s3://bucket/ds``), or an
            open :class:`~mds_loader.storage.Storage`.
        filesystem: an fsspec file system to reach ``location`` with (as pyarrow's ``filesystem=``);
            by default, local paths are read directly and URLs through fsspec.
        storage_options: fsspec options for a URL (credentials, endpoint, ...).
        validate_hash: verify each stored file with this hash algorithm before using it.
        retry, timeout: attempts per remote request, and seconds each may take.

    Nothing is written anywhere: a local raw file that exists with the size the index gives is
    memory-mapped (an uncompressed shard, or a decompressed copy the reference left beside a
    compressed one); any other shard is read, checked and decompressed in memory.
    """

    def __init__(self, location: Any, *, filesystem: Any = None, storage_options: Mapping[str, Any] | None = None,
                 validate_hash: str | None = None, retry: int = 2, timeout: float | None = 300.0) -> None:
        from ..storage import LocalStorage, RemoteStore, open_storage

        if validate_hash is not None and not is_hash(validate_hash):
            raise MDSConfigError(f"unknown hash algorithm {validate_hash!r} for validate_hash")
        self.validate_hash = validate_hash
        self.storage: LocalStorage | RemoteStore
        if isinstance(location, (LocalStorage, RemoteStore)):
            self.storage = location
        elif filesystem is not None:
            self.storage = RemoteStore(os.fspath(location), retry=retry, timeout=timeout, filesystem=filesystem)
        else:
            self.storage = open_storage(location, storage_options, retry=retry, timeout=timeout)
        self.location: str = self.storage.location
        #: The local directory, or None when the files are reached through fsspec.
        self.root: str | None = self.storage.root if isinstance(self.storage, LocalStorage) else None

    def __repr__(self) -> str:  # never the storage options: they may hold credentials
        return f"ShardFiles({self.location!r})"

    def where(self, basename: str) -> str:
        """The full name of a file of the dataset, as messages show it."""
        return f"{self.location}/{check_basename(basename, self.location)}"

    def local_file(self, basename: str) -> str | None:
        """The local path of a file of the dataset, or None when the dataset is not local."""
        return self.storage.local_file(basename)

    def read(self, basename: str) -> bytes:
        """The content of any file of the dataset (``index.json``), unchecked.

        Raises:
            FileNotFoundError: naming the file.
        """
        return self.storage.read_bytes(basename)

    def stored_bytes(self, info: FileInfo, validate_hash: str | None = None) -> bytes:
        """The content of one stored file, its size and (if asked) hash checked."""
        local = self.local_file(info.basename)
        if local is not None:
            return read_local(local, info, validate_hash)
        where = self.where(info.basename)
        try:
            data = self.storage.read_bytes(info.basename)
        except FileNotFoundError:
            raise missing(where) from None
        return checked(data, info, where, validate_hash)

    def inflate(self, entry: ShardEntry, stored: bytes | bytearray | memoryview) -> bytes:
        """:func:`inflate` for a compressed shard of this dataset."""
        assert entry.zip_data is not None
        return inflate(entry, stored, self.where(entry.zip_data.basename))

    def raw_bytes(self, entry: ShardEntry) -> bytes:
        """The raw (decompressed) content of a shard, verified as this reader is configured."""
        if entry.zip_data is None:
            return self.stored_bytes(entry.raw_data, self.validate_hash)
        return self.inflate(entry, self.stored_bytes(entry.zip_data, self.validate_hash))

    def _raw_copy(self, entry: ShardEntry) -> str | None:
        """A local raw file of the shard that may be mapped instead of reading the stored one."""
        path = self.local_file(entry.raw_data.basename)
        if path is None or _local_size(path) != entry.raw_data.bytes:
            return None
        if self.validate_hash is None:
            return path
        # A decompressed copy is trusted only if it has its own digest to be checked against;
        # without one, the shard is decompressed again from its verified compressed file.
        if entry.zip_data is not None and self.validate_hash not in entry.raw_data.hashes:
            return None
        return path

    def open(self, entry: ShardEntry, *, schema: ReadSchema | None = None, allow_unsafe_types: bool = False) -> ShardReader:
        """A reader of one shard of the dataset.

        Raises:
            FileNotFoundError: the stored file is missing.
            MDSFormatError: a wrong size, a file that does not decompress, or not a valid shard.
            MDSChecksumError, MDSConfigError: ``validate_hash`` fails, or the index has no such digest.
        """
        raw_copy = self._raw_copy(entry)
        if raw_copy is not None:
            if self.validate_hash is None:
                return ShardReader(raw_copy, entry, schema=schema, allow_unsafe_types=allow_unsafe_types)
            data = read_local(raw_copy, entry.raw_data, self.validate_hash)
            return ShardReader.from_bytes(data, entry, source=raw_copy, schema=schema, allow_unsafe_types=allow_unsafe_types)
        data = self.raw_bytes(entry)  # (a local raw file of the wrong size or missing fails here, named)
        stored = entry.zip_data or entry.raw_data
        return ShardReader.from_bytes(data, entry, source=self.where(stored.basename), schema=schema,
                                      allow_unsafe_types=allow_unsafe_types)

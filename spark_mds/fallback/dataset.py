"""Reading an MDS dataset's index and shard files through a :class:`~.storage.DatasetStore`
(the parts of ``mds_loader.format.MDSDataset`` that Spark needs, without writing decompressed
files into the dataset directory, which may be read-only, shared or remote)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from mds_loader.errors import MDSChecksumError, MDSConfigError, MDSFormatError, MDSIndexError, MDSSchemaError
from mds_loader.format import Index, ReadSchema, ShardEntry, ShardReader, get_hash, parse_index
from mds_loader.format.index import INDEX_BASENAME
from mds_loader.format.reader import first_sample_ndarray_infos
from mds_loader.format.schema import NdarrayInfo

from .storage import DatasetStore

__all__ = ["IndexSnapshot", "read_index", "index_where", "check_same_columns", "ndarray_infos", "open_shard"]


@dataclass(frozen=True)
class IndexSnapshot:
    """``index.json`` as read at one moment: its bytes (for the optimistic check of docs/format.md
    §6), its JSON object (whose unknown top-level keys a write keeps) and the parsed index."""

    data: bytes | None
    obj: dict | None
    index: Index | None

    @property
    def exists(self) -> bool:
        """Whether the path holds a dataset (an ``index.json``)."""
        return self.data is not None


def read_index(store: DatasetStore) -> IndexSnapshot:
    """Reads and validates the dataset's ``index.json`` (absent: an empty snapshot).

    Raises:
        MDSIndexError: the file is not JSON or not a valid index, naming it.
    """
    data = store.read_bytes(INDEX_BASENAME)
    if data is None:
        return IndexSnapshot(None, None, None)
    where = f"{store.location}/{INDEX_BASENAME}"
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise MDSIndexError(f"{where}: not valid JSON ({exc}); the file is corrupt or incomplete") from None
    return IndexSnapshot(data, obj, parse_index(obj, where))


def check_same_columns(index: Index) -> None:
    """Every shard of a dataset must have the same columns and encodings (docs/format.md §1).

    Raises:
        MDSSchemaError: naming the first differing shard.
    """
    if not index.shards:
        return
    first = index.shards[0]
    for k, s in enumerate(index.shards[1:], 1):
        if s.column_names != first.column_names or s.column_encodings != first.column_encodings:
            raise MDSSchemaError(
                f"MDS index {index.source}: shard {k} ({s.raw_data.basename}) has columns "
                f"{dict(zip(s.column_names, s.column_encodings))} but shard 0 has "
                f"{dict(zip(first.column_names, first.column_encodings))}; every shard of a dataset must have the same columns"
            )


def open_shard(store: DatasetStore, entry: ShardEntry, validate_hash: str | None,
               schema: ReadSchema | None = None) -> ShardReader:
    """A reader of one shard of the dataset. A local, uncompressed stored file is memory-mapped
    (unless ``validate_hash`` asks to hash it); otherwise the stored file's bytes are read through
    the store (remote files always), checked and decompressed, and decoded from memory.

    Raises:
        FileNotFoundError: the stored file is missing.
        MDSFormatError: wrong size, or it does not decompress.
        MDSChecksumError, MDSConfigError: ``validate_hash`` fails, or the index has no such hash.
    """
    stored = entry.zip_data or entry.raw_data
    local = store.local_file(stored.basename)
    if entry.zip_data is None and local is not None and validate_hash is None:
        _check_size(_local_size(local, store, stored.basename), store, stored.basename, stored.bytes)
        return ShardReader(local, entry, schema=schema)
    data = _raw_shard_bytes(store, entry, validate_hash)
    return ShardReader.from_bytes(data, entry, source=f"{store.location}/{entry.raw_data.basename}", schema=schema)


def _local_size(path: str, store: DatasetStore, name: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"MDS shard {store.location}/{name} listed in index.json does not exist") from None


def _check_size(size: int, store: DatasetStore, name: str, expected: int) -> None:
    if size != expected:
        raise MDSFormatError(f"MDS file {store.location}/{name} has {size} bytes, but its index entry says {expected}")


def _raw_shard_bytes(store: DatasetStore, entry: ShardEntry, validate_hash: str | None) -> bytes:
    """The raw (decompressed) content of a shard, read through the store: the stored file's size
    checked against the index, its hash validated if asked, then decompressed."""
    stored = entry.zip_data or entry.raw_data
    where = f"{store.location}/{stored.basename}"
    data = store.read_bytes(stored.basename)
    if data is None:
        raise FileNotFoundError(f"MDS shard {where} listed in index.json does not exist")
    _check_size(len(data), store, stored.basename, stored.bytes)
    if validate_hash is not None:
        expected = stored.hashes.get(validate_hash)
        if expected is None:
            have = ", ".join(sorted(stored.hashes)) or "none"
            raise MDSConfigError(f"option validate_hash={validate_hash}: the index has no {validate_hash} hash for {where}; it has {have}")
        actual = get_hash(validate_hash, data)
        if actual != expected:
            raise MDSChecksumError(f"MDS shard {where} fails hash validation: {validate_hash} is {actual}, the index says {expected}")
    if entry.zip_data is not None:
        data = entry.codec.decompress(data, source=where)  # type: ignore[union-attr]
        if len(data) != entry.raw_data.bytes:
            raise MDSFormatError(f"{where}: decompresses to {len(data)} bytes, index.json says {entry.raw_data.bytes}; the file is corrupt")
    return data


def ndarray_infos(store: DatasetStore, index: Index) -> dict[str, NdarrayInfo]:
    """Dtype and depth of each dynamic ``ndarray`` column from the dataset's first sample; only
    needed (and only computed) for datasets without a logical schema (docs/format.md §4)."""
    if index.spark_mds is not None or not index.shards:
        return {}
    first = index.shards[0]
    if not any(e.kind == "ndarray" and e.shape is None for e in first.encodings):
        return {}
    k = next((k for k, s in enumerate(index.shards) if s.samples), None)
    if k is None:
        return {}
    with open_shard(store, index.shards[k], None) as reader:
        return first_sample_ndarray_infos(reader)


def index_where(store: DatasetStore) -> str:
    """The index file's location, for messages."""
    return f"{store.location}/{INDEX_BASENAME}"


"""A whole MDS dataset: its ``index.json``, its shards (through :class:`~.shard_files.ShardFiles`,
read-only) and its schema with the logical types and the null mask (docs/format.md §3-§4).
:func:`read_table` reads one into a ``pyarrow.Table``."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any, Mapping

import numpy as np
import pyarrow as pa

from .encodings import parse_encoding
from .index import INDEX_BASENAME, Index, ShardEntry, decode_index_json, load_index, parse_index
from .reader import ReadColumn, ReadSchema, ShardReader, first_sample_ndarray_infos
from .schema import Field, NdarrayInfo, arrow_from_logical, default_encoding
from .shard_files import ShardFiles, check_hash, read_local

__all__ = ["MDSDataset", "ndarray_infos", "open_dataset", "read_table"]

_I64 = np.int64
#: Decompressed shards an :class:`MDSDataset` keeps in memory at most (least recently used go
#: first): random access over a compressed dataset decompresses each shard about once.
MEMORY_BUDGET = 1 << 30


class MDSDataset:
    """An MDS dataset directory: its index, shards and schema. Reading never writes into the
    directory: compressed shards are decompressed in memory (:class:`~.shard_files.ShardFiles`).

    Args:
        path: the dataset directory (holding ``index.json``), local or an fsspec URL.
        validate_hash: a hash algorithm (e.g. ``"xxh64"``) to verify each shard's stored file with
            before it is used.
        allow_unsafe_types: whether ``pkl`` columns may be unpickled by :meth:`get_sample`.
        max_open_shards: how many shards to keep open at once (memory-mapped, or in memory up to
            :data:`MEMORY_BUDGET` bytes of decompressed shards).
        filesystem: an fsspec file system to reach ``path`` with (as pyarrow's ``filesystem=``).
        storage_options: fsspec options for a URL (credentials, endpoint, ...).

    Raises:
        FileNotFoundError: no ``index.json``.
        MDSIndexError: malformed index.
        MDSConfigError: unknown ``validate_hash`` algorithm.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        validate_hash: str | None = None,
        allow_unsafe_types: bool = False,
        max_open_shards: int = 64,
        filesystem: Any = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.files = ShardFiles(path, filesystem=filesystem, storage_options=storage_options, validate_hash=validate_hash)
        self.path = self.files.location
        self.index: Index = self._load_index()
        self.validate_hash = validate_hash
        self.allow_unsafe_types = allow_unsafe_types
        self.max_open_shards = max(1, max_open_shards)
        sizes = np.array([s.samples for s in self.index.shards], _I64)
        self.shard_offsets = np.zeros(len(sizes) + 1, _I64)
        np.cumsum(sizes, out=self.shard_offsets[1:])
        self._readers: OrderedDict[int, ShardReader] = OrderedDict()
        self._lock = threading.RLock()
        self._schema: ReadSchema | None = None

    def _load_index(self) -> Index:
        if self.files.root is not None:
            return load_index(self.files.root)
        where = self.files.where(INDEX_BASENAME)
        return parse_index(decode_index_json(self.files.read(INDEX_BASENAME), where), where)

    # ------------------------------------------------------------------ basics

    @property
    def shards(self) -> list[ShardEntry]:
        """The shard entries of the index."""
        return self.index.shards

    @property
    def num_samples(self) -> int:
        """Total number of samples."""
        return int(self.shard_offsets[-1])

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        return f"MDSDataset({self.path!r}, samples={self.num_samples}, shards={len(self.shards)})"

    def close(self) -> None:
        """Closes every open shard."""
        with self._lock:
            for reader in self._readers.values():
                reader.close()
            self._readers.clear()

    def __enter__(self) -> MDSDataset:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def locate(self, i: int) -> tuple[int, int]:
        """``(shard, index within shard)`` of global sample ``i``."""
        n = self.num_samples
        if not -n <= i < n:
            raise IndexError(f"sample {i} is out of range for {self.path} ({n} samples)")
        i %= n
        shard = int(np.searchsorted(self.shard_offsets, i, side="right")) - 1
        return shard, i - int(self.shard_offsets[shard])

    # ------------------------------------------------------------------ shards

    def shard(self, k: int) -> ShardReader:
        """The (cached) reader of shard ``k``.

        Raises:
            FileNotFoundError: the shard's file is missing.
            MDSFormatError: a wrong size, a file that does not decompress, or not a valid shard.
            MDSChecksumError: a hash mismatch.
        """
        with self._lock:
            reader = self._readers.get(k)
            if reader is not None:
                self._readers.move_to_end(k)
                return reader
        reader = self.files.open(self.shards[k], schema=self.read_schema, allow_unsafe_types=self.allow_unsafe_types)
        with self._lock:
            self._readers[k] = reader
            while len(self._readers) > 1 and (len(self._readers) > self.max_open_shards or self._memory() > MEMORY_BUDGET):
                _, old = self._readers.popitem(last=False)
                old.close()
        return reader

    def _memory(self) -> int:
        """Bytes of the open shards held in memory (mapped ones are the page cache's)."""
        return sum(self.shards[k].raw_data.bytes for k, r in self._readers.items() if r.in_memory)

    # ------------------------------------------------------------------ schema

    @property
    def read_schema(self) -> ReadSchema:
        """How the columns are read into Arrow (logical schema, natural types, null mask)."""
        if self._schema is None:
            with self._lock:
                if self._schema is None:
                    self._schema = self._build_schema()
        return self._schema

    @property
    def schema(self) -> pa.Schema:
        """The Arrow schema of :meth:`to_table`."""
        return self.read_schema.arrow_schema

    @property
    def logical_fields(self) -> list[Field] | None:
        """The logical schema from ``spark_mds``, or None."""
        return self.index.fields

    def _build_schema(self) -> ReadSchema:
        index, shards = self.index, self.shards
        if not shards:
            fields = index.fields or []
            cols = [ReadColumn(f.name, parse_encoding(default_encoding(f.type)), arrow_from_logical(f.type),
                               arrow_from_logical(f.type), f.type, f.nullable) for f in fields]  # fmt: skip
            return ReadSchema(cols, None)
        index.require_same_columns("a table needs the same columns in every shard (read such datasets per sample)")
        first = shards[0]
        return ReadSchema.build(first.column_names, first.encodings, index.fields, index.null_mask,
                                self.ndarray_infos(), index.source)

    def ndarray_infos(self) -> dict[str, NdarrayInfo]:
        """See :func:`ndarray_infos`."""
        return ndarray_infos(self.files, self.index)

    # ------------------------------------------------------------------ reading

    def get_sample(self, i: int, columns: Sequence[str] | None = None) -> dict[str, Any]:
        """Sample ``i`` decoded exactly as ``streaming.StreamingDataset(...)[i]`` returns it."""
        k, j = self.locate(i)
        return self.shard(k).get_sample(j, columns)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.get_sample(i)

    def iter_batches(self, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        """One record batch per non-empty shard, in index order."""
        for k, entry in enumerate(self.shards):
            if entry.samples:
                yield self.shard(k).read_batch(np.arange(entry.samples), columns)

    def to_table(self, columns: Sequence[str] | None = None) -> pa.Table:
        """The whole dataset (or some columns) as a table: logical types, real nulls."""
        selected = self.read_schema.select(columns)
        schema = pa.schema([pa.field(c.name, c.arrow_type, c.nullable) for c in selected])
        return pa.Table.from_batches(list(self.iter_batches(columns)), schema=schema)

    def verify(self, algorithm: str | None = None) -> None:
        """Checks every stored file of the index against its hash (``algorithm``, default the
        first one each file has), the raw form of compressed shards too (and a decompressed copy
        beside one, which readers would use), and that every shard parses.

        Raises:
            FileNotFoundError, MDSFormatError, MDSChecksumError: the first bad shard, naming it.
        """
        for entry in self.shards:
            stored_info = entry.zip_data or entry.raw_data
            algo = algorithm or (sorted(stored_info.hashes)[0] if stored_info.hashes else None)
            stored = self.files.stored_bytes(stored_info, algo)
            raw = stored
            if entry.zip_data is not None:
                raw = self.files.inflate(entry, stored)
                raw_algo = algorithm or (sorted(entry.raw_data.hashes)[0] if entry.raw_data.hashes else None)
                if raw_algo is not None:
                    check_hash(raw_algo, raw, entry.raw_data, f"{self.files.where(entry.zip_data.basename)} (decompressed)")
                    copy = self.files.local_file(entry.raw_data.basename)  # what readers map when present
                    if copy is not None and os.path.isfile(copy):
                        read_local(copy, entry.raw_data, raw_algo)
            ShardReader.from_bytes(raw, entry, source=self.files.where(stored_info.basename)).close()


def ndarray_infos(files: ShardFiles, index: Index) -> dict[str, NdarrayInfo]:
    """Dtype and depth of each dynamic ``ndarray`` column from the dataset's first sample; only
    needed (and only read) for datasets without a logical schema (docs/format.md §4)."""
    if index.fields is not None or not index.shards:
        return {}
    if not any(e.dynamic_ndarray for e in index.shards[0].encodings):
        return {}
    k = next((k for k, s in enumerate(index.shards) if s.samples), None)
    if k is None:
        return {}
    with files.open(index.shards[k]) as reader:
        return first_sample_ndarray_infos(reader)


def open_dataset(path: str | os.PathLike, **kwargs: Any) -> MDSDataset:
    """Opens an MDS dataset directory (see :class:`MDSDataset` for the arguments)."""
    return MDSDataset(path, **kwargs)


def read_table(path: str | os.PathLike, columns: Sequence[str] | None = None, *, validate_hash: str | None = None,
               filesystem: Any = None, storage_options: Mapping[str, Any] | None = None) -> pa.Table:
    """Reads an MDS dataset into a ``pyarrow.Table``, without writing anything.

    With a ``spark_mds`` logical schema, columns have their logical types and nulls; without one,
    each column has its encoding's natural type (docs/format.md §4).

    Args:
        path: the dataset directory, local or an fsspec URL.
        columns: read only these columns, in this order.
        validate_hash: verify shard files with this hash algorithm.
        filesystem: an fsspec file system to reach ``path`` with.
        storage_options: fsspec options for a URL (credentials, endpoint, ...).
    """
    with MDSDataset(path, validate_hash=validate_hash, filesystem=filesystem, storage_options=storage_options) as ds:
        return ds.to_table(columns)

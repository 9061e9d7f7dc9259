"""Reading MDS shards and datasets: per sample (reference-identical values) and per batch
(vectorized, into Arrow).

* :class:`ShardReader` reads one raw (decompressed) shard file through a memory map.
  ``get_sample(i)`` returns what ``streaming.StreamingDataset`` returns for that sample;
  ``read_batch(indices)`` decodes any set of samples, in any order, column by column into a
  ``pyarrow.RecordBatch``: the size headers of all requested samples are gathered at once, column
  positions come from a cumulative sum, fixed-size columns are gathered with numpy fancy indexing,
  and variable-size columns are cut out of the memory-mapped file by one Arrow ``take`` over a
  ``large_binary`` view of the file whose elements are the samples' columns.

A whole dataset (``index.json`` and its shards) is :class:`~.dataset.MDSDataset`.
"""

from __future__ import annotations

import json
import mmap
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import MDSError, MDSFormatError, MDSIndexError, MDSUnsafeError
from .columnar import (
    NdarrayHeads,
    build_ndarray,
    decode_fixed,
    decode_var,
    ndarray_values,
    parse_ndarray_heads,
    to_logical,
)
from .encodings import Encoding, parse_encoding
from .index import ShardEntry
from .schema import (
    Field,
    LogicalType,
    NdarrayInfo,
    array_depth,
    element_dtype,
    list_leaf,
    natural_arrow,
    read_arrow_type,
)
from .shard import parse_shard_header

__all__ = ["ReadColumn", "ReadSchema", "ShardReader", "first_sample_ndarray_infos"]

_I64 = np.int64


def byte_rows(buf: np.ndarray, width: int) -> np.ndarray:
    """A read-only (len(buf) - width + 1, width) view of ``buf`` whose row k is ``buf[k:k + width]``:
    ``byte_rows(buf, w)[starts]`` gathers the w bytes at each start in one numpy copy."""
    rows = max(len(buf) - width + 1, 0)
    return np.lib.stride_tricks.as_strided(buf, (rows, width), (1, 1), writeable=False)


@dataclass(frozen=True)
class ReadColumn:
    """How one MDS column is read into Arrow.

    Attributes:
        name: column name.
        encoding: its encoding.
        arrow_type: the Arrow type it is read as (§4 natural type rule).
        natural_type: the encoding's natural Arrow type (what the decoders produce).
        logical: its logical type from ``spark_mds``, or None.
        nullable: whether the Arrow field is nullable.
        null_bit: its bit in the ``__nulls__`` mask, or None.
    """

    name: str
    encoding: Encoding
    arrow_type: pa.DataType
    natural_type: pa.DataType
    logical: LogicalType | None = None
    nullable: bool = True
    null_bit: int | None = None


@dataclass(frozen=True)
class ReadSchema:
    """The columns of a dataset as Arrow reads them, in logical order, and the null mask."""

    columns: list[ReadColumn]
    null_mask: str | None = None

    @property
    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema of the table that :func:`read_table` returns."""
        return pa.schema([pa.field(c.name, c.arrow_type, c.nullable) for c in self.columns])

    def select(self, columns: Sequence[str] | None) -> list[ReadColumn]:
        """The requested columns, in the requested order (all when None).

        Raises:
            KeyError: an unknown column name.
        """
        if columns is None:
            return list(self.columns)
        by_name = {c.name: c for c in self.columns}
        missing = [c for c in columns if c not in by_name]
        if missing:
            raise KeyError(f"unknown columns {missing}; the dataset has {list(by_name)}")
        return [by_name[c] for c in columns]

    @classmethod
    def build(
        cls,
        names: Sequence[str],
        encodings: Sequence[Encoding],
        fields: Sequence[Field] | None = None,
        null_mask: str | None = None,
        ndarray_infos: dict[str, NdarrayInfo] | None = None,
        source: str = "index.json",
    ) -> ReadSchema:
        """Builds the read schema from the MDS columns and, if the index has one, the logical
        schema (``fields``) and null-mask column."""
        encs = dict(zip(names, encodings))
        infos = ndarray_infos or {}
        if fields is None:
            cols = [ReadColumn(n, e, natural_arrow(e, infos.get(n)), natural_arrow(e, infos.get(n))) for n, e in encs.items()]
            return cls(cols, None)
        if null_mask is not None and null_mask not in encs:
            raise MDSIndexError(f"{source}: spark_mds names the null mask {null_mask!r}, but the shards have no such column")
        expected = {f.name for f in fields} | ({null_mask} if null_mask else set())
        if expected != set(encs):
            raise MDSIndexError(
                f"{source}: spark_mds.schema fields {sorted(f.name for f in fields)} do not match the shard columns "
                f"{sorted(encs)}"
            )
        cols = []
        for bit, f in enumerate(fields):
            enc = encs[f.name]
            info = infos.get(f.name) or _logical_ndarray_info(f.type, enc)
            natural = natural_arrow(enc, info)
            target = read_arrow_type(f.type, enc, info)
            cols.append(ReadColumn(f.name, enc, target, natural, f.type, f.nullable, bit if null_mask else None))
        return cls(cols, null_mask)


def _logical_ndarray_info(t: LogicalType, enc: Encoding) -> NdarrayInfo | None:
    """The dtype and depth of a dynamic ``ndarray`` column from its logical type."""
    if enc.kind != "ndarray" or enc.shape is not None:
        return None
    element, depth = array_depth(t)
    dtype = enc.dtype.name if enc.dtype is not None else element_dtype(element)
    if not depth or dtype is None:
        return None
    return NdarrayInfo(dtype, depth)


def _check_shard_size(size: int, source: str) -> None:
    """A shard holds at least its sample count and one offset (8 bytes).

    Raises:
        MDSFormatError: ``size`` is smaller, naming ``source``.
    """
    if size < 8:
        raise MDSFormatError(f"{source}: {size} bytes is too short for a shard; the file is truncated")


class ShardReader:
    """Reads a raw (decompressed) MDS shard file through a memory map, or a shard held in memory
    (:meth:`from_bytes`).

    Args:
        path: the raw shard file.
        entry: its entry from index.json; when None, the columns are read from the config JSON
            embedded in the shard.
        schema: how to read the columns into Arrow (from :class:`MDSDataset`); by default the
            encodings' natural types, with dynamic ndarray types from this shard's first sample.
        allow_unsafe_types: whether :meth:`get_sample` may unpickle ``pkl`` columns.

    Raises:
        MDSFormatError: the file is not a valid shard (truncated, inconsistent header), naming it.

    The reader is safe to use from several threads.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        entry: ShardEntry | None = None,
        *,
        schema: ReadSchema | None = None,
        allow_unsafe_types: bool = False,
    ) -> None:
        self.path = os.fspath(path)
        _check_shard_size(os.path.getsize(self.path), self.path)
        with open(self.path, "rb") as f:
            self._mmap: mmap.mmap | None = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self._setup(np.frombuffer(self._mmap, np.uint8), entry, schema, allow_unsafe_types)

    @classmethod
    def from_bytes(
        cls,
        data: bytes | bytearray | memoryview,
        entry: ShardEntry | None = None,
        *,
        source: str,
        schema: ReadSchema | None = None,
        allow_unsafe_types: bool = False,
    ) -> ShardReader:
        """A reader of a raw shard's content held in memory (e.g. downloaded from an object store,
        or decompressed), without a local file. ``source`` names the shard in messages (it is the
        reader's :attr:`path`); the other arguments are those of the constructor.

        Raises:
            MDSFormatError: ``data`` is not a valid shard, naming ``source``.
        """
        reader = cls.__new__(cls)
        reader.path = source
        view = memoryview(data).cast("B")
        _check_shard_size(view.nbytes, source)
        reader._mmap = None
        reader._setup(np.frombuffer(view, np.uint8), entry, schema, allow_unsafe_types)
        return reader

    def _setup(self, buf: np.ndarray, entry: ShardEntry | None, schema: ReadSchema | None,
               allow_unsafe_types: bool) -> None:
        """Parses the header of the shard in ``buf`` and sets up the columns (``self.path`` is set)."""
        self.allow_unsafe_types = allow_unsafe_types
        self._buf = buf
        self._offsets = parse_shard_header(self._buf, self.path, entry.samples if entry else None)
        if entry is None:
            names, encodings, sizes = self._embedded_columns()
        else:
            names, encodings, sizes = entry.column_names, entry.encodings, entry.column_sizes
        self.column_names: list[str] = list(names)
        self.encodings: list[Encoding] = list(encodings)
        self._sizes: list[int | None] = list(sizes)
        self._var = [s is None for s in self._sizes]
        self._num_var = sum(self._var)
        self._col = {n: j for j, n in enumerate(self.column_names)}
        self._schema = schema
        self._schema_lock = threading.Lock()

    # ------------------------------------------------------------------ basics

    @property
    def in_memory(self) -> bool:
        """Whether the shard is held in memory (decompressed or downloaded), not memory-mapped."""
        return self._mmap is None

    @property
    def num_samples(self) -> int:
        """Number of samples in the shard."""
        return len(self._offsets) - 1

    def __len__(self) -> int:
        return self.num_samples

    @property
    def schema(self) -> ReadSchema:
        """How :meth:`read_batch` reads the columns."""
        if self._schema is None:
            with self._schema_lock:
                if self._schema is None:
                    infos = first_sample_ndarray_infos(self) if self.num_samples else {}
                    self._schema = ReadSchema.build(self.column_names, self.encodings, ndarray_infos=infos)
        return self._schema

    def close(self) -> None:
        """Unmaps the file (or drops the in-memory shard). The reader must not be used afterwards."""
        self._buf = np.zeros(0, np.uint8)
        if self._mmap is None:
            return
        try:
            self._mmap.close()
        except BufferError:  # a buffer is still exported; the map is released with it
            pass

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ShardReader({self.path!r}, samples={self.num_samples}, columns={self.column_names})"

    def _embedded_columns(self) -> tuple[list[str], list[Encoding], list[int | None]]:
        start = 4 + 4 * len(self._offsets)
        try:
            config = json.loads(bytes(self._buf[start : int(self._offsets[0])]))
            names, texts, sizes = config["column_names"], config["column_encodings"], config["column_sizes"]
            encodings = [parse_encoding(t) for t in texts]
            if not len(names) == len(encodings) == len(sizes) or any(s != e.size for s, e in zip(sizes, encodings)):
                raise ValueError("column lists disagree")
            if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
                raise ValueError("column names are not distinct strings")
        except (ValueError, KeyError, TypeError, MDSError) as exc:
            raise MDSFormatError(f"{self.path}: the shard's embedded config is malformed ({exc}); open it with its index entry") from None
        return list(names), encodings, list(sizes)

    def _check_index(self, i: int) -> int:
        n = self.num_samples
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
            raise TypeError(f"sample index must be an integer, got {type(i).__name__}")
        if not -n <= i < n:
            raise IndexError(f"sample {i} is out of range for {self.path} ({n} samples)")
        return int(i) % n if n else int(i)

    def sample_bytes(self, i: int) -> bytes:
        """The raw bytes of sample ``i`` (size header and column payloads)."""
        i = self._check_index(i)
        return bytes(self._buf[self._offsets[i] : self._offsets[i + 1]])

    # ------------------------------------------------------------------ per sample

    def get_sample(self, i: int, columns: Sequence[str] | None = None) -> dict[str, Any]:
        """Decodes sample ``i`` exactly as the reference does: numpy scalars, ``str``, ``bytes``,
        PIL images, ``Decimal``, read-only ``ndarray``..., keyed by column name in column order
        (the ``__nulls__`` column, if any, is returned as is).

        Args:
            i: sample index within the shard (negative counts from the end).
            columns: only decode these columns (default: all).

        Raises:
            IndexError: ``i`` out of range.
            KeyError: an unknown column.
            MDSFormatError: the sample is malformed (naming the file, sample and column).
            MDSUnsafeError: a ``pkl`` column without ``allow_unsafe_types=True``.
        """
        i = self._check_index(i)
        data = self.sample_bytes(i)
        wanted = None
        if columns is not None:
            unknown = [c for c in columns if c not in self._col]
            if unknown:
                raise KeyError(f"unknown columns {unknown}; {self.path} has {self.column_names}")
            wanted = set(columns)
        sizes = []
        pos = 0
        for size in self._sizes:
            if size is None:
                if pos + 4 > len(data):
                    raise MDSFormatError(f"{self.path}: sample {i} ends inside its size header")
                size = int.from_bytes(data[pos : pos + 4], "little")
                pos += 4
            sizes.append(size)
        if pos + sum(sizes) != len(data):
            raise MDSFormatError(
                f"{self.path}: sample {i} has {len(data)} bytes, but its column sizes add up to {pos + sum(sizes)}; "
                f"the shard is corrupt"
            )
        sample = {}
        for name, enc, size in zip(self.column_names, self.encodings, sizes):
            if wanted is None or name in wanted:
                try:
                    sample[name] = enc.decode(data[pos : pos + size], allow_unsafe_types=self.allow_unsafe_types)
                except (MDSFormatError, MDSUnsafeError) as exc:
                    raise type(exc)(f"{self.path}: sample {i}, column {name!r}: {exc}") from None
            pos += size
        return sample

    # ------------------------------------------------------------------ per batch

    def read_batch(self, indices: Sequence[int] | np.ndarray, columns: Sequence[str] | None = None, *,
                   schema: ReadSchema | None = None) -> pa.RecordBatch:
        """Decodes samples ``indices`` (any order, repeats allowed) into a record batch whose rows
        follow ``indices``. Only ``columns`` (default: all) are decoded.

        Column types follow ``schema``, by default the reader's :attr:`schema` (with a dataset's
        schema: logical types and real nulls).

        Raises:
            IndexError: an index out of range.
            KeyError: an unknown column.
            MDSFormatError: a requested sample is malformed (naming the file and sample).
            MDSSchemaError: values that the column's Arrow type cannot hold (e.g. ndarray rows of
                another depth than the first sample's).
        """
        schema = self.schema if schema is None else schema
        selected = schema.select(columns)
        idx = np.asarray(indices, dtype=_I64).reshape(-1)
        n = self.num_samples
        if len(idx) and (idx.min() < 0 or idx.max() >= n):
            bad = idx[(idx < 0) | (idx >= n)][0]
            raise IndexError(f"sample {int(bad)} is out of range for {self.path} ({n} samples)")
        arrow_schema = pa.schema([pa.field(c.name, c.arrow_type, c.nullable) for c in selected])
        if len(idx) == 0:
            return pa.RecordBatch.from_arrays([pa.array([], c.arrow_type) for c in selected], schema=arrow_schema)
        batch = ShardRows(self, idx)
        mask = None
        if schema.null_mask is not None and any(c.null_bit is not None for c in selected):
            mask = batch.fixed(self._col[schema.null_mask])
        arrays = []
        for c in selected:
            arr = batch.column(c)
            if mask is not None and c.null_bit is not None:
                nulls = (mask[:, c.null_bit // 8] >> (c.null_bit % 8)) & 1
                if nulls.any():
                    arr = pc.if_else(pa.array(nulls.astype(bool)), pa.scalar(None, arr.type), arr)
            arrays.append(arr)
        return pa.RecordBatch.from_arrays(arrays, schema=arrow_schema)


class ShardRows:
    """The positions of the columns of some samples of a shard, computed once per batch. Keeps the
    shard's bytes mapped (even if the reader is closed meanwhile)."""

    def __init__(self, reader: ShardReader, idx: np.ndarray) -> None:
        self.reader = reader
        self.idx = idx
        self.buf = buf = reader._buf
        offsets = reader._offsets
        if np.all(idx[1:] > idx[:-1]):  # ascending and distinct: no reordering needed
            uniq, inverse = idx, None
        else:
            uniq, inverse = np.unique(idx, return_inverse=True)
        self.uniq, self.inverse = uniq, inverse
        starts, ends = offsets[uniq], offsets[uniq + 1]
        lengths = ends - starts
        v = reader._num_var
        head = 4 * v
        if np.any(lengths < head):
            self._corrupt(int(np.argmax(lengths < head)), "ends inside its size header")
        ncol = len(reader._sizes)
        sizes = np.empty((len(uniq), ncol), _I64)
        if v:
            words = byte_rows(buf, head)[starts].view("<u4").reshape(len(uniq), v)
            sizes[:, np.array(reader._var)] = words
        for j, s in enumerate(reader._sizes):
            if s is not None:
                sizes[:, j] = s
        total = head + sizes.sum(axis=1)
        if np.any(total != lengths):
            bad = int(np.argmax(total != lengths))
            self._corrupt(bad, f"has {int(lengths[bad])} bytes, but its column sizes add up to {int(total[bad])}")
        self.sizes = sizes  # (distinct samples, columns) payload sizes
        self.col_starts = starts[:, None] + head + np.cumsum(sizes, axis=1) - sizes  # absolute positions

    def _corrupt(self, row: int, what: str) -> None:
        raise MDSFormatError(f"{self.reader.path}: sample {int(self.uniq[row])} {what}; the shard is corrupt")

    def row_name(self, row: int) -> str:
        return f"{self.reader.path}: sample {int(self.uniq[row])}"

    def request_name(self, i: int) -> str:
        return f"{self.reader.path}: sample {int(self.idx[i])}"

    def order(self, values: np.ndarray) -> np.ndarray:
        """Rows of per-unique-sample ``values`` in the requested order."""
        return values if self.inverse is None else values[self.inverse]

    def fixed(self, j: int) -> np.ndarray:
        """Column ``j`` (fixed size) of the requested rows, as an (n, size) uint8 array."""
        size = self.reader._sizes[j]
        return byte_rows(self.buf, size)[self.order(self.col_starts[:, j])]  # type: ignore[arg-type]

    def take(self, starts: np.ndarray, lengths: np.ndarray) -> pa.Array:
        """Copies one byte range per distinct sample (ascending, as the samples are) into a
        compact ``large_binary`` array whose rows follow the requested indices, with one Arrow
        ``take`` over a ``large_binary`` view of the file: element 2k is range k, element 2k+1
        the gap after it."""
        ends = starts + lengths
        if np.any(starts[1:] < ends[:-1]):
            raise MDSFormatError(f"{self.reader.path}: sample columns overlap; the shard is corrupt")
        bounds = np.empty(2 * len(starts), _I64)
        bounds[0::2], bounds[1::2] = starts, ends
        view = pa.Array.from_buffers(pa.large_binary(), len(bounds) - 1, [None, pa.py_buffer(bounds), pa.py_buffer(self.buf)])
        rows = np.arange(len(starts), dtype=_I64) if self.inverse is None else self.inverse
        return view.take(pa.array(2 * rows))

    def column(self, c: ReadColumn) -> pa.Array:
        """Decodes one column of the requested rows into its read Arrow type."""
        reader = self.reader
        j = reader._col[c.name]
        enc = c.encoding
        if reader._sizes[j] is not None:
            arr = decode_fixed(self.fixed(j), enc, c.natural_type)
        elif enc.dynamic_ndarray:
            arr = self._ndarray(j, c)
        else:
            arr = decode_var(self.take(self.col_starts[:, j], self.sizes[:, j]), enc, c.natural_type, c.name, self.request_name)
        if c.arrow_type != arr.type:
            arr = to_logical(arr, enc, c.logical, c.arrow_type, c.name)  # type: ignore[arg-type]
        return arr

    def _ndarray(self, j: int, c: ReadColumn) -> pa.Array:
        leaf, ndim = list_leaf(c.natural_type)
        dtype = np.dtype(leaf.to_pandas_dtype())
        heads = parse_ndarray_heads(
            self.buf, self.col_starts[:, j], self.sizes[:, j], c.encoding, ndim, c.name, self.row_name
        )  # on the distinct samples, then reordered
        values = self.take(self.col_starts[:, j] + heads.prefix, self.sizes[:, j] - heads.prefix)
        if self.inverse is not None:
            heads = NdarrayHeads(
                heads.prefix[self.inverse], None if heads.codes is None else heads.codes[self.inverse], heads.shapes[self.inverse]
            )
        values = ndarray_values(values, heads, dtype, c.name, self.request_name)
        return build_ndarray(values, heads.shapes, c.natural_type, c.name)


def first_sample_ndarray_infos(reader: ShardReader) -> dict[str, NdarrayInfo]:
    """Dtype and depth of each dynamic ``ndarray`` column in the shard's first sample (§4)."""
    infos = {}
    dynamic = [n for n, e in zip(reader.column_names, reader.encodings) if e.dynamic_ndarray]
    if not dynamic:
        return infos
    sample = reader.get_sample(0, dynamic)
    for name, value in sample.items():
        infos[name] = NdarrayInfo(value.dtype.name, value.ndim)
    return infos

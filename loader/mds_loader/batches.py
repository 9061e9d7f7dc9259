"""Decoded batches handed to training: torch tensors, NumPy arrays, Arrow or Polars.

The ``"torch"`` format is exactly what ``torch.utils.data.default_collate`` makes of the
per-sample dicts that the reference (and our per-sample iteration) yields: numeric columns become
1-d tensors of the column's dtype, ``ndarray`` columns a stacked tensor, ``str`` and ``bytes``
columns lists. It is built from whole Arrow columns, zero-copy where the layout allows, instead of
collating one Python object per sample. Columns whose per-sample values default_collate cannot
stack the same way (decimals, JSON, pickles, images) are not eligible: the loader then falls back
to per-sample iteration.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from .errors import MDSSchemaError
from .format.columnar import build_ndarray
from .format.encodings import Encoding
from .format.gather import Layout
from .format.reader import ReadColumn
from .format.schema import list_leaf

__all__ = [
    "BATCH_FORMATS",
    "collatable",
    "interleave",
    "mask_bits",
    "null_rows",
    "packed_numpy",
    "packed_torch",
    "slice_batch",
    "to_numpy",
    "to_torch",
]

BATCH_FORMATS = ("torch", "numpy", "arrow", "polars")

def collatable(encoding: Encoding) -> bool:
    """Whether a column's values collate to a tensor or a list that the batch path can build
    (numbers, ``str``, ``bytes``, ndarrays of one dtype: the encoding family says)."""
    return encoding.family.collatable(encoding)


class TextColumn:
    """A ``str`` or ``bytes`` column of a decoded ``"torch"`` chunk, kept as Arrow keeps it: one
    values buffer and int64 offsets. A slice is the batch's list of Python values. Pickled (a chunk
    a DataLoader worker decoded through Arrow), it travels as two shared-memory tensors instead of
    every value through a pipe (for image-sized values that is three copies fewer)."""

    __slots__ = ("data", "offsets", "type")

    def __init__(self, data: np.ndarray, offsets: np.ndarray, type_: pa.DataType) -> None:
        self.data, self.offsets, self.type = data, offsets, type_

    @classmethod
    def from_arrow(cls, arr: pa.Array) -> TextColumn | list:
        """The packed column, or (with nulls) the plain list of values."""
        if arr.null_count:
            return arr.to_pylist()
        text = pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)
        arr = arr.cast(pa.large_string() if text else pa.large_binary())
        _, offsets, data = arr.buffers()
        return cls(np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8),
                   np.frombuffer(offsets, np.int64, len(arr) + 1, arr.offset * 8), arr.type)  # fmt: skip

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, rows: slice) -> list:
        start, stop, step = rows.indices(len(self))
        if step != 1:
            raise ValueError("a TextColumn slices contiguous rows only")
        n = max(0, stop - start)
        offsets = self.offsets[start : start + n + 1]
        return pa.Array.from_buffers(self.type, n, [None, pa.py_buffer(offsets), pa.py_buffer(self.data)]).to_pylist()

    def __reduce__(self) -> tuple:
        import torch

        # Allocated in shared memory and filled once; the other process maps it by handle.
        data = torch.empty(0, dtype=torch.uint8)
        if len(self.data):  # (shared memory of 0 bytes cannot be mapped)
            data.set_(torch.UntypedStorage._new_shared(len(self.data)))
            data.numpy()[:] = self.data
        return _text_column, (data, torch.from_numpy(self.offsets.copy()), pa.types.is_large_string(self.type))


def _text_column(data: Any, offsets: Any, text: bool) -> TextColumn:
    return TextColumn(data.numpy(), offsets.numpy(), pa.large_string() if text else pa.large_binary())


def packed_torch(block: np.ndarray, layout: Layout) -> dict[str, Any]:
    """The ``"torch"`` chunk in a filled block (uint8): each column a tensor over its part of the
    block (which it keeps alive), with ``str``/``bytes`` columns as :class:`TextColumn`."""
    import torch

    out: dict[str, Any] = {}
    for c in layout.columns:
        values = c.values.view(block)
        if c.offsets is None:
            out[c.name] = torch.from_numpy(values)
        else:
            out[c.name] = TextColumn(values, c.offsets.view(block), pa.large_string() if c.text else pa.large_binary())
    return out


def packed_numpy(block: np.ndarray, layout: Layout) -> dict[str, Any]:
    """The ``"numpy"`` chunk in a filled block: numbers and arrays as views of it, strings and
    bytes as object arrays (as :func:`to_numpy`)."""
    out: dict[str, Any] = {}
    for c in layout.columns:
        values = c.values.view(block)
        if c.offsets is None:
            out[c.name] = values
        else:
            arr = pa.Array.from_buffers(pa.large_string() if c.text else pa.large_binary(), layout.rows,
                                        [None, pa.py_buffer(c.offsets.view(block)), pa.py_buffer(values)])
            out[c.name] = arr.to_numpy(zero_copy_only=False)
    return out


def slice_batch(whole: Any, batch_format: str, offset: int, size: int) -> Any:
    """Rows ``offset:offset + size`` of a decoded chunk (zero-copy except for lists of strings);
    a ``"polars"`` chunk is Arrow and becomes a polars DataFrame here."""
    if batch_format in ("torch", "numpy"):
        return {k: v[offset : offset + size] for k, v in whole.items()}
    if batch_format == "arrow":
        return whole.slice(offset, size)
    import polars as pl

    return pl.from_arrow(whole.slice(offset, size))


def null_rows(bits: np.ndarray, columns: Sequence[ReadColumn]) -> dict[str, np.ndarray]:
    """Rows where each column is null, from the rows' ``__nulls__`` bytes ((rows, width) uint8)."""
    out = {}
    for c in columns:
        if c.null_bit is not None:
            rows = (bits[:, c.null_bit // 8] >> (c.null_bit % 8)) & 1
            if rows.any():
                out[c.name] = np.flatnonzero(rows)
    return out


def mask_bits(mask: pa.Array) -> np.ndarray:
    """The ``__nulls__`` column of a batch as its rows' bytes ((rows, width) uint8)."""
    return _fixed_values(mask).reshape(len(mask), -1)


def _writable_values(arr: pa.Array, dtype: np.dtype) -> np.ndarray:
    """The values buffer of a primitive array as numpy, without a copy when Arrow owns mutable
    memory (arrays the reader builds), else copied (torch refuses read-only memory)."""
    buf = arr.buffers()[1]
    values = np.frombuffer(buf, dtype=dtype, count=len(arr), offset=arr.offset * dtype.itemsize)
    return values if values.flags.writeable else values.copy()


def _fixed_values(arr: pa.Array) -> np.ndarray:
    """Flat values of a (nested) fixed-size list array of primitives."""
    while pa.types.is_fixed_size_list(arr.type):
        arr = arr.flatten()
    return _writable_values(arr, np.dtype(arr.type.to_pandas_dtype()))


def _list_shape(arr: pa.Array, writable: bool = True) -> tuple[np.ndarray, list[int]] | None:
    """(flat values, per-row shape) when every row of a nested list array has the same shape,
    else None. The values are read-only when not `writable` (no copy)."""
    shape = []
    rows = len(arr)
    while pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type):
        if pa.types.is_fixed_size_list(arr.type):
            size = arr.type.list_size
        else:
            offsets = np.asarray(arr.offsets)
            lengths = np.diff(offsets)
            if len(lengths) and np.any(lengths != lengths[0]):
                return None
            size = int(lengths[0]) if len(lengths) else 0
        shape.append(size)
        rows *= size
        arr = arr.flatten()
    if len(arr) != rows:
        return None
    dtype = np.dtype(arr.type.to_pandas_dtype())
    if not writable:
        return np.frombuffer(arr.buffers()[1], dtype=dtype, count=len(arr), offset=arr.offset * dtype.itemsize), shape
    return _writable_values(arr, dtype), shape


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def interleave(parts: Sequence[pa.RecordBatch], positions: Sequence[np.ndarray]) -> pa.RecordBatch:
    """One record batch of ``sum(len(p))`` rows in which row ``positions[k][i]`` is row ``i`` of
    ``parts[k]`` (the positions of all parts together are each row number once).

    This puts the rows that a batch reads shard by shard back in the order asked for. Numbers
    and arrays of one shape (token ids, embeddings) are scattered with numpy, one row copy each;
    other columns (strings, ragged arrays, nulls) go through Arrow's ``take``, whose list
    ``take`` costs about 7x the row copy.
    """
    n = sum(len(p) for p in positions)
    schema = parts[0].schema
    arrays = [_interleave_column([p.column(j) for p in parts], positions, n) for j in range(len(schema))]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _interleave_column(cols: list[pa.Array], positions: Sequence[np.ndarray], n: int) -> pa.Array:
    t = cols[0].type
    if all(c.null_count == 0 for c in cols):
        if pa.types.is_integer(t) or pa.types.is_floating(t):
            dtype = np.dtype(t.to_pandas_dtype())
            out = np.empty(n, dtype)
            for c, pos in zip(cols, positions):
                out[pos] = np.frombuffer(c.buffers()[1], dtype=dtype, count=len(c), offset=c.offset * dtype.itemsize)
            return pa.array(out, type=t)
        if _is_list(t) and (pa.types.is_integer(list_leaf(t)[0]) or pa.types.is_floating(list_leaf(t)[0])):
            found = [_list_shape(c, writable=False) for c in cols]
            shape = found[0][1] if found[0] is not None else None
            if shape is not None and all(f is not None and f[1] == shape for f in found):
                width = int(np.prod(shape)) if shape else 1
                out = np.empty((n, width), found[0][0].dtype)  # type: ignore[index]
                for (values, _), pos in zip(found, positions):  # type: ignore[misc]
                    out[pos] = values.reshape(len(pos), width)
                return build_ndarray(pa.array(out.reshape(-1)), np.tile(np.array(shape, np.int64), (n, 1)), t, "")
    order = np.concatenate(positions)
    inverse = np.empty(n, np.int64)
    inverse[order] = np.arange(n, dtype=np.int64)
    return pa.concat_arrays(cols).take(pa.array(inverse))


def to_torch(batch: pa.RecordBatch, columns: Sequence[ReadColumn]) -> dict[str, Any]:
    """``default_collate`` of the batch's samples, built column by column (``str`` and ``bytes``
    columns as :class:`TextColumn`: a slice of the result is the collated batch).

    `batch` holds the columns' *natural* types (what the reference decodes them to).

    Raises:
        TypeError: a column has nulls (default_collate cannot collate None).
        RuntimeError: rows of an ndarray column differ in shape (torch.stack's error).
    """
    import torch

    out: dict[str, Any] = {}
    for c in columns:
        arr = batch.column(c.name)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        t = arr.type
        if c.encoding.name in ("str", "bytes"):
            out[c.name] = TextColumn.from_arrow(arr)  # slices (the batches) are lists
        elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            found = _list_shape(arr)
            if found is None:
                # Rows of different shapes: let torch.stack raise exactly what default_collate does.
                rows = [torch.as_tensor(np.array(v, dtype=_leaf_dtype(t))) for v in arr.to_pylist()]
                torch.stack(rows, 0)
                raise AssertionError("unreachable: torch.stack accepted ragged rows")
            values, shape = found
            out[c.name] = torch.from_numpy(values).reshape(len(arr), *shape)
        elif pa.types.is_primitive(t) and not pa.types.is_boolean(t):
            out[c.name] = torch.from_numpy(_writable_values(arr, np.dtype(t.to_pandas_dtype())))
        else:
            raise MDSSchemaError(f"column {c.name!r} ({c.encoding.text}) has no tensor form; use per-sample iteration "
                                 f"or the 'arrow' batch format")
    return out


def _leaf_dtype(t: pa.DataType) -> np.dtype:
    return np.dtype(list_leaf(t)[0].to_pandas_dtype())


def to_numpy(batch: pa.RecordBatch, columns: Sequence[ReadColumn]) -> dict[str, Any]:
    """The batch as NumPy: numeric columns as 1-d arrays, uniform ndarray columns stacked into one
    array, ragged ones as a list of arrays, strings and bytes as object arrays."""
    out: dict[str, Any] = {}
    for c in columns:
        arr = batch.column(c.name)
        t = arr.type
        if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            found = _list_shape(arr) if arr.null_count == 0 else None
            if found is not None:
                values, shape = found
                out[c.name] = values.reshape(len(arr), *shape)
            else:
                dtype = _leaf_dtype(t)
                out[c.name] = [None if v is None else np.array(v, dtype=dtype) for v in arr.to_pylist()]
        elif pa.types.is_primitive(t) and arr.null_count == 0 and not pa.types.is_boolean(t):
            out[c.name] = _writable_values(arr, np.dtype(t.to_pandas_dtype()))
        else:
            out[c.name] = arr.to_numpy(zero_copy_only=False)
    return out

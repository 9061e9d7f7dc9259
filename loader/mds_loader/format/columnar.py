"""Vectorized conversion between Arrow arrays and MDS column payloads, both ways.

Writing: :func:`encode_column` turns one Arrow column into *pieces*, ``large_binary`` arrays whose
row-wise concatenation is each row's payload, plus the payload sizes of variable-size columns;
:func:`join_samples` concatenates the size header and every column's pieces row by row into the
encoded samples (Arrow's ``binary_join_element_wise`` does the scatter in C++). Fixed-size numbers,
strings, binaries and numeric ``ndarray`` columns are encoded with numpy/Arrow kernels on whole
buffers; ``json``, ``str_float`` and image lists loop over values.

Reading: :func:`decode_fixed` and :func:`decode_var` turn gathered payloads into the encoding's
natural Arrow array (docs/format.md §4); :func:`parse_ndarray_heads` and :func:`build_ndarray`
decode ``ndarray`` shape headers for all rows at once; :func:`to_logical` converts a natural array
to the logical type when the two differ.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import MDSFormatError, MDSSchemaError
from .encodings import (
    NDARRAY_CODE_DTYPES,
    NDARRAY_DTYPE_CODES,
    SCALAR_DTYPES,
    SHAPE_CODE_DTYPES,
    Encoding,
    image_magic_ok,
    split_elements,
)
from .schema import LogicalType, numeric_dtype, type_kind

__all__ = [
    "FieldPlan",
    "EncodedColumn",
    "encode_column",
    "null_mask_column",
    "join_samples",
    "decode_fixed",
    "decode_var",
    "NdarrayHeads",
    "parse_ndarray_heads",
    "build_ndarray",
    "to_logical",
    "json_dumps_values",
    "json_loads_values",
]

_EMPTY = pa.scalar(b"", pa.large_binary())
_I64 = np.int64
# dtype code -> itemsize (0 for unknown codes), for vectorized validation
_CODE_ITEMSIZE = np.zeros(256, np.int64)
for _code, _dt in NDARRAY_CODE_DTYPES.items():
    _CODE_ITEMSIZE[_code] = _dt.itemsize


@dataclass(frozen=True)
class FieldPlan:
    """How one top-level Arrow column is stored: its logical type and encoding."""

    name: str
    arrow_type: pa.DataType
    logical: LogicalType
    nullable: bool
    encoding: Encoding


@dataclass
class EncodedColumn:
    """One column of a batch, encoded.

    Attributes:
        pieces: ``large_binary`` arrays with one element per row; a row's payload is the
            concatenation of its elements across pieces.
        sizes: each row's payload size (int64) for a variable-size encoding, else None.
    """

    pieces: list[pa.Array]
    sizes: np.ndarray | None


# ---------------------------------------------------------------------------- buffers


def _binary_from(offsets: np.ndarray, data: Any) -> pa.Array:
    """A ``large_binary`` array over ``data`` (a buffer) with int64 ``offsets``."""
    offsets = np.ascontiguousarray(offsets, _I64)
    buf = data if isinstance(data, pa.Buffer) else pa.py_buffer(data)
    return pa.Array.from_buffers(pa.large_binary(), len(offsets) - 1, [None, pa.py_buffer(offsets), buf])


def fixed_piece(values: np.ndarray) -> pa.Array:
    """One piece holding each row of ``values`` (shape (n,) or (n, k)) as that row's bytes."""
    values = np.ascontiguousarray(values)
    n = len(values)
    row = values.itemsize * (values.size // n if n else 0)
    return _binary_from(np.arange(n + 1, dtype=_I64) * row, values.reshape(-1).view(np.uint8))


def binary_offsets(arr: pa.Array) -> np.ndarray:
    """The n+1 int64 value offsets of a ``large_binary``/``large_string`` array (slice-aware)."""
    buf = arr.buffers()[1]
    return np.frombuffer(buf, _I64, len(arr) + 1, arr.offset * 8)


def binary_data(arr: pa.Array) -> np.ndarray:
    """The data bytes of a ``large_binary`` array covering its elements, as uint8."""
    offsets = binary_offsets(arr)
    buf = arr.buffers()[2]
    if buf is None or offsets[-1] == offsets[0]:
        return np.zeros(0, np.uint8)
    return np.frombuffer(buf, np.uint8, int(offsets[-1] - offsets[0]), int(offsets[0]))


def _to_large_binary(arr: pa.Array) -> pa.Array:
    if pa.types.is_large_binary(arr.type):
        return arr
    return arr.cast(pa.large_binary())


def var_column(arr: pa.Array) -> EncodedColumn:
    """A column whose payloads are the values of a string/binary array (nulls already filled)."""
    arr = _to_large_binary(arr)
    offsets = binary_offsets(arr)
    return EncodedColumn([arr], np.diff(offsets))


def _valid(arr: pa.Array) -> np.ndarray | None:
    """Boolean validity of ``arr`` as numpy, or None when it has no nulls."""
    if arr.null_count == 0:
        return None
    return np.asarray(arr.is_valid())


# ---------------------------------------------------------------------------- storage forms


def plain_arrow(arr: pa.Array) -> pa.Array:
    """An Arrow column with dictionaries decoded and views, fixed-size binaries and list views as
    their plain types (what every encoding is written from)."""
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    if pa.types.is_string_view(t):
        return arr.cast(pa.large_string())
    if pa.types.is_binary_view(t):
        return arr.cast(pa.large_binary())
    if pa.types.is_fixed_size_binary(t):
        return arr.cast(pa.binary())
    if pa.types.is_list_view(t) or pa.types.is_large_list_view(t):
        return arr.cast(pa.large_list(t.value_field))
    return arr


def temporal_numbers(arr: pa.Array, column: str) -> pa.Array:
    """Dates as int32 days, timestamps and durations as int64 microseconds (docs/format.md §2);
    other columns unchanged."""
    t = arr.type
    if pa.types.is_date64(t):
        arr = cast_exact(arr, pa.date32(), column)
        t = arr.type
    if pa.types.is_date32(t):
        return arr.cast(pa.int32())
    if pa.types.is_timestamp(t):
        return cast_exact(arr, pa.timestamp("us", t.tz), column).cast(pa.int64())
    if pa.types.is_duration(t):
        return cast_exact(arr, pa.duration("us"), column).cast(pa.int64())
    return arr


def plain_decimal_text(arr: pa.Array) -> pa.Array:
    """Decimals as plain-notation text with exactly ``scale`` fraction digits (``-12.50``,
    ``0.000000000000000001``), as docs/format.md and the JVM source store them. Arrow's cast is
    plain except below 1e-6 (``1E-18``); those few values are rewritten."""
    text = arr.cast(pa.string())
    exponent = pc.match_substring(text, "E")
    if pc.any(exponent).as_py():
        rows = text.to_pylist()
        for i in np.flatnonzero(exponent.fill_null(False).to_numpy(zero_copy_only=False)):
            rows[i] = format(Decimal(rows[i]), "f")  # keeps the exponent's digits: the scale
        text = pa.array(rows, pa.string())
    return text


def cast_exact(arr: pa.Array, target: pa.DataType, column: str) -> pa.Array:
    try:
        return pc.cast(arr, target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise MDSSchemaError(f"column {column!r}: cannot convert {arr.type} to {target}: {exc}") from None


def numbers(arr: pa.Array, dtype: np.dtype, column: str) -> np.ndarray:
    """Numeric (or boolean) values as a numpy array of ``dtype``: nulls as 0, integer targets
    range-checked (float sources must hold whole numbers), float targets narrowed as IEEE does."""
    if pa.types.is_boolean(arr.type):
        arr = arr.cast(pa.uint8())
    src = np.dtype(arr.type.to_pandas_dtype())
    if len(arr):
        values = np.frombuffer(arr.buffers()[1], src, len(arr), arr.offset * src.itemsize)
    else:
        values = np.zeros(0, src)
    if arr.null_count:
        values = values.copy()
        values[~np.asarray(arr.is_valid())] = 0
    if values.dtype == dtype:
        return values
    if dtype.kind in "iu" and not np.can_cast(values.dtype, dtype, "safe"):
        info = np.iinfo(dtype)
        with np.errstate(invalid="ignore"):
            if values.dtype.kind == "f":
                bad = ~np.isfinite(values) | (values != np.trunc(values)) | (values < float(info.min)) | (values >= float(info.max) + 1)
            else:
                bad = (values < info.min) | (values > info.max)
        if np.any(bad):
            i = int(np.argmax(bad))
            raise MDSSchemaError(
                f"column {column!r}: value {values[i].item()!r} (row {i}) does not fit {dtype.name}; "
                f"choose a wider encoding or fix the value"
            )
    with np.errstate(over="ignore", invalid="ignore"):
        return values.astype(dtype)


# ---------------------------------------------------------------------------- encode


def encode_column(arr: pa.Array, plan: FieldPlan) -> EncodedColumn:
    """Encodes one Arrow column (a ``ChunkedArray`` is combined) with its plan's encoding.

    Null values are stored as the zero of the encoding (docs/format.md §3).

    Raises:
        MDSSchemaError: a value does not fit the encoding (naming the column and the value).
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    family = plan.encoding.family
    return family.encode_column(family.stored_form(plain_arrow(arr), plan), plan)


def check_magic(arr: pa.Array, kind: str, column: str) -> None:
    """Checks that every non-empty payload starts with the JPEG/PNG signature."""
    for i, value in enumerate(arr.to_pylist()):
        if value and not image_magic_ok(kind, value):
            raise MDSSchemaError(
                f"column {column!r}: row {i} is not a {kind.upper()} file (it starts with {value[:8]!r}); "
                f"'{kind}' columns store encoded {kind.upper()} bytes verbatim"
            )


def encode_binary_lists(arr: pa.Array, enc: Encoding, column: str, element: str, lead: int) -> EncodedColumn:
    """``list[...]`` (``u32 0, u32 n, u32 size x n, elements``: ``lead`` 2) and ``jpeg_array``
    (the same without the leading 0: ``lead`` 1) from a list of binaries; elements (``element``
    images) are stored verbatim."""
    if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type)):
        raise MDSSchemaError(f"column {column!r}: {enc.text!r} needs a list of binary values, got {arr.type}")
    n = len(arr)
    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False).astype(_I64)
    elements = arr.flatten()
    if elements.null_count:
        raise MDSSchemaError(f"column {column!r}: {enc.text!r} lists cannot hold null elements; drop or fill them")
    elements = _to_large_binary(elements)
    element_sizes = np.diff(binary_offsets(elements))
    if element in ("jpeg", "png"):
        check_magic(elements, element, column)
    words_per_row = lead + lengths
    word_offsets = np.zeros(n + 1, _I64)
    np.cumsum(words_per_row, out=word_offsets[1:])
    words = np.zeros(int(word_offsets[-1]), "<u4")
    words[word_offsets[:-1] + lead - 1] = lengths
    row_offsets = np.zeros(n + 1, _I64)  # index of each row's first element
    np.cumsum(lengths, out=row_offsets[1:])
    row_of_element = np.repeat(np.arange(n), lengths)
    rank = np.arange(len(element_sizes)) - row_offsets[row_of_element]
    words[word_offsets[row_of_element] + lead + rank] = element_sizes
    head = _binary_from(word_offsets * 4, words.view(np.uint8))
    elem_offsets = binary_offsets(elements)
    body = _binary_from(elem_offsets[row_offsets] - elem_offsets[0], binary_data(elements))
    sizes = words_per_row * 4 + np.diff(elem_offsets[row_offsets])
    return EncodedColumn([head, body], sizes)


def _list_levels(arr: pa.Array, depth: int, column: str, text: str) -> tuple[pa.Array, np.ndarray]:
    """Flattens ``depth`` levels of (fixed-size) lists. Returns the leaf values and each row's
    shape (n, depth) int64; rows must be rectangular, inner lists and elements non-null; null
    rows get shape (0, ..., 0)."""
    n = len(arr)
    shapes = np.zeros((n, depth), _I64)
    count = np.ones(n, _I64)  # number of lists of each row at the current level
    level = arr
    for k in range(depth):
        t = level.type
        if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
            raise MDSSchemaError(f"column {column!r}: {text!r} needs {depth} levels of lists, found {t} at level {k}")
        if k and level.null_count:
            raise MDSSchemaError(
                f"column {column!r}: an ndarray cannot hold null inner lists; use encoding 'json' for the column or fill the nulls"
            )
        lengths = pc.fill_null(pc.list_value_length(level), 0).to_numpy(zero_copy_only=False).astype(_I64)
        # a row's first list gives its dimension at this depth; every other list must match it
        first = np.zeros(n + 1, _I64)
        np.cumsum(count, out=first[1:])
        has = count > 0
        shapes[has, k] = lengths[first[:-1][has]]
        row_of = np.repeat(np.arange(n), count)
        if np.any(lengths != shapes[row_of, k]):
            bad = int(row_of[np.argmax(lengths != shapes[row_of, k])])
            raise MDSSchemaError(
                f"column {column!r}: row {bad} is not rectangular (its lists at depth {k + 1} have different lengths); "
                f"an ndarray needs rectangular rows: use encoding 'json' for ragged data"
            )
        count = count * shapes[:, k]
        level = level.flatten()
    if level.null_count:
        raise MDSSchemaError(
            f"column {column!r}: an ndarray cannot hold null elements; use encoding 'json' for the column or fill the nulls"
        )
    # dimensions below an empty one cannot be observed and stay 0 (docs/format.md §2)
    return level, shapes


def encode_ndarray(arr: pa.Array, enc: Encoding, column: str) -> EncodedColumn:
    n = len(arr)
    depth = list_depth(arr.type)
    if depth == 0:
        raise MDSSchemaError(f"column {column!r}: {enc.text!r} needs a list column, got {arr.type}")
    leaf, shapes = _list_levels(arr, depth, column, enc.text)
    valid = _valid(arr)
    leaf_type = leaf.type
    if pa.types.is_dictionary(leaf_type):
        leaf = leaf.dictionary_decode()
        leaf_type = leaf.type
    if not (pa.types.is_integer(leaf_type) or pa.types.is_floating(leaf_type) or pa.types.is_boolean(leaf_type)):
        raise MDSSchemaError(f"column {column!r}: {enc.text!r} needs numbers or booleans, got elements of type {leaf_type}")
    dtype = enc.dtype if enc.dtype is not None else SCALAR_DTYPES[numeric_dtype(leaf_type)]
    values = numbers(leaf, dtype, column)
    counts = np.prod(shapes, axis=1)
    if enc.shape is not None:
        return EncodedColumn([_static_ndarray(values, shapes, counts, valid, enc, column)], None)
    ndim = depth
    if ndim > 63:
        raise MDSSchemaError(f"column {column!r}: ndarray has too many axes: maximum 63, got {ndim}")
    codes = np.zeros(n, _I64)
    biggest = shapes.max(axis=1) if n else np.zeros(0, _I64)
    codes[biggest >= 1 << 8] = 1
    codes[biggest >= 1 << 16] = 2
    codes[biggest >= 1 << 32] = 3
    lead = 1 if enc.dtype is None else 0
    width = lead + 1 + 8 * ndim
    head = np.zeros((n, width), np.uint8)
    if lead:
        head[:, 0] = NDARRAY_DTYPE_CODES[dtype.name]
    head[:, lead] = (ndim << 2) | codes
    head[:, lead + 1 :] = shapes.astype("<u8").view(np.uint8).reshape(n, ndim * 8)
    keep = np.ones((n, width), bool)
    byte_in_dim = np.arange(8)
    keep[:, lead + 1 :] = (byte_in_dim[None, None, :] < (1 << codes)[:, None, None]).repeat(ndim, axis=1).reshape(n, ndim * 8)
    head_sizes = keep.sum(axis=1).astype(_I64)
    head_offsets = np.zeros(n + 1, _I64)
    np.cumsum(head_sizes, out=head_offsets[1:])
    value_offsets = np.zeros(n + 1, _I64)
    np.cumsum(counts * dtype.itemsize, out=value_offsets[1:])
    pieces = [_binary_from(head_offsets, head[keep]), _binary_from(value_offsets, values.view(np.uint8))]
    return EncodedColumn(pieces, head_sizes + np.diff(value_offsets))


def _static_ndarray(values: np.ndarray, shapes: np.ndarray, counts: np.ndarray, valid: np.ndarray | None,
                    enc: Encoding, column: str) -> pa.Array:  # fmt: skip
    """Rows of a static-shape ``ndarray``: each row holds exactly prod(shape) elements, flat or
    nested with exactly that shape; null rows are zeros."""
    n, depth = shapes.shape
    size = math.prod(enc.shape)  # type: ignore[arg-type]
    if depth == 1:
        row_ok = counts == size
    elif depth == len(enc.shape):  # type: ignore[arg-type]
        row_ok = (shapes == np.array(enc.shape, _I64)).all(axis=1)
    else:
        row_ok = np.zeros(n, bool)
    if valid is not None:
        row_ok |= ~valid  # null rows were skipped by flatten: they are written as zeros
    if not np.all(row_ok):
        bad = int(np.argmax(~row_ok))
        raise MDSSchemaError(
            f"column {column!r}: row {bad} has shape {tuple(int(d) for d in shapes[bad])}, but {enc.text!r} needs "
            f"exactly {tuple(enc.shape)} ({size} elements); use 'ndarray:{enc.dtype.name}' for varying shapes"  # type: ignore[union-attr]
        )
    if valid is not None:
        out = np.zeros((n, size), values.dtype)
        out[valid] = values.reshape(-1, size)
        values = out
    return fixed_piece(values.reshape(n, size))


def list_depth(t: pa.DataType) -> int:
    depth = 0
    while pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        depth += 1
        t = t.value_type
    return depth


def null_mask_column(valid: Sequence[np.ndarray | None], n: int) -> EncodedColumn:
    """The ``__nulls__`` column (``ndarray:uint8:K``): bit i of a row is 1 when field i is null."""
    k = (len(valid) + 7) // 8
    bits = np.zeros((n, k * 8), bool)
    for i, v in enumerate(valid):
        if v is not None:
            bits[:, i] = ~v
    return EncodedColumn([fixed_piece(np.packbits(bits, axis=1, bitorder="little"))], None)


def join_samples(columns: Sequence[EncodedColumn], n: int) -> tuple[np.ndarray, Any]:
    """Builds the encoded samples of a batch: per row, the u32 sizes of the variable-size
    columns, then every column's payload, in column order.

    Returns:
        ``(sizes, data)``: each sample's size (int64) and a buffer of all samples' bytes.

    Raises:
        MDSSchemaError: a payload of 4 GiB or more (sizes are u32).
    """
    var_sizes = [c.sizes for c in columns if c.sizes is not None]
    pieces: list[pa.Array] = []
    if var_sizes:
        header = np.stack(var_sizes, axis=1)
        if header.size and header.max() > 0xFFFFFFFF:
            raise MDSSchemaError("a value is 4 GiB or larger; MDS sizes are 32-bit")
        pieces.append(fixed_piece(header.astype("<u4")))
    for c in columns:
        pieces.extend(c.pieces)
    if not pieces or n == 0:
        return np.zeros(n, _I64), b""
    joined = pieces[0] if len(pieces) == 1 else pc.binary_join_element_wise(*pieces, _EMPTY)
    offsets = binary_offsets(joined)
    return np.diff(offsets), binary_data(joined)


# ---------------------------------------------------------------------------- JSON values (§5)


def _json_temporal_target(t: pa.DataType, ints: bool) -> pa.DataType:
    """``t`` with temporal leaves normalized to microseconds/days (``ints=False``) or replaced by
    their integer storage (``ints=True``)."""
    if pa.types.is_timestamp(t):
        return pa.int64() if ints else pa.timestamp("us", t.tz)
    if pa.types.is_duration(t):
        return pa.int64() if ints else pa.duration("us")
    if pa.types.is_date(t):
        return pa.int32() if ints else pa.date32()
    if pa.types.is_dictionary(t):
        return _json_temporal_target(t.value_type, ints)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t) or pa.types.is_large_list_view(t):
        return pa.large_list(t.value_field.with_type(_json_temporal_target(t.value_type, ints)))
    if pa.types.is_fixed_size_list(t):
        return pa.list_(t.value_field.with_type(_json_temporal_target(t.value_type, ints)), t.list_size)
    if pa.types.is_map(t):
        return pa.map_(t.key_field.with_type(_json_temporal_target(t.key_type, ints)),
                       t.item_field.with_type(_json_temporal_target(t.item_type, ints)))  # fmt: skip
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(_json_temporal_target(f.type, ints)) for f in t])
    if pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_binary_view(t):
        return pa.binary()
    return t


def _to_json(v: Any, t: LogicalType) -> Any:
    """A Python value (from ``to_pylist`` of the integer-storage form) to its JSON value (§5)."""
    if v is None:
        return None
    kind = type_kind(t)
    if kind in ("float", "double"):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return float(v)
    if kind == "decimal":
        return format(v, "f") if isinstance(v, Decimal) else str(v)
    if kind == "binary":
        return base64.b64encode(v).decode("ascii")
    if kind == "array":
        return [_to_json(x, t["elementType"]) for x in v]
    if kind == "struct":
        return {f["name"]: _to_json(v.get(f["name"]), f["type"]) for f in t["fields"]}
    if kind == "map":
        if t["keyType"] == "string":
            return {k: _to_json(x, t["valueType"]) for k, x in v}
        return [[_to_json(k, t["keyType"]), _to_json(x, t["valueType"])] for k, x in v]
    return v


def json_dumps_values(arr: pa.Array, logical: LogicalType, column: str) -> list[str]:
    """The ``json`` payload text of every row (nulls: ``null``). A ``string`` column holds JSON
    text already: each value is checked and stored as is."""
    if type_kind(logical) == "string":
        texts = arr.to_pylist()
        for i, text in enumerate(texts):
            if text is None:
                texts[i] = "null"
                continue
            try:
                json.loads(text)
            except ValueError as exc:
                raise MDSSchemaError(f"column {column!r}: row {i} is not valid JSON text ({exc}); 'json' string columns hold JSON text") from None
        return texts
    normalized = _json_temporal_target(arr.type, ints=False)  # microseconds, days
    if normalized != arr.type:
        arr = cast_exact(arr, normalized, column)
    ints = _json_temporal_target(arr.type, ints=True)
    if ints != arr.type:
        arr = arr.cast(ints)
    return [json.dumps(_to_json(v, logical)) for v in arr.to_pylist()]


def _from_json(v: Any, t: LogicalType) -> Any:
    """A JSON value (§5) to a Python value that ``pa.array`` accepts for the storage type."""
    if v is None:
        return None
    kind = type_kind(t)
    if kind in ("float", "double"):
        if isinstance(v, str):
            return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[v]
        return float(v)
    if kind == "decimal":
        return Decimal(v)
    if kind == "binary":
        return base64.b64decode(v, validate=True)
    if kind == "array":
        return [_from_json(x, t["elementType"]) for x in v]
    if kind == "struct":
        return {f["name"]: _from_json(v.get(f["name"]), f["type"]) for f in t["fields"]}
    if kind == "map":
        if isinstance(v, dict):
            return [(k, _from_json(x, t["valueType"])) for k, x in v.items()]
        return [(_from_json(k, t["keyType"]), _from_json(x, t["valueType"])) for k, x in v]
    return v


def json_loads_values(texts: pa.Array, logical: LogicalType, target: pa.DataType, column: str) -> pa.Array:
    """Parses ``json`` payloads (a string array) into an Arrow array of the logical type."""
    storage = _json_temporal_target(target, ints=True)
    try:
        values = [None if s is None else _from_json(json.loads(s), logical) for s in texts.to_pylist()]
        arr = pa.array(values, storage)
    except (ValueError, TypeError, KeyError, AttributeError, pa.ArrowException) as exc:
        raise MDSFormatError(f"column {column!r}: a json value does not match the logical type {logical!r}: {exc}") from None
    if storage != target:
        arr = arr.cast(target)
    return arr


# ---------------------------------------------------------------------------- decode


def decode_fixed(matrix: np.ndarray, enc: Encoding, arrow_type: pa.DataType) -> pa.Array:
    """Decodes fixed-size payloads (an (n, size) uint8 array) into the natural Arrow array."""
    n = len(matrix)
    values = np.ascontiguousarray(matrix).reshape(-1).view(enc.dtype.newbyteorder("="))  # type: ignore[union-attr]
    if enc.shape is None:  # a number
        return pa.array(values, type=arrow_type)
    # static-shape ndarray: nested fixed-size lists
    return build_ndarray(pa.array(values), np.tile(np.array(enc.shape, _I64), (n, 1)), arrow_type, "")


def _row(i: int) -> str:
    return f"row {i}"


def decode_var(payloads: pa.Array, enc: Encoding, arrow_type: pa.DataType, column: str,
               row_name: Callable[[int], str] = _row) -> pa.Array:  # fmt: skip
    """Decodes variable-size payloads (a ``large_binary`` array) into the natural Arrow array of
    a non-ndarray encoding. ``row_name(i)`` names row i in messages."""
    return enc.family.decode_column(payloads, enc, arrow_type, column, row_name)


def utf8_text(payloads: pa.Array, column: str, row_name: Callable[[int], str] = _row) -> pa.Array:
    """Payloads as ``large_string``, failing on the first row that is not valid UTF-8."""
    try:
        return payloads.cast(pa.large_string())
    except pa.ArrowInvalid:
        bad = next(i for i, v in enumerate(payloads.to_pylist()) if not _is_utf8(v))
        raise MDSFormatError(f"{row_name(bad)}, column {column!r}: not valid UTF-8") from None


def split_element_rows(payloads: pa.Array, lead: int, arrow_type: pa.DataType, column: str,
                       row_name: Callable[[int], str] = _row) -> pa.Array:  # fmt: skip
    """``list[...]``/``jpeg_array`` payloads (``lead`` header bytes) as lists of their elements."""
    rows = []
    for i, data in enumerate(payloads.to_pylist()):
        try:
            rows.append(split_elements(data, lead))
        except MDSFormatError as exc:
            raise MDSFormatError(f"{row_name(i)}, column {column!r}: {exc}") from None
    return pa.array(rows, arrow_type)


def filled_binary(arr: pa.Array) -> pa.Array:
    """A string or binary column with its nulls stored as the empty value (docs/format.md §3)."""
    if not arr.null_count:
        return arr
    zero = pa.scalar("", arr.type) if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type) else pa.scalar(b"", arr.type)
    return arr.fill_null(zero)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def parse_numbers(text: pa.Array, target: pa.DataType, parse: Callable[[str], Any], column: str,
                   row_name: Callable[[int], str]) -> pa.Array:  # fmt: skip
    """``str_int``/``str_float`` text to numbers with Arrow; values that Arrow's parser rejects
    are parsed like the reference (Python ``int``/``float``) so that errors are exact."""
    try:
        return text.cast(target)
    except pa.ArrowInvalid:
        pass
    values = []
    for i, s in enumerate(text.to_pylist()):
        try:
            values.append(parse(s))
        except ValueError:
            raise MDSFormatError(f"{row_name(i)}, column {column!r}: {s[:40]!r} is not a number") from None
    try:
        return pa.array(values, target)
    except (OverflowError, pa.ArrowInvalid):
        raise MDSSchemaError(f"column {column!r}: a str_int value is outside the int64 range; read it per sample (get_sample)") from None


@dataclass
class NdarrayHeads:
    """The decoded headers of ``ndarray`` payloads of n rows.

    Attributes:
        prefix: header length of each row (bytes before the values).
        codes: each row's dtype code (dynamic-dtype encodings), else None.
        shapes: each row's shape, (n, ndim) int64.
    """

    prefix: np.ndarray
    codes: np.ndarray | None
    shapes: np.ndarray


def parse_ndarray_heads(buf: np.ndarray, starts: np.ndarray, sizes: np.ndarray, enc: Encoding, ndim: int,
                        column: str, row_name: Callable[[int], str]) -> NdarrayHeads:  # fmt: skip
    """Decodes the dtype/shape headers of ``ndarray`` payloads for all rows at once.

    Args:
        buf: the bytes holding the payloads (a whole shard file).
        starts, sizes: each payload's position in ``buf`` and size (int64).
        enc: the column's encoding (dynamic dtype or shape or both).
        ndim: the number of dimensions every row must have.
        column: the column name, for messages.
        row_name: names row i in messages (e.g. ``"sample 17"``).

    Raises:
        MDSFormatError: a header is malformed or does not match its payload size.
        MDSSchemaError: a row has another number of dimensions than ``ndim``.
    """
    n = len(starts)
    lead = 1 if enc.dtype is None else 0
    codes = None
    if lead:
        if np.any(sizes < 1):
            raise MDSFormatError(f"{row_name(int(np.argmax(sizes < 1)))}, column {column!r}: empty ndarray payload")
        codes = buf[starts]
        itemsize = _CODE_ITEMSIZE[codes]
        if np.any(itemsize == 0):
            bad = int(np.argmax(itemsize == 0))
            raise MDSFormatError(f"{row_name(bad)}, column {column!r}: unknown ndarray dtype code {int(codes[bad])}")
    else:
        itemsize = np.full(n, enc.dtype.itemsize, _I64)  # type: ignore[union-attr]
    if enc.shape is not None:
        shapes = np.tile(np.array(enc.shape, _I64), (n, 1))
        prefix = np.full(n, lead, _I64)
    else:
        if np.any(sizes < lead + 1):
            raise MDSFormatError(f"{row_name(int(np.argmax(sizes < lead + 1)))}, column {column!r}: ndarray payload ends before its shape")
        nbyte = buf[starts + lead]
        dims, shape_codes = (nbyte >> 2).astype(_I64), (nbyte & 3).astype(_I64)
        if np.any(dims != ndim):
            bad = int(np.argmax(dims != ndim))
            raise MDSSchemaError(
                f"{row_name(bad)}, column {column!r}: a {int(dims[bad])}-d array, but the column is read as {ndim}-d "
                f"(the dataset's first sample); read it per sample (get_sample)"
            )
        prefix = lead + 1 + ndim * (1 << shape_codes)
        if np.any(sizes < prefix):
            raise MDSFormatError(f"{row_name(int(np.argmax(sizes < prefix)))}, column {column!r}: ndarray payload ends inside its shape")
        shapes = np.zeros((n, ndim), _I64)
        for code in np.unique(shape_codes):
            rows = np.nonzero(shape_codes == code)[0]
            width = 1 << int(code)
            pos = (starts[rows] + lead + 1)[:, None] + np.arange(ndim * width)[None, :]
            raw = np.ascontiguousarray(buf[pos]).view(SHAPE_CODE_DTYPES[int(code)]).reshape(len(rows), ndim)
            if code == 3 and np.any(raw > np.iinfo(_I64).max):
                raise MDSFormatError(f"column {column!r}: an ndarray dimension overflows")
            shapes[rows] = raw.astype(_I64)
    # The products are computed in float too: an int64 product that overflows (dimensions of 2**32 and
    # 2**32 wrap around to 0) must not pass for an empty array.
    with np.errstate(over="ignore"):
        expected = np.prod(shapes, axis=1) * itemsize
    approx = np.prod(shapes.astype(np.float64), axis=1) * itemsize
    if np.any(approx > float(np.iinfo(_I64).max) / 2):
        bad = int(np.argmax(approx > float(np.iinfo(_I64).max) / 2))
        raise MDSFormatError(
            f"{row_name(bad)}, column {column!r}: an ndarray of shape {tuple(int(d) for d in shapes[bad])} overflows; "
            f"the shard is corrupt"
        )
    if ndim > 1:
        # Only arrays with a zero dimension can have more nested lists than payload bytes: (2**40, 0)
        # is empty but would make 2**40 lists.
        outer = np.cumprod(shapes[:, :-1].astype(np.float64), axis=1)
        limit = np.maximum(sizes - prefix, 1 << 24)
        over = np.any(outer > limit[:, None], axis=1)
        if np.any(over):
            bad = int(np.argmax(over))
            raise MDSFormatError(
                f"{row_name(bad)}, column {column!r}: an ndarray of shape {tuple(int(d) for d in shapes[bad])} would make "
                f"more nested lists than its payload of {int(sizes[bad] - prefix[bad])} bytes allows; the shard is corrupt"
            )
    if np.any(expected != sizes - prefix) or np.any(expected < 0):
        bad = int(np.argmax((expected != sizes - prefix) | (expected < 0)))
        raise MDSFormatError(
            f"{row_name(bad)}, column {column!r}: an ndarray of shape {tuple(int(d) for d in shapes[bad])} needs "
            f"{int(expected[bad])} value bytes, the payload has {int(sizes[bad] - prefix[bad])}"
        )
    return NdarrayHeads(prefix, codes, shapes)


def build_ndarray(leaf: pa.Array, shapes: np.ndarray, arrow_type: pa.DataType, column: str) -> pa.Array:
    """Nests flat leaf values into (fixed-size) lists given each row's shape."""
    n, ndim = shapes.shape
    types = []
    t = arrow_type
    for _ in range(ndim):
        types.append(t)
        t = t.value_type
    arr = leaf
    for k in reversed(range(ndim)):
        per_row = np.prod(shapes[:, :k], axis=1) if k else np.ones(n, _I64)
        if k and float(np.prod(shapes[:, :k].astype(np.float64), axis=1).sum()) > np.iinfo(np.int32).max:
            raise MDSSchemaError(f"column {column!r}: more than 2**31 nested arrays in one batch; read smaller batches")
        lengths = np.repeat(shapes[:, k], per_row)
        tk = types[k]
        if pa.types.is_fixed_size_list(tk):
            if np.any(lengths != tk.list_size):
                raise MDSSchemaError(f"column {column!r}: an array does not have the fixed size {tk.list_size} of {tk}")
            arr = pa.FixedSizeListArray.from_arrays(arr, type=tk)
        else:
            offsets = np.zeros(len(lengths) + 1, _I64)
            np.cumsum(lengths, out=offsets[1:])
            if offsets[-1] > np.iinfo(np.int32).max:
                raise MDSSchemaError(f"column {column!r}: more than 2**31 elements in one batch; read smaller batches")
            arr = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), arr, type=tk)
    return arr


def ndarray_values(values: pa.Array, heads: NdarrayHeads, dtype: np.dtype, column: str, row_name: Callable[[int], str]) -> pa.Array:
    """The flat leaf values of ``ndarray`` rows (``values``: each row's value bytes, a
    ``large_binary`` array), converted to ``dtype``. Rows of another dtype (dynamic-dtype
    encodings) are converted only when the conversion is exact (numpy "safe" casting)."""
    data = binary_data(values)
    codes = heads.codes
    if codes is None or np.all(codes == NDARRAY_DTYPE_CODES[dtype.name]):
        return pa.array(data.view(dtype.newbyteorder("=")) if len(data) else np.zeros(0, dtype.newbyteorder("=")))
    parts = []
    offsets = binary_offsets(values) - binary_offsets(values)[0]
    for i, code in enumerate(codes.tolist()):
        src = NDARRAY_CODE_DTYPES[code]
        if not np.can_cast(src, dtype, "safe"):
            raise MDSSchemaError(
                f"{row_name(i)}, column {column!r}: dtype {src.name}, which does not convert exactly to the "
                f"column's {dtype.name} (the dataset's first sample); read it per sample (get_sample)"
            )
        parts.append(data[offsets[i] : offsets[i + 1]].view(src).astype(dtype))
    return pa.array(np.concatenate(parts) if parts else np.zeros(0, dtype))


def to_logical(arr: pa.Array, enc: Encoding, logical: LogicalType, target: pa.DataType, column: str) -> pa.Array:
    """Converts a natural array (see :func:`decode_fixed`, :func:`decode_var`) to the Arrow type
    of its logical type when they differ (booleans, dates, timestamps, decimals, json, ...)."""
    if arr.type == target:
        return arr
    arr = enc.family.before_logical_cast(arr, enc, logical, target, column)
    if arr.type == target:
        return arr
    try:  # Arrow's casts: integers to booleans (non-zero), dates, timestamps, durations; text to decimals
        return pc.cast(arr, target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise MDSSchemaError(f"column {column!r}: cannot read {enc.text!r} values as {target}: {exc}") from None

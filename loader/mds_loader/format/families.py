"""The registry of MDS encoding families: one class per family (``Encoding.kind``) that knows how
a value and a whole Arrow column are encoded, how a payload and a column of payloads are decoded,
and which logical and Arrow types a column reads as without a logical schema (docs/format.md §4).
Adding an encoding is adding a class to :data:`FAMILIES`; nothing else dispatches on the kind.
"""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import MDSFormatError, MDSSchemaError
from . import columnar as col
from .schema import type_kind
from .encodings import (
    NDARRAY_CODE_DTYPES,
    NDARRAY_DTYPE_CODES,
    SHAPE_CODE_DTYPES,
    DEFAULT_NDARRAY_DTYPE,
    Encoding,
    decode_image,
    encode_image,
    shape_code,
    split_elements,
)

__all__ = ["Family", "FAMILIES"]

_U32 = np.dtype("<u4")


#: The logical type of each numeric dtype read without a logical schema (docs/format.md §4).
_SCALAR_LOGICAL = {
    "int8": "byte", "int16": "short", "int32": "integer", "int64": "long", "uint8": "short", "uint16": "integer",
    "uint32": "long", "uint64": "decimal(20,0)", "float16": "float", "float32": "float", "float64": "double",
}  # fmt: skip

def _array_type(element: Any) -> dict:
    """Spark's JSON of an array type whose elements are never null (MDS stores no nulls in them)."""
    return {"containsNull": False, "elementType": element, "type": "array"}


class Family:
    """One family of encodings (``Encoding.kind``): how a value is encoded and decoded, exactly as
    the reference does. One subclass per family, registered in :data:`FAMILIES`."""

    #: The family's name (``Encoding.kind``).
    kind: str = ""
    #: Whether ``None`` is a value (``json``'s null, a pickled None); other families refuse it.
    takes_none: bool = False
    #: Whether decoding runs arbitrary code (``pkl``).
    unsafe: bool = False
    #: Whether values are PIL images or lists of them.
    images: bool = False
    #: Whether ``default_collate`` turns the reference's values into one tensor or list per
    #: column that the whole-batch path can build (:func:`mds_loader.batches.collatable`).
    collates: bool = False

    def collatable(self, enc: Encoding) -> bool:
        """:attr:`collates`, for this encoding of the family."""
        return self.collates

    #: How the packed-batch path copies the family's columns (see :meth:`packing`).
    packed: str | None = None

    def packing(self, enc: Encoding) -> str | None:
        """How the packed-batch path copies a column straight from the shards
        (:mod:`mds_loader.format.gather`): ``"fixed"`` (fixed-size values), ``"ndarray"`` (a
        dynamic-shape array), ``"text"`` / ``"bytes"`` (UTF-8 or binary payloads), or None when
        the column must be decoded through Arrow."""
        return self.packed

    def encode(self, enc: Encoding, value: Any) -> bytes:
        """The payload of a (non-None, not pre-encoded) value."""
        raise NotImplementedError

    def decode(self, enc: Encoding, data: bytes | bytearray | memoryview) -> Any:
        """The reference's value of a payload."""
        raise NotImplementedError

    #: The logical (Spark JSON) and Arrow types a column of this family reads as without a
    #: logical schema (docs/format.md §4), for families whose type does not depend on the encoding.
    logical: Any = None
    arrow: Any = None

    def encode_column(self, arr: pa.Array, plan: col.FieldPlan) -> col.EncodedColumn:
        """A whole Arrow column's payloads (nulls stored as the encoding's zero, docs/format.md §3).

        Raises:
            MDSSchemaError: a value does not fit the encoding (naming the column and the value).
        """
        raise NotImplementedError

    def stored_form(self, arr: pa.Array, plan: col.FieldPlan) -> pa.Array:
        """A (plain) Arrow column in the form this family stores: by default dates, timestamps and
        durations as numbers (docs/format.md §2)."""
        return col.temporal_numbers(arr, plan.name)

    def before_logical_cast(self, arr: pa.Array, enc: Encoding, logical: Any, target: pa.DataType, column: str) -> pa.Array:
        """A column read in its natural type, made ready for Arrow's cast to the logical type's
        ``target`` (or already converted to it); by default unchanged."""
        return arr

    def decode_column(self, payloads: pa.Array, enc: Encoding, arrow_type: pa.DataType, column: str,
                      row_name: Callable[[int], str]) -> pa.Array:  # fmt: skip
        """Variable-size payloads (``large_binary``) as the natural Arrow array ``arrow_type``;
        ``row_name(i)`` names row i in messages."""
        raise AssertionError(f"{self.kind} columns are not decoded from variable-size payloads")

    def natural_logical(self, enc: Encoding, sample: Any = None) -> Any:
        """The logical type (Spark's JSON form) of a column read without a logical schema;
        ``sample`` (with ``.dtype`` and ``.ndim``) describes a dynamic ndarray's first value."""
        return self.logical

    def natural_arrow(self, enc: Encoding, sample: Any = None) -> pa.DataType:
        """The Arrow type of a column read without a logical schema."""
        return self.arrow


class _Str(Family):
    kind = "str"
    logical, arrow = "string", pa.string()
    collates, packed = True, "text"

    def encode(self, enc: Encoding, value: Any) -> bytes:
        if not isinstance(value, str):
            raise MDSSchemaError(f"{enc.text!r} needs a str, got {type(value).__name__}")
        return value.encode("utf-8")

    def decode(self, enc: Encoding, data: bytes | bytearray | memoryview) -> Any:
        return bytes(data).decode("utf-8")

    def encode_column(self, arr: pa.Array, plan: col.FieldPlan) -> col.EncodedColumn:
        return col.var_column(col.filled_binary(arr))

    def decode_column(self, payloads, enc, arrow_type, column, row_name):  # type: ignore[no-untyped-def]
        return col.utf8_text(payloads, column, row_name).cast(arrow_type)


class _Scalar(Family):
    kind = "scalar"
    collates, packed = True, "fixed"

    def stored_form(self, arr: pa.Array, plan: col.FieldPlan) -> pa.Array:
        if pa.types.is_boolean(arr.type):
            return arr.cast(pa.uint8())
        return col.temporal_numbers(arr, plan.name)

    def natural_logical(self, enc: Encoding, sample: Any = None) -> Any:
        return _SCALAR_LOGICAL[enc.dtype.name]  # type: ignore[union-attr]

    def natural_arrow(self, enc: Encoding, sample: Any = None) -> pa.DataType:
        return pa.from_numpy_dtype(enc.dtype.newbyteorder("="))  # type: ignore[union-attr]

    def encode(self, enc: Encoding, value: Any) -> bytes:
        if enc.dtype.kind == "f":  # type: ignore[union-attr]
            with np.errstate(over="ignore"):  # narrowing overflows to inf, as IEEE says
                return enc.dtype.type(value).tobytes()  # type: ignore[union-attr]
        return enc.dtype.type(value).tobytes()  # type: ignore[union-attr]

    def decode(self, enc: Encoding, data: bytes | bytearray | memoryview) -> Any:
        return np.frombuffer(data, enc.dtype)[0]  # type: ignore[arg-type]

    def encode_column(self, arr: pa.Array, plan: col.FieldPlan) -> col.EncodedColumn:
        return col.EncodedColumn([col.fixed_piece(col.numbers(arr, plan.encoding.dtype, plan.name))], None)  # type: ignore[arg-type]


class _Int(_Scalar):
    """``int``: an int64, from Python ints only."""

    kind = "int"

    def encode(self, enc: Encoding, value: Any) -> bytes:
        if not isinstance(value, (int, np.integer)):
            raise MDSSchemaError(f"'int' needs a Python int, got {type(value).__name__}")
        return np.int64(value).tobytes()

    def decode(self, enc: Encoding, data: bytes | bytearray | memoryview) -> Any:
        return int(np.frombuffer(data, "<i8")[0])


class _Bytes(Family):
    kind = "bytes"
    logical, arrow = "binary", pa.binary()
    collates, packed = True, "bytes"

    def encode(self, enc: Encoding, value: Any) -> bytes:
        if isinstance(value, (bytearray, memoryview)):
            return bytes(value)
        raise MDSSchemaError(f"'bytes' needs bytes, got {type(value).__name__}")

    def decode(self, enc: Encoding, data: bytes | bytearray | memoryview) -> Any:
        return bytes(data)

    def encode_column(self, arr: pa.Array, plan: col.FieldPlan) -> col.EncodedColumn:
        return col.var_column(col.filled_binary(arr))

    def decode_column(self, payloads, enc, arrow_type, column, row_name):  # type: ignore[no-untyped-def]
        return payloads.cast(arrow_type)


class _StrInt(Family):
    kind = "str_int"
    logical, arrow = "long", pa.int64()
    collates = True

    def encode(self, enc: Encoding, value: Any) -> bytes:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise MDSSchemaError(f"'str_int' needs an int, got {type(value).__name__}")
        return str(int(value)).encode("ascii")

    def decode(self, enc: Encoding, data: bytes | bytearray | memoryview) -> Any:
        return int(bytes(data).decode("utf-8"))

    def encode_column(self, arr: pa.Array, plan: col.FieldPlan) -> col.EncodedColumn:
        return col.var_column(pc.cast(arr.fill_null(0) if arr.null_count else arr, pa.large_string()))

    def decode_column(self, payloads, enc, arrow_type, column, row_name):  # type: ignore[no-untyped-def]
        return col.parse_numbers(col.utf8_text(payloads, column, row_name), pa.int64(), int, column, row_name)


class _StrFloat(Family):
    kind = "str_float"
    logical, arrow = "double", pa.float64()
    collates = True

    def encode(self, enc: Encoding, value: Any) -> bytes:
        if not isinstance(value, (float, np.floating)):
            raise MDSSchemaError(f"'str_float' needs a float, got {type(value).__name__}")
        return repr(float(value)).encode("ascii")

    def decode(self, enc: Encoding, data: bytes | bytearray | memoryview) -> Any:
        return float(bytes(data).decode("utf-8"))

    def encode_column(self, arr: pa.Array, plan: col.FieldPlan) -> col.EncodedColumn:
        # Python's shortest repr, as the reference writes it (nulls: "0.0")
        floats = col.numbers(arr, np.dtype("<f8"), plan.name)
        return col.var_column(pa.array([repr(x) for x in floats.tolist()], pa.large_string()))

    def decode_column(self, payloads, enc, arrow_type, column, row_name):  # type: ignore[no-untyped-def]
        return col.parse_numbers(col.utf8_text(payloads, column, row_name), pa.float64(), float, column, row_name)


class _StrDecimal(Family):
    kind = "str_decimal"
    logical, arrow = "string", pa.string()  # the exact text

    def stored_form(self, arr: pa.Array, plan: col.FieldPlan) -> pa.Array:
        arr = col.temporal_numbers(arr, plan.name)
        if pa.types.is_decimal(arr.type):
            return col.plain_decimal_text(arr)
        if pa.types.is_integer(arr.type):
            return arr.cast(pa.string())
        return arr

    def encode(self, enc: Encoding, value: Any) -> bytes:
        if not isinstance(value, Decimal):
            raise MDSSchemaError(f"'str_decimal' needs a decimal.Decimal, got {type(value).__name__}")
        return str(value).encode("ascii")

    def decode(self, enc: Encoding, data: bytes | bytearray | memoryview) -> Any:
        try:
            return Decimal(bytes(data).decode("utf-8"))
        except InvalidOperation:
            raise MDSFormatError(f"not a decimal: {bytes(data)[:40]!r}") from None

    def encode_column(self, arr: pa.Array, plan: col.FieldPlan) -> col.EncodedColumn:
        return col.var_column(arr.fill_null("0") if arr.null_count else arr)

    def decode_column(self, payloads, enc, arrow_type, column, row_name):  # type: ignore[no-untyped-def]
        return col.utf8_text(payloads, column, row_name).cast(arrow_type)


class _Json(Family):
    kind = "json"
    logical, arrow = "string", pa.string()  # the JSON text

    def stored_form(self, arr: pa.Array, plan: col.FieldPlan) -> pa.Array:
        return arr  # (the values' JSON is made from their own types)

    def before_logical_cast(self, arr: pa.Array, enc: Encoding, logical: Any, target: pa.DataType, column: str) -> pa.Array:
        if type_kind(logical) != "string":
            return col.json_loads_values(arr, logical, target, column)
        return arr
    takes_none = True

    def encode(self, enc: Encoding, value: Any) -> bytes:
        if isinstance(value, np.ndarray):
            value = value.tolist()
        text = json.dumps(value)
        json.loads(text)  # the reference's check (e.g. of NaN handling)
        return text.encode("utf-8")

    def decode(self, enc: Encoding, data: bytes | bytearray | memoryview) -> Any:
        return json.loads(bytes(data).decode("utf-8"))

    def encode_column(self, arr: pa.Array, plan: col.FieldPlan) -> col.EncodedColumn:
        return col.var_column(pa.array(col.json_dumps_values(arr, plan.logical, plan.name), pa.large_string()))

    def decode_column(self, payloads, enc, arrow_type, column, row_name):  # type: ignore[no-untyped-def]
        return col.utf8_text(payloads, column, row_name).cast(arrow_type)


class _Pkl(_Bytes):
    kind = "pkl"
    takes_none = True
    unsafe = True
    collates, packed = False, None

    def encode(self, enc: Encoding, value: Any) -> bytes:
        return pickle.dumps(value)

    def decode(self, enc: Encoding, data: bytes | bytearray | memoryview) -> Any:
        return pickle.loads(data)


class _Image(Family):
    """``pil``, ``jpeg`` and ``png``: one PIL image."""

    images = True
    logical, arrow = "binary", pa.binary()  # the stored bytes

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def encode(self, enc: Encoding, value: Any) -> bytes:
        return encode_image(self.kind, value)

    def decode(self, enc: Encoding, data: bytes | bytearray | memoryview) -> Any:
        return decode_image(self.kind, data)

    def encode_column(self, arr: pa.Array, plan: col.FieldPlan) -> col.EncodedColumn:
        arr = col.filled_binary(arr)
        if self.kind in ("jpeg", "png"):
            col.check_magic(arr, self.kind, plan.name)
        return col.var_column(arr)

    def decode_column(self, payloads, enc, arrow_type, column, row_name):  # type: ignore[no-untyped-def]
        return payloads.cast(arrow_type)


class _ImageSequence(Family):
    """``list[pil|jpeg|png]`` (``u32 0, u32 n``, the element sizes, the elements) and
    ``jpeg_array`` (``u32 n``, the element sizes, the JPEG files)."""

    images = True
    logical, arrow = _array_type("binary"), pa.list_(pa.binary())

    def __init__(self, kind: str, lead: int, what: str) -> None:
        self.kind, self.lead, self.what = kind, lead, what

    def _element(self, enc: Encoding) -> str:
        return enc.element if self.kind == "list" else "jpeg"  # type: ignore[return-value]

    def encode(self, enc: Encoding, value: Any) -> bytes:
        if not isinstance(value, (list, tuple)):
            raise MDSSchemaError(f"{enc.text!r} needs a list of {self.what}, got {type(value).__name__}")
        parts = [encode_image(self._element(enc), item) for item in value]  # (bytes pass through)
        head = np.array([0] * (self.lead // 4 - 1) + [len(parts), *map(len, parts)], _U32).tobytes()
        return head + b"".join(parts)

    def decode(self, enc: Encoding, data: bytes | bytearray | memoryview) -> Any:
        return [decode_image(self._element(enc), part) for part in split_elements(data, self.lead)]

    def encode_column(self, arr: pa.Array, plan: col.FieldPlan) -> col.EncodedColumn:
        return col.encode_binary_lists(arr, plan.encoding, plan.name, self._element(plan.encoding), self.lead // 4)

    def decode_column(self, payloads, enc, arrow_type, column, row_name):  # type: ignore[no-untyped-def]
        return col.split_element_rows(payloads, self.lead, arrow_type, column, row_name)


class _Ndarray(Family):
    """``ndarray[:dtype[:shape]]``: the dtype code unless static, the shape unless static, the values."""

    kind = "ndarray"

    def collatable(self, enc: Encoding) -> bool:
        return enc.dtype is not None  # (one tensor needs one dtype)

    def packing(self, enc: Encoding) -> str | None:
        if enc.shape is None:
            return "ndarray"
        return "fixed" if enc.dtype is not None else None

    def before_logical_cast(self, arr: pa.Array, enc: Encoding, logical: Any, target: pa.DataType, column: str) -> pa.Array:
        if enc.shape is not None and len(enc.shape) > 1 and col.list_depth(target) == 1:
            # a 1-d logical array stored with a static n-d shape (§2): one flat list per row
            leaf = arr
            for _ in enc.shape:
                leaf = leaf.flatten()
            return pa.FixedSizeListArray.from_arrays(leaf, math.prod(enc.shape))
        return arr

    @staticmethod
    def dtype_ndim(enc: Encoding, sample: Any = None) -> tuple[str, int]:
        """Dtype and depth of a column: the encoding's, else the first sample's (``sample``),
        else :data:`DEFAULT_NDARRAY_DTYPE` and depth 1."""
        dtype = enc.dtype.name if enc.dtype is not None else (sample.dtype if sample else DEFAULT_NDARRAY_DTYPE)
        ndim = len(enc.shape) if enc.shape is not None else (sample.ndim if sample else 1)
        return dtype, ndim

    def natural_logical(self, enc: Encoding, sample: Any = None) -> Any:
        dtype, ndim = self.dtype_ndim(enc, sample)
        t: Any = _SCALAR_LOGICAL[dtype]
        for _ in range(ndim):
            t = _array_type(t)
        return t

    def natural_arrow(self, enc: Encoding, sample: Any = None) -> pa.DataType:
        dtype, ndim = self.dtype_ndim(enc, sample)
        t = pa.from_numpy_dtype(dtype)
        dims = enc.shape if enc.shape is not None else (None,) * ndim
        for size in reversed(dims):
            t = pa.list_(t) if size is None else pa.list_(t, size)
        return t

    def encode(self, enc: Encoding, value: Any) -> bytes:
        if not isinstance(value, np.ndarray):
            raise MDSSchemaError(
                f"{enc.text!r} needs a numpy array, got {type(value).__name__}; convert it with "
                f"np.asarray(value, dtype=...)"
            )
        name = value.dtype.name
        code = NDARRAY_DTYPE_CODES.get(name)
        if code is None:
            raise MDSSchemaError(f"unsupported ndarray dtype {name!r}; use one of {sorted(NDARRAY_DTYPE_CODES)}")
        parts: list[bytes] = []
        if enc.dtype is None:
            parts.append(bytes([code]))
        elif name != enc.dtype.name:
            raise MDSSchemaError(f"{enc.text!r} needs dtype {enc.dtype.name}, got {name}")
        if enc.shape is None:
            ndim = value.ndim
            if ndim == 0:
                raise MDSSchemaError(f"{enc.text!r} cannot store a 0-d array; use a scalar encoding or a static shape")
            if ndim > 63:
                raise MDSSchemaError(f"ndarray has too many axes: maximum 63, got {ndim}")
            code = shape_code(max(value.shape))
            parts.append(bytes([(ndim << 2) | code]))
            parts.append(np.array(value.shape, SHAPE_CODE_DTYPES[code]).tobytes())
        elif value.shape != enc.shape:
            raise MDSSchemaError(f"{enc.text!r} needs shape {enc.shape}, got {value.shape}")
        if value.dtype.byteorder == ">":
            value = value.astype(value.dtype.newbyteorder("<"))
        parts.append(value.tobytes())
        return b"".join(parts)

    def decode(self, enc: Encoding, data: bytes | bytearray | memoryview) -> Any:
        data = bytes(data) if not isinstance(data, bytes) else data
        pos = 0
        dtype = enc.dtype
        if dtype is None:
            if len(data) < 1:
                raise MDSFormatError("empty ndarray payload")
            dtype = NDARRAY_CODE_DTYPES.get(data[0])
            if dtype is None:
                raise MDSFormatError(f"unknown ndarray dtype code {data[0]}")
            pos = 1
        shape = enc.shape
        if shape is None:
            if len(data) < pos + 1:
                raise MDSFormatError("ndarray payload ends before its shape")
            ndim, code = data[pos] >> 2, data[pos] & 3
            shape_dtype = SHAPE_CODE_DTYPES[code]
            end = pos + 1 + ndim * shape_dtype.itemsize
            if len(data) < end:
                raise MDSFormatError("ndarray payload ends inside its shape")
            shape = tuple(int(d) for d in np.frombuffer(data, shape_dtype, ndim, pos + 1))
            pos = end
        expected = math.prod(shape) * dtype.itemsize
        if len(data) - pos != expected:
            raise MDSFormatError(f"ndarray of shape {shape} and dtype {dtype.name} needs {expected} value bytes, got {len(data) - pos}")
        return np.frombuffer(data, dtype, offset=pos).reshape(shape)

    def encode_column(self, arr: pa.Array, plan: col.FieldPlan) -> col.EncodedColumn:
        return col.encode_ndarray(arr, plan.encoding, plan.name)


#: Every encoding family by ``Encoding.kind``: the registry. Adding an encoding is adding a class here.
FAMILIES: dict[str, Family] = {f.kind: f for f in (
    _Str(), _Scalar(), _Int(), _Bytes(), _StrInt(), _StrFloat(), _StrDecimal(), _Json(), _Pkl(),
    _Image("pil"), _Image("jpeg"), _Image("png"), _ImageSequence("list", 8, "images"),
    _ImageSequence("jpeg_array", 4, "JPEG bytes"), _Ndarray(),
)}  # fmt: skip

"""The logical schema and its mapping to Arrow types and MDS encodings (docs/format.md §2-§5).

A *logical type* is a Spark data type in the JSON form of ``StructType.json()``: a string
(``"long"``, ``"decimal(10,2)"``, ``"timestamp"``) or a dict (``{"type": "array", ...}``,
``{"type": "map", ...}``, ``{"type": "struct", "fields": [...]}``). No pyspark is needed.

This module is the one table that the writer and the reader use:

* writing: Arrow type -> logical type (:func:`logical_from_arrow`) -> default encoding
  (:func:`default_encoding`), or a user override checked by :func:`check_encoding`;
* reading: encoding -> natural logical and Arrow types (:func:`natural_logical`,
  :func:`natural_arrow`), and the *natural type rule* (:func:`read_arrow_type`): a column whose
  logical type is the natural one of its encoding is read with the encoding's natural Arrow type
  (so ``uint8`` stays ``uint8``), any other pairing is read as the logical type.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import pyarrow as pa

from ..errors import MDSEncodingError, MDSIndexError, MDSSchemaError
from .encodings import DEFAULT_NDARRAY_DTYPE, Encoding, parse_encoding

__all__ = [
    "LogicalType",
    "NULL_MASK",
    "SPARK_MDS_VERSION",
    "Field",
    "NdarrayInfo",
    "type_kind",
    "type_string",
    "check_logical_type",
    "logical_from_arrow",
    "arrow_from_logical",
    "default_encoding",
    "allowed_encodings",
    "check_encoding",
    "natural_logical",
    "DEFAULT_NDARRAY_DTYPE",
    "natural_arrow",
    "read_arrow_type",
    "ndarray_leaf",
    "numeric_dtype",
    "list_leaf",
    "make_spark_mds",
    "parse_spark_mds",
]

#: A Spark data type in its JSON form.
LogicalType = Union[str, dict]

#: Name of the null-mask column (§3).
NULL_MASK = "__nulls__"
#: ``spark_mds.format_version`` written and understood by this version.
SPARK_MDS_VERSION = 1

_INTEGRAL = ("byte", "short", "integer", "long")
_FLOATING = ("float", "double")
_NUMERIC_ELEMENT_DTYPES = {
    "byte": "int8", "short": "int16", "integer": "int32", "long": "int64",
    "float": "float32", "double": "float64", "boolean": "uint8",
}  # fmt: skip
_SIMPLE = frozenset(
    {"byte", "short", "integer", "long", "float", "double", "boolean", "string", "binary", "date",
     "timestamp", "timestamp_ntz"}
)  # fmt: skip
_DECIMAL_RE = re.compile(r"decimal\(\s*(\d+)\s*,\s*(-?\d+)\s*\)")
_DAY_TIME_RE = re.compile(r"interval (day|hour|minute|second)( to (day|hour|minute|second))?")
_YEAR_MONTH_RE = re.compile(r"interval (year|month)( to (year|month))?")
_UNSUPPORTED_NAMES = {"void", "null", "interval", "calendarinterval", "variant", "object"}


@dataclass(frozen=True)
class Field:
    """A top-level field of the logical schema."""

    name: str
    type: LogicalType
    nullable: bool = True
    metadata: Mapping[str, Any] | None = None

    def to_json(self) -> dict:
        """The Spark ``StructField`` JSON form."""
        return {"metadata": dict(self.metadata or {}), "name": self.name, "nullable": self.nullable, "type": self.type}


@dataclass(frozen=True)
class NdarrayInfo:
    """Element dtype and number of dimensions of a dynamic ``ndarray`` column, taken from the
    dataset's first sample (§4)."""

    dtype: str
    ndim: int


# ---------------------------------------------------------------------------- logical types


def decimal_params(t: LogicalType) -> tuple[int, int] | None:
    """``(precision, scale)`` of a ``decimal(p,s)`` type, else None."""
    if isinstance(t, str):
        m = _DECIMAL_RE.fullmatch(t)
        if m:
            return int(m.group(1)), int(m.group(2))
    return None


def type_kind(t: LogicalType) -> str:
    """Coarse category of a logical type: a simple name, ``decimal``, ``daytime``, ``yearmonth``,
    ``array``, ``map``, ``struct`` or ``unsupported``."""
    if isinstance(t, str):
        if t in _SIMPLE:
            return t
        if decimal_params(t):
            return "decimal"
        if _DAY_TIME_RE.fullmatch(t):
            return "daytime"
        if _YEAR_MONTH_RE.fullmatch(t):
            return "yearmonth"
        return "unsupported"
    if isinstance(t, dict) and t.get("type") in ("array", "map", "struct"):
        return t["type"]
    return "unsupported"


def type_string(t: LogicalType) -> str:
    """Readable form of a logical type for messages: ``array<integer>``, ``map<string,long>``,
    ``struct<a:integer,b:string>``."""
    kind = type_kind(t)
    if kind == "array":
        return f"array<{type_string(t['elementType'])}>"
    if kind == "map":
        return f"map<{type_string(t['keyType'])},{type_string(t['valueType'])}>"
    if kind == "struct":
        return "struct<" + ",".join(f"{f['name']}:{type_string(f['type'])}" for f in t["fields"]) + ">"
    return t if isinstance(t, str) else repr(t)


def check_logical_type(t: Any, where: str) -> LogicalType:
    """Validates a logical type read from JSON; ``where`` names it in the error.

    Raises:
        MDSSchemaError: malformed or unsupported type.
    """
    kind = type_kind(t)
    if kind == "unsupported":
        raise MDSSchemaError(f"{where}: unsupported logical type {t!r}")
    if kind == "decimal":
        p, s = decimal_params(t)  # type: ignore[misc]
        if not 1 <= p <= 38 or not 0 <= s <= p:
            raise MDSSchemaError(f"{where}: invalid {t!r}; Spark decimals have 1..38 digits and 0 <= scale <= precision")
    elif kind == "array":
        if set(t) != {"type", "elementType", "containsNull"} or not isinstance(t["containsNull"], bool):
            raise MDSSchemaError(f"{where}: malformed array type {t!r}")
        check_logical_type(t["elementType"], where)
    elif kind == "map":
        if set(t) != {"type", "keyType", "valueType", "valueContainsNull"} or not isinstance(t["valueContainsNull"], bool):
            raise MDSSchemaError(f"{where}: malformed map type {t!r}")
        check_logical_type(t["keyType"], where)
        check_logical_type(t["valueType"], where)
    elif kind == "struct":
        fields = t.get("fields")
        if set(t) != {"type", "fields"} or not isinstance(fields, list):
            raise MDSSchemaError(f"{where}: malformed struct type {t!r}")
        for f in fields:
            if not isinstance(f, dict) or not isinstance(f.get("name"), str) or not isinstance(f.get("nullable"), bool) or "type" not in f:
                raise MDSSchemaError(f"{where}: malformed struct field {f!r}")
            check_logical_type(f["type"], f"{where}.{f['name']}")
    return t


def _array(element: LogicalType, contains_null: bool = True) -> dict:
    return {"containsNull": contains_null, "elementType": element, "type": "array"}


def logical_from_arrow(arrow_type: pa.DataType, column: str) -> LogicalType:
    """The logical type of an Arrow type (§2, and §4 for the Arrow types Spark lacks).

    Raises:
        MDSSchemaError: the type has no storage (null, time, intervals other than duration,
            decimals with a negative scale or more than 38 digits, ...), naming the column.
    """
    t = arrow_type
    if pa.types.is_dictionary(t):
        return logical_from_arrow(t.value_type, column)
    if pa.types.is_boolean(t):
        return "boolean"
    for check, name in ((pa.types.is_int8, "byte"), (pa.types.is_int16, "short"), (pa.types.is_int32, "integer"),
                        (pa.types.is_int64, "long"), (pa.types.is_uint8, "short"), (pa.types.is_uint16, "integer"),
                        (pa.types.is_uint32, "long"), (pa.types.is_float16, "float"), (pa.types.is_float32, "float"),
                        (pa.types.is_float64, "double")):  # fmt: skip
        if check(t):
            return name
    if pa.types.is_uint64(t):
        return "decimal(20,0)"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t) or pa.types.is_fixed_size_binary(t):
        return "binary"
    if pa.types.is_decimal(t):
        if t.scale < 0 or t.precision > 38:
            raise MDSSchemaError(
                f"column {column!r}: {t} cannot be stored: Spark decimals have at most 38 digits and a "
                f"non-negative scale; cast the column first (e.g. to decimal128({min(t.precision, 38)}, 0))"
            )
        return f"decimal({t.precision},{t.scale})"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "timestamp" if t.tz is not None else "timestamp_ntz"
    if pa.types.is_duration(t):
        return "interval day to second"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_list_view(t) or pa.types.is_large_list_view(t):
        return _array(logical_from_arrow(t.value_type, column), t.value_field.nullable)
    if pa.types.is_map(t):
        return {"keyType": logical_from_arrow(t.key_type, column), "type": "map",
                "valueContainsNull": t.item_field.nullable, "valueType": logical_from_arrow(t.item_type, column)}  # fmt: skip
    if pa.types.is_struct(t):
        return {"fields": [Field(f.name, logical_from_arrow(f.type, column), f.nullable).to_json() for f in t], "type": "struct"}
    raise MDSSchemaError(
        f"column {column!r} has type {t}, which MDS cannot store; cast it to a supported type "
        f"(numbers, bool, string, binary, decimal, date, timestamp, duration, list, struct, map) or drop it"
    )


def arrow_from_logical(t: LogicalType) -> pa.DataType:
    """The Arrow type in which a logical type is read when it is not its encoding's natural one."""
    kind = type_kind(t)
    simple = {
        "byte": pa.int8(), "short": pa.int16(), "integer": pa.int32(), "long": pa.int64(),
        "float": pa.float32(), "double": pa.float64(), "boolean": pa.bool_(), "string": pa.string(),
        "binary": pa.binary(), "date": pa.date32(), "timestamp": pa.timestamp("us", tz="UTC"),
        "timestamp_ntz": pa.timestamp("us"), "daytime": pa.duration("us"), "yearmonth": pa.int32(),
    }  # fmt: skip
    if kind in simple:
        return simple[kind]
    if kind == "decimal":
        return pa.decimal128(*decimal_params(t))  # type: ignore[misc]
    if kind == "array":
        return pa.list_(pa.field("item", arrow_from_logical(t["elementType"]), t["containsNull"]))
    if kind == "map":
        key = pa.field("key", arrow_from_logical(t["keyType"]), False)
        return pa.map_(key, pa.field("value", arrow_from_logical(t["valueType"]), t["valueContainsNull"]))
    if kind == "struct":
        return pa.struct([pa.field(f["name"], arrow_from_logical(f["type"]), f["nullable"]) for f in t["fields"]])
    raise MDSSchemaError(f"unsupported logical type {t!r}")


# ---------------------------------------------------------------------------- encodings


def ndarray_leaf(t: LogicalType) -> tuple[LogicalType, int] | None:
    """For an array of numbers or booleans nested ``d`` deep, ``(element type, d)``; else None."""
    depth = 0
    while type_kind(t) == "array":
        t = t["elementType"]
        depth += 1
    if depth and (t in _NUMERIC_ELEMENT_DTYPES):
        return t, depth
    return None


def array_depth(t: LogicalType) -> tuple[LogicalType, int]:
    """The innermost element type of nested arrays and the nesting depth (0: not an array)."""
    depth = 0
    while type_kind(t) == "array":
        t = t["elementType"]
        depth += 1
    return t, depth


def element_dtype(t: LogicalType) -> str | None:
    """The ndarray dtype that stores elements of logical type ``t`` (``decimal(20,0)``: the
    uint64 that Arrow's uint64 maps to), or None."""
    if t == "decimal(20,0)":
        return "uint64"
    return _NUMERIC_ELEMENT_DTYPES.get(t) if isinstance(t, str) else None


def _arrow_leaf(arrow_type: pa.DataType | None) -> tuple[pa.DataType | None, list[int | None]]:
    """Leaf type of nested Arrow lists and each level's fixed size (None for variable lists)."""
    sizes: list[int | None] = []
    t = arrow_type
    while t is not None and (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
                             or pa.types.is_list_view(t) or pa.types.is_large_list_view(t)):  # fmt: skip
        sizes.append(t.list_size if pa.types.is_fixed_size_list(t) else None)
        t = t.value_type
    if t is not None and pa.types.is_dictionary(t):
        t = t.value_type
    return t, sizes


def list_leaf(arrow_type: pa.DataType) -> tuple[pa.DataType, int]:
    """The element type of a (nested) Arrow list type and its depth (the type itself and 0 if it is
    not a list)."""
    leaf, sizes = _arrow_leaf(arrow_type)
    return leaf, len(sizes)  # type: ignore[return-value]


_ARROW_DTYPES = {
    "int8": "int8", "int16": "int16", "int32": "int32", "int64": "int64", "uint8": "uint8", "uint16": "uint16",
    "uint32": "uint32", "uint64": "uint64", "halffloat": "float16", "float": "float32", "double": "float64",
}  # fmt: skip


def numeric_dtype(arrow_type: pa.DataType) -> str | None:
    """The MDS dtype name of a numeric or boolean Arrow type (its natural encoding)."""
    if pa.types.is_boolean(arrow_type):
        return "uint8"
    return _ARROW_DTYPES.get(str(arrow_type))


def default_encoding(t: LogicalType, arrow_type: pa.DataType | None = None) -> str:
    """The default encoding of a logical type (§2). With the column's Arrow type, numbers keep
    their Arrow width and signedness (``uint16`` -> ``uint16``, ``float16`` -> ``float16``),
    lists of them become ``ndarray`` of that dtype, and lists made only of fixed-size lists get a
    static shape (``fixed_size_list<float32, 3>`` -> ``ndarray:float32:3``)."""
    kind = type_kind(t)
    if arrow_type is not None and pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if arrow_type is not None and (pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)):
        return numeric_dtype(arrow_type)  # type: ignore[return-value]
    defaults = {
        "byte": "int8", "short": "int16", "integer": "int32", "long": "int64", "float": "float32",
        "double": "float64", "boolean": "uint8", "string": "str", "binary": "bytes", "decimal": "str_decimal",
        "date": "int32", "timestamp": "int64", "timestamp_ntz": "int64", "daytime": "int64", "yearmonth": "int32",
    }  # fmt: skip
    if kind in defaults:
        return defaults[kind]
    arrow_leaf, sizes = _arrow_leaf(arrow_type)
    if sizes and arrow_leaf is not None and numeric_dtype(arrow_leaf):
        dtype = numeric_dtype(arrow_leaf)
        if all(sizes):
            return f"ndarray:{dtype}:{','.join(str(s) for s in sizes)}"
        return f"ndarray:{dtype}"
    leaf = ndarray_leaf(t)
    if arrow_type is None and leaf is not None:
        return f"ndarray:{_NUMERIC_ELEMENT_DTYPES[leaf[0]]}"
    if kind in ("array", "map", "struct"):
        return "json"
    raise MDSSchemaError(f"unsupported logical type {t!r}")


def allowed_encodings(t: LogicalType) -> list[str]:
    """The encodings a column of logical type ``t`` may be stored with (§2 overrides), in
    readable form (``ndarray:<dtype>[:<shape>]`` stands for every ndarray form with a dtype)."""
    kind = type_kind(t)
    integral = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "int", "str_int"]
    table = {
        "byte": integral, "short": integral, "integer": integral, "long": integral,
        "float": ["float16", "float32", "float64", "str_float"], "double": ["float16", "float32", "float64", "str_float"],
        "boolean": ["uint8", "int8"], "string": ["str", "json"], "binary": ["bytes", "jpeg", "png", "pil", "pkl"],
        "decimal": ["str_decimal"], "date": ["int32"], "timestamp": ["int64"], "timestamp_ntz": ["int64"],
        "daytime": ["int64"], "yearmonth": ["int32"], "map": ["json"], "struct": ["json"],
    }  # fmt: skip
    if kind in table:
        return list(table[kind])
    if kind == "array":
        if ndarray_leaf(t) is not None:
            return ["ndarray:<dtype>", "ndarray:<dtype>:<shape>", "json"]
        if t["elementType"] == "binary":
            return ["list[jpeg]", "list[png]", "list[pil]", "jpeg_array", "json"]
        return ["json"]
    return []


def check_encoding(column: str, t: LogicalType, encoding: str, arrow_type: pa.DataType | None = None) -> Encoding:
    """Parses and checks the encoding a column of logical type ``t`` is stored with.

    The column's default encoding is always allowed; any other must be in
    :func:`allowed_encodings`.

    Raises:
        MDSEncodingError: the encoding string is malformed.
        MDSSchemaError: the encoding is not allowed for the type (naming the column, its type
            and the allowed encodings).
    """
    try:
        enc = parse_encoding(encoding)
    except MDSEncodingError as exc:
        raise MDSEncodingError(f"column {column!r}: {exc}") from None
    if encoding == default_encoding(t, arrow_type):
        return enc
    allowed = allowed_encodings(t)
    ok = encoding in allowed
    if not ok and enc.kind == "ndarray" and "ndarray:<dtype>" in allowed:
        ok = enc.dtype is not None  # a dtype is required; static shapes are checked per row
    if not ok:
        if column == NULL_MASK:
            raise MDSSchemaError(f"{NULL_MASK!r} is reserved for the null mask; rename the column")
        raise MDSSchemaError(
            f"column {column!r} of type {type_string(t)} cannot be stored as {encoding!r}; allowed: "
            f"{', '.join(allowed) or 'none'}"
        )
    return enc


def natural_logical(enc: Encoding, info: NdarrayInfo | None = None) -> LogicalType:
    """The logical type of a column read without a logical schema (§4; the encoding family's)."""
    return enc.family.natural_logical(enc, info)


def natural_arrow(enc: Encoding, info: NdarrayInfo | None = None) -> pa.DataType:
    """The Arrow type of a column read without a logical schema (§4; the encoding family's)."""
    return enc.family.natural_arrow(enc, info)


def read_arrow_type(t: LogicalType | None, enc: Encoding, info: NdarrayInfo | None = None) -> pa.DataType:
    """The Arrow type a column is read as: the encoding's natural Arrow type when ``t`` is None or
    is the encoding's natural logical type, else the Arrow type of ``t`` (§4)."""
    if t is None or _same_type(t, natural_logical(enc, info)):
        return natural_arrow(enc, info)
    return arrow_from_logical(t)


def _same_type(a: LogicalType, b: LogicalType) -> bool:
    """Logical type equality, ignoring array/map nullability flags."""
    ka, kb = type_kind(a), type_kind(b)
    if ka != kb:
        return False
    if ka == "array":
        return _same_type(a["elementType"], b["elementType"])
    if ka == "map":
        return _same_type(a["keyType"], b["keyType"]) and _same_type(a["valueType"], b["valueType"])
    if ka == "struct":
        fa, fb = a["fields"], b["fields"]
        return len(fa) == len(fb) and all(x["name"] == y["name"] and _same_type(x["type"], y["type"]) for x, y in zip(fa, fb))
    if ka == "decimal":
        return decimal_params(a) == decimal_params(b)
    return a == b


# ---------------------------------------------------------------------------- spark_mds key


def make_spark_mds(fields: Sequence[Field], null_mask: bool) -> dict:
    """The ``spark_mds`` value of ``index.json`` (§1)."""
    obj: dict[str, Any] = {
        "format_version": SPARK_MDS_VERSION,
        "schema": {"fields": [f.to_json() for f in fields], "type": "struct"},
    }
    if null_mask:
        obj["null_mask"] = NULL_MASK
    return obj


def parse_spark_mds(obj: Any, source: str) -> tuple[list[Field], str | None]:
    """Validates a ``spark_mds`` value; returns the logical fields and the null-mask column name.

    Raises:
        MDSIndexError: malformed value, naming ``source`` (the index file).
    """
    where = f"{source}: spark_mds"
    if not isinstance(obj, dict):
        raise MDSIndexError(f"{where} must be an object, got {type(obj).__name__}")
    version = obj.get("format_version")
    if version != SPARK_MDS_VERSION or isinstance(version, bool):
        raise MDSIndexError(f"{where}.format_version is {version!r}; this version of mds_loader reads version {SPARK_MDS_VERSION}: upgrade mds-loader")
    schema = obj.get("schema")
    try:
        check_logical_type(schema, f"{where}.schema")
    except MDSSchemaError as exc:
        raise MDSIndexError(str(exc)) from None
    if type_kind(schema) != "struct":
        raise MDSIndexError(f"{where}.schema must be a struct type")
    fields = [Field(f["name"], f["type"], f["nullable"], f.get("metadata") or {}) for f in schema["fields"]]
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        raise MDSIndexError(f"{where}.schema has duplicate field names")
    mask = obj.get("null_mask")
    if mask is not None and mask != NULL_MASK:
        raise MDSIndexError(f"{where}.null_mask must be {NULL_MASK!r}, got {mask!r}")
    return fields, mask

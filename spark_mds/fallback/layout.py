"""Spark schema <-> MDS storage for the Python fallback: the same type mapping, defaults, override
rules, append rules and messages as the JVM source (``jvm/.../SchemaConverter.scala``), built on
the format core's tables (``mds_loader.format.schema``, docs/format.md §2-§4).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa
from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    ByteType,
    DataType,
    DateType,
    DayTimeIntervalType,
    DecimalType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    MapType,
    NullType,
    ShortType,
    StringType,
    StructType,
    TimestampNTZType,
    TimestampType,
    UserDefinedType,
    YearMonthIntervalType,
)

from mds_loader.errors import MDSConfigError, MDSEncodingError, MDSSchemaError
from mds_loader.format import Encoding, Index, WriteOptions, parse_encoding
from mds_loader.format.schema import (
    NULL_MASK,
    SPARK_MDS_VERSION,
    NdarrayInfo,
    allowed_encodings,
    check_encoding,
    default_encoding,
    natural_logical,
    ndarray_leaf,
    type_kind,
)

from .options import resolve_encodings

__all__ = [
    "type_sql",
    "check_storable",
    "check_arrow_transferable",
    "spark_arrow_type",
    "spark_arrow_schema",
    "WriteLayout",
    "new_write_layout",
    "append_write_layout",
    "dataset_spark_schema",
    "same_ignoring_nullability",
]

_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# ---------------------------------------------------------------------------- types


def type_sql(t: DataType) -> str:
    """Spark's SQL text of a type (``DataType.sql`` on the JVM), for messages: ``INT``,
    ``ARRAY<BIGINT>``, ``STRUCT<a: INT, b: STRING>``."""
    if isinstance(t, ArrayType):
        return f"ARRAY<{type_sql(t.elementType)}>"
    if isinstance(t, MapType):
        return f"MAP<{type_sql(t.keyType)}, {type_sql(t.valueType)}>"
    if isinstance(t, StructType):
        fields = ", ".join(f"{f.name if _PLAIN_NAME.fullmatch(f.name) else '`' + f.name.replace('`', '``') + '`'}: {type_sql(f.dataType)}"
                           for f in t.fields)  # fmt: skip
        return f"STRUCT<{fields}>"
    if type(t).__name__ == "CalendarIntervalType":  # PySpark 4.0+ only
        return "INTERVAL"
    if isinstance(t, NullType):
        return "VOID"
    if isinstance(t, UserDefinedType):
        return type_sql(t.sqlType())
    return t.simpleString().upper()


def _walk(t: DataType):
    yield t
    if isinstance(t, ArrayType):
        yield from _walk(t.elementType)
    elif isinstance(t, MapType):
        yield from _walk(t.keyType)
        yield from _walk(t.valueType)
    elif isinstance(t, StructType):
        for f in t.fields:
            yield from _walk(f.dataType)


def check_storable(column: str, t: DataType) -> None:
    """Fails for types MDS cannot store (void, calendar intervals, variant, time, user-defined...),
    naming the column and type, like the JVM source. Which types MDS stores is the format core's
    rule (``mds_loader.format.schema.type_kind``).

    Raises:
        MDSSchemaError
    """
    for x in _walk(t):
        if isinstance(x, UserDefinedType) or (not isinstance(x, StringType) and type_kind(_logical(x)) == "unsupported"):
            inner = f" (containing {type_sql(x)})" if x is not t else ""
            raise MDSSchemaError(
                f"column '{column}' has type {type_sql(t)}{inner}, which MDS cannot store: cast it to a supported type "
                "or drop the column"
            )


def check_arrow_transferable(column: str, t: DataType, *, reading: bool) -> None:
    """Fails for types that MDS stores but PySpark's Arrow transfer cannot carry between the JVM and
    a Python data source: year-month intervals (pyarrow has no array type for them).

    Raises:
        MDSSchemaError: naming the column and the workaround.
    """
    if any(isinstance(x, YearMonthIntervalType) for x in _walk(t)):
        if reading:
            raise MDSSchemaError(
                f"column '{column}' has type {type_sql(t)}: the Python fallback of the mds source cannot return "
                "year-month intervals (PySpark's Arrow transfer has no such type). Read the column as INT (its "
                "number of months) with a user schema, e.g. spark.read.schema('..., "
                f"{column} INT').format('mds').load(path), or read with the JVM source"
            )
        raise MDSSchemaError(
            f"column '{column}' has type {type_sql(t)}: the Python fallback of the mds source cannot write "
            "year-month intervals (PySpark's Arrow transfer has no such type). Write the number of months instead, "
            f"e.g. extract(year from {column}) * 12 + extract(month from {column}), or write with the JVM source"
        )


def spark_arrow_type(t: DataType, *, large: bool = False) -> pa.DataType:
    """The Arrow type in which Spark exchanges values of ``t`` with Python (a Python data source's
    reader and writer, ``mapInArrow``), on every supported Spark version: UTC timestamps,
    microsecond durations, and strings and binaries as ``string`` / ``binary`` (``large_string`` /
    ``large_binary`` with ``large``, as Spark sends them under
    ``spark.sql.execution.arrow.useLargeVarTypes``). Read batches are cast to exactly this type.

    Our own mapping, on public ``pyspark.sql.types`` only (PySpark's ``to_arrow_type`` is private
    and changed its signature in 4.2).

    Raises:
        MDSSchemaError: a type that cannot cross Spark's Arrow transfer as MDS stores it (year-month
            and calendar intervals, variant, time, ...), naming the type.
    """
    if isinstance(t, UserDefinedType):
        return spark_arrow_type(t.sqlType(), large=large)
    simple = _ARROW_SIMPLE.get(type(t))
    if simple is not None:
        return simple
    if isinstance(t, StringType) or type(t).__name__ in ("CharType", "VarcharType"):
        return pa.large_string() if large else pa.string()
    if isinstance(t, BinaryType):
        return pa.large_binary() if large else pa.binary()
    if isinstance(t, DecimalType):
        return pa.decimal128(t.precision, t.scale)
    if isinstance(t, ArrayType):
        return pa.list_(pa.field("element", spark_arrow_type(t.elementType, large=large), t.containsNull))
    if isinstance(t, MapType):
        return pa.map_(pa.field("key", spark_arrow_type(t.keyType, large=large), False),
                       pa.field("value", spark_arrow_type(t.valueType, large=large), t.valueContainsNull))
    if isinstance(t, StructType):
        return pa.struct([pa.field(f.name, spark_arrow_type(f.dataType, large=large), f.nullable) for f in t.fields])
    raise MDSSchemaError(f"type {type_sql(t)} has no Arrow form that Spark exchanges with Python")


_ARROW_SIMPLE: dict[type, pa.DataType] = {
    BooleanType: pa.bool_(), ByteType: pa.int8(), ShortType: pa.int16(), IntegerType: pa.int32(),
    LongType: pa.int64(), FloatType: pa.float32(), DoubleType: pa.float64(), DateType: pa.date32(),
    TimestampType: pa.timestamp("us", tz="UTC"), TimestampNTZType: pa.timestamp("us"),
    DayTimeIntervalType: pa.duration("us"), NullType: pa.null(),
}  # fmt: skip


def spark_arrow_schema(schema: StructType, nullable: Mapping[str, bool] | None = None) -> pa.Schema:
    """The Arrow schema of ``schema`` (field nullability from ``nullable`` when given)."""
    fields = []
    for f in schema.fields:
        fields.append(pa.field(f.name, spark_arrow_type(f.dataType), f.nullable if nullable is None else nullable[f.name]))
    return pa.schema(fields)


def same_ignoring_nullability(a: DataType, b: DataType) -> bool:
    """Type equality that ignores nullability (containsNull, valueContainsNull, field nullable)."""
    if isinstance(a, ArrayType) and isinstance(b, ArrayType):
        return same_ignoring_nullability(a.elementType, b.elementType)
    if isinstance(a, MapType) and isinstance(b, MapType):
        return same_ignoring_nullability(a.keyType, b.keyType) and same_ignoring_nullability(a.valueType, b.valueType)
    if isinstance(a, StructType) and isinstance(b, StructType):
        return len(a.fields) == len(b.fields) and all(
            x.name == y.name and same_ignoring_nullability(x.dataType, y.dataType) for x, y in zip(a.fields, b.fields)
        )
    return a == b


def _logical(t: DataType) -> str | dict:
    """The logical type JSON of a Spark type (its ``jsonValue``)."""
    return t.jsonValue()


def override_encoding(column: str, t: DataType, text: str) -> Encoding:
    """Validates an ``encoding.<column>`` override against the column's type (docs/format.md §2),
    with the JVM source's messages.

    Raises:
        MDSEncodingError: malformed encoding.
        MDSSchemaError: not allowed for the type.
    """
    check_storable(column, t)
    try:
        enc = parse_encoding(text)
    except MDSEncodingError as exc:
        raise MDSEncodingError(f"option encoding.{column}='{text}': {exc}") from None

    logical = _logical(t)

    def bad(extra: str = "") -> MDSSchemaError:
        allowed = ", ".join(allowed_encodings(logical)) or default_encoding(logical)
        return MDSSchemaError(
            f"option encoding.{column}='{text}' is not allowed for column '{column}' of type {type_sql(t)}{extra}; "
            f"allowed: {allowed}"
        )

    leaf = ndarray_leaf(logical)
    if enc.kind == "ndarray" and leaf is not None:
        if enc.dtype is None:
            raise bad(" (give the dtype: ndarray:<dtype>[:<shape>])")
        depth = leaf[1]
        if enc.shape is not None and depth not in (1, len(enc.shape)):
            raise bad(f" (a static shape of {len(enc.shape)} dimensions needs a flat array or an array nested {len(enc.shape)} deep)")
    try:
        return check_encoding(column, logical, enc.text)
    except MDSSchemaError:
        raise bad() from None


# ---------------------------------------------------------------------------- write layouts


@dataclass(frozen=True)
class WriteLayout:
    """How a write job stores its data.

    Attributes:
        schema: the logical schema written (the data's, or on append the dataset's), in logical order.
        data_columns: for each logical column, the name of the data's column that feeds it.
        arrow_schema: the Arrow schema of the batches given to the shard writer: the data's types
            as Spark sends them (normalized), the logical names, order and nullability.
        encodings: every logical column's encoding.
        null_mask: whether samples carry the ``__nulls__`` column.
        spark_mds: the ``spark_mds`` value of the index (None for a dataset without one).
        mds_columns: the MDS columns, sorted, and their encodings (incl. ``__nulls__``).
        appending: whether the layout is an existing dataset's.
    """

    schema: StructType
    data_columns: list[str]
    arrow_schema: pa.Schema
    encodings: dict[str, str]
    null_mask: bool
    spark_mds: dict | None
    mds_columns: dict[str, str]
    appending: bool = False

    def null_error(self, column: str) -> MDSSchemaError:
        """The error for a null in ``column`` that this layout cannot store (the JVM's messages)."""
        field = self.schema[column]
        if not self.null_mask and self.spark_mds is not None and field.nullable:
            return MDSSchemaError(
                f"column '{column}' holds a null but option nulls=error forbids nulls; drop or fill the nulls "
                "(e.g. df.na.fill) or write with nulls=mask (the default)"
            )
        if self.spark_mds is None:
            return MDSSchemaError(
                f"column '{column}' holds a null but the existing dataset has no null mask (it was not written by "
                "spark-mds); fill the nulls before appending or overwrite the dataset"
            )
        return MDSSchemaError(
            f"column '{column}' holds a null but it is not nullable in the dataset's schema; fill the nulls or "
            "overwrite the dataset"
        )

    def masks(self, column: str) -> bool:
        """Whether a null of ``column`` can be stored (in the null mask)."""
        return self.null_mask and self.schema[column].nullable


def _check_names(schema: StructType) -> None:
    names = schema.fieldNames()
    if NULL_MASK in names:
        raise MDSSchemaError(
            f"column name '{NULL_MASK}' is reserved for the null mask of MDS datasets; rename the column"
        )
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise MDSSchemaError(f"duplicate column names {', '.join(dup)}; MDS column names must be unique")
    if any(n == "" for n in names):
        raise MDSSchemaError("a column has an empty name; MDS columns need names")


def _mds_columns(schema: StructType, encodings: Mapping[str, str], mask: bool) -> dict[str, str]:
    cols = dict(encodings)
    if mask:
        cols[NULL_MASK] = f"ndarray:uint8:{(len(schema.fields) + 7) // 8}"
    return {n: cols[n] for n in sorted(cols)}


def new_write_layout(schema: StructType, opts: WriteOptions) -> WriteLayout:
    """The layout of a new dataset (or an overwrite): defaults, overrides, null mask.

    Raises:
        MDSSchemaError, MDSEncodingError, MDSConfigError: naming the column or option.
    """
    _check_names(schema)
    for f in schema.fields:
        check_storable(f.name, f.dataType)
        check_arrow_transferable(f.name, f.dataType, reading=False)
    overrides = resolve_encodings(opts.encodings, schema.fieldNames())
    encodings = {}
    for f in schema.fields:
        text = overrides.get(f.name)
        encodings[f.name] = override_encoding(f.name, f.dataType, text).text if text else default_encoding(_logical(f.dataType))
    mask = opts.nulls == "mask" and any(f.nullable for f in schema.fields)
    spark_mds: dict = {"format_version": SPARK_MDS_VERSION, "schema": schema.jsonValue()}  # Spark's own JSON, like the JVM
    if mask:
        spark_mds["null_mask"] = NULL_MASK
    return WriteLayout(
        schema=schema,
        data_columns=schema.fieldNames(),
        arrow_schema=spark_arrow_schema(schema),
        encodings=encodings,
        null_mask=mask,
        spark_mds=spark_mds,
        mds_columns=_mds_columns(schema, encodings, mask),
    )


def dataset_spark_schema(index: Index, infos: Mapping[str, NdarrayInfo], where: str) -> StructType:
    """The logical schema of a dataset as Spark sees it: ``spark_mds.schema`` when present, else
    inferred from the encodings (docs/format.md §4; fields not nullable, arrays without nulls,
    dynamic ``ndarray`` depth and dtype from ``infos``, the first sample's)."""
    if index.spark_mds is not None:
        try:
            schema = StructType.fromJson(index.spark_mds["schema"])
        except Exception as exc:
            raise MDSSchemaError(f"MDS index {where}: spark_mds.schema is not a Spark schema ({exc})") from None
        return schema
    if not index.shards:
        return StructType([])
    first = index.shards[0]
    fields = [{"name": name, "type": natural_logical(enc, infos.get(name)), "nullable": False, "metadata": {}}
              for name, enc in zip(first.column_names, first.encodings)]  # fmt: skip
    return StructType.fromJson({"type": "struct", "fields": fields})


def append_write_layout(index: Index, old: StructType, data: StructType, opts: WriteOptions, where: str) -> WriteLayout:
    """The layout for appending ``data`` to an existing dataset: the dataset's storage wins, and the
    data must have the same columns and types, nullability aside (the JVM's ``appendLayout``).

    Raises:
        MDSSchemaError: differing columns or types (naming them), or an ``encoding.<column>`` option
            that contradicts the dataset.
    """
    _check_names(data)
    old_names, new_names = old.fieldNames(), data.fieldNames()
    missing = [n for n in old_names if n not in new_names]
    extra = [n for n in new_names if n not in old_names]
    diff = [
        f"{f.name} (existing {type_sql(old[f.name].dataType)}, new {type_sql(f.dataType)})"
        for f in data.fields
        if f.name in old_names and not same_ignoring_nullability(f.dataType, old[f.name].dataType)
    ]
    if missing or extra or diff:
        parts = []
        if missing:
            parts.append(f"missing columns {', '.join(missing)}")
        if extra:
            parts.append(f"new columns {', '.join(extra)}")
        if diff:
            parts.append(f"different types: {', '.join(diff)}")
        raise MDSSchemaError(
            f"cannot append to the MDS dataset at {where}: the data's schema differs from the dataset's "
            f"({'; '.join(parts)}). Dataset schema: {old.simpleString()}; data schema: {data.simpleString()}"
        )
    for f in old.fields:
        check_arrow_transferable(f.name, f.dataType, reading=False)
    if index.shards:
        first = index.shards[0]
        stored = dict(zip(first.column_names, first.column_encodings))
    else:  # an index with a logical schema but no shards yet: its columns get their defaults
        stored = {f.name: default_encoding(_logical(f.dataType)) for f in old.fields}
        if index.null_mask:
            stored[NULL_MASK] = f"ndarray:uint8:{(len(old.fields) + 7) // 8}"
    try:
        overrides = resolve_encodings(opts.encodings, old_names)
    except MDSConfigError as exc:
        raise MDSSchemaError(str(exc)) from None
    for column, text in overrides.items():
        try:
            canonical = parse_encoding(text).text
        except MDSEncodingError as exc:
            raise MDSEncodingError(f"option encoding.{column}='{text}': {exc}") from None
        if canonical != stored.get(column):
            raise MDSSchemaError(
                f"option encoding.{column}='{text}' conflicts with the existing dataset at {where}, which stores "
                f"'{column}' as '{stored.get(column)}'; drop the option or overwrite the dataset"
            )
    mask = index.null_mask is not None
    encodings = {f.name: stored[f.name] for f in old.fields}
    nullable = {f.name: f.nullable for f in old.fields}
    # The data's types (as Spark sends them) under the dataset's names, order and nullability.
    arrow = pa.schema([pa.field(f.name, spark_arrow_type(data[f.name].dataType), nullable[f.name]) for f in old.fields])
    return WriteLayout(
        schema=old,
        data_columns=old_names,
        arrow_schema=arrow,
        encodings=encodings,
        null_mask=mask,
        spark_mds=index.spark_mds,
        mds_columns={n: stored[n] for n in sorted(stored)},
        appending=True,
    )

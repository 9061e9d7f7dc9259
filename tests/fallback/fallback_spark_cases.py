"""The Spark side of the fallback tests: functions ``case(spark, **kwargs) -> JSON`` that run in a
child process with its own session (see fallback_support.SparkProcess). They assert what only the
session can check (DataFrame equality) and return what the test checks on disk.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import types
from decimal import Decimal

from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType, BinaryType, BooleanType, ByteType, DateType, DecimalType, DoubleType, FloatType,
    IntegerType, LongType, MapType, ShortType, StringType, StructField, StructType, TimestampNTZType,
    TimestampType,
)  # fmt: skip

from fallback_support import files, read_index, referenced


def _stub_pandas_on_spark() -> None:
    """pyspark.testing.assertDataFrameEqual imports pyspark.pandas, which fails with the pandas 3
    installed here; it only needs the module for isinstance checks of pandas-on-Spark frames."""
    try:
        import pyspark.pandas  # noqa: F401
    except ImportError:
        ps = types.ModuleType("pyspark.pandas")
        ps.DataFrame = type("DataFrame", (), {})
        utils = types.ModuleType("pyspark.testing.pandasutils")
        utils.PandasOnSparkTestUtils = type("PandasOnSparkTestUtils", (), {})
        sys.modules["pyspark.pandas"] = ps
        sys.modules["pyspark.testing.pandasutils"] = utils


_stub_pandas_on_spark()

UTC = dt.timezone.utc
INNER = StructType([StructField("x", DateType()), StructField("tags", ArrayType(StringType()))])
NESTED = StructType([
    StructField("a", IntegerType()),
    StructField("b", StringType()),
    StructField("c", ArrayType(DoubleType())),
    StructField("d", INNER),
    StructField("m", MapType(StringType(), LongType())),
])  # fmt: skip
SCHEMA = StructType([
    StructField("id", LongType(), False),
    StructField("b", ByteType()),
    StructField("s", ShortType()),
    StructField("i", IntegerType()),
    StructField("l", LongType()),
    StructField("f", FloatType()),
    StructField("d", DoubleType()),
    StructField("bool", BooleanType()),
    StructField("str", StringType()),
    StructField("bin", BinaryType()),
    StructField("dec", DecimalType(38, 18)),
    StructField("dec2", DecimalType(10, 2), False),
    StructField("date", DateType()),
    StructField("ts", TimestampType()),
    StructField("ts_ntz", TimestampNTZType()),
    StructField("arr_i", ArrayType(IntegerType(), False)),
    StructField("arr_d", ArrayType(DoubleType())),
    StructField("arr_b", ArrayType(BooleanType())),
    StructField("arr2_l", ArrayType(ArrayType(LongType()))),
    StructField("arr_s", ArrayType(StringType())),
    StructField("arr_bin", ArrayType(BinaryType())),
    StructField("map_s", MapType(StringType(), IntegerType())),
    StructField("map_i", MapType(IntegerType(), StringType())),
    StructField("st", NESTED),
])  # fmt: skip
ROWS = [
    (0, -128, -32768, -2147483648, -9223372036854775808, float("nan"), float("nan"), True, "",
     b"", Decimal("-99999999999999999999.999999999999999999"), Decimal("-12.50"),
     dt.date(1, 1, 1), dt.datetime(1, 1, 3, 0, 0, 1, tzinfo=UTC), dt.datetime(1, 1, 1),
     [], [], [], [], [], [], {}, {}, (None, None, [], (None, []), {})),
    (1, 127, 32767, 2147483647, 9223372036854775807, float("inf"), float("-inf"), False,
     "héllo wörld ✓ 𝄞 \"q\" \\ \n\t\x00\x7f", b"\x00\xff\x10",
     Decimal("99999999999999999999.999999999999999999"), Decimal("99999999.99"),
     dt.date(9999, 12, 31), dt.datetime(9999, 12, 29, 23, 59, 59, 999999, tzinfo=UTC),
     dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
     [-2147483648, 2147483647, 0], [float("nan"), float("inf"), float("-inf"), -0.0, 1e300, 5e-324],
     [True, False, True], [[1, 2, 3], [4, 5, 6]], ["a", None, "ü"], [b"\x01", None, b""],
     {"k": 1, "nul": None, "ü": -5}, {1: "one", -2: None},
     (7, "x", [1.5, float("nan")], (dt.date(2024, 2, 29), ["t", None]), {"z": 9223372036854775807})),
    (2, 0, 0, 0, 0, -0.0, 0.1, None, None, None, None, Decimal("0.00"), None, None, None,
     None, None, None, None, None, None, None, None, None),
    (3, 1, -1, 7, -7, 3.4028234663852886e38, 2.2250738585072014e-308, True, "x" * 1000,
     bytes(range(256)), Decimal("0.000000000000000001"), Decimal("-0.01"),
     dt.date(1969, 12, 31), dt.datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
     dt.datetime(1582, 10, 10, 12, 0), [5], [0.5], [False], [[]], [""], [b"abc"], {"": 0}, {0: ""},
     (None, "", None, None, None)),
]  # fmt: skip


def every_type(spark):
    """Every Spark type that the fallback can carry, with nulls and edge values (day-time intervals
    built with SQL; year-month intervals cannot cross PySpark's Arrow transfer)."""
    df = spark.createDataFrame(ROWS, SCHEMA)
    return (df.withColumn("dt_iv", F.expr("make_dt_interval(id, id * 3, 7, 1.000001)"))
            .withColumn("iv_null", F.expr("if(id = 2, null, make_dt_interval(-id))")))  # fmt: skip


# ---------------------------------------------------------------------------- comparison


def canon(v):
    """A comparable form of a collected value: exact floats (NaN equal to NaN, -0.0 distinct)."""
    if isinstance(v, Row):
        return ("row", tuple(v.__fields__), tuple(canon(x) for x in v))
    if isinstance(v, float):
        return ("f", v.hex())
    if isinstance(v, (list, tuple)):
        return ("l", tuple(canon(x) for x in v))
    if isinstance(v, dict):
        return ("d", tuple(sorted(((canon(k), canon(x)) for k, x in v.items()), key=repr)))
    if isinstance(v, (bytes, bytearray)):
        return ("b", bytes(v))
    if isinstance(v, Decimal):
        return ("dec", str(v))
    return (type(v).__name__, v)


def _collectable(df):
    """PySpark cannot collect year-month intervals: compare them as their SQL text."""
    from pyspark.sql.types import YearMonthIntervalType

    return df.select([F.col(f"`{f.name}`").cast("string").alias(f.name) if isinstance(f.dataType, YearMonthIntervalType)
                      else F.col(f"`{f.name}`") for f in df.schema.fields])  # fmt: skip


def assert_same(actual, expected, key: str = "id") -> None:
    """Schemas equal (names, types, nullability); rows equal, with pyspark.testing's
    assertDataFrameEqual and bit for bit (floats exactly, NaN equal to NaN)."""
    from pyspark.testing import assertDataFrameEqual

    assert actual.schema == expected.schema, f"\nactual:   {actual.schema}\nexpected: {expected.schema}"
    actual, expected = _collectable(actual), _collectable(expected)
    a_rows, e_rows = actual.orderBy(key).collect(), expected.orderBy(key).collect()
    assertDataFrameEqual(a_rows, e_rows, checkRowOrder=True)
    a, e = [canon(r) for r in a_rows], [canon(r) for r in e_rows]
    assert len(a) == len(e), (len(a), len(e))
    for x, y in zip(a, e):
        assert x == y, f"\nactual:   {x}\nexpected: {y}"


def _encodings(path: str) -> dict:
    shard = read_index(path)["shards"][0]
    return dict(zip(shard["column_names"], shard["column_encodings"]))


# ---------------------------------------------------------------------------- cases


def roundtrip_every_type(spark, out: str, fmt: str = "mds"):
    df = every_type(spark).cache()
    df.write.format(fmt).mode("overwrite").save(out)
    back = spark.read.format(fmt).load(out)
    assert_same(back, df)
    # a user schema naming some columns decodes only those, in its order
    sub = spark.read.schema("st " + df.schema["st"].dataType.simpleString() + ", id BIGINT NOT NULL, ts TIMESTAMP") \
        .format(fmt).load(out)
    assert_same(sub, df.select("st", "id", "ts"))
    assert back.count() == 4
    assert back.where("b = 127").select("str").first()[0] == ROWS[1][8]
    return {"encodings": _encodings(out), "index": read_index(out), "files": sorted(files(out)),
            "referenced": sorted(referenced(out))}

"""The tables the Spark tests write, one home for each (tests/spark, tests/fallback, tests/versions):

* the every-type table: every Spark type MDS stores, with nulls and edge values (NaN, infinities,
  -0.0, extreme integers, decimals, dates and timestamps, empty and nested arrays, maps, structs);
* the interop table: what mosaicml-streaming reads back and support.check_interop_sample checks.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType, BinaryType, BooleanType, ByteType, DateType, DecimalType, DoubleType, FloatType,
    IntegerType, LongType, MapType, ShortType, StringType, StructField, StructType, TimestampNTZType,
    TimestampType,
)

UTC = dt.timezone.utc
INNER = StructType([
    StructField("x", DateType()),
    StructField("tags", ArrayType(StringType())),
])
NESTED = StructType([
    StructField("a", IntegerType()),
    StructField("b", StringType()),
    StructField("c", ArrayType(DoubleType())),
    StructField("d", INNER),
    StructField("m", MapType(StringType(), LongType())),
])
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
])

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
]


def every_type(spark, *, day_time_intervals: bool = True, year_month_intervals: bool = True):
    """The table as a DataFrame (4 rows, ``id`` 0-3). Intervals have no Python input type: they are
    built with SQL, and left out where an implementation cannot carry them."""
    df = spark.createDataFrame(ROWS, SCHEMA)
    if day_time_intervals:
        df = df.withColumn("dt_iv", F.expr("make_dt_interval(id, id * 3, 7, 1.000001)"))
    if year_month_intervals:
        df = df.withColumn("ym_iv", F.expr("make_ym_interval(cast(id as int) * 100, 11)"))
    if day_time_intervals:
        df = df.withColumn("iv_null", F.expr("if(id = 2, null, make_dt_interval(-id))"))
    return df


#: The interop table (16 columns; written 20 times over, ids 0-59, for the reference to read).
INTEROP_ROWS = [
    (0, -128, -32768, -2147483648, 1.5, float("nan"), True, "", b"", Decimal("-12.50"),
     dt.date(1, 1, 1), dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.timezone.utc),
     [1, 2, 3], [[1.0, 2.0], [3.0, 4.0]], (1, "a"), [1.0] * 4),
    (1, 127, 32767, 2147483647, float("inf"), -0.5, False, "héllo ✓ 𝄞", b"\x00\xff",
     Decimal("99999999.99"), dt.date(2000, 2, 29), dt.datetime(1900, 1, 1, tzinfo=dt.timezone.utc),
     [], [[5.0, 6.0, 7.0]], (None, "b"), [0.0, 1.0, 2.0, 3.0]),
    (2, None, None, None, None, None, None, None, None, None, None, None, None, None, None, [2.0] * 4),
]
INTEROP_SCHEMA = ("id long, b byte, s short, i int, f float, d double, flag boolean, text string, bin binary, "
          "dec decimal(10,2), day date, ts timestamp, tokens array<int>, mat array<array<float>>, "
          "st struct<x:int,y:string>, emb array<float>")

"""Round trips of every Spark type through format("mds"): all SaveModes and the SQL statements."""

from __future__ import annotations

import datetime as dt
import math
import os
from decimal import Decimal

import pytest
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType, BinaryType, BooleanType, ByteType, DateType, DecimalType, DoubleType, FloatType,
    IntegerType, LongType, MapType, ShortType, StringType, StructField, StructType, TimestampNTZType,
    TimestampType,
)

from mds_testutil import JVM_WRITES_INTERVALS, SPARK_MAJOR, assert_same_rows, files, read_index, referenced

pytestmark = pytest.mark.spark

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


@pytest.fixture(scope="module")
def all_types(spark):
    df = spark.createDataFrame(ROWS, SCHEMA)
    if JVM_WRITES_INTERVALS:  # (Spark 3.5 refuses intervals in this write path: test_errors)
        # Intervals have no Python input type: build them with SQL.
        df = df.withColumn("dt_iv", F.expr("make_dt_interval(id, id * 3, 7, 1.000001)")) \
               .withColumn("ym_iv", F.expr("make_ym_interval(cast(id as int) * 100, 11)")) \
               .withColumn("iv_null", F.expr("if(id = 2, null, make_dt_interval(-id))"))
    return df.cache()


def test_default_save_and_read_every_type(spark, all_types, out):
    all_types.write.format("mds").save(out)
    back = spark.read.format("mds").load(out)
    assert_same_rows(back, all_types)
    idx = read_index(out)
    shard = idx["shards"][0]
    enc = dict(zip(shard["column_names"], shard["column_encodings"]))
    assert enc["bool"] == "uint8" and enc["date"] == "int32" and enc["ts"] == "int64"
    assert enc["dec"] == "str_decimal" and enc["arr_i"] == "ndarray:int32"
    assert enc["arr2_l"] == "ndarray:int64" and enc["arr_b"] == "ndarray:uint8"
    assert enc["st"] == enc["map_s"] == enc["arr_s"] == enc["arr_bin"] == "json"
    assert enc["__nulls__"] == f"ndarray:uint8:{(len(all_types.columns) + 7) // 8}"
    assert shard["column_names"] == sorted(shard["column_names"])
    assert idx["spark_mds"]["null_mask"] == "__nulls__"
    assert shard["compression"] == "zstd"
    # pruned reads decode only some columns
    assert_same_rows(back.select("id", "st", "ts"), all_types.select("id", "st", "ts"))
    assert back.count() == 4
    assert back.where("b = 127").select("str").first()[0] == ROWS[1][8]


def test_save_modes(spark, all_types, out):
    df = all_types
    df.write.format("mds").mode("errorifexists").save(out)
    with pytest.raises(Exception, match="already exists at .*mode\\('append'\\)"):
        df.write.format("mds").save(out)
    before = files(out)
    df.write.format("mds").mode("ignore").save(out)  # no-op
    assert files(out) == before
    df.write.format("mds").mode("append").save(out)
    back = spark.read.format("mds").load(out)
    assert back.count() == 8
    assert_same_rows(back.where("id < 2"), df.unionAll(df).where("id < 2"), key="id")
    assert files(out) == referenced(out)
    df.where("id >= 2").write.format("mds").mode("overwrite").save(out)
    assert_same_rows(spark.read.format("mds").load(out), df.where("id >= 2"))
    assert files(out) == referenced(out)  # the replaced shards are gone
    # overwrite from a query that reads the same dataset: old shards go only after the new index is out
    spark.read.format("mds").load(out).where("id = 3").write.format("mds").mode("overwrite").save(out)
    assert_same_rows(spark.read.format("mds").load(out), df.where("id = 3"))
    assert files(out) == referenced(out)
    # ignore on a new path writes
    other = out + "_ignore"
    df.write.format("mds").mode("ignore").save(other)
    assert_same_rows(spark.read.format("mds").load(other), df)


def test_options_compressions_hashes_and_size_limit(spark, all_types, out):
    for comp in ["none", "zstd:7", "gz", "bz2", "snappy", "lz4"]:
        p = f"{out}_{comp.replace(':', '-')}"
        (all_types.coalesce(1).write.format("mds").option("compression", comp)
         .option("hashes", "xxh64,sha1,md5,xxh32,sha3_256").option("size_limit", "2kb").save(p))
        assert_same_rows(spark.read.format("mds").option("validate_hash", "sha1").load(p), all_types)
        idx = read_index(p)
        assert len(idx["shards"]) > 1, "size_limit 2kb cuts several shards"
        for s in idx["shards"]:
            assert s["hashes"] == ["md5", "sha1", "sha3_256", "xxh32", "xxh64"]
            assert s["size_limit"] == 2048
            assert s["raw_data"]["bytes"] <= 2048 or s["samples"] == 1
            if comp == "none":
                assert s["zip_data"] is None and s["compression"] is None
            else:
                assert s["compression"] == comp
                assert s["zip_data"]["basename"].endswith("." + comp.split(":")[0])
    # an oversize first sample yields an empty shard first, like the reference
    p = out + "_tiny"
    all_types.coalesce(1).write.format("mds").option("size_limit", 100).save(p)
    idx = read_index(p)
    assert idx["shards"][0]["samples"] == 0
    assert spark.read.format("mds").load(p).count() == 4


def test_encoding_overrides(spark, out):
    df = spark.createDataFrame(
        [(1, 200, 1.5, "{\"a\": [1, 2]}", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [[1, 2], [3, 4]], [1, None], True),
         (2, -3, float("inf"), "null", [0.0] * 6, [[0, 0], [0, 0]], [], False)],
        "id long, small int, h float, js string, flat array<double>, sq array<array<int>>, "
        "nn array<int>, flag boolean")
    (df.coalesce(1).write.format("mds")
     .option("encoding.small", "int16").option("encoding.h", "float16").option("encoding.js", "json")
     .option("encoding.flat", "ndarray:float32:2,3").option("encoding.sq", "ndarray:uint8:2,2")
     .option("encoding.nn", "json").option("encoding.flag", "int8").option("encoding.id", "str_int")
     .save(out))
    assert_same_rows(spark.read.format("mds").load(out), df)
    enc = dict(zip(read_index(out)["shards"][0]["column_names"], read_index(out)["shards"][0]["column_encodings"]))
    assert enc == {"__nulls__": "ndarray:uint8:1", "flag": "int8", "flat": "ndarray:float32:2,3", "h": "float16",
                   "id": "str_int", "js": "json", "nn": "json", "small": "int16", "sq": "ndarray:uint8:2,2"}


def test_empty_dataframe_and_nulls_error_mode(spark, out):
    empty = spark.createDataFrame([], "id long, s string")
    empty.write.format("mds").save(out)
    back = spark.read.format("mds").load(out)
    assert back.count() == 0 and back.schema == empty.schema
    df = spark.createDataFrame([(1, "a")], "id long, s string")
    df.write.format("mds").option("nulls", "error").save(out + "_e")
    idx = read_index(out + "_e")
    assert "__nulls__" not in idx["shards"][0]["column_names"] and "null_mask" not in idx["spark_mds"]
    assert_same_rows(spark.read.format("mds").load(out + "_e"), df)


def test_sql_statements(spark, all_types, out, tmp_path):
    src = "mds_src"
    all_types.createOrReplaceTempView(src)
    all_types.write.format("mds").save(out)
    cols = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in all_types.schema.fields)
    try:
        # existing data, no column list
        spark.sql(f"CREATE TABLE t_loc USING mds LOCATION '{out}'")
        assert_same_rows(spark.table("t_loc"), all_types)
        described = {r.col_name: r.data_type for r in spark.sql("DESCRIBE TABLE t_loc").collect()}
        assert described["dec"] == "decimal(38,18)" and described["st"].startswith("struct<a:int")
        assert spark.sql("SELECT count(*) FROM t_loc WHERE bool").first()[0] == 2

        # column list on a new location, INSERT / INSERT OVERWRITE
        loc2 = str(tmp_path / "t_cols")
        spark.sql(f"CREATE TABLE t_cols ({cols}) USING mds LOCATION '{loc2}'")
        assert spark.table("t_cols").count() == 0
        spark.sql(f"INSERT INTO t_cols SELECT * FROM {src}")
        spark.sql(f"INSERT INTO t_cols SELECT * FROM {src} WHERE id = 1")
        assert spark.table("t_cols").count() == 5
        spark.sql(f"INSERT OVERWRITE t_cols SELECT * FROM {src}")
        # a table declared with columns is all nullable: values equal, schema = the DDL's
        expected = all_types
        assert spark.table("t_cols").schema == spark.read.format("mds").load(loc2).schema
        assert_same_rows(spark.table("t_cols"), expected, nullability=False)
        assert files(loc2) == referenced(loc2)

        # managed table, CTAS, saveAsTable, insertInto
        spark.sql(f"CREATE TABLE t_managed ({cols}) USING mds")
        spark.sql(f"INSERT INTO t_managed SELECT * FROM {src}")
        assert_same_rows(spark.table("t_managed"), expected, nullability=False)
        spark.sql(f"CREATE TABLE t_ctas USING mds AS SELECT * FROM {src}")
        assert_same_rows(spark.table("t_ctas"), all_types, nullability=False)
        spark.sql(f"CREATE TABLE t_ctas_loc USING mds LOCATION '{tmp_path / 'ctas'}' AS SELECT id, st FROM {src}")
        assert_same_rows(spark.read.format("mds").load(str(tmp_path / "ctas")), spark.table("t_ctas_loc"))

        if SPARK_MAJOR >= 4:
            spark.sql(f"CREATE OR REPLACE TABLE t_ctas USING mds AS SELECT id, str FROM {src} WHERE id < 2")
            assert sorted(r.id for r in spark.table("t_ctas").collect()) == [0, 1]
            all_types.select("id", "str").writeTo("t_ctas").append()
            assert spark.table("t_ctas").count() == 6
        else:  # Spark 3.5 writes catalog tables of V1 sources only through V1 commands (README: limits)
            with pytest.raises(Exception, match="Cannot write into v1 table"):
                all_types.select("id", "str").writeTo("t_ctas").append()
            with pytest.raises(Exception, match="does not support truncate in batch mode"):
                spark.sql(f"CREATE OR REPLACE TABLE t_ctas USING mds AS SELECT id, str FROM {src} WHERE id < 2")

        all_types.write.format("mds").saveAsTable("t_saved")
        all_types.write.format("mds").mode("append").saveAsTable("t_saved")
        assert spark.table("t_saved").count() == 8
        all_types.write.format("mds").mode("overwrite").saveAsTable("t_saved")
        assert_same_rows(spark.table("t_saved"), all_types, nullability=False)
        all_types.write.insertInto("t_saved")
        assert spark.table("t_saved").count() == 8
        all_types.write.insertInto("t_saved", overwrite=True)
        assert spark.table("t_saved").count() == 4

        # temporary view with OPTIONS (path ...)
        spark.sql(f"CREATE TEMPORARY VIEW v_mds USING mds OPTIONS (path '{out}')")
        assert_same_rows(spark.table("v_mds"), all_types)
        spark.sql(f"INSERT INTO v_mds SELECT * FROM {src} WHERE id = 3")
        assert spark.table("v_mds").count() == 5
    finally:
        for t in ["t_loc", "t_cols", "t_managed", "t_ctas", "t_ctas_loc", "t_saved"]:
            spark.sql(f"DROP TABLE IF EXISTS {t}")
        spark.sql("DROP VIEW IF EXISTS v_mds")


def test_many_small_samples_per_shard(spark, out):
    """Shards of thousands of tiny samples (headers larger than the writer's initial reserve)."""
    df = spark.range(0, 30000, numPartitions=1).selectExpr("id", "cast(id % 7 as byte) as b")
    df.write.format("mds").option("size_limit", "100kb").option("hashes", "sha1").save(out)
    idx = read_index(out)
    assert len(idx["shards"]) >= 3 and all(s["raw_data"]["bytes"] <= 102400 for s in idx["shards"])
    assert sum(s["samples"] for s in idx["shards"]) == 30000
    back = spark.read.format("mds").option("validate_hash", "sha1").load(out)
    assert [r.id for r in back.select("id").collect()] == list(range(30000))
    one = out + "_one"
    df.write.format("mds").option("compression", "none").save(one)  # one shard, 30000 samples
    assert [r.b for r in spark.read.format("mds").load(one).select("b").collect()] == [i % 7 for i in range(30000)]


def test_column_names_sorted_like_python(spark, out):
    names = ["b", "Z", "é", "\U0001d11ex", "\uffffz", "a b", "_x", "id"]
    df = spark.createDataFrame([tuple(range(len(names)))], ", ".join(f"`{n}` int" for n in names))
    df.write.format("mds").save(out)
    assert read_index(out)["shards"][0]["column_names"] == sorted(names + ["__nulls__"])
    assert_same_rows(spark.read.format("mds").load(out), df)

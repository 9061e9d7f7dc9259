"""The Spark side of the fallback tests: functions ``case(spark, **kwargs) -> JSON`` that run in a
child process with its own session (see fallback_support.SparkProcess). They assert what only the
session can check (DataFrame equality) and return what the test checks on disk.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from decimal import Decimal

from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType, BinaryType, BooleanType, ByteType, DateType, DecimalType, DoubleType, FloatType,
    IntegerType, LongType, MapType, ShortType, StringType, StructField, StructType, TimestampNTZType,
    TimestampType,
)  # fmt: skip

from fallback_support import files, read_index, referenced


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


def _error(fn) -> str:
    """The message of the exception that ``fn()`` raises (fails if it raises none)."""
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - the message is what the tests check
        return f"{type(exc).__name__}: {exc}"
    raise AssertionError("no error raised")


def _snapshot(path: str) -> dict:
    return {f: open(os.path.join(path, f), "rb").read() for f in files(path)}


def save_modes(spark, out: str, fmt: str = "mds"):
    """df.write accepts append/overwrite only; spark_mds.save_modes.write gives every mode."""
    from spark_mds.save_modes import DatasetExistsError, write

    df = every_type(spark).cache()
    res = {"no_mode": _error(lambda: df.write.format(fmt).save(out)),
           "errorifexists": _error(lambda: df.write.format(fmt).mode("errorifexists").save(out)),
           "ignore": _error(lambda: df.write.format(fmt).mode("ignore").save(out))}
    write(df, out, format=fmt)  # errorifexists on a new path writes
    assert_same(spark.read.format(fmt).load(out), df)
    try:
        write(df, out, mode="error", format=fmt)
        raise AssertionError("errorifexists on an existing dataset wrote")
    except DatasetExistsError as exc:
        res["exists"] = str(exc)
    before = _snapshot(out)
    write(df, out, mode="ignore", format=fmt)
    assert _snapshot(out) == before
    write(df, out, mode="append", format=fmt)
    back = spark.read.format(fmt).load(out)
    assert back.count() == 8
    assert_same(back.where("id < 2"), df.unionAll(df).where("id < 2"))
    assert files(out) == referenced(out)
    write(df.where("id >= 2"), out, mode="overwrite", format=fmt)
    assert_same(spark.read.format(fmt).load(out), df.where("id >= 2"))
    assert files(out) == referenced(out)  # the replaced shards are gone
    # overwrite from a query that reads the same dataset: old shards go only after the new index is out
    spark.read.format(fmt).load(out).where("id = 3").write.format(fmt).mode("overwrite").save(out)
    assert_same(spark.read.format(fmt).load(out), df.where("id = 3"))
    assert files(out) == referenced(out)
    other = out + "_ignore"
    write(df, other, mode="ignore", format=fmt, compression="gz", **{"encoding.arr_s": "json"})
    assert_same(spark.read.format(fmt).load(other), df)
    return res


def options(spark, out: str, fmt: str = "mds"):
    df = every_type(spark).coalesce(1).cache()
    res = {}
    for comp in ["none", "zstd:7", "gz", "bz2", "snappy", "lz4", "br"]:
        p = f"{out}_{comp.replace(':', '-')}"
        (df.write.format(fmt).mode("overwrite").option("compression", comp)
         .option("hashes", "xxh64,sha1,md5,xxh32,sha3_256").option("size_limit", "2kb").save(p))  # fmt: skip
        assert_same(spark.read.format(fmt).option("validate_hash", "sha1").load(p), df)
        res[comp] = read_index(p)["shards"]
    p = out + "_tiny"  # an oversize first sample yields an empty shard first, like the reference
    df.write.format(fmt).mode("overwrite").option("size_limit", 100).save(p)
    res["tiny"] = read_index(p)["shards"]
    assert spark.read.format(fmt).load(p).count() == 4
    res["bad_hash"] = _error(lambda: spark.read.format(fmt).option("validate_hash", "sha256").load(p).collect())
    return res


def encoding_overrides(spark, out: str, fmt: str = "mds"):
    df = spark.createDataFrame(
        [(1, 200, 1.5, "{\"a\": [1, 2]}", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [[1, 2], [3, 4]], [1, None], True),
         (2, -3, float("inf"), "null", [0.0] * 6, [[0, 0], [0, 0]], [], False)],
        "id long, small int, h float, MyJs string, flat array<double>, sq array<array<int>>, "
        "nn array<int>, flag boolean")  # fmt: skip
    (df.coalesce(1).write.format(fmt).mode("overwrite")
     .option("encoding.small", "int16").option("encoding.h", "float16").option("encoding.MyJs", "json")
     .option("encoding.flat", "ndarray:float32:2,3").option("encoding.sq", "ndarray:uint8:2,2")
     .option("encoding.nn", "json").option("encoding.flag", "int8").option("encoding.id", "str_int")
     .save(out))  # fmt: skip
    assert_same(spark.read.format(fmt).load(out), df)
    bad = _error(lambda: df.write.format(fmt).mode("overwrite").option("encoding.small", "jpeg").save(out + "_bad"))
    unknown = _error(lambda: df.write.format(fmt).mode("overwrite").option("encoding.nope", "int8").save(out + "_bad"))
    return {"encodings": _encodings(out), "bad": bad, "unknown": unknown}


def empty_and_nulls_error(spark, out: str, fmt: str = "mds"):
    empty = spark.createDataFrame([], "id long, s string")
    empty.write.format(fmt).mode("overwrite").save(out)
    back = spark.read.format(fmt).load(out)
    assert back.count() == 0 and back.schema == empty.schema
    df = spark.createDataFrame([(1, "a")], "id long, s string")
    df.write.format(fmt).mode("overwrite").option("nulls", "error").save(out + "_e")
    assert_same(spark.read.format(fmt).load(out + "_e"), df)
    with_null = spark.createDataFrame([(1, None)], "id long, s string")
    err = _error(lambda: with_null.write.format(fmt).mode("overwrite").option("nulls", "error").save(out + "_n"))
    # appending nulls to a dataset without a mask fails (the dataset's layout wins over the option)
    err_append = _error(lambda: with_null.write.format(fmt).mode("append").save(out + "_e"))
    assert_same(spark.read.format(fmt).load(out + "_e"), df)
    return {"empty_index": read_index(out), "error_index": read_index(out + "_e"), "null_error": err,
            "append_error": err_append, "files_e": sorted(files(out + "_e")), "referenced_e": sorted(referenced(out + "_e"))}


def sql_forms(spark, out: str, fmt: str = "mds"):
    """The SQL statements that work with a Python data source, and the ones that cannot."""
    df = spark.createDataFrame([(i, f"t{i}", [i, i]) for i in range(6)], "id long, text string, tokens array<int>")
    df.createOrReplaceTempView("src")
    df.where("id < 3").write.format(fmt).mode("overwrite").save(out)
    res = {}

    def run(key, sql):
        try:
            spark.sql(sql).collect()
            res[key] = "ok"
        except Exception as exc:  # noqa: BLE001
            res[key] = str(exc).splitlines()[0][:300]

    view = f"CREATE OR REPLACE TEMPORARY VIEW v USING {fmt} OPTIONS (path '{out}')"
    run("view", view)
    assert_same(spark.sql("SELECT * FROM v"), df.where("id < 3"))
    run("insert_view", "INSERT INTO v SELECT * FROM src WHERE id >= 3")
    # Spark plans a Python source's relation once: the view still shows its first snapshot ...
    res["stale_view_count"] = spark.sql("SELECT count(*) FROM v").first()[0]
    run("view_again", view)  # ... until it is created again
    assert_same(spark.sql("SELECT * FROM v"), df)
    run("insert_overwrite_view", "INSERT OVERWRITE v SELECT * FROM src WHERE id < 2")
    res["stale_view_after_overwrite"] = _error(lambda: spark.sql("SELECT * FROM v").collect())
    run("view_again", view)
    assert_same(spark.sql("SELECT * FROM v"), df.where("id < 2"))
    df.write.format(fmt).mode("overwrite").save(out)
    # A table declared USING mds gets no location from Spark, but WITH ('path' = ...) works
    run("create_table", f"CREATE TABLE t (id BIGINT, text STRING, tokens ARRAY<INT>) USING {fmt}")
    assert_same(spark.sql(f"SELECT * FROM t WITH ('path' = '{out}')"), df)
    run("insert_with", f"INSERT INTO t WITH ('path' = '{out}') SELECT * FROM src WHERE id = 0")
    assert_same(spark.sql(f"SELECT * FROM t WITH ('path' = '{out}') WHERE id > 0"), df.where("id > 0"))
    res["after_insert_with"] = spark.sql(f"SELECT count(*) FROM t WITH ('path' = '{out}')").first()[0]
    run("select_table", "SELECT * FROM t")
    run("insert_table", "INSERT INTO t SELECT * FROM src")
    run("direct_query", f"SELECT * FROM {fmt}.`{out}`")
    run("create_table_location", f"CREATE TABLE t2 USING {fmt} LOCATION '{out}'")
    run("select_table_location", "SELECT * FROM t2")
    run("ctas", f"CREATE TABLE t3 USING {fmt} LOCATION '{out}_ctas' AS SELECT * FROM src")
    for t in ("t", "t2", "t3"):
        spark.sql(f"DROP TABLE IF EXISTS {t}")
    spark.sql("DROP VIEW IF EXISTS v")
    return res


def failures(spark, out: str, fmt: str = "mds"):
    """A failed first task attempt leaves no orphans and a correct index; a job failing every
    attempt leaves the previous dataset untouched (needs a local[n,2] session: one retry)."""
    from pyspark import TaskContext

    def base(lo, n):
        return spark.range(lo, lo + n, numPartitions=2).selectExpr("id", "repeat('x', 50) as text", "array(1, 2, 3) as tokens")

    base(0, 600).write.format(fmt).mode("overwrite").option("size_limit", "1kb").save(out)
    res = {"initial_shards": len(read_index(out)["shards"])}

    probe = out + ".probe"

    @F.udf("long")
    def fail_first_attempt(x):
        ctx = TaskContext.get()
        if ctx.partitionId() == 1 and ctx.attemptNumber() == 0 and x >= 1000 + 450:
            # the attempt's writer has already written shards: small Arrow batches flow through
            with open(probe, "w") as f:
                f.write(json.dumps(sorted(n for n in os.listdir(out) if n.split(".")[2:3] == ["00001"])))
            raise RuntimeError("injected failure of attempt 0")
        return x

    df = spark.range(1000, 1600, numPartitions=2).select(fail_first_attempt("id").alias("id")) \
        .selectExpr("id", "repeat('y', 50) as text", "array(4, 5) as tokens")
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "20")
    try:
        df.write.format(fmt).mode("append").option("size_limit", "1kb").save(out)
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    with open(probe) as f:
        res["failed_attempt_files"] = json.load(f)
    os.unlink(probe)
    idx = read_index(out)
    new = idx["shards"][res["initial_shards"]:]
    res["after_retry"] = {
        "extra": sorted(files(out) - referenced(out)),
        "ids": sorted(r.id for r in spark.read.format(fmt).load(out).select("id").collect()) == list(range(600)) + list(range(1000, 1600)),
        "partitions": sorted({s["raw_data"]["basename"].split(".")[2] for s in new}),
        "attempts": {p: sorted({s["raw_data"]["basename"].split(".")[3] for s in new if s["raw_data"]["basename"].split(".")[2] == p})
                     for p in ("00000", "00001")},
        "jobs": sorted({s["raw_data"]["basename"].split(".")[1] for s in new}),
    }
    before = _snapshot(out)

    @F.udf("long")
    def always_fail(x):
        if TaskContext.get().partitionId() == 1 and x >= 2000 + 450:
            raise RuntimeError("injected failure of every attempt")
        return x

    bad = spark.range(2000, 2600, numPartitions=2).select(always_fail("id").alias("id")) \
        .selectExpr("id", "repeat('z', 50) as text", "array(6) as tokens")
    for mode in ["append", "overwrite"]:
        err = _error(lambda: bad.write.format(fmt).mode(mode).option("size_limit", "1kb").save(out))
        res[mode] = "failed" if "injected failure of every attempt" in err else err[:800]
        after = _snapshot(out)
        res[mode + "_unchanged"] = after == before
        res[mode + "_diff"] = sorted(set(after) ^ set(before)) + sorted(k for k in set(after) & set(before) if after[k] != before[k])
    return res


def reads(spark, out: str, fmt: str = "mds"):
    """User schemas (subsets, other case, stored bytes, conversions), partitioning, missing data."""
    import struct

    df = spark.createDataFrame([(i, i * 2, f"s{i}", [i, -i], (i, f"x{i}")) for i in range(40)],
                               "id long, i int, s string, arr array<int>, st struct<a:int,b:string>")  # fmt: skip
    df.coalesce(1).write.format(fmt).mode("overwrite").option("size_limit", "512b").option("compression", "none").save(out)
    res = {"shards": len(read_index(out)["shards"])}
    raw = spark.read.schema("ID BIGINT, i BINARY, s BINARY, arr BINARY, st BINARY").format(fmt).load(out).orderBy("ID").collect()
    assert raw[3]["i"] == struct.pack("<i", 6) and raw[3]["s"] == b"s3"
    res["arr_bytes"] = raw[3]["arr"].hex()
    assert json.loads(raw[3]["st"]) == {"a": 3, "b": "x3"}
    widened = spark.read.schema("i BIGINT, id DOUBLE, arr ARRAY<BIGINT>").format(fmt).load(out)
    assert sorted(r.i for r in widened.collect()) == [2 * k for k in range(40)]
    res["bad_type"] = _error(lambda: spark.read.schema("s INT").format(fmt).load(out).collect())
    res["missing_column"] = _error(lambda: spark.read.schema("id BIGINT, nope INT").format(fmt).load(out).collect())
    res["partitions_default"] = spark.read.format(fmt).load(out).rdd.getNumPartitions()
    res["partitions_small"] = spark.read.format(fmt).option("max_partition_bytes", "1kb").load(out).rdd.getNumPartitions()
    assert spark.read.format(fmt).option("max_partition_bytes", "1kb").load(out).count() == 40
    res["no_dataset"] = _error(lambda: spark.read.format(fmt).load(out + "_nothing").collect())
    res["no_dataset_with_schema"] = spark.read.schema("id BIGINT").format(fmt).load(out + "_nothing").count()
    return res


def write_errors(spark, out: str, fmt: str = "mds"):
    df = spark.range(3).selectExpr("id", "make_ym_interval(1, 2) as ym")
    res = {"ym": _error(lambda: df.write.format(fmt).mode("append").save(out))}
    ok = spark.range(3)
    res["partition_by"] = _error(lambda: ok.write.format(fmt).mode("append").partitionBy("id").save(out))
    res["no_path"] = _error(lambda: ok.write.format(fmt).mode("append").save())
    res["remote"] = _error(lambda: ok.write.format(fmt).mode("append").save("dbfs:/bucket/ds"))  # s3:// etc.: tests/remote
    res["compression"] = _error(lambda: ok.write.format(fmt).mode("append").option("compression", "zip").save(out))
    res["void"] = _error(lambda: spark.sql("select null as n").write.format(fmt).mode("append").save(out))
    res["files"] = sorted(files(out)) if os.path.exists(out) else []
    return res


INTEROP_ROWS = [
    (0, -128, -32768, -2147483648, 1.5, float("nan"), True, "", b"", Decimal("-12.50"),
     dt.date(1, 1, 1), dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.timezone.utc),
     [1, 2, 3], [[1.0, 2.0], [3.0, 4.0]], (1, "a"), [1.0] * 4),
    (1, 127, 32767, 2147483647, float("inf"), -0.5, False, "héllo ✓ 𝄞", b"\x00\xff",
     Decimal("99999999.99"), dt.date(2000, 2, 29), dt.datetime(1900, 1, 1, tzinfo=dt.timezone.utc),
     [], [[5.0, 6.0, 7.0]], (None, "b"), [0.0, 1.0, 2.0, 3.0]),
    (2, None, None, None, None, None, None, None, None, None, None, None, None, None, None, [2.0] * 4),
]  # fmt: skip
INTEROP_SCHEMA = ("id long, b byte, s short, i int, f float, d double, flag boolean, text string, bin binary, "
                  "dec decimal(10,2), day date, ts timestamp, tokens array<int>, mat array<array<float>>, "
                  "st struct<x:int,y:string>, emb array<float>")  # fmt: skip


def write_for_reference(spark, out: str, fmt: str = "mds"):
    """Datasets for mosaicml-streaming to read: several compressions, hashes, shards per task."""
    df = spark.createDataFrame([(i,) + r[1:] for i, r in enumerate(INTEROP_ROWS * 20)], INTEROP_SCHEMA).repartition(2)
    paths = []
    for comp in ["zstd", "gz", "bz2", "snappy", "br", "none", "zstd:9"]:
        p = f"{out}_{comp.replace(':', '-')}"
        (df.write.format(fmt).mode("overwrite").option("compression", comp).option("hashes", "sha1,xxh64")
         .option("size_limit", "1kb").option("encoding.emb", "ndarray:float32:4").save(p))  # fmt: skip
        paths.append(p)
    return paths


def write_reference_tabular(spark, out: str, rows: list, fmt: str = "mds"):
    """The data of the reference's tabular fixtures, with their settings (one task)."""
    df = spark.createDataFrame([tuple(r) for r in rows], "id long, text string, tokens array<int>, label int, emb array<float>")
    df = df.coalesce(1)
    written = {}
    for name, opts in [("tabular_none", {"compression": "none"}), ("tabular_zstd", {"compression": "zstd"}),
                       ("tabular_zstd-7", {"compression": "zstd:7"}), ("tabular_gz", {"compression": "gz"}),
                       ("tabular_bz2", {"compression": "bz2"}), ("tabular_snappy", {"compression": "snappy"}),
                       ("tabular_br", {"compression": "br"}),
                       ("tabular_none_sha1-xxh64", {"compression": "none", "hashes": "sha1,xxh64"})]:  # fmt: skip
        p = f"{out}/{name}"
        w = df.write.format(fmt).mode("overwrite").option("nulls", "error").option("size_limit", 16384) \
            .option("encoding.emb", "ndarray:float32:16")
        for k, v in opts.items():
            w = w.option(k, v)
        w.save(p)
        written[name] = p
    return written


# ---------------------------------------------------------------------------- JVM source vs fallback
# These run in a session that has the jar ("mds" is the JVM source) and the fallback as "mds_py".


def register_again(spark):
    from spark_mds.python_source import register_python_source

    return {"mds": register_python_source(spark), "mds_py": register_python_source(spark, "mds_py")}


def overrides_frame(spark):
    return spark.createDataFrame(
        [(1, 200, 1.5, "{\"a\": [1, 2]}", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [[1, 2], [3, 4]], [1, None], True, b"\xff\xd8\xff\xe0"),
         (2, -3, float("inf"), "null", [0.0] * 6, [[0, 0], [0, 0]], [], False, b"\xff\xd8\xff")],
        "id long, small int, h float, js string, flat array<double>, sq array<array<int>>, "
        "nn array<int>, flag boolean, img binary")  # fmt: skip


OVERRIDES = {"encoding.small": "int16", "encoding.h": "float16", "encoding.js": "json", "encoding.flat": "ndarray:float32:2,3",
             "encoding.sq": "ndarray:uint8:2,2", "encoding.nn": "json", "encoding.flag": "int8", "encoding.id": "str_int",
             "encoding.img": "jpeg"}  # fmt: skip

OPTION_SETS = {
    "defaults": ("every", {}),
    "cut": ("every", {"compression": "none", "hashes": "xxh64,md5,sha1", "size_limit": "2kb"}),
    "gz": ("every", {"compression": "gz:5", "size_limit": "1kb"}),
    "overrides": ("overrides", {**OVERRIDES, "compression": "zstd:7"}),
    "nulls_error": ("overrides", {"nulls": "error", "compression": "snappy", "encoding.nn": "json"}),
}


def jvm_and_fallback_write(spark, out: str):
    """The same DataFrame and options through both sources; each dataset read by both equals the
    DataFrame. Returns the dataset paths, for the byte comparison."""
    frames = {"every": every_type(spark).repartition(2).cache(), "overrides": overrides_frame(spark).repartition(2).cache()}
    for f in frames.values():
        f.count()
    written = {}
    for name, (frame, opts) in OPTION_SETS.items():
        df = frames[frame]
        pair = {}
        for fmt in ("mds", "mds_py"):
            p = f"{out}/{name}_{fmt}"
            df.write.format(fmt).mode("overwrite").options(**opts).save(p)
            pair[fmt] = p
        for p in pair.values():
            for fmt in ("mds", "mds_py"):
                assert_same(spark.read.format(fmt).load(p), df)
        # pruned and stored-byte reads agree too
        binary = ", ".join(f"`{c}` BINARY" for c in df.columns if c != "id")
        a = spark.read.schema(f"id BIGINT, {binary}").format("mds").load(pair["mds"])
        b = spark.read.schema(f"id BIGINT, {binary}").format("mds_py").load(pair["mds"])
        assert_same(b, a)
        written[name] = pair
    return written


def year_month_intervals(spark, out: str):
    df = spark.range(4).selectExpr("id", "make_ym_interval(cast(id as int), 5) as ym")
    df.write.format("mds").mode("overwrite").save(out)
    res = {"read": _error(lambda: spark.read.format("mds_py").load(out).collect())}
    months = spark.read.schema("id BIGINT, ym INT").format("mds_py").load(out).orderBy("id").collect()
    res["months"] = [r.ym for r in months]
    return res


def golden_reads(spark, datasets: str):
    """Every reference-written dataset read by both sources: same schema, same rows."""
    from pyspark.sql.types import BinaryType, StructField, StructType

    res = {}
    for name in sorted(os.listdir(datasets)):
        p = os.path.join(datasets, name)
        if name == "tabular_br":  # the JVM cannot read Brotli; the fallback reads what the JVM reads of tabular_none
            assert_same(spark.read.format("mds_py").load(p), spark.read.format("mds").load(os.path.join(datasets, "tabular_none")))
            res[name] = "fallback only"
            continue
        jvm, py = spark.read.format("mds").load(p), spark.read.format("mds_py").load(p)
        assert jvm.schema == py.schema, (name, jvm.schema, py.schema)
        if name == "ndarrays":  # the dynamic column changes rank: both fail, and both read it as stored bytes
            res[name] = [next((ln for ln in _error(f).splitlines() if "'dyn'" in ln), "?")[:400] for f in (jvm.collect, py.collect)]
            schema = StructType([StructField(f.name, BinaryType() if f.name == "dyn" else f.dataType, f.nullable) for f in jvm.schema])
            jvm = spark.read.schema(schema).format("mds").load(p)
            py = spark.read.schema(schema).format("mds_py").load(p)
        a, b = [canon(r) for r in jvm.collect()], [canon(r) for r in py.collect()]
        assert a == b, name
        res.setdefault(name, len(a))
    return res


def mixed_appends(spark, out: str):
    """JVM and fallback appending to the same dataset: one layout, every row, no orphans."""
    df = every_type(spark).cache()
    df.write.format("mds").mode("overwrite").option("size_limit", "2kb").save(out)
    df.write.format("mds_py").mode("append").option("compression", "gz").save(out)
    df.write.format("mds").mode("append").save(out)
    df.write.format("mds_py").mode("append").save(out)
    for fmt in ("mds", "mds_py"):
        back = spark.read.format(fmt).load(out)
        assert_same(back.where("id = 1"), df.where("id = 1").unionAll(df.where("id = 1")).unionAll(df.where("id = 1"))
                    .unionAll(df.where("id = 1")))
        assert back.count() == 16
    idx = read_index(out)
    return {"encodings": [dict(zip(s["column_names"], s["column_encodings"])) for s in idx["shards"]],
            "files": sorted(files(out)), "referenced": sorted(referenced(out))}


def save_modes_both(spark, out: str):
    """spark_mds.save_modes.write behaves the same with either implementation."""
    from spark_mds.save_modes import write

    df = spark.range(5).selectExpr("id", "cast(id as string) as s")
    res = {}
    for fmt in ("mds", "mds_py"):
        p = f"{out}_{fmt}"
        write(df, p, format=fmt)
        r = {"exists": _error(lambda: write(df, p, format=fmt))}
        write(df, p, mode="ignore", format=fmt)
        r["after_ignore"] = spark.read.format(fmt).load(p).count()
        write(df, p, mode="append", format=fmt)
        r["after_append"] = spark.read.format(fmt).load(p).count()
        write(df.limit(2), p, mode="overwrite", format=fmt)
        r["after_overwrite"] = spark.read.format(fmt).load(p).count()
        res[fmt] = r
    return res


def session_time_zone(spark, out: str, fmt: str = "mds"):
    """Timestamps are stored as UTC microseconds whatever the session time zone (Spark hands the
    writer Arrow timestamps in the session zone)."""
    spark.conf.set("spark.sql.session.timeZone", "America/Los_Angeles")
    try:
        df = spark.sql("SELECT 1L AS id, timestamp'2024-03-10 01:30:00' AS ts, timestamp_ntz'2024-03-10 01:30:00' AS ntz")
        df.write.format(fmt).mode("overwrite").save(out)
        assert_same(spark.read.format(fmt).load(out), df)
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")
    from mds_loader.format import MDSDataset

    with MDSDataset(out) as ds:
        sample = ds[0]
    return {"ts": int(sample["ts"]), "ntz": int(sample["ntz"])}

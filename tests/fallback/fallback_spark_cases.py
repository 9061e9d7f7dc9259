"""The Spark side of the fallback tests: functions ``case(spark, **kwargs) -> JSON`` that run in a
child process with its own session (see fallback_support.SparkProcess). They assert what only the
session can check (DataFrame equality) and return what the test checks on disk.
"""

from __future__ import annotations

import json
import os

from pyspark.sql import functions as F

import spark_tables
from support import files, read_index, referenced
from mds_testutil import assert_same_rows, canon
from spark_tables import INTEROP_ROWS, INTEROP_SCHEMA


def every_type(spark):
    """Every Spark type that the fallback can carry (year-month intervals cannot cross PySpark's
    Arrow transfer)."""
    return spark_tables.every_type(spark, year_month_intervals=False)


def _encodings(path: str) -> dict:
    shard = read_index(path)["shards"][0]
    return dict(zip(shard["column_names"], shard["column_encodings"]))


# ---------------------------------------------------------------------------- cases


def _error(fn) -> str:
    """The message of the exception that ``fn()`` raises (fails if it raises none)."""
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - the message is what the tests check
        return f"{type(exc).__name__}: {exc}"
    raise AssertionError("no error raised")


def _snapshot(path: str) -> dict:
    return {f: open(os.path.join(path, f), "rb").read() for f in files(path)}


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
    assert_same_rows(spark.sql("SELECT * FROM v"), df.where("id < 3"))
    run("insert_view", "INSERT INTO v SELECT * FROM src WHERE id >= 3")
    # Spark plans a Python source's relation once: the view still shows its first snapshot ...
    res["stale_view_count"] = spark.sql("SELECT count(*) FROM v").first()[0]
    run("view_again", view)  # ... until it is created again
    assert_same_rows(spark.sql("SELECT * FROM v"), df)
    run("insert_overwrite_view", "INSERT OVERWRITE v SELECT * FROM src WHERE id < 2")
    try:  # 4.1+: the view's plan lists the replaced shards; 4.0 plans the view again (the new rows)
        res["stale_view_after_overwrite"] = sorted(r.id for r in spark.sql("SELECT * FROM v").collect())
    except Exception as exc:  # noqa: BLE001 - the message is what the test checks
        res["stale_view_after_overwrite"] = f"{type(exc).__name__}: {exc}"
    run("view_again", view)
    assert_same_rows(spark.sql("SELECT * FROM v"), df.where("id < 2"))
    df.write.format(fmt).mode("overwrite").save(out)
    # A table declared USING mds gets no location from Spark, but WITH ('path' = ...) works
    run("create_table", f"CREATE TABLE t (id BIGINT, text STRING, tokens ARRAY<INT>) USING {fmt}")
    assert_same_rows(spark.sql(f"SELECT * FROM t WITH ('path' = '{out}')"), df)
    run("insert_with", f"INSERT INTO t WITH ('path' = '{out}') SELECT * FROM src WHERE id = 0")
    assert_same_rows(spark.sql(f"SELECT * FROM t WITH ('path' = '{out}') WHERE id > 0"), df.where("id > 0"))
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


def failures(spark, out: str, fmt: str = "mds", engine: str = "format"):
    """A failed first task attempt leaves no orphans and a correct index; a job failing every
    attempt leaves the previous dataset untouched (needs a local[n,2] session: one retry). Written
    by ``spark_mds.write`` with ``engine`` (``format``: ``df.write.format(fmt)``; ``mapInArrow``).
    (tests/reliability forces a failure after a written shard with hooks; here the failure comes
    from the data, wherever the writer has got to.)"""
    import spark_mds
    from pyspark import TaskContext

    def write(df, mode: str) -> None:
        spark_mds.write(df, out, mode=mode, format=fmt, engine=engine, size_limit="1kb")

    write(spark.range(0, 600, numPartitions=2).selectExpr("id", "repeat('x', 50) as text", "array(1, 2, 3) as tokens"),
          "overwrite")  # fmt: skip
    initial = len(read_index(out)["shards"])

    @F.udf("long")
    def fail_first_attempt(x):
        ctx = TaskContext.get()
        if ctx.partitionId() == 1 and ctx.attemptNumber() == 0 and x >= 1000 + 450:
            raise RuntimeError("injected failure of attempt 0")
        return x

    df = spark.range(1000, 1600, numPartitions=2).select(fail_first_attempt("id").alias("id")) \
        .selectExpr("id", "repeat('y', 50) as text", "array(4, 5) as tokens")
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "20")  # the writer writes shards early
    try:
        write(df, "append")
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    new = read_index(out)["shards"][initial:]
    ids = sorted(r.id for r in spark_mds.read(spark, out, format=fmt, engine=engine).select("id").collect())
    res = {"after_retry": {
        "extra": sorted(files(out) - referenced(out)),
        "ids": ids == list(range(600)) + list(range(1000, 1600)),
        "partitions": sorted({s["raw_data"]["basename"].split(".")[2] for s in new}),
        "attempts": {p: sorted({s["raw_data"]["basename"].split(".")[3] for s in new if s["raw_data"]["basename"].split(".")[2] == p})
                     for p in ("00000", "00001")},
        "jobs": sorted({s["raw_data"]["basename"].split(".")[1] for s in new}),
    }}  # fmt: skip
    before = _snapshot(out)

    @F.udf("long")
    def always_fail(x):
        if TaskContext.get().partitionId() == 1 and x >= 2000 + 450:
            raise RuntimeError("injected failure of every attempt")
        return x

    bad = spark.range(2000, 2600, numPartitions=2).select(always_fail("id").alias("id")) \
        .selectExpr("id", "repeat('z', 50) as text", "array(6) as tokens")
    for mode in ["append", "overwrite"]:
        err = _error(lambda: write(bad, mode))
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
                assert_same_rows(spark.read.format(fmt).load(p), df)
        # pruned and stored-byte reads agree too
        binary = ", ".join(f"`{c}` BINARY" for c in df.columns if c != "id")
        a = spark.read.schema(f"id BIGINT, {binary}").format("mds").load(pair["mds"])
        b = spark.read.schema(f"id BIGINT, {binary}").format("mds_py").load(pair["mds"])
        assert_same_rows(b, a)
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
            assert_same_rows(spark.read.format("mds_py").load(p), spark.read.format("mds").load(os.path.join(datasets, "tabular_none")))
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
        assert_same_rows(back.where("id = 1"), df.where("id = 1").unionAll(df.where("id = 1")).unionAll(df.where("id = 1"))
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
        assert_same_rows(spark.read.format(fmt).load(out), df)
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")
    from mds_loader.format import MDSDataset

    with MDSDataset(out) as ds:
        sample = ds[0]
    return {"ts": int(sample["ts"]), "ntz": int(sample["ntz"])}

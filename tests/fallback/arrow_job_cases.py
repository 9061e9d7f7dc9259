"""The Spark side of test_arrow_jobs: ``spark_mds.write`` / ``spark_mds.read`` through ``mapInArrow``
jobs (the path of PySpark 3.5 without the jar), in a child process with its own session (see
fallback_support.SparkProcess). Runs unchanged on PySpark 3.5 and 4.x: nothing here needs the Python
Data Source API, except the comparisons with it, which run only where it exists.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from decimal import Decimal

from pyspark.sql import functions as F

import spark_mds
import fallback_spark_cases
from fallback_spark_cases import _error, _snapshot, canon, every_type
from mds_testutil import assert_same_rows
from support import files, read_index, referenced
from spark_mds.fallback.compat import HAS_PYTHON_DATA_SOURCE

ARROW = {"engine": "mapInArrow"}


def _plan(df) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        df.explain()
    return out.getvalue()


def _encodings(path: str) -> dict:
    shard = read_index(path)["shards"][0]
    return dict(zip(shard["column_names"], shard["column_encodings"]))


def engines(spark, out: str):
    """``engine="auto"`` takes mapInArrow when nothing serves format("mds"), the source once one does."""
    df = spark.range(5).selectExpr("id", "cast(id as string) as s")
    spark_mds.write(df, out, mode="overwrite")  # auto: no "mds" source in this session yet
    auto = spark_mds.read(spark, out)
    assert_same_rows(auto, df)
    res = {"auto_plan_arrow": "MapInArrow" in _plan(auto),
           "format_error": _error(lambda: spark_mds.read(spark, out, engine="format").collect()),
           "format_write_error": _error(lambda: spark_mds.write(df, out, mode="append", engine="format")),
           "bad_engine": _error(lambda: spark_mds.read(spark, out, engine="jdbc"))}  # fmt: skip
    if HAS_PYTHON_DATA_SOURCE:
        from spark_mds.python_source import register_python_source

        assert register_python_source(spark)
        spark_mds.write(df, out, mode="append")  # through the Python data source now
        registered = spark_mds.read(spark, out)
        assert registered.count() == 10
        res["registered_plan_arrow"] = "MapInArrow" in _plan(registered)
    return res


def roundtrip(spark, out: str):
    """Every type through mapInArrow both ways, also with large Arrow strings and another session
    time zone; where the Python data source exists, it writes the same files and reads them alike."""
    df = every_type(spark).repartition(2).cache()
    df.count()
    spark_mds.write(df, out, mode="overwrite", **ARROW)
    back = spark_mds.read(spark, out, **ARROW)
    assert_same_rows(back, df)
    sub = spark_mds.read(spark, out, "st " + df.schema["st"].dataType.simpleString() + ", id BIGINT NOT NULL, ts TIMESTAMP",
                         **ARROW)  # fmt: skip
    assert_same_rows(sub, df.select("st", "id", "ts"))
    res = {"encodings": _encodings(out), "index": read_index(out), "files": sorted(files(out)),
           "referenced": sorted(referenced(out)), "partitions": back.rdd.getNumPartitions()}  # fmt: skip
    many = spark_mds.read(spark, out, max_partition_bytes="1b", **ARROW)  # one partition per shard
    assert_same_rows(many, df)
    spark.conf.set("spark.sql.execution.arrow.useLargeVarTypes", "true")
    try:
        spark_mds.write(df, out + "_large", mode="overwrite", **ARROW)
        assert_same_rows(spark_mds.read(spark, out + "_large", **ARROW), df)
    finally:
        spark.conf.unset("spark.sql.execution.arrow.useLargeVarTypes")
    res["large"] = read_index(out + "_large")
    spark.conf.set("spark.sql.session.timeZone", "America/Los_Angeles")
    try:
        tz = spark.sql("SELECT 1L AS id, timestamp'2024-03-10 01:30:00' AS ts, timestamp_ntz'2024-03-10 01:30:00' AS ntz")
        spark_mds.write(tz, out + "_tz", mode="overwrite", **ARROW)
        assert_same_rows(spark_mds.read(spark, out + "_tz", **ARROW), tz)
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")
    from mds_loader.format import MDSDataset

    with MDSDataset(out + "_tz") as ds:
        res["tz"] = {k: int(ds[0][k]) for k in ("ts", "ntz")}
    if HAS_PYTHON_DATA_SOURCE:
        from spark_mds.python_source import register_python_source

        assert register_python_source(spark, "mds_py")
        df.write.format("mds_py").mode("overwrite").save(out + "_ds")
        assert_same_rows(spark.read.format("mds_py").load(out), df)
        assert_same_rows(spark_mds.read(spark, out + "_ds", **ARROW), df)
        res["python_data_source"] = out + "_ds"
    return res


def save_modes(spark, out: str):
    """Every SaveMode through mapInArrow, with the same semantics as format("mds")."""
    from spark_mds.save_modes import DatasetExistsError

    df = every_type(spark).cache()
    spark_mds.write(df, out, **ARROW)  # errorifexists on a new path writes
    assert_same_rows(spark_mds.read(spark, out, **ARROW), df)
    res = {}
    for mode in ("errorifexists", "error", "default"):
        try:
            spark_mds.write(df, out, mode=mode, **ARROW)
            raise AssertionError(f"{mode} on an existing dataset wrote")
        except DatasetExistsError as exc:
            res[mode] = str(exc)
    before = _snapshot(out)
    spark_mds.write(df, out, mode="ignore", **ARROW)
    res["ignore_unchanged"] = _snapshot(out) == before
    spark_mds.write(df, out, mode="append", compression="gz", **ARROW)  # the dataset's layout wins
    back = spark_mds.read(spark, out, **ARROW)
    assert back.count() == 8
    assert_same_rows(back.where("id < 2"), df.unionAll(df).where("id < 2"))
    res["append_files_referenced"] = files(out) == referenced(out)
    spark_mds.write(df.where("id >= 2"), out, mode="overwrite", **ARROW)
    assert_same_rows(spark_mds.read(spark, out, **ARROW), df.where("id >= 2"))
    res["overwrite_files_referenced"] = files(out) == referenced(out)
    # overwrite from a query that reads the same dataset: the old shards go only after the new index is out
    spark_mds.write(spark_mds.read(spark, out, **ARROW).where("id = 3"), out, mode="overwrite", **ARROW)
    assert_same_rows(spark_mds.read(spark, out, **ARROW), df.where("id = 3"))
    res["self_overwrite_files_referenced"] = files(out) == referenced(out)
    other = out + "_ignore"
    spark_mds.write(df, other, mode="ignore", compression="gz", hashes="sha1", **{"encoding.arr_s": "json"}, **ARROW)
    assert_same_rows(spark_mds.read(spark, other, validate_hash="sha1", **ARROW), df)
    res["ignore_new"] = read_index(other)["shards"]
    return res


def failures(spark, out: str):
    """fallback_spark_cases.failures through mapInArrow jobs."""
    return fallback_spark_cases.failures(spark, out, engine="mapInArrow")


def _plain(v):
    """Values as Spark and Arrow both give them: uint64 (Spark: DECIMAL(20,0)) as int, numpy scalars as Python's."""
    if isinstance(v, Decimal) and v == v.to_integral_value():
        return int(v)
    return v.item() if hasattr(v, "item") else v


def _canon_rows(rows, names=None):
    return [tuple(canon(_plain(v)) for v in ([r[n] for n in names] if names is not None else list(r))) for r in rows]


def reads(spark, paths: list[str]):
    """Datasets written by others (mds_loader, mosaicml-streaming) read through mapInArrow: the values
    that mds_loader reads."""
    from mds_loader.format import read_table

    res = {}
    for p in paths:
        name = os.path.basename(p)
        df = spark_mds.read(spark, p, **ARROW)
        if name == "ndarrays":  # a dynamic column that changes rank: fails naming it, as the fallback does
            res[name] = next((ln for ln in _error(df.collect).splitlines() if "'dyn'" in ln), "?")[:400]
            continue
        table = read_table(p)
        expected = _canon_rows(table.to_pylist(), table.column_names)
        got = _canon_rows(df.select(*[F.col(f"`{n}`") for n in table.column_names]).collect())
        assert sorted(got, key=repr) == sorted(expected, key=repr), name
        res[name] = len(got)
    return res


def errors(spark, out: str):
    """What mapInArrow cannot carry fails as in the fallback, before any task runs."""
    ym = spark.range(3).selectExpr("id", "make_ym_interval(1, 2) as ym")
    res = {"write_ym": _error(lambda: spark_mds.write(ym, out + "_ym", mode="append", **ARROW)),
           "write_void": _error(lambda: spark_mds.write(spark.sql("select null as n"), out + "_void", **ARROW)),
           "missing": _error(lambda: spark_mds.read(spark, out + "_nothing", **ARROW)),
           "missing_with_schema": spark_mds.read(spark, out + "_nothing", "id BIGINT", **ARROW).count()}  # fmt: skip
    res["no_files"] = [p for p in (out + "_ym", out + "_void") if os.path.exists(p) and files(p)]
    # a dataset with a year-month interval column (as the JVM source writes it: int32 months)
    months = spark.createDataFrame([(i, 12 * i + 5) for i in range(3)], "id long, ym int")
    spark_mds.write(months, out, mode="overwrite", **ARROW)
    index = read_index(out)
    index["spark_mds"]["schema"]["fields"][1]["type"] = "interval year to month"
    with open(os.path.join(out, "index.json"), "w") as f:
        f.write(json.dumps(index, sort_keys=True))
    res["read_ym"] = _error(lambda: spark_mds.read(spark, out, **ARROW))
    res["months"] = [r.ym for r in spark_mds.read(spark, out, "id BIGINT, ym INT", **ARROW).orderBy("id").collect()]
    res["bad_type"] = _error(lambda: spark_mds.read(spark, out, "ym STRING, id DATE", **ARROW))
    return res


def connect(spark, out: str):
    """A Spark Connect session without any "mds" source: the auto engine takes mapInArrow; save modes
    and DDL schemas work as in classic sessions."""
    df = every_type(spark).cache()
    spark_mds.write(df, out)  # errorifexists, auto
    assert_same_rows(spark_mds.read(spark, out), df)
    res = {"exists": _error(lambda: spark_mds.write(df, out))}
    before = _snapshot(out)
    spark_mds.write(df, out, mode="ignore")
    res["ignore_unchanged"] = _snapshot(out) == before
    spark_mds.write(df.where("id < 2"), out, mode="append", **ARROW)
    assert spark_mds.read(spark, out, **ARROW).count() == 6
    spark_mds.write(df.where("id = 3"), out, mode="overwrite", **ARROW)
    sub = spark_mds.read(spark, out, "id BIGINT NOT NULL, str STRING", **ARROW)
    assert_same_rows(sub, df.where("id = 3").select("id", "str"))
    res["plan_arrow"] = "MapInArrow" in _plan(spark_mds.read(spark, out))
    res["files"], res["referenced"] = sorted(files(out)), sorted(referenced(out))
    return res


def wrong_interpreter(spark, out: str, dataset: str):
    """Run with Spark's Python workers on an interpreter without spark-mds: every path fails naming
    that interpreter and the setting to change."""
    df = spark.range(10).selectExpr("id", "cast(id as string) as s")
    res = {"arrow_write": _error(lambda: spark_mds.write(df, out, mode="overwrite", **ARROW)),
           "arrow_read": _error(lambda: spark_mds.read(spark, dataset, **ARROW).collect())}  # fmt: skip
    res["files_left"] = sorted(files(out)) if os.path.exists(out) else []
    if HAS_PYTHON_DATA_SOURCE:
        from spark_mds.python_source import register_python_source

        register_python_source(spark)
        res["source_write"] = _error(lambda: df.write.format("mds").mode("append").save(out + "_ds"))
        res["source_read"] = _error(lambda: spark.read.format("mds").load(dataset).collect())
        res["source_read_schema"] = _error(lambda: spark.read.format("mds").schema("id BIGINT").load(dataset).collect())
    return res

"""The Spark side of the remote fallback tests: functions ``case(spark, **kwargs) -> JSON`` that run
in a child process whose session has no spark-mds jar (see tests/fallback/fallback_support.py), and
write and read ``s3://`` URLs with the Python fallback. ``options`` are the data source options
that carry the S3 server's storage options."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from decimal import Decimal

from pyspark.sql.types import (
    ArrayType, BooleanType, DateType, DecimalType, DoubleType, IntegerType, LongType, StringType, StructField,
    StructType,
)  # fmt: skip

from fallback_spark_cases import _error  # (tests/fallback is on the child's path)
from spark_mds.fallback.options import dataset_path
from spark_mds.fallback.writer import MdsArrowWriter, job_prefix, plan_write
from spark_mds.python_source import MdsDataSource

SCHEMA = StructType([
    StructField("id", LongType(), False),
    StructField("text", StringType()),
    StructField("score", DoubleType()),
    StructField("price", DecimalType(12, 3)),
    StructField("tags", ArrayType(StringType())),
    StructField("vals", ArrayType(IntegerType(), False)),
    StructField("flag", BooleanType()),
    StructField("day", DateType()),
])  # fmt: skip


def row(i: int) -> tuple:
    """Row ``i`` of the test data: every nullable column is null in some rows."""
    return (
        i,
        None if i % 7 == 3 else f"row {i} ü✓ " + "x" * (i % 13),
        None if i % 5 == 1 else i * 0.25 - 3.0,
        None if i % 6 == 2 else Decimal(i * 1234567 - 50_000_000).scaleb(-3),
        None if i % 9 == 4 else [f"t{j}" if j != 1 else None for j in range(i % 4)],
        None if i % 8 == 5 else [i, -i, (i * i) % 1000][: i % 4],
        None if i % 11 == 5 else i % 2 == 0,
        None if i % 10 == 7 else dt.date(2000, 1, 1) + dt.timedelta(days=i),
    )


def frame(spark, start: int, n: int):
    """Rows ``start .. start + n - 1`` in two partitions."""
    return spark.createDataFrame([row(i) for i in range(start, start + n)], SCHEMA).repartition(2)


def _check_equal(actual, expected) -> None:
    from pyspark.testing import assertDataFrameEqual

    assert actual.schema == expected.schema, f"\nactual:   {actual.schema}\nexpected: {expected.schema}"
    assertDataFrameEqual(actual, expected)


def roundtrip(spark, url: str, options: dict) -> dict:
    """Writes 300 rows to ``url`` (small shards), reads them back and compares."""
    df = frame(spark, 0, 300).cache()
    df.write.format("mds").mode("overwrite").options(**options).option("size_limit", "4kb").save(url)
    back = spark.read.format("mds").options(**options).load(url)
    _check_equal(back, df)
    # a user schema naming some columns decodes only those
    sub = spark.read.schema("price DECIMAL(12,3), id BIGINT NOT NULL").format("mds").options(**options).load(url)
    _check_equal(sub, df.select("price", "id"))
    return {"count": back.count()}


def append_overwrite(spark, url: str, options: dict) -> dict:
    """Overwrite (create), append, then overwrite again; each result is read back and compared."""
    def write(start: int, n: int, mode: str) -> None:
        frame(spark, start, n).write.format("mds").mode(mode).options(**options).option("size_limit", "2kb").save(url)

    def read():
        return spark.read.format("mds").options(**options).load(url)

    write(0, 100, "overwrite")
    write(100, 60, "append")
    _check_equal(read(), frame(spark, 0, 160))
    write(1000, 40, "overwrite")
    _check_equal(read(), frame(spark, 1000, 40))
    return {"ok": True}


def storage_errors(spark, url: str, options: dict) -> dict:
    """What a user sees for a path or options that cannot work."""
    df = frame(spark, 0, 3)
    return {
        "dbfs": _error(lambda: df.write.format("mds").mode("append").save("dbfs:/tmp/ds")),
        "scheme": _error(lambda: spark.read.format("mds").load("nosuchfs://bucket/ds").schema),
        "json": _error(lambda: spark.read.format("mds").option("storage_options", "{key: 1}").load(url).schema),
        "missing": _error(lambda: spark.read.format("mds").options(**options).load(url + "-missing").schema),
    }


class FailingWriter(MdsArrowWriter):
    """The fallback's writer, with partition 1 failing after it has uploaded shards: on its first
    attempt (``fail="first"``: Spark's retry succeeds) or on every attempt (``fail="every"``: the
    job fails). The failing attempt writes the names it uploaded to the local file ``probe``."""

    def __init__(self, plan, fail: str, probe: str) -> None:
        super().__init__(plan)
        self.fail, self.probe = fail, probe

    def write(self, iterator):
        from pyspark import TaskContext

        ctx = TaskContext.get()
        if ctx.partitionId() == 1 and (self.fail == "every" or ctx.attemptNumber() == 0):
            iterator = self._failing(iterator, f"{job_prefix(self.plan.job_id)}00001.{ctx.taskAttemptId()}.")
        return super().write(iterator)

    def _failing(self, iterator, prefix: str):
        for k, batch in enumerate(iterator):
            yield batch
            if k == 5:  # ~100 rows: several 1 kB shards are being uploaded; wait to see some (a latch: at most 600 s)
                store, deadline = self.plan.store(), time.monotonic() + 600
                while not store.list_names(prefix) and time.monotonic() < deadline:
                    time.sleep(0.05)
                with open(self.probe, "w") as f:
                    f.write(json.dumps(store.list_names(prefix)))
                raise RuntimeError(f"injected failure ({self.fail} attempt)")


class FailingSource(MdsDataSource):
    """``format("mds_failing")``: the fallback writing with :class:`FailingWriter` (options ``fail``, ``probe``)."""

    short_name = "mds_failing"

    def writer(self, schema, overwrite):
        plan = plan_write(dict(self.options), schema, overwrite, dataset_path(self.options))
        return FailingWriter(plan, self.options["fail"], self.options["probe"])


def _ids(spark, lo: int, n: int, letter: str):
    return spark.range(lo, lo + n, numPartitions=2).selectExpr("id", f"repeat('{letter}', 50) as text")


def _write_ids(df, url: str, options: dict, mode: str, fmt: str = "mds", **more: str) -> None:
    df.write.format(fmt).mode(mode).options(**options, **more).option("size_limit", "1kb").save(url)


def _with_failing_writer(spark, write) -> str:
    """Runs ``write`` with small Arrow batches and :class:`FailingSource` registered; returns
    ``"ok"`` or the error's message."""
    spark.dataSource.register(FailingSource)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "20")
    try:
        write()
        return "ok"
    except Exception as exc:  # noqa: BLE001 - the message is what the tests check
        return f"{type(exc).__name__}: {exc}"
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")


def failed_first_attempt(spark, url: str, options: dict, probe: str) -> dict:
    """Writes 400 rows, then appends 600 more with a job whose partition 1 fails its first attempt
    after uploading shards (needs a local[n,2] session: one retry). Returns the objects that the
    failing attempt had uploaded, and whether the dataset reads back complete."""
    _write_ids(_ids(spark, 0, 400, "x"), url, options, "overwrite")
    res = _with_failing_writer(spark, lambda: _write_ids(_ids(spark, 1000, 600, "y"), url, options, "append", "mds_failing",
                                                         fail="first", probe=probe))
    assert res == "ok", res
    with open(probe) as f:
        uploaded = json.load(f)
    os.unlink(probe)
    ids = sorted(r.id for r in spark.read.format("mds").options(**options).load(url).select("id").collect())
    return {"failed_attempt_objects": uploaded, "ids_ok": ids == list(range(400)) + list(range(1000, 1600))}


def failing_job(spark, url: str, options: dict, mode: str, probe: str) -> dict:
    """A write job whose partition 1 fails every attempt after uploading shards; returns
    ``"failed"`` or the unexpected error, and what the last failing attempt had uploaded."""
    err = _with_failing_writer(spark, lambda: _write_ids(_ids(spark, 2000, 600, "z"), url, options, mode, "mds_failing",
                                                         fail="every", probe=probe))
    with open(probe) as f:
        uploaded = json.load(f)
    os.unlink(probe)
    return {"result": "failed" if "injected failure (every attempt)" in err else err[:800], "uploaded": uploaded}

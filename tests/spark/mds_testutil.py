"""Helpers shared by the Spark tests: exact row comparison and small MDS file readers."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pyspark
import spark_mds

from pyspark.sql import Row

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

sys.path.insert(0, str(ROOT / "tests"))
from support import REF_VENV, REFERENCE_DATA, run_reference  # noqa: E402,F401  (tests/support.py)

#: The major version of the Spark the suite runs on (3 or 4: make test-spark35 runs it on 3.5).
SPARK_MAJOR = int(pyspark.__version__.split(".")[0])
#: Spark 3.5 refuses interval columns in V1 writes (the JVM source's df.write path) before the source
#: sees them ("Cannot save interval data type into external storage"); 4.x asks the source.
JVM_WRITES_INTERVALS = SPARK_MAJOR >= 4

SPARK_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.memory": "1g",
    "spark.sql.ansi.enabled": "true",
}


def _builder(master: str, warehouse: str):
    from pyspark.sql import SparkSession

    b = SparkSession.builder.master(master).appName("spark-mds-tests")
    for k, v in SPARK_CONF.items():
        b = b.config(k, v)
    b = b.config("spark.sql.warehouse.dir", warehouse)
    return spark_mds.configure(b)


def run_spark_script(script: str, *args: str, master: str = "local[2,2]", timeout: float = 300) -> str:
    """Runs `script` in a separate Python process with its own SparkSession `spark` (e.g. local[2,2]
    to allow task retries). Returns its stdout."""
    prelude = (
        "import sys, json\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        f"sys.path.insert(0, {str(HERE)!r})\n"
        "from mds_testutil import _builder\n"
        f"spark = _builder({master!r}, tempfile_dir).getOrCreate()\n"
        "spark.sparkContext.setLogLevel('ERROR')\n"
    )
    wh = tempfile.mkdtemp(prefix="mds-wh-")
    try:
        proc = subprocess.run(
            [sys.executable, "-c", f"tempfile_dir = {wh!r}\n" + prelude + script, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=str(ROOT),
        )
    finally:
        shutil.rmtree(wh, ignore_errors=True)
    if proc.returncode != 0:
        raise AssertionError(f"spark script failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
    return proc.stdout


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


def assert_same_rows(actual_df, expected_df, key: str = "id", nullability: bool = True):
    """Schema equal (names, types, nullability) and rows equal exactly, in `key` order.

    Stricter than pyspark.testing.assertDataFrameEqual (which compares floats approximately and, with
    the pandas 3 installed here, fails importing pyspark.pandas): floats compare bit for bit."""
    from pyspark.testing import assertSchemaEqual

    assertSchemaEqual(actual_df.schema, expected_df.schema)
    if nullability:
        assert actual_df.schema == expected_df.schema, (actual_df.schema, expected_df.schema)
    actual_df, expected_df = _collectable(actual_df), _collectable(expected_df)
    a = [canon(r) for r in actual_df.orderBy(key).collect()]
    e = [canon(r) for r in expected_df.orderBy(key).collect()]
    assert len(a) == len(e)
    for x, y in zip(a, e):
        assert x == y, f"\nactual:   {x}\nexpected: {y}"


def _collectable(df):
    """PySpark cannot collect year-month intervals: compare them as their SQL text."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import YearMonthIntervalType

    return df.select([F.col(f"`{f.name}`").cast("string").alias(f.name)
                      if isinstance(f.dataType, YearMonthIntervalType) else F.col(f"`{f.name}`")
                      for f in df.schema.fields])




def decode_ndarray_dynamic(b: bytes):
    """(dtype code, shape, values bytes) of a fully dynamic `ndarray` value."""
    code = b[0]
    h = b[1]
    ndim, sc = h >> 2, h & 3
    size = 1 << sc
    fmt = {1: "B", 2: "H", 4: "I", 8: "Q"}[size]
    shape = list(struct.unpack_from("<" + fmt * ndim, b, 2))
    return code, shape, b[2 + size * ndim:]


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


#: The Python Data Source API exists (4.x): the Python path is a data source, else mapInArrow jobs.
PYTHON_SOURCE = SPARK_MAJOR >= 4


@dataclass(frozen=True)
class Implementation:
    """Which Spark implementation serves a test: ``jar`` (the Scala data source) or ``python`` (the
    Python data source, registered as ``mds_py`` beside the jar, or mapInArrow jobs on 3.5)."""

    name: str

    @property
    def jar(self) -> bool:
        return self.name == "jar"

    @property
    def fmt(self) -> str:
        return "mds" if self.jar else "mds_py"

    def write(self, df, path: str, mode: str = "errorifexists", **options) -> None:
        """Writes with ``mode`` the way a user of this implementation does."""
        if self.jar:
            df.write.format("mds").mode(mode).options(**options).save(path)
        elif PYTHON_SOURCE:
            spark_mds.write(df, path, mode=mode, format=self.fmt, **options)
        else:
            spark_mds.write(df, path, mode=mode, engine="mapInArrow", **options)

    def write_partitioned(self, df, path: str, columns: list[str], mode: str = "errorifexists", **options) -> None:
        """A partitioned write the way a user of this implementation does it."""
        if self.jar:
            df.write.format("mds").mode(mode).options(**options).partitionBy(*columns).save(path)
        elif PYTHON_SOURCE:
            spark_mds.write(df, path, mode=mode, format=self.fmt, partition_by=columns, **options)
        else:
            spark_mds.write(df, path, mode=mode, engine="mapInArrow", partition_by=columns, **options)

    def read(self, spark, path: str, schema=None, **options):
        if self.jar or PYTHON_SOURCE:
            reader = spark.read.format(self.fmt).options(**options)
            return (reader.schema(schema) if schema is not None else reader).load(path)
        return spark_mds.read(spark, path, schema, engine="mapInArrow", **options)

    def every_type(self, spark):
        """The every-type table, less what this implementation cannot carry: year-month intervals
        cross no Arrow transfer, and Spark 3.5 refuses intervals in the jar's write path."""
        from spark_tables import every_type

        return every_type(spark, day_time_intervals=not self.jar or JVM_WRITES_INTERVALS,
                          year_month_intervals=self.jar and JVM_WRITES_INTERVALS)  # fmt: skip

    @property
    def compressions(self) -> list[str]:
        """Every codec it writes (the JVM has no Brotli: Spark's jars ship none)."""
        return ["none", "zstd:7", "gz", "bz2", "snappy", "lz4"] + ([] if self.jar else ["br"])

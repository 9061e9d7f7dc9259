"""One Spark version's smoke run, in that version's venv (tests/versions/test_spark_versions.py):
``python tests/versions/smoke.py OUT_DIR`` from the repository's root. Prints one JSON line.

With both implementations, the jar (``format("mds")``) and the Python path (PySpark's Python data
source registered beside the jar as ``mds_py`` where Spark has the API, else ``spark_mds.write`` /
``spark_mds.read`` through mapInArrow), it:

* writes the every-type table (tests/spark_tables.py) and reads it back, comparing schema
  and values exactly;
* runs SQL over what it wrote (a catalog table for the jar: CTAS, INSERT, SELECT; a temporary view
  for the Python data source);
* writes the interop table (tests/spark_tables.py), for the reference to read (the test
  does that in the reference's venv).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

TESTS = os.path.abspath("tests")  # run from the repository's root (support.run_python)
for p in (TESTS, os.path.join(TESTS, "spark")):
    sys.path.insert(0, p)

os.environ["PYSPARK_PYTHON"] = sys.executable

import pyspark  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

import spark_mds  # noqa: E402
from mds_testutil import JVM_WRITES_INTERVALS, SPARK_MAJOR, _builder, canon  # noqa: E402
from spark_tables import INTEROP_ROWS, INTEROP_SCHEMA, ROWS, SCHEMA  # noqa: E402


def rows(df) -> list:
    return [canon(r) for r in df.orderBy("id").collect()]


def main(out: str) -> None:
    spark = _builder("local[2]", tempfile.mkdtemp(prefix="mds-smoke-wh-")).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    result: dict = {"pyspark": pyspark.__version__, "register": spark_mds.register(spark)}
    python_source = SPARK_MAJOR >= 4
    if python_source:
        from spark_mds.python_source import register_python_source

        assert register_python_source(spark, "mds_py")

    every = spark.createDataFrame(ROWS, SCHEMA)
    if JVM_WRITES_INTERVALS:
        every = every.withColumn("dt_iv", F.expr("make_dt_interval(id, id * 3, 7, 1.000001)"))
    every = every.cache()
    interop = spark.createDataFrame([(i,) + r[1:] for i, r in enumerate(INTEROP_ROWS * 20)], INTEROP_SCHEMA).repartition(2)

    def write(impl: str, df, path: str, mode: str = "overwrite", **options) -> None:
        if impl == "jvm":
            df.write.format("mds").mode(mode).options(**options).save(path)
        elif python_source:
            spark_mds.write(df, path, mode=mode, format="mds_py", **options)
        else:
            spark_mds.write(df, path, mode=mode, engine="mapInArrow", **options)

    def read(impl: str, path: str):
        if impl == "jvm":
            return spark.read.format("mds").load(path)
        if python_source:
            return spark.read.format("mds_py").load(path)
        return spark_mds.read(spark, path, engine="mapInArrow")

    for impl in ("jvm", "python"):
        r: dict = {}
        path = os.path.join(out, f"every-{impl}")
        write(impl, every, path)
        back = read(impl, path)
        r["schema_equal"] = back.schema == every.schema or back.schema.simpleString() == every.schema.simpleString()
        r["schema"] = back.schema.simpleString()
        r["rows_equal"] = rows(back) == rows(every)
        r["pruned_equal"] = rows(back.select("id", "st", "ts")) == rows(every.select("id", "st", "ts"))
        write(impl, every.where("id < 2"), path, mode="append")
        r["appended"] = read(impl, path).count()
        every.createOrReplaceTempView("src")
        if impl == "jvm":
            sql = os.path.join(out, "sql-jvm")
            spark.sql(f"CREATE TABLE t_smoke USING mds LOCATION '{sql}' AS SELECT * FROM src")
            spark.sql("INSERT INTO t_smoke SELECT * FROM src WHERE id = 1")
            r["sql_rows"] = spark.sql("SELECT count(*) FROM t_smoke WHERE bool").first()[0]
            spark.sql("DROP TABLE t_smoke")
        elif python_source:
            spark.sql(f"CREATE OR REPLACE TEMPORARY VIEW v_smoke USING mds_py OPTIONS (path '{path}')")
            spark.sql("INSERT INTO v_smoke SELECT * FROM src WHERE id = 1")
            spark.sql(f"CREATE OR REPLACE TEMPORARY VIEW v_smoke USING mds_py OPTIONS (path '{path}')")
            r["sql_rows"] = spark.sql("SELECT count(*) FROM v_smoke WHERE bool").first()[0]
        write(impl, interop, os.path.join(out, f"interop-{impl}"), compression="zstd", hashes="sha1",
              size_limit="1kb", **{"encoding.emb": "ndarray:float32:4"})
        result[impl] = r
    spark.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])

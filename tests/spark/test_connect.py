"""format("mds") from a real Spark Connect client: a local Connect server (which pyspark ships from
Spark 4.0; 3.5's is a Maven package), with the plugin jar on the server and without it.

With the jar, ``register`` answers "jvm" (it cannot look into the server's JVM, and Spark says that
a JVM source owns the name); without it the Python data source is registered from the client and
runs on the server's Python workers. Either way the client writes with every SaveMode, reads back
exactly, and mds_loader reads the same files. Each session is its own process: a local Connect
server is a classic session in the client's process.
"""

from __future__ import annotations

import json
import sys

import pyspark
import pytest

from support import require_jar, run_python

pytestmark = [
    pytest.mark.spark,
    pytest.mark.skipif(int(pyspark.__version__.split(".")[0]) < 4,
                       reason="pyspark 3.5 does not ship the Spark Connect server (a Maven package)"),
]

SCRIPT = r"""
import json, os, sys
from pyspark.sql import SparkSession
import spark_mds
from mds_loader import read_table

jar, out = sys.argv[1], sys.argv[2]
b = SparkSession.builder.remote("local[2]").config("spark.sql.session.timeZone", "UTC")
if jar:
    b = b.config("spark.jars", jar)
spark = b.getOrCreate()
result = {"session": type(spark).__module__, "register": spark_mds.register(spark)}
df = spark.createDataFrame(
    [(i, f"row {i}", [i, 2 * i], None if i % 3 else float(i) / 2, bytes([i % 256])) for i in range(200)],
    "id long, text string, tokens array<int>, score double, raw binary").repartition(2)
df.write.format("mds").mode("overwrite").save(out)
df.where("id < 50").write.format("mds").mode("append").save(out)
result["modes"] = {}
for mode in ("errorifexists", "ignore"):
    try:
        spark_mds.write(df, out, mode=mode)
        result["modes"][mode] = "ok"
    except Exception as exc:
        result["modes"][mode] = type(exc).__name__ + ": " + str(exc)[:300]
back = spark.read.format("mds").load(out)
result["schema"] = back.schema.simpleString()
expected = sorted(tuple(r) for r in df.unionAll(df.where("id < 50")).collect())
result["same_rows"] = sorted(tuple(r) for r in back.collect()) == expected
table = read_table(out)
result["loader_rows"] = table.num_rows
result["loader_ids"] = sorted(table.column("id").to_pylist()) == sorted(r[0] for r in expected)
spark.stop()
print(json.dumps(result))
"""


@pytest.mark.parametrize("with_jar", [True, False], ids=["jar-on-server", "python-source"])
def test_connect_client_writes_and_reads(tmp_path, with_jar):
    jar = require_jar() if with_jar else ""
    out = str(tmp_path / "ds")
    r = run_python(SCRIPT, jar, out, timeout=600, env={"PYSPARK_PYTHON": sys.executable})
    assert r["session"] == "pyspark.sql.connect.session", r
    assert r["register"] == ("jvm" if with_jar else "python"), r
    # the JVM source's error (through Connect) or the Python path's DatasetExistsError, one message
    assert "an MDS dataset already exists at" in r["modes"]["errorifexists"], r["modes"]
    assert r["modes"]["ignore"] == "ok", r["modes"]
    assert r["schema"] == "struct<id:bigint,text:string,tokens:array<int>,score:double,raw:binary>", r
    assert r["same_rows"] and r["loader_rows"] == 250 and r["loader_ids"], json.dumps(r)

"""Task retries and failed jobs leave a consistent dataset with no orphan files (local[2,2])."""

from __future__ import annotations

import json

import pytest

from mds_testutil import run_spark_script

pytestmark = pytest.mark.spark

SCRIPT = r"""
import os
from pyspark import TaskContext
from pyspark.sql import functions as F
from support import files, read_index, referenced

out = sys.argv[1]
result = {}

def base(n):
    return spark.range(0, n, numPartitions=2).selectExpr("id", "repeat('x', 50) as text", "array(1, 2, 3) as tokens")

base(600).write.format("mds").option("size_limit", "1kb").save(out)
result["initial_shards"] = len(read_index(out)["shards"])

@F.udf("long")
def fail_first_attempt(x):
    ctx = TaskContext.get()
    if ctx.partitionId() == 1 and ctx.attemptNumber() == 0 and x >= 1000 + 250:
        raise RuntimeError("injected failure of attempt 0")
    return x

df = spark.range(1000, 1600, numPartitions=2).select(fail_first_attempt("id").alias("id")) \
    .selectExpr("id", "repeat('y', 50) as text", "array(4, 5) as tokens")
df.write.format("mds").mode("append").option("size_limit", "1kb").save(out)
idx = read_index(out)
result["after_retry"] = {
    "files_equal_referenced": files(out) == referenced(out),
    "extra": sorted(files(out) - referenced(out)),
    "count": spark.read.format("mds").load(out).count(),
    "ids": sorted(r.id for r in spark.read.format("mds").load(out).select("id").collect()) == list(range(600)) + list(range(1000, 1600)),
    "attempts": sorted({s["raw_data"]["basename"].split(".")[3] for s in idx["shards"][result["initial_shards"]:]
                        if s["raw_data"]["basename"].split(".")[2] == "00001"}),
    "attempts_p0": sorted({s["raw_data"]["basename"].split(".")[3] for s in idx["shards"][result["initial_shards"]:]
                        if s["raw_data"]["basename"].split(".")[2] == "00000"}),
}

before_index = open(os.path.join(out, "index.json"), "rb").read()
before_files = files(out)

@F.udf("long")
def always_fail(x):
    if TaskContext.get().partitionId() == 1 and x >= 2000 + 250:
        raise RuntimeError("injected failure of every attempt")
    return x

bad = spark.range(2000, 2600, numPartitions=2).select(always_fail("id").alias("id")) \
    .selectExpr("id", "repeat('z', 50) as text", "array(6) as tokens")
for mode in ["append", "overwrite"]:
    try:
        bad.write.format("mds").mode(mode).option("size_limit", "1kb").save(out)
        result[mode] = "no error"
    except Exception as e:
        result[mode] = "failed" if "injected failure of every attempt" in str(e) else str(e)[:500]
    result[mode + "_unchanged"] = (open(os.path.join(out, "index.json"), "rb").read() == before_index
                                   and files(out) == before_files)
print(json.dumps(result))
"""


def test_retried_and_failed_tasks(tmp_path):
    out = str(tmp_path / "ds")
    result = json.loads(run_spark_script(SCRIPT, out).strip().splitlines()[-1])
    assert result["initial_shards"] > 2
    r = result["after_retry"]
    assert r["files_equal_referenced"], r["extra"]
    assert r["count"] == 1200 and r["ids"]
    assert len(r["attempts"]) == 1  # partition 1's shards all come from the successful retry
    # ... which is not the first attempt (task attempt ids: p0, failed p1, retried p1)
    assert int(r["attempts"][0]) >= int(r["attempts_p0"][0]) + 2, r
    for mode in ["append", "overwrite"]:
        assert result[mode] == "failed", result[mode]
        assert result[mode + "_unchanged"], mode

"""Rough local timing of the JVM mds source vs Parquet (not a test; no assertions).

    .venv/bin/python tests/spark/timing_local.py [rows]

200k rows of (id bigint, text string(64), label int, score double, tokens array<int>(256)), zstd on both
sides; writes to a temp dir, then scans both copies fully (noop sink) and counts.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mds_testutil import _builder  # noqa: E402


def timed(label, fn, n, runs=3):
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    print(f"{label:<34} {best:7.2f} s  {n / best / 1e3:8.0f} k rows/s")
    return best


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    tmp = tempfile.mkdtemp(prefix="mds-timing-")
    spark = _builder("local[2]", os.path.join(tmp, "wh")).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    src = (spark.range(n, numPartitions=2)
           .selectExpr("id", "substring(repeat(sha2(cast(id as string), 256), 2), 1, 64) as text",
                       "cast(id % 10 as int) as label", "rand(1) as score",
                       "transform(sequence(1, 256), x -> cast((x * id) % 50000 as int)) as tokens"))
    src = src.cache()
    src.count()
    mds, pq = os.path.join(tmp, "mds"), os.path.join(tmp, "pq")
    w_mds = timed("write mds (zstd)", lambda: src.write.format("mds").mode("overwrite").save(mds), n)
    w_pq = timed("write parquet (zstd)", lambda: src.write.option("compression", "zstd").mode("overwrite").parquet(pq), n)
    r_mds = timed("scan mds (all columns)", lambda: spark.read.format("mds").load(mds).write.format("noop").mode("overwrite").save(), n)
    r_pq = timed("scan parquet (all columns)", lambda: spark.read.parquet(pq).write.format("noop").mode("overwrite").save(), n)
    timed("scan mds (id, label)", lambda: spark.read.format("mds").load(mds).select("id", "label").write.format("noop").mode("overwrite").save(), n)
    timed("scan parquet (id, label)", lambda: spark.read.parquet(pq).select("id", "label").write.format("noop").mode("overwrite").save(), n)
    size = lambda d: sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)
    print(f"write mds/parquet time ratio {w_mds / w_pq:.2f}; scan mds/parquet ratio {r_mds / r_pq:.2f}; "
          f"sizes mds {size(mds) / 1e6:.1f} MB, parquet {size(pq) / 1e6:.1f} MB")
    spark.stop()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

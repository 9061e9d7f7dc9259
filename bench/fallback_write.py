"""Spark write throughput: the Python fallback of format("mds") vs mosaicml-streaming's
``dataframe_to_mds`` (0.13.0), on the same DataFrame and machine.

    python -m bench.fallback_write [--rows 200000] [--partitions 4] [--master local[2]] [--repeat 2]

The DataFrame (``--rows`` rows, ``--partitions`` partitions): id bigint, text string (64 hex
characters), label int, score double, tokens array<int> of 256 values. Each side runs in its own
Python process with its own ``local[2]`` session (no spark-mds jar): it builds the DataFrame,
caches and counts it, and warms up with a small and a full write; then the sides take turns, one
timed full write with zstd each per round, ``--repeat`` rounds (the best time counts; medians and
per-round ratios are reported too, since the machine's load may change during a run):

* fallback: ``df.write.format("mds").mode("overwrite").option("compression", "zstd").save(path)``
  (Arrow batches into the vectorized shard writer, index committed on the driver);
* reference: ``streaming.base.converters.dataframe_to_mds(df, merge_index=True, mds_kwargs={out,
  columns, compression="zstd"})`` (``mapInPandas``, ``MDSWriter.write`` per row, ``merge_index``).
  It needs pyspark and pandas beside mosaicml-streaming: a throwaway virtualenv under bench/work/
  with pyspark 4.1.4, pandas, pyarrow and numpy<2.2, that reads mosaicml-streaming and its runtime
  dependencies from .venv-ref through a .pth file (``--ref-python`` or ``$MDS_BENCH_REF_PYTHON``).

A third run times the floor of PySpark's Python Data Source API on the same DataFrame: an Arrow
writer that only reads its batches (planning, the JVM-to-Arrow transfer and the commit, which any
Python source pays). Prints rows/s and the ratio, and writes bench/results/fallback_write.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "fallback_write.json"
REF_PYTHON = Path(os.environ.get("MDS_BENCH_REF_PYTHON", ROOT / "bench" / "work" / "venv-dtm" / "bin" / "python"))

# Runs in either Python: builds the DataFrame, then times the writer named by argv[1].
SCRIPT = r"""
import json, os, shutil, sys, time
from pyspark.sql import SparkSession

which, rows, partitions, master, repeat, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), sys.argv[6]
spark = (SparkSession.builder.master(master).appName("bench-" + which)
         .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
         .config("spark.driver.memory", "3g").config("spark.sql.session.timeZone", "UTC").getOrCreate())
spark.sparkContext.setLogLevel("ERROR")

def frame(n):
    return spark.range(0, n, numPartitions=partitions).selectExpr(
        "id", "sha2(cast(id as string), 256) as text", "cast(id % 1000 as int) as label",
        "rand(7) as score", "transform(sequence(0, 255), x -> cast((id * 7 + x) % 50000 as int)) as tokens")

if which == "floor":
    # What any Python data source pays: planning, the JVM-to-Arrow transfer, commit; no encoding.
    from pyspark.sql.datasource import DataSource, DataSourceArrowWriter, WriterCommitMessage
    class _Sink(DataSourceArrowWriter):
        def write(self, iterator):
            for _ in iterator:
                pass
            return WriterCommitMessage()
    class _Null(DataSource):
        @classmethod
        def name(cls):
            return "null_arrow_sink"
        def writer(self, schema, overwrite):
            return _Sink()
    spark.dataSource.register(_Null)
    def write(df, path):
        df.write.format("null_arrow_sink").mode("append").save(path)
elif which == "fallback":
    from spark_mds.python_source import register_python_source
    assert register_python_source(spark), "the JVM source serves format('mds'): run without the jar"
    def write(df, path):
        df.write.format("mds").mode("overwrite").option("compression", "zstd").save(path)
else:
    from streaming.base.converters import dataframe_to_mds
    columns = {"id": "int64", "text": "str", "label": "int32", "score": "float64", "tokens": "ndarray:int32"}
    def write(df, path):
        shutil.rmtree(path, ignore_errors=True)
        dataframe_to_mds(df, merge_index=True, mds_kwargs={"out": path, "columns": columns, "compression": "zstd"})

small = frame(2000).cache(); small.count()
write(small, out + "-warmup")
df = frame(rows).cache()
assert df.count() == rows
write(df, out)  # warm-up at full size: Python workers, JIT and memory reach their steady state
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:  # one timed write per "run" line, so that the sides can take turns
    if line.strip() != "run":
        break
    t = time.perf_counter()
    write(df, out)
    print(json.dumps({"seconds": time.perf_counter() - t}), flush=True)
index = json.load(open(os.path.join(out, "index.json"))) if which != "floor" else {"shards": [{"samples": rows, "raw_data": {"bytes": 0}, "zip_data": None}]}
samples = sum(s["samples"] for s in index["shards"])
size = sum((s["zip_data"] or s["raw_data"])["bytes"] for s in index["shards"])
assert samples == rows, (samples, rows)
spark.stop()
print(json.dumps({"samples": samples, "shards": len(index["shards"]), "stored_bytes": size}), flush=True)
"""


class Side:
    """One side of the benchmark: a process with its own session, timing one write per request."""

    def __init__(self, python: Path, which: str, args: argparse.Namespace, work: str) -> None:
        self.which = which
        env = {**os.environ, "PYSPARK_PYTHON": str(python), "PYSPARK_DRIVER_PYTHON": str(python), "PYTHONPATH": str(ROOT)}
        if which == "reference":
            env.pop("PYTHONPATH")  # the reference side must not see our packages
            env["TOKENIZERS_PARALLELISM"] = "false"
        self.log = open(os.path.join(work, which + ".log"), "w")
        self.proc = subprocess.Popen(
            [str(python), "-c", SCRIPT, which, str(args.rows), str(args.partitions), args.master, str(args.repeat),
             os.path.join(work, which)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env, cwd=work,
        )  # fmt: skip
        self.times: list[float] = []

    def _line(self) -> dict:
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            self.log.flush()
            raise SystemExit(f"{self.which} run failed:\n{open(self.log.name).read()[-4000:]}")
        return json.loads(line)

    def ready(self) -> None:
        self._line()

    def run(self) -> float:
        self.proc.stdin.write("run\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        seconds = self._line()["seconds"]
        self.times.append(seconds)
        return seconds

    def finish(self) -> dict:
        self.proc.stdin.close()  # type: ignore[union-attr]
        summary = self._line()
        self.proc.wait()
        t = sorted(self.times)
        return {**summary, "seconds": t[0], "median_seconds": t[len(t) // 2], "all_seconds": self.times}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--master", default="local[2]")
    p.add_argument("--repeat", type=int, default=5, help="rounds of timed writes (the best counts)")
    p.add_argument("--ref-python", type=Path, default=REF_PYTHON)
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--output", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if not args.ref_python.exists():
        raise SystemExit(f"no Python with pyspark + mosaicml-streaming at {args.ref_python}; see this module's docstring")
    base = ROOT / "bench" / "work"
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fallback-write-", dir=base) as work:
        # The three sessions start (and warm up) one after the other, then take turns, one timed
        # write each per round, so that a changing machine load affects them alike.
        sides = {}
        for which, python in (("fallback", Path(sys.executable)), ("reference", args.ref_python), ("floor", Path(sys.executable))):
            sides[which] = Side(python, which, args, work)
            sides[which].ready()
        for _ in range(args.repeat):
            for side in sides.values():
                side.run()
        ours, ref, floor = (sides[w].finish() for w in ("fallback", "reference", "floor"))
    result = {
        "benchmark": "fallback_write",
        "rows": args.rows,
        "partitions": args.partitions,
        "master": args.master,
        "compression": "zstd",
        "columns": "id bigint, text string(64 hex), label int, score double, tokens array<int>[256]",
        "fallback": {**ours, "rows_per_s": args.rows / ours["seconds"]},
        "dataframe_to_mds": {**ref, "rows_per_s": args.rows / ref["seconds"]},
        "python_datasource_floor": {"seconds": floor["seconds"], "median_seconds": floor["median_seconds"],
                                    "all_seconds": floor["all_seconds"], "rows_per_s": args.rows / floor["seconds"]},
        "speedup": ref["seconds"] / ours["seconds"],
        "speedup_median": ref["median_seconds"] / ours["median_seconds"],
        "speedup_per_round": [r / f for r, f in zip(ref["all_seconds"], ours["all_seconds"])],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    print(f"rows: {args.rows}, partitions: {args.partitions}, master: {args.master}, compression: zstd")
    for name in ("fallback", "dataframe_to_mds"):
        r = result[name]
        print(f"  {name:17s} {r['seconds']:8.2f} s  {r['rows_per_s']:12,.0f} rows/s  ({r['shards']} shards, {r['stored_bytes'] / 2**20:.1f} MiB)")
    r = result["python_datasource_floor"]
    print(f"  {'floor':17s} {r['seconds']:8.2f} s  {r['rows_per_s']:12,.0f} rows/s  (a Python Arrow writer that only reads its input)")
    print(f"  fallback / dataframe_to_mds: {result['speedup']:.2f}x faster (best of {args.repeat}; "
          f"{result['speedup_median']:.2f}x on medians)")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()

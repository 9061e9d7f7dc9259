"""Spark side: writing one DataFrame with every alternative, and scanning what was written.

    python -m bench spark [--rows 200000] [--image-rows R] [--wide-rows R] [--partitions 4]
                          [--repeat 5] [--variants standard,image,wide] [--no-reference]

Datasets (built by Spark expressions, cached and counted before any timing; ``--partitions``
partitions):

* ``standard``: ``--rows`` rows of id bigint, text string (64 hex chars), label int, score double,
  tokens array<int> of 256 pseudo-random values (about 1.1 KB per row);
* ``image``: ``--image-rows`` rows (default rows/40) of id bigint, label int, image binary of
  51,200 incompressible bytes (JPEG-sized);
* ``wide``: ``--wide-rows`` rows (default rows/2) of 100 numeric columns (id bigint, 50 double,
  49 int).

Writers, same DataFrame, zstd everywhere, one timed write each per round (rounds interleaved;
the best time counts, medians are reported too):

* ``mds_jvm``: ``df.write.format("mds")`` with the spark-mds jar (the Scala DataSource V2);
* ``mds_fallback``: the Python Data Source fallback, registered as ``mds_fallback`` in the same
  session (what serves ``format("mds")`` without the jar, e.g. on Spark Connect);
* ``parquet``: Spark's Parquet writer, ``compression=zstd``;
* ``dataframe_to_mds``: mosaicml-streaming 0.13.0's converter (``mapInPandas`` + ``MDSWriter``
  per row + ``merge_index``), in its own ``local[2]`` session run by the reference's virtualenv
  (.venv-ref, with pyspark 4.1.4, pandas and pyarrow: tests/interop/requirements-ref.txt);
* ``spark_mds.dataframe_to_mds``: our drop-in for it, called with the same ``mds_kwargs``, written
  through the jar;
* ``python_source_floor``: a Python Data Source Arrow writer that only reads its input: what any
  Python source pays (planning, the JVM-to-Arrow transfer, the commit), the fallback's floor;
* ``spark_floor``: Spark's ``noop`` sink: producing the rows from the cached DataFrame, what any
  writer pays before it writes a byte (the JVM source's floor, and dataframe_to_mds's).

Scans (Spark, ``noop`` sink, so every row is produced): the JVM ``mds`` copy vs the Parquet copy,
all columns and pruned to two small columns.

Prints times and ratios; writes bench/results/spark.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import RESULTS, ROOT, WORK, dtm_python, machine, summarize, write_result

VARIANTS = ("standard", "image", "wide")

# Runs in either Python (ours: .venv with the jar; the reference: the dataframe_to_mds venv).
SIDE_SCRIPT = r"""
import json, os, shutil, sys, time
from pyspark.sql import SparkSession

side, master, partitions, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
sizes = json.loads(sys.argv[5])
uncompressed = set(json.loads(sys.argv[6]))  # variants also written without compression
builder = (SparkSession.builder.master(master).appName("bench-" + side)
           .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
           .config("spark.driver.memory", "4g").config("spark.sql.session.timeZone", "UTC")
           .config("spark.sql.shuffle.partitions", str(partitions)))
if side == "ours":
    import spark_mds
    builder = spark_mds.configure(builder)
spark = builder.getOrCreate()
spark.sparkContext.setLogLevel("ERROR")

def mds_columns(schema):  # the reference's mds_kwargs["columns"] (dataframe_to_mds of either library)
    from pyspark.sql import types as T

    simple = {T.LongType: "int64", T.IntegerType: "int32", T.DoubleType: "float64", T.StringType: "str",
              T.BinaryType: "bytes"}
    cols = {}
    for f in schema.fields:
        if isinstance(f.dataType, T.ArrayType):
            cols[f.name] = "ndarray:" + simple[type(f.dataType.elementType)]
        else:
            cols[f.name] = simple[type(f.dataType)]
    return cols

def frame(variant, n):
    base = spark.range(0, n, numPartitions=partitions)
    if variant == "standard":
        return base.selectExpr(
            "id", "sha2(cast(id as string), 256) as text", "cast(id % 1000 as int) as label", "rand(7) as score",
            "transform(sequence(0, 255), x -> pmod(hash(id, x), 50000)) as tokens")
    if variant == "image":  # 800 x 64 bytes of SHA-512 output: incompressible, like JPEG data
        return base.selectExpr(
            "id", "cast(id % 1000 as int) as label",
            "unhex(concat_ws('', transform(sequence(1, 800), x -> sha2(cast(id * 1000 + x as string), 512)))) as image")
    if variant == "wide":
        cols = ["id"] + [f"rand({k}) as d{k}" for k in range(50)] + [f"cast(pmod(hash(id, {k}), 1000000) as int) as i{k}" for k in range(49)]
        return base.selectExpr(*cols)
    raise ValueError(variant)

PRUNED = {"standard": ["id", "label"], "image": ["id", "label"], "wide": ["id", "d0"]}

def noop(df):
    df.write.format("noop").mode("overwrite").save()

ops = {}
if side == "ours":
    from spark_mds.python_source import register_python_source
    from pyspark.sql.datasource import DataSource, DataSourceArrowWriter, WriterCommitMessage
    assert spark_mds.register(spark) == "jvm", "the spark-mds jar is not on the classpath: make jar"
    assert register_python_source(spark, "mds_fallback"), "could not register the Python source"

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
    ops["mds_jvm"] = lambda df, p: df.write.format("mds").mode("overwrite").option("compression", "zstd").save(p)
    ops["mds_fallback"] = lambda df, p: df.write.format("mds_fallback").mode("overwrite").option("compression", "zstd").save(p)
    ops["parquet"] = lambda df, p: df.write.mode("overwrite").option("compression", "zstd").parquet(p)
    ops["python_source_floor"] = lambda df, p: df.write.format("null_arrow_sink").mode("append").save(p)
    ops["spark_floor"] = lambda df, p: noop(df)
    # The same writes without compression: what is left once zstd (shared by every writer) is gone.
    ops["mds_jvm (no compression)"] = lambda df, p: df.write.format("mds").mode("overwrite").option("compression", "none").save(p)
    ops["mds_fallback (no compression)"] = lambda df, p: df.write.format("mds_fallback").mode("overwrite").option("compression", "none").save(p)
    ops["parquet (no compression)"] = lambda df, p: df.write.mode("overwrite").option("compression", "none").parquet(p)

    def spark_mds_dtm(df, p):  # the reference's call, through the jar
        shutil.rmtree(p, ignore_errors=True)
        spark_mds.dataframe_to_mds(df, merge_index=True, mds_kwargs={"out": p, "columns": mds_columns(df.schema),
                                                                     "compression": "zstd"})

    ops["spark_mds.dataframe_to_mds"] = spark_mds_dtm
    scans = {
        "scan_mds": lambda v, d: noop(spark.read.format("mds").load(d["mds_jvm"])),
        "scan_parquet": lambda v, d: noop(spark.read.parquet(d["parquet"])),
        "scan_mds_pruned": lambda v, d: noop(spark.read.format("mds").load(d["mds_jvm"]).select(*PRUNED[v])),
        "scan_parquet_pruned": lambda v, d: noop(spark.read.parquet(d["parquet"]).select(*PRUNED[v])),
    }
else:
    from streaming.base.converters import dataframe_to_mds

    def dtm(df, p, compression="zstd"):
        shutil.rmtree(p, ignore_errors=True)
        dataframe_to_mds(df, merge_index=True, mds_kwargs={"out": p, "columns": mds_columns(df.schema), "compression": compression})

    ops["dataframe_to_mds"] = dtm
    ops["dataframe_to_mds (no compression)"] = lambda df, p: dtm(df, p, None)
    scans = {}

def size_of(d):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs
               if not f.startswith(".") and not f.endswith(".crc") and f != "_SUCCESS")

def ops_of(variant):
    return {k: v for k, v in ops.items() if "(no compression)" not in k or variant in uncompressed}

frames, dirs = {}, {}
for variant, n in sizes.items():
    small = frame(variant, min(n, 1000)).cache(); small.count()
    for name, op in ops_of(variant).items():
        op(small, os.path.join(out, f"{variant}-{name}-warmup".replace(" ", "_")))
    df = frame(variant, n).cache()
    assert df.count() == n
    frames[variant] = df
    dirs[variant] = {name: os.path.join(out, f"{variant}-{name}".replace(" ", "_")) for name in ops_of(variant)}
    for name, op in ops_of(variant).items():  # a full-size warm-up: Python workers, JIT, memory reach a steady state
        op(df, dirs[variant][name])
    for name, scan in scans.items():
        scan(variant, dirs[variant])
print(json.dumps({"ready": True, "ops": {v: list(ops_of(v)) for v in sizes}, "scans": list(scans)}), flush=True)

for line in sys.stdin:  # "<variant>\t<op>": one timed run, so that the two processes can take turns
    parts = line.rstrip("\n").split("\t")
    if len(parts) != 2:
        break
    variant, name = parts
    t = time.perf_counter()
    if name in ops:
        ops[name](frames[variant], dirs[variant][name])
    else:
        scans[name](variant, dirs[variant])
    print(json.dumps({"seconds": time.perf_counter() - t}), flush=True)

summary = {}
for variant in sizes:
    for name, d in dirs[variant].items():
        if name in ("python_source_floor", "spark_floor"):
            continue
        info = {"stored_bytes": size_of(d)}
        index = os.path.join(d, "index.json")
        if os.path.exists(index):
            shards = json.load(open(index))["shards"]
            info["shards"] = len(shards)
            info["samples"] = sum(s["samples"] for s in shards)
            assert info["samples"] == sizes[variant], (variant, name, info)
        summary[f"{variant} {name}"] = info
spark.stop()
print(json.dumps(summary), flush=True)
"""


class Side:
    """A process with its own Spark session that times one operation per request."""

    def __init__(self, python: Path, side: str, args: argparse.Namespace, sizes: dict[str, int], work: str) -> None:
        self.side = side
        env = {**os.environ, "PYSPARK_PYTHON": str(python), "PYSPARK_DRIVER_PYTHON": str(python),
               "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}
        if side == "reference":
            env.pop("PYTHONPATH")  # the reference side must not see our packages
        self.log_path = os.path.join(work, side + ".log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [str(python), "-c", SIDE_SCRIPT, side, args.master, str(args.partitions), os.path.join(work, side), json.dumps(sizes),
             json.dumps(args.uncompressed)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env, cwd=work,
        )  # fmt: skip
        self.ops: dict[str, list[str]] = {}
        self.scans: list[str] = []

    def _line(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            self.log.flush()
            raise SystemExit(f"the {self.side} Spark process failed:\n{open(self.log_path).read()[-4000:]}")
        return json.loads(line)

    def ready(self) -> None:
        info = self._line()
        self.ops, self.scans = info["ops"], info["scans"]

    def run(self, variant: str, name: str) -> float:
        self.proc.stdin.write(f"{variant}\t{name}\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        return self._line()["seconds"]

    def finish(self) -> dict[str, Any]:
        self.proc.stdin.close()  # type: ignore[union-attr]
        summary = self._line()
        self.proc.wait()
        return summary


def sizes_from(args: argparse.Namespace) -> dict[str, int]:
    sizes = {"standard": args.rows, "image": args.image_rows or max(args.rows // 40, 10),
             "wide": args.wide_rows or max(args.rows // 2, 10)}
    return {v: sizes[v] for v in args.variants}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rows", type=int, default=200_000, help="rows of the standard dataset")
    p.add_argument("--image-rows", type=int, default=None, help="rows of the image-like dataset (default rows/40)")
    p.add_argument("--wide-rows", type=int, default=None, help="rows of the wide dataset (default rows/2)")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--master", default="local[2]")
    p.add_argument("--repeat", type=int, default=5, help="interleaved rounds (the best time counts)")
    p.add_argument("--variants", type=lambda s: [v for v in s.split(",") if v], default=list(VARIANTS))
    p.add_argument("--no-reference", action="store_true", help="skip dataframe_to_mds")
    p.add_argument("--uncompressed", type=lambda s: [v for v in s.split(",") if v], default=["standard"],
                   help="variants also written without compression (default: standard; '' for none)")


def main(argv: list[str] | None = None, out_dir: Path = RESULTS) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m bench spark", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    args = p.parse_args(argv)
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
    sizes = sizes_from(args)
    ref_python = None if args.no_reference else dtm_python()
    if ref_python is None and not args.no_reference:
        print("dataframe_to_mds skipped: no reference virtualenv with pyspark (make ref-venv)", file=sys.stderr)
    WORK.mkdir(parents=True, exist_ok=True)
    times: dict[str, dict[str, list[float]]] = {v: {} for v in sizes}
    with tempfile.TemporaryDirectory(prefix="spark-", dir=WORK) as work:
        sides = {"ours": Side(Path(sys.executable), "ours", args, sizes, work)}
        sides["ours"].ready()  # one at a time: the sessions start and warm up without competing
        if ref_python is not None:
            sides["reference"] = Side(ref_python, "reference", args, sizes, work)
            sides["reference"].ready()
        for variant in sizes:
            for _ in range(args.repeat):
                for side in sides.values():
                    for name in side.ops[variant] + side.scans:
                        times[variant].setdefault(name, []).append(side.run(variant, name))
        stored: dict[str, Any] = {}
        for side in sides.values():
            stored.update(side.finish())

    results: dict[str, Any] = {}
    for variant, ops in times.items():
        n = sizes[variant]
        r: dict[str, Any] = {"rows": n}
        for name, t in ops.items():
            r[name] = {**summarize(t), "rows_per_s": n / min(t), **stored.get(f"{variant} {name}", {})}
        ratios: dict[str, float] = {}

        def ratio(key: str, a: str, b: str) -> None:
            if a in r and b in r:
                ratios[key] = r[a]["seconds"] / r[b]["seconds"]
                ratios[key + " (medians)"] = r[a]["median_seconds"] / r[b]["median_seconds"]

        ratio("dataframe_to_mds / mds_jvm", "dataframe_to_mds", "mds_jvm")
        ratio("dataframe_to_mds / spark_mds.dataframe_to_mds", "dataframe_to_mds", "spark_mds.dataframe_to_mds")
        ratio("dataframe_to_mds / mds_fallback", "dataframe_to_mds", "mds_fallback")
        ratio("mds_jvm / parquet (write time)", "mds_jvm", "parquet")
        ratio("mds_fallback / python_source_floor", "mds_fallback", "python_source_floor")
        ratio("mds_jvm / spark_floor", "mds_jvm", "spark_floor")
        ratio("dataframe_to_mds / spark_floor", "dataframe_to_mds", "spark_floor")
        ratio("scan_mds / scan_parquet", "scan_mds", "scan_parquet")
        ratio("scan_mds_pruned / scan_parquet_pruned", "scan_mds_pruned", "scan_parquet_pruned")
        ratio("no compression: dataframe_to_mds / mds_jvm", "dataframe_to_mds (no compression)", "mds_jvm (no compression)")
        ratio("no compression: dataframe_to_mds / mds_fallback", "dataframe_to_mds (no compression)", "mds_fallback (no compression)")
        ratio("no compression: mds_jvm / parquet", "mds_jvm (no compression)", "parquet (no compression)")
        r["ratios"] = ratios
        results[variant] = r

    report = {
        "master": args.master, "partitions": args.partitions, "compression": "zstd", "repeat": args.repeat,
        "datasets": {
            "standard": "id bigint, text string (64 hex), label int, score double, tokens array<int>[256] (~1.1 KB/row)",
            "image": "id bigint, label int, image binary (51,200 incompressible bytes)",
            "wide": "id bigint, 50 double, 49 int (100 numeric columns)",
        },
        "machine": machine(),
        "results": results,
    }
    print(f"Spark write/scan, {args.master}, {args.partitions} partitions, zstd, best of {args.repeat} interleaved rounds")
    for variant, r in results.items():
        print(f"  {variant} ({r['rows']:,} rows)")
        for name in ("mds_jvm", "spark_mds.dataframe_to_mds", "mds_fallback", "dataframe_to_mds", "parquet", "python_source_floor", "spark_floor",
                     "mds_jvm (no compression)", "mds_fallback (no compression)", "dataframe_to_mds (no compression)",
                     "parquet (no compression)", "scan_mds", "scan_parquet", "scan_mds_pruned", "scan_parquet_pruned"):
            if name in r:
                x = r[name]
                size = f"  {x['stored_bytes'] / 2**20:8.1f} MiB" if "stored_bytes" in x else ""
                print(f"    {name:34s} {x['seconds']:8.2f} s (median {x['median_seconds']:6.2f})  {x['rows_per_s']:12,.0f} rows/s{size}")
        for k, v in r["ratios"].items():
            if "medians" not in k:
                print(f"    {k:48s} {v:6.2f}  (medians {r['ratios'][k + ' (medians)']:.2f})")
    write_result(out_dir, "spark", report)
    return report


if __name__ == "__main__":
    main()

"""`format("mds")` without the spark-mds jar: the Python fallback, as on Spark Connect.

A Spark Connect client (or a serverless / shared cluster) cannot add jars to the session, so the
JVM data source is not available there. `spark_mds.register(spark)` then registers a pure-Python
data source under the same name, with the same options, type mapping and files; it returns which
implementation serves `format("mds")`.

This example starts a local SparkSession *without* the jar (exactly what a Spark Connect client
sees: no spark-mds classes), then:

1. registers the fallback (`register` returns "python");
2. writes a DataFrame with `df.write.format("mds").mode("overwrite")`, then appends to it;
3. reads it back with `spark.read.format("mds").load(path)`, schema and values included;
4. uses the other save modes (`errorifexists`, `ignore`) through `spark_mds.write`, since
   PySpark's Python data sources only take `append` and `overwrite`;
5. reads the dataset on the training side, without Spark (`read_table`, `StreamingDataset`).

Usage: python examples/spark_connect_fallback.py [OUTPUT_DIR] [--remote sc://HOST:15002]
(default: a temporary directory, removed; --remote uses a real Spark Connect server instead of a
local session, which needs `pyspark[connect]`, and OUTPUT_DIR must then be a path that the server
can reach)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from pyspark.sql import SparkSession

import spark_mds
from mds_loader import StreamingDataset, read_table


def session(remote: str | None) -> SparkSession:
    if remote:
        return SparkSession.builder.remote(remote).getOrCreate()
    # The Python data source runs in Spark's Python workers: they need this interpreter (with
    # spark_mds and mds_loader), not whatever `python3` is first on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # No spark_mds.configure(builder): the jar stays off the classpath, as on Spark Connect.
    return (SparkSession.builder.master("local[2]").appName("spark-mds fallback example")
            .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", "2").getOrCreate())  # fmt: skip


def main(out: Path, remote: str | None) -> None:
    spark = session(remote)
    try:
        run(spark, out)
    finally:
        spark.stop()


def run(spark: SparkSession, out: Path) -> None:
    implementation = spark_mds.register(spark)
    print(f"format('mds') is served by: {implementation}")

    path = str(out / "events")
    df = spark.range(0, 1_000, numPartitions=2).selectExpr(
        "id",
        "CAST(id % 10 AS INT) AS label",
        "concat('event ', id) AS text",
        "IF(id % 7 = 0, NULL, id * 1.5D) AS score",  # nulls round-trip through the __nulls__ mask
        "array(CAST(id AS FLOAT), CAST(id / 2 AS FLOAT)) AS emb",
        "DATE '2024-01-01' + CAST(id % 365 AS INT) AS day",
    )
    df.write.format("mds").mode("overwrite").option("compression", "zstd").option("hashes", "xxh64").save(path)
    print(f"wrote {df.count():,} rows to {path} (mode overwrite)")
    df.limit(100).write.format("mds").mode("append").save(path)
    print("appended rows 0..99 again (mode append)")

    back = spark.read.format("mds").load(path)
    print(f"read back: {back.count():,} rows; schema: {back.schema.simpleString()}")
    nulls = back.where("score IS NULL").count()
    print(f"rows with a null score: {nulls:,}")
    for row in back.orderBy("id").limit(3).collect():
        print(f"  {row.asDict()}")

    other = str(out / "events_copy")
    spark_mds.write(df, other, mode="errorifexists")
    print(f"spark_mds.write(df, ..., mode='errorifexists'): wrote {spark.read.format('mds').load(other).count():,} rows")
    try:
        spark_mds.write(df, other, mode="errorifexists")
    except Exception as exc:  # the dataset exists now
        print(f"  again: refused ({type(exc).__name__}: {str(exc).splitlines()[0].split(';')[0]})")
    else:
        raise AssertionError("mode='errorifexists' wrote over an existing dataset")
    spark_mds.write(df.limit(5), other, mode="ignore")
    print(f"spark_mds.write(..., mode='ignore'): still {spark.read.format('mds').load(other).count():,} rows")

    # The training side reads the same files without Spark.
    table = read_table(path)
    print(f"read_table: {table.num_rows:,} rows, {table.schema.field('day').type} dates, "
          f"{table['score'].null_count} null scores")  # fmt: skip
    sample = StreamingDataset(local=path)[1]
    print(f"StreamingDataset sample 1: id={sample['id']}, text={sample['text']!r}, emb={sample['emb']}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", nargs="?", help="where to write the datasets (kept); default: a temporary directory")
    parser.add_argument("--remote", metavar="URL", help="a Spark Connect server (sc://host:port) instead of a local session")
    args = parser.parse_args()
    if args.output_dir:
        main(Path(args.output_dir).resolve(), args.remote)
    else:
        tmp = tempfile.mkdtemp(prefix="mds-spark-fallback-")
        try:
            main(Path(tmp), args.remote)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

"""Reads damaged datasets through Spark, with the JVM source (``format("mds")``) and the Python
fallback (registered beside it as ``format("mds_py")``), in a child process of the test.

Usage: ``python probe_spark.py CASES_DIR NAME...``; prints one JSON line per case:
``{"case": name, "results": {reader: {"ok": rows} | {"error": message}}}``, then
``{"alive": rows}`` once the session has read an intact dataset after all the damaged ones (the
JVM survived every read).
"""

from __future__ import annotations

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "spark"))


def session():
    os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    from mds_testutil import _builder

    import tempfile

    b = _builder("local[2]", tempfile.mkdtemp(prefix="mds-rel-wh-"))
    b = b.config("spark.driver.memory", "1g").config("spark.sql.ansi.enabled", "true")
    # Python workers limited to 1 GiB of address space: a decompression bomb must be refused by
    # the Python source before it inflates (a MemoryError would be a crash of the reader).
    b = b.config("spark.executor.pyspark.memory", "1g")
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("OFF")
    from spark_mds.python_source import register_python_source

    assert register_python_source(spark, "mds_py")
    return spark


def _outcome(fn) -> dict:
    try:
        return {"ok": fn()}
    except Exception as exc:  # noqa: BLE001 - recorded for the parent to judge
        return {"error": f"{type(exc).__name__}: {exc}"[:4000]}


def readers(spark, path: str) -> dict:
    def read(fmt: str, **options):
        def run() -> int:
            df = spark.read.format(fmt)
            for k, v in options.items():
                df = df.option(k, v)
            rows = df.load(path).collect()
            return len(rows)

        return run

    out = {"jvm": read("mds"), "fallback": read("mds_py")}
    if "hash" in os.path.basename(path):  # the damage only a hash check sees
        out.update(jvm_hash=read("mds", validate_hash="xxh64"), fallback_hash=read("mds_py", validate_hash="xxh64"))
    return out


def main() -> None:
    cases_dir, names = sys.argv[1], sys.argv[2:]
    spark = session()
    for name in names:
        path = os.path.join(cases_dir, name)
        print(json.dumps({"start": name}), flush=True)
        results = {reader: _outcome(fn) for reader, fn in readers(spark, path).items()}
        print(json.dumps({"case": name, "results": results}), flush=True)
    intact = os.environ.get("MDS_PROBE_INTACT")
    if intact:
        print(json.dumps({"alive": spark.read.format("mds").load(intact).count()}), flush=True)


if __name__ == "__main__":
    main()

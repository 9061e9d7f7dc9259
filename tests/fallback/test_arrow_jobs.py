"""``spark_mds.write`` / ``spark_mds.read`` through ``mapInArrow`` jobs: the path where nothing serves
``format("mds")`` (PySpark 3.5 without the jar, classic or Spark Connect), forced here with
``engine="mapInArrow"`` so that it runs on every PySpark (the module passes unchanged on 3.5:
``.venv-spark/3.5.8/bin/python -m pytest tests/fallback/test_arrow_jobs.py``). Real local Spark
sessions in child processes (fallback_support.SparkProcess), no jar.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from fallback_support import SparkProcess, raw_shard, without_names
from support import files, read_index, copy_reference_dataset
from mds_loader.format import write_table
from spark_mds.fallback.compat import HAS_PYTHON_DATA_SOURCE

pytestmark = pytest.mark.spark

DATASETS = Path(__file__).resolve().parent.parent / "data" / "reference" / "datasets"


@pytest.fixture(scope="module")
def spark():
    proc = SparkProcess("local[2,2]", jar=False, register_as=None, cases="arrow_job_cases")
    yield proc
    proc.close()


def test_engine_auto_takes_map_in_arrow_without_a_source(spark, tmp_path):
    res = spark.call("engines", out=str(tmp_path / "ds"))
    assert res["auto_plan_arrow"] is True
    for key in ("format_error", "format_write_error"):
        assert "DATA_SOURCE_NOT_FOUND" in res[key] or "Failed to find the data source" in res[key], res[key]
    assert "unknown engine 'jdbc'" in res["bad_engine"]
    if HAS_PYTHON_DATA_SOURCE:
        assert res["registered_plan_arrow"] is False  # the registered Python data source serves format("mds")


def test_roundtrip_every_type(spark, tmp_path):
    out = str(tmp_path / "ds")
    res = spark.call("roundtrip", out=out)
    enc = res["encodings"]
    assert enc["bool"] == "uint8" and enc["date"] == "int32" and enc["ts"] == "int64" and enc["dt_iv"] == "int64"
    assert enc["dec"] == "str_decimal" and enc["arr_i"] == "ndarray:int32" and enc["arr2_l"] == "ndarray:int64"
    assert enc["st"] == enc["map_s"] == enc["arr_s"] == enc["arr_bin"] == "json" and enc["__nulls__"] == "ndarray:uint8:4"
    assert res["index"]["spark_mds"]["null_mask"] == "__nulls__"
    assert res["files"] == res["referenced"]
    names = [s["raw_data"]["basename"].split(".") for s in res["index"]["shards"]]
    assert [n[2] for n in names] == ["00000", "00001"] and len({n[1] for n in names}) == 1  # shard.J.ppppp.a.sssss
    assert res["partitions"] == 1  # small shards grouped, as the source does
    assert [without_names(s) for s in res["large"]["shards"]] == [without_names(s) for s in res["index"]["shards"]]
    utc = dt.datetime(2024, 3, 10, 9, 30, tzinfo=dt.timezone.utc)  # 01:30 in Los Angeles
    assert res["tz"] == {"ts": int(utc.timestamp()) * 10**6,
                         "ntz": int(dt.datetime(2024, 3, 10, 1, 30, tzinfo=dt.timezone.utc).timestamp()) * 10**6}  # fmt: skip
    if HAS_PYTHON_DATA_SOURCE:  # the Python data source wrote the same DataFrame: the same index and shard bytes
        other = read_index(res["python_data_source"])
        assert other["spark_mds"] == res["index"]["spark_mds"]
        assert [without_names(s) for s in other["shards"]] == [without_names(s) for s in res["index"]["shards"]]
        for a, b in zip(res["index"]["shards"], other["shards"]):
            assert raw_shard(out, a) == raw_shard(res["python_data_source"], b)


def test_every_save_mode(spark, tmp_path):
    res = spark.call("save_modes", out=str(tmp_path / "ds"))
    for mode in ("errorifexists", "error", "default"):
        assert "an MDS dataset already exists at" in res[mode] and "mode('append')" in res[mode]
    assert res["ignore_unchanged"] and res["append_files_referenced"]
    assert res["overwrite_files_referenced"] and res["self_overwrite_files_referenced"]
    assert all(s["compression"] == "gz" and s["hashes"] == ["sha1"] for s in res["ignore_new"])


def test_failed_task_attempts_and_failed_jobs_leave_no_files(spark, tmp_path):
    res = spark.call("failures", out=str(tmp_path / "ds"))
    after = res["after_retry"]
    assert after["extra"] == [] and after["ids"], after
    assert len(after["jobs"]) == 1 and len(after["attempts"]["00001"]) == 1
    assert after["attempts"]["00001"] != after["attempts"]["00000"]  # partition 1's shards come from its retry
    for mode in ("append", "overwrite"):
        assert res[mode] == "failed", res[mode]
        assert res[mode + "_unchanged"], (mode, res[mode + "_diff"])


def test_reads_datasets_of_mds_loader_and_the_reference(spark, tmp_path):
    loader = str(tmp_path / "loader")
    table = pa.table({
        "id": pa.array(range(50), pa.int64()),
        "u8": pa.array([i % 256 for i in range(50)], pa.uint8()),
        "h": pa.array([i / 4 for i in range(50)], pa.float16()),
        "text": [f"t{i} ✓" for i in range(50)],
        "blob": [bytes([i]) * i for i in range(50)],
        "vec": pa.array([[float(i)] * 3 for i in range(50)], pa.list_(pa.float32(), 3)),
        "tokens": [list(range(i % 5)) for i in range(50)],
    })  # fmt: skip
    write_table(table, loader, size_limit=512, compression="zstd")
    names = ["images", "ndarrays", "scalars", "tabular_br", "tabular_zstd_sha1-xxh64"]
    paths = [loader] + [str(copy_reference_dataset(name, tmp_path)) for name in names]
    res = spark.call("reads", paths=paths)
    assert res["loader"] == 50 and res["images"] > 0 and res["scalars"] > 0 and res["tabular_br"] > 0
    assert "'dyn'" in res["ndarrays"] and "BINARY" in res["ndarrays"].upper()


def test_types_that_cannot_cross_fail_as_in_the_fallback(spark, tmp_path):
    res = spark.call("errors", out=str(tmp_path / "ds"))
    assert "cannot write year-month intervals" in res["write_ym"] and "extract(year from ym) * 12" in res["write_ym"]
    assert "column 'n' has type VOID, which MDS cannot store" in res["write_void"]
    assert res["no_files"] == []
    assert "index.json is missing" in res["missing"] and res["missing_with_schema"] == 0
    assert "cannot return year-month intervals" in res["read_ym"] and "INT" in res["read_ym"]
    assert res["months"] == [5, 17, 29]
    assert "column 'id' is stored as 'int64' and cannot be read as DATE" in res["bad_type"] or \
        "cannot be read as" in res["bad_type"], res["bad_type"]  # fmt: skip


def test_spark_connect(tmp_path):
    import pyspark

    if not list((Path(pyspark.__file__).parent / "jars").glob("spark-connect_*.jar")):
        pytest.skip(f"pyspark {pyspark.__version__} ships no Spark Connect server (3.5: a Maven package)")
    proc = SparkProcess("local[2]", jar=False, register_as=None, cases="arrow_job_cases", remote=True)
    try:
        res = proc.call("connect", out=str(tmp_path / "ds"))
    finally:
        proc.close()
    assert "an MDS dataset already exists at" in res["exists"] and res["ignore_unchanged"]
    assert res["plan_arrow"] is True and res["files"] == res["referenced"]


def test_workers_on_an_interpreter_without_spark_mds(tmp_path):
    """PYSPARK_PYTHON names a bare virtualenv: every path fails naming it and spark.pyspark.python."""
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    python = str(bare / "bin" / "python")
    dataset = str(tmp_path / "good")
    write_table(pa.table({"id": list(range(10))}), dataset)
    proc = SparkProcess("local[1]", jar=False, register_as=None, cases="arrow_job_cases", workers_python=python)
    try:
        res = proc.call("wrong_interpreter", out=str(tmp_path / "ds"), dataset=dataset)
    finally:
        proc.close()
    keys = ["arrow_write", "arrow_read"] + (["source_write", "source_read", "source_read_schema"] if HAS_PYTHON_DATA_SOURCE else [])
    for key in keys:
        text = res[key]
        assert "spark-mds cannot run in this Spark Python worker" in text, (key, text[-3000:])
        assert f"its interpreter {python} (Python" in text and "spark.pyspark.python" in text and "PYSPARK_PYTHON" in text, key
        assert f"the one that planned this job: {sys.executable}" in text, key
    assert res["files_left"] == []
    assert files(dataset) == {"index.json", "shard.00000.mds.zstd"} or "index.json" in files(dataset)

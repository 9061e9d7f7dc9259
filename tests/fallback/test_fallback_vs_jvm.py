"""The JVM source and the Python fallback side by side in one session (the jar is on the classpath,
so "mds" is the JVM source; the fallback is registered as "mds_py"): the same DataFrame and options
give datasets that decode to identical values, with the same index and the same shard bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from fallback_support import SparkProcess, raw_shard, without_names
from support import files, read_index, require_jar

pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parent.parent.parent
DATASETS = ROOT / "tests" / "data" / "reference" / "datasets"


@pytest.fixture(scope="module")
def both():
    require_jar()
    proc = SparkProcess("local[2]", jar=True, register_as="mds_py")
    yield proc
    proc.close()


def test_registration_reports_the_jvm_source(both):
    assert both.registered is True
    assert both.call("register_again") == {"mds": False, "mds_py": True}  # DATA_SOURCE_ALREADY_EXISTS -> False


def test_same_dataframe_same_dataset(both, tmp_path):
    written = both.call("jvm_and_fallback_write", out=str(tmp_path))
    for name, pair in written.items():
        jvm, py = read_index(pair["mds"]), read_index(pair["mds_py"])
        assert jvm["spark_mds"] == py["spark_mds"], name
        assert set(jvm) == set(py), name
        assert len(jvm["shards"]) == len(py["shards"]), name
        for a, b in zip(jvm["shards"], py["shards"]):
            # everything but the (job-unique) file names is identical: columns, encodings, sizes, hashes
            assert without_names(a) == without_names(b), name
            assert raw_shard(pair["mds"], a) == raw_shard(pair["mds_py"], b), name
            # file names: shard.<job>.<partition>.<taskAttemptId>.<seq>.mds[.ext] in both
            for e in (a, b):
                parts = e["raw_data"]["basename"].split(".")
                assert parts[0] == "shard" and len(parts[1]) == 12 and len(parts[2]) == 5 and parts[5] == "mds", parts
        for p in pair.values():
            assert files(p) == {"index.json"} | {(s["zip_data"] or s["raw_data"])["basename"] for s in read_index(p)["shards"]}


def test_year_month_intervals_read_as_months(both, tmp_path):
    res = both.call("year_month_intervals", out=str(tmp_path / "ds"))
    assert "cannot return year-month intervals" in res["read"] and "INT" in res["read"]
    assert res["months"] == [5, 17, 29, 41]


def test_reference_datasets_read_alike(both):
    res = both.call("golden_reads", datasets=str(DATASETS))
    assert res["tabular_br"] == "fallback only" and res["tabular_none"] > 0 and res["scalars"] > 0 and res["images"] > 0
    jvm_err, py_err = res["ndarrays"]
    assert "'dyn'" in jvm_err and "'dyn'" in py_err and "BINARY" in py_err.upper() and "binary" in jvm_err, res["ndarrays"]


def test_mixed_appends(both, tmp_path):
    res = both.call("mixed_appends", out=str(tmp_path / "ds"))
    assert all(e == res["encodings"][0] for e in res["encodings"])
    assert res["files"] == res["referenced"]


def test_save_mode_helper_with_either_implementation(both, tmp_path):
    res = both.call("save_modes_both", out=str(tmp_path / "ds"))
    assert res["mds"].keys() == res["mds_py"].keys()
    for fmt, r in res.items():
        assert "already exists at" in r["exists"], (fmt, r)
        assert (r["after_ignore"], r["after_append"], r["after_overwrite"]) == (5, 10, 2), (fmt, r)

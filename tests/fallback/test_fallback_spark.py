"""The Python fallback of format("mds") in a Spark session without the spark-mds jar (local[2,2]:
one retry per task)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest

from fallback_support import SparkProcess
from support import read_index, READ_ALL, check_interop_sample, run_reference
from spark_tables import INTEROP_ROWS

DATASETS = Path(__file__).resolve().parent.parent / "data" / "reference" / "datasets"

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def py():
    proc = SparkProcess("local[2,2]", jar=False, register_as="mds")
    yield proc
    proc.close()


def test_registered(py):
    assert py.registered is True


def test_sql_forms(py, tmp_path):
    res = py.call("sql_forms", out=str(tmp_path / "ds"))
    for key in ("view", "insert_view", "view_again", "insert_overwrite_view", "create_table", "insert_with",
                "create_table_location"):
        assert res[key] == "ok", (key, res[key])
    import pyspark

    if pyspark.__version__.startswith("4.0."):  # Spark 4.0 plans a Python source's view again for each query
        assert res["stale_view_count"] == 6 and res["stale_view_after_overwrite"] == [0, 1], res
    else:
        assert res["stale_view_count"] == 3  # documented: re-create a view after writing through it
        assert "changed since this query was planned" in res["stale_view_after_overwrite"]
    assert res["after_insert_with"] == 7
    # what the Python Data Source API cannot do (the table's location never reaches Python)
    for key in ("select_table", "insert_table", "select_table_location", "ctas"):
        assert "PYTHON_DATA_SOURCE_ERROR" in res[key] or "needs a path" in res[key], (key, res[key])
    assert "UNSUPPORTED_DATASOURCE_FOR_DIRECT_QUERY" in res["direct_query"]


def test_failed_first_attempt_and_failed_job(py, tmp_path):
    res = py.call("failures", out=str(tmp_path / "ds"))
    after = res["after_retry"]
    assert after["extra"] == [] and after["ids"], after
    assert after["partitions"] == ["00000", "00001"] and len(after["jobs"]) == 1
    # partition 1's shards all come from its second attempt (one taskAttemptId)
    assert len(after["attempts"]["00001"]) == 1 and after["attempts"]["00001"] != after["attempts"]["00000"]
    for mode in ("append", "overwrite"):
        assert res[mode] == "failed", res[mode]
        assert res[mode + "_unchanged"], (mode, res[mode + "_diff"])


def test_reads_with_user_schemas_and_partitions(py, tmp_path):
    res = py.call("reads", out=str(tmp_path / "ds"))
    assert res["shards"] > 5
    assert res["arr_bytes"] == "04" "02" "03000000" "fdffffff"  # ndarray:int32 payload: rank/width, shape, values
    assert "column 's' is stored as 'str' and cannot be read as INT" in res["bad_type"]
    assert "column 'nope' is not in the MDS dataset" in res["missing_column"]
    assert res["partitions_default"] == 1 and res["partitions_small"] > 3
    assert "no MDS dataset at" in res["no_dataset"] and "index.json is missing" in res["no_dataset"]
    assert res["no_dataset_with_schema"] == 0


def test_write_errors(py, tmp_path):
    res = py.call("write_errors", out=str(tmp_path / "ds"))
    assert "cannot write year-month intervals" in res["ym"] and "extract(year from ym) * 12" in res["ym"]
    assert "needs a path" in res["no_path"]
    assert "dbfs:/ paths are reached through Spark's Hadoop file systems" in res["remote"]
    assert "invalid option compression 'zip'" in res["compression"]
    assert "column 'n' has type VOID, which MDS cannot store" in res["void"]
    assert res["files"] == []
    assert "partitioning" in res["partition_by"]  # Spark refuses partitionBy for Python sources


@pytest.mark.interop
def test_reference_reads_fallback_output(py, tmp_path, ref_python):
    paths = py.call("write_for_reference", out=str(tmp_path / "ds"))
    got = run_reference(ref_python, READ_ALL, *[f"{p}|" for p in paths])
    for p in paths:
        samples = got[p]  # (keyed by path)
        assert len(read_index(p)["shards"]) > 2
        by_id = {s["id"]["np"][1]: s for s in samples}
        assert sorted(by_id) == list(range(60))
        for i, s in by_id.items():
            check_interop_sample(s, INTEROP_ROWS[i % 3])


def test_fallback_writes_the_reference_bytes(py, tmp_path):
    """Same data and settings as the reference's tabular fixtures -> identical shard files."""
    exp = json.loads((DATASETS / "tabular_none" / "expected.json").read_text())["samples"]

    def arr(t, dtype):
        return np.frombuffer(base64.b64decode(t["ndarray"]["data_b64"]), dtype=dtype).tolist()

    rows = [(int(e["id"]["scalar"]["repr"]), e["text"]["value"], arr(e["tokens"], "<i4"),
             int(e["label"]["scalar"]["repr"]), arr(e["emb"], "<f4")) for e in exp]  # fmt: skip
    written = py.call("write_reference_tabular", out=str(tmp_path), rows=rows)
    for name, p in written.items():
        ours, ref = read_index(p)["shards"], read_index(str(DATASETS / name))["shards"]
        assert len(ours) == len(ref), name
        for a, b in zip(ours, ref):
            for key in ("column_encodings", "column_names", "column_sizes", "compression", "format", "hashes",
                        "samples", "size_limit", "version"):  # fmt: skip
                assert a[key] == b[key], (name, key)
            assert a["raw_data"]["bytes"] == b["raw_data"]["bytes"] and a["raw_data"]["hashes"] == b["raw_data"]["hashes"]
            if name in ("tabular_none", "tabular_zstd", "tabular_zstd-7", "tabular_none_sha1-xxh64", "tabular_bz2"):
                # the same codec library as the reference: the stored files are identical too
                assert a["zip_data"] == b["zip_data"] or (a["zip_data"]["bytes"], a["zip_data"]["hashes"]) == \
                    (b["zip_data"]["bytes"], b["zip_data"]["hashes"]), name


def test_session_time_zone(py, tmp_path):
    res = py.call("session_time_zone", out=str(tmp_path / "ds"))
    utc = dt.datetime(2024, 3, 10, 9, 30, tzinfo=dt.timezone.utc)  # 01:30 in Los Angeles (PST, UTC-8)
    assert res["ts"] == int(utc.timestamp()) * 10**6
    assert res["ntz"] == int(dt.datetime(2024, 3, 10, 1, 30, tzinfo=dt.timezone.utc).timestamp()) * 10**6

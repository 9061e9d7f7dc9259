"""The Python fallback of format("mds") in a Spark session without the spark-mds jar (local[2,2]:
one retry per task)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pytest

from fallback_support import SparkProcess, read_index
from support import run_reference

DATASETS = Path(__file__).resolve().parent.parent / "data" / "reference" / "datasets"

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def py():
    proc = SparkProcess("local[2,2]", jar=False, register_as="mds")
    yield proc
    proc.close()


def test_registered(py):
    assert py.registered is True


def test_roundtrip_every_type(py, tmp_path):
    res = py.call("roundtrip_every_type", out=str(tmp_path / "ds"))
    enc = res["encodings"]
    assert enc["bool"] == "uint8" and enc["date"] == "int32" and enc["ts"] == "int64" and enc["dt_iv"] == "int64"
    assert enc["dec"] == "str_decimal" and enc["arr_i"] == "ndarray:int32"
    assert enc["arr2_l"] == "ndarray:int64" and enc["arr_b"] == "ndarray:uint8"
    assert enc["st"] == enc["map_s"] == enc["arr_s"] == enc["arr_bin"] == "json"
    assert enc["__nulls__"] == "ndarray:uint8:4"
    assert res["index"]["spark_mds"]["null_mask"] == "__nulls__"
    assert res["files"] == res["referenced"]


def test_save_modes(py, tmp_path):
    res = py.call("save_modes", out=str(tmp_path / "ds"))
    for key in ("no_mode", "errorifexists", "ignore"):  # what the Python Data Source API allows
        assert "UNSUPPORTED_DATA_SOURCE_SAVE_MODE" in res[key], res[key]
    assert "an MDS dataset already exists at" in res["exists"] and "mode('append')" in res["exists"]


def test_options_compressions_hashes_size_limit(py, tmp_path):
    res = py.call("options", out=str(tmp_path / "ds"))
    for comp in ["none", "zstd:7", "gz", "bz2", "snappy", "lz4", "br"]:
        shards = res[comp]
        assert len(shards) > 1, "size_limit 2kb cuts several shards"
        for s in shards:
            assert s["hashes"] == ["md5", "sha1", "sha3_256", "xxh32", "xxh64"]
            assert s["size_limit"] == 2048
            assert s["raw_data"]["bytes"] <= 2048 or s["samples"] == 1
            if comp == "none":
                assert s["zip_data"] is None and s["compression"] is None
            else:
                assert s["compression"] == comp
                assert s["zip_data"]["basename"].endswith("." + comp.split(":")[0])
    assert res["tiny"][0]["samples"] == 0
    assert "the index has no sha256 hash" in res["bad_hash"]


def test_encoding_overrides(py, tmp_path):
    res = py.call("encoding_overrides", out=str(tmp_path / "ds"))
    assert res["encodings"] == {"MyJs": "json", "__nulls__": "ndarray:uint8:1", "flag": "int8", "flat": "ndarray:float32:2,3",
                                "h": "float16", "id": "str_int", "nn": "json", "small": "int16", "sq": "ndarray:uint8:2,2"}
    assert "option encoding.small='jpeg' is not allowed for column 'small' of type INT; allowed: int8" in res["bad"]
    assert "option encoding.nope names no column" in res["unknown"]


def test_empty_dataframe_and_nulls_error_mode(py, tmp_path):
    res = py.call("empty_and_nulls_error", out=str(tmp_path / "ds"))
    assert res["empty_index"]["shards"] == [] and res["empty_index"]["spark_mds"]["schema"]["fields"][0]["name"] == "id"
    assert "__nulls__" not in res["error_index"]["shards"][0]["column_names"]
    assert "null_mask" not in res["error_index"]["spark_mds"]
    assert "column 's' holds a null but option nulls=error forbids nulls" in res["null_error"]
    assert "column 's' holds a null but option nulls=error forbids nulls" in res["append_error"]
    assert res["files_e"] == res["referenced_e"]


def test_sql_forms(py, tmp_path):
    res = py.call("sql_forms", out=str(tmp_path / "ds"))
    for key in ("view", "insert_view", "view_again", "insert_overwrite_view", "create_table", "insert_with",
                "create_table_location"):
        assert res[key] == "ok", (key, res[key])
    assert res["stale_view_count"] == 3  # documented: re-create a view after writing through it
    assert "changed since this query was planned" in res["stale_view_after_overwrite"]
    assert res["after_insert_with"] == 7
    # what the Python Data Source API cannot do (the table's location never reaches Python)
    for key in ("select_table", "insert_table", "select_table_location", "ctas"):
        assert "PYTHON_DATA_SOURCE_ERROR" in res[key] or "needs a path" in res[key], (key, res[key])
    assert "UNSUPPORTED_DATASOURCE_FOR_DIRECT_QUERY" in res["direct_query"]


def test_failed_first_attempt_and_failed_job(py, tmp_path):
    res = py.call("failures", out=str(tmp_path / "ds"))
    assert len(res["failed_attempt_files"]) >= 2, "the failing attempt wrote shards before it failed"
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


# Reads each dataset given on the command line with the reference StreamingDataset and prints its
# samples as tagged JSON (numpy scalars and arrays keep their dtype).
READ_ALL = r"""
import base64, json, sys
import numpy as np
from streaming import StreamingDataset
def tag(v):
    if isinstance(v, np.ndarray):
        return {"nd": [str(v.dtype), list(v.shape), v.astype(np.float64).tolist() if v.dtype.kind == "f" else v.tolist()]}
    if isinstance(v, np.generic):
        return {"np": [str(v.dtype), v.item() if v.dtype.kind != "f" else float(v).hex()]}
    if isinstance(v, float):
        return {"f": v.hex()}
    if isinstance(v, bytes):
        return {"b": base64.b64encode(v).decode()}
    if type(v).__name__ == "Decimal":
        return {"dec": str(v)}
    return {"v": v}
out = {}
for path in sys.argv[1:]:
    ds = StreamingDataset(local=path, batch_size=1, validate_hash="sha1")
    out[path] = [{k: tag(v) for k, v in ds[i].items()} for i in range(ds.num_samples)]
print(json.dumps(out))
"""


def _check_reference_sample(s, row):
    (_, b, sh, i, f, d, flag, text, binv, dec, day, ts, tokens, mat, st, emb) = row
    nulls = s["__nulls__"]["nd"]
    assert nulls[0] == "uint8" and nulls[1] == [2]
    bits = [(nulls[2][k // 8] >> (k % 8)) & 1 for k in range(16)]
    assert bits == [int(row[k] is None and k > 0) for k in range(16)]
    assert s["b"]["np"] == ["int8", b or 0] and s["s"]["np"] == ["int16", sh or 0] and s["i"]["np"] == ["int32", i or 0]
    assert s["f"]["np"] == ["float32", float(f or 0.0).hex()]
    assert s["d"]["np"][1] == "nan" if d is not None and math.isnan(d) else s["d"]["np"] == ["float64", float(d or 0.0).hex()]
    assert s["flag"]["np"] == ["uint8", int(bool(flag))]
    assert s["text"]["v"] == (text or "")
    assert s["bin"]["b"] == base64.b64encode(binv or b"").decode()
    assert s["dec"]["dec"] == (str(dec) if dec is not None else "0")
    assert s["day"]["np"] == ["int32", (day - dt.date(1970, 1, 1)).days if day else 0]
    micros = 0 if ts is None else int((ts - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)).total_seconds()) * 10**6 + ts.microsecond
    assert s["ts"]["np"] == ["int64", micros]
    assert s["tokens"]["nd"] == ["int32", [len(tokens or [])], tokens or []]
    if mat:
        assert s["mat"]["nd"] == ["float32", [len(mat), len(mat[0])], mat]
    else:
        assert s["mat"]["nd"][1] == [0, 0]
    assert s["st"]["v"] == (None if st is None else {"x": st[0], "y": st[1]})
    assert s["emb"]["nd"] == ["float32", [4], emb]


@pytest.mark.interop
def test_reference_reads_fallback_output(py, tmp_path, ref_python):
    from fallback_spark_cases import INTEROP_ROWS

    paths = py.call("write_for_reference", out=str(tmp_path / "ds"))
    got = run_reference(ref_python, READ_ALL, *paths)
    for p in paths:
        samples = got[p]
        assert len(read_index(p)["shards"]) > 2
        by_id = {s["id"]["np"][1]: s for s in samples}
        assert sorted(by_id) == list(range(60))
        for i, s in by_id.items():
            _check_reference_sample(s, INTEROP_ROWS[i % 3])


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

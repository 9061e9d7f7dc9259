"""The Python fallback of format("mds") writing and reading s3:// URLs of a real S3-compatible
server (moto on 127.0.0.1), in one Spark session without the jar (local[2,2]: one retry per task):
round trips of several types, the written dataset read by mds_loader's StreamingDataset, append
and overwrite, storage errors, and failed tasks and jobs that leave no orphan objects."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from s3server import KEY, REGION, SECRET

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "fallback"))
sys.path.insert(0, str(HERE.parent / "spark"))  # (fallback_support imports mds_testutil)

from fallback_support import SparkProcess  # noqa: E402
from remote_fallback_cases import row  # noqa: E402

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def py():
    proc = SparkProcess("local[2,2]", jar=False, register_as="mds", cases="remote_fallback_cases",
                        pythonpath=(str(HERE),))
    yield proc
    proc.close()


def source_options(s3) -> dict[str, str]:
    """The S3 server's storage options as per-value data source options."""
    return {"storage.key": KEY, "storage.secret": SECRET, "storage.endpoint_url": s3.endpoint,
            "storage.client_kwargs.region_name": REGION}


def objects(s3, bucket: str, prefix: str) -> dict[str, bytes]:
    """The objects under ``prefix/``, by relative name, with their content."""
    client = s3.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", [])]
    return {k[len(prefix) + 1:]: client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def referenced(found: dict[str, bytes]) -> set[str]:
    """``index.json`` and the stored files of the shards it lists."""
    index = json.loads(found["index.json"])
    return {"index.json"} | {(s["zip_data"] or s["raw_data"])["basename"] for s in index["shards"]}


def plain(value: Any) -> Any:
    """A sample value from StreamingDataset as plain Python (numpy scalars and arrays unwrapped)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def expected_sample(i: int) -> dict[str, Any]:
    """Row ``i`` as StreamingDataset returns it: booleans as uint8, dates as days since 1970."""
    id_, text, score, price, tags, vals, flag, day = row(i)
    return {"id": id_, "text": text, "score": score, "price": price, "tags": tags, "vals": vals,
            "flag": None if flag is None else int(flag),
            "day": None if day is None else (day - dt.date(1970, 1, 1)).days}


def test_roundtrip_and_streaming_dataset(py, s3, tmp_path):
    bucket = s3.new_bucket("fallback")
    url = f"s3://{bucket}/datasets/types"
    assert py.call("roundtrip", url=url, options=source_options(s3)) == {"count": 300}
    found = objects(s3, bucket, "datasets/types")
    assert set(found) == referenced(found) and len(found) > 5  # several shards, nothing else
    index = json.loads(found["index.json"])
    assert index["spark_mds"]["null_mask"] == "__nulls__"

    from mds_loader import StreamingDataset

    ds = StreamingDataset(remote=url, local=str(tmp_path / "cache"), storage_options=s3.storage_options, batch_size=1)
    samples = [{k: plain(v) for k, v in ds[i].items()} for i in range(ds.num_samples)]
    assert sorted(samples, key=lambda s: s["id"]) == [expected_sample(i) for i in range(300)]


def test_append_and_overwrite_with_json_storage_options(py, s3):
    bucket = s3.new_bucket("fallback")
    url = f"s3://{bucket}/ds"
    options = {"storage_options": json.dumps(s3.storage_options)}
    assert py.call("append_overwrite", url=url, options=options) == {"ok": True}
    found = objects(s3, bucket, "ds")
    assert set(found) == referenced(found)  # the replaced shards were deleted
    jobs = {n.split(".")[1] for n in found if n.startswith("shard.")}
    assert len(jobs) == 1, jobs  # only the last overwrite's shards remain


def test_storage_errors(py, s3):
    bucket = s3.new_bucket("fallback")
    res = py.call("storage_errors", url=f"s3://{bucket}/ds", options=source_options(s3))
    assert "dbfs:/ paths" in res["dbfs"] and "/Volumes/" in res["dbfs"]
    assert "fsspec knows no file system for nosuchfs://" in res["scheme"]
    assert "option storage_options is not valid JSON" in res["json"]
    assert "no MDS dataset at s3://" in res["missing"] and "index.json is missing" in res["missing"]


def test_failed_tasks_and_jobs_leave_no_orphan_objects(py, s3, tmp_path):
    bucket = s3.new_bucket("fallback")
    prefix = "failures/ds"
    url = f"s3://{bucket}/{prefix}"
    options = source_options(s3)
    probe = str(tmp_path / "probe.json")
    res = py.call("failed_first_attempt", url=url, options=options, probe=probe)
    assert res["failed_attempt_objects"], "the failing attempt uploaded shards before it failed"
    assert res["ids_ok"]
    found = objects(s3, bucket, prefix)
    assert set(found) == referenced(found)
    assert not set(res["failed_attempt_objects"]) & set(found)  # the failed attempt's uploads are gone
    for mode in ("append", "overwrite"):
        res = py.call("failing_job", url=url, options=options, mode=mode, probe=probe)
        assert res["result"] == "failed" and res["uploaded"], (mode, res)
        assert objects(s3, bucket, prefix) == found, mode  # nothing added, removed or changed

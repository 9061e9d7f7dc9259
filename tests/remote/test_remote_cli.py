"""The `mds` command on remote datasets: inspect, head and validate take s3:// URLs (credentials
and endpoint from the standard AWS environment variables), and validate catches a corrupt object."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mds_loader import write_table
from remote_data import HASHES, SIZE_LIMIT, make_table
from s3server import KEY, REGION, SECRET

MDS = str(Path(sys.executable).with_name("mds"))


@pytest.fixture(scope="module")
def url(s3):
    bucket = s3.new_bucket("cli")
    url = f"s3://{bucket}/ds"
    write_table(make_table(500), url, size_limit=SIZE_LIMIT, hashes=HASHES, storage_options=s3.storage_options)
    return url


def mds(s3, *args: str, tmp: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": REGION,
           "AWS_ENDPOINT_URL": s3.endpoint, "TMPDIR": str(tmp)}
    return subprocess.run([MDS, *args], capture_output=True, text=True, env=env, timeout=300)


def test_inspect_head_validate_a_remote_dataset(s3, url, tmp_path):
    proc = mds(s3, "inspect", url, tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "samples      500" in proc.stdout and "hashes       sha1, xxh64" in proc.stdout
    proc = mds(s3, "head", url, "-n", "3", "--columns", "id,label", tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [line.split()[1] for line in proc.stdout.splitlines()[1:]] == ["0", "1", "2"]
    proc = mds(s3, "validate", url, tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("valid: ") and "hashes verified: sha1" in proc.stdout


def test_validate_reports_a_corrupt_remote_object(s3, url, tmp_path):
    bucket, prefix = url[len("s3://"):].split("/", 1)
    client = s3.client()
    key = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
                 if o["Key"].endswith(".zstd"))[1]
    body = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0xFF
    client.put_object(Bucket=bucket, Key=key, Body=bytes(body))
    proc = mds(s3, "validate", url, tmp=tmp_path)
    assert proc.returncode == 1
    assert f"{os.path.basename(key)}: sha1 checksum mismatch" in proc.stderr


def test_missing_remote_dataset(s3, tmp_path):
    bucket = s3.new_bucket("cli-missing")
    proc = mds(s3, "inspect", f"s3://{bucket}/nothing", tmp=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "index.json: not found" in proc.stderr

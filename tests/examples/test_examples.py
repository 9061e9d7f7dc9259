"""Each runnable example in examples/ (except the quickstart, tested by test_quickstart.py) runs
end to end and prints what it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import ROOT


def run_example(name: str, *args: str | os.PathLike, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / name), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=str(ROOT), env={**os.environ, **(env or {})})  # fmt: skip
    assert proc.returncode == 0, f"{name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout


def test_parquet_to_mds(tmp_path):
    out = run_example("parquet_to_mds.py", tmp_path)
    assert "wrote 5,000 rows in 2 Parquet files" in out
    assert f"$ mds convert {tmp_path / 'parquet'} {tmp_path / 'mds-cli'}" in out
    assert "converted 5,000 rows from" in out and "(zstd, null mask)" in out
    assert "schema       spark_mds logical schema (format_version 1)" in out
    assert "price      decimal(12,2)  str_decimal" in out
    assert f"valid: {tmp_path / 'mds-cli'}: 5 shards, 5,000 samples" in out and "5,000 samples decoded" in out
    assert "read_table(mds-cli): 5,000 rows, equal to the Parquet data: True" in out
    assert "read_table(mds-api): 5,000 rows, equal to the Parquet data: True" in out
    assert "StreamingDataset: 5,000 samples; sample 1 = id 1, text 'document 1'" in out
    assert (tmp_path / "mds-cli" / "index.json").exists()  # an explicit output directory is kept


def test_mix_streams_default_temp_dir_is_removed(short_tmpdir):
    scratch = short_tmpdir
    out = run_example("mix_streams.py", env={"TMPDIR": str(scratch)})
    assert "epoch size: 2,100 samples" in out
    assert "epoch 0: books=2,000 code=100 (distinct code samples: 100)" in out
    assert "epoch 1: books=2,000 code=100 (distinct code samples: 100)" in out
    assert "code samples drawn in both epochs: 100 of 100" not in out  # choose draws anew
    assert "epoch 0: books=800 code=200" in out and "epoch 1: books=800 code=200" in out
    assert "first batch: tokens (100, 3) torch.int32" in out
    assert "10 batches: books=800 code=200" in out
    assert not [p for p in scratch.iterdir() if p.name.startswith("mds-mix-streams-")]


def test_read_reference_dataset(tmp_path):
    out = run_example("read_reference_dataset.py", tmp_path)
    assert "300 samples; sample 0: emb=ndarray, id=int64, label=int32, text=str, tokens=ndarray" in out
    assert "every sample equals what mosaicml-streaming returned: True" in out
    assert "first batches: [127, 80, 164, 167, 23, 299, 243, 26]" in out
    assert "38 batches; order identical to mosaicml-streaming 0.13.0: True" in out
    assert "300 rows; schema: emb: fixed_size_list<item: float>[16], id: int64" in out
    assert "per sample: jpg=JpegImageFile" in out and "read_table: jpg is binary" in out


@pytest.mark.spark
@pytest.mark.slow
def test_spark_connect_fallback(tmp_path):
    out = run_example("spark_connect_fallback.py", tmp_path, timeout=600)
    assert "format('mds') is served by: python" in out
    assert f"wrote 1,000 rows to {tmp_path / 'events'} (mode overwrite)" in out
    assert "read back: 1,100 rows; schema: struct<id:bigint,label:int,text:string,score:double,emb:array<float>,day:date>" in out
    assert "rows with a null score: 158" in out
    assert "spark_mds.write(df, ..., mode='errorifexists'): wrote 1,000 rows" in out
    assert "  again: refused (" in out
    assert "spark_mds.write(..., mode='ignore'): still 1,000 rows" in out
    assert "read_table: 1,100 rows, date32[day] dates, 158 null scores" in out
    assert Path(tmp_path / "events" / "index.json").exists()


def test_databricks_workflow(short_tmpdir):
    """The seed's workflow end to end: Spark, dataframe_to_mds with a udf_iterable, streaming from a
    local S3 server, TorchDistributor training interrupted and resumed (torch processes need a short
    TMPDIR for their sockets)."""
    out = run_example("databricks_workflow.py", env={"TMPDIR": str(short_tmpdir)}, timeout=600)
    assert "format('mds') served by: jvm" in out
    assert "2. dataframe_to_mds -> " in out and ": 8 shards, 1,200 samples" in out
    assert "4b. interrupted after 20 batches per rank: 20 batches" in out
    assert "4c. resumed from the saved state: 18 batches" in out
    assert "resumed batches equal the uninterrupted epoch's, rank by rank: True" in out
    assert "every sample once per epoch: True" in out

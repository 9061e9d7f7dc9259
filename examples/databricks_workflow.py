"""The Databricks workflow of mosaicml-streaming, step by step, on this machine.

Databricks' guide to Mosaic Streaming has four steps. Each runs here on local resources; the README
("Coming from mosaicml-streaming") shows how each line changes on a cluster.

1. Load and preprocess data with Spark.
2. Convert it with ``dataframe_to_mds(..., udf_iterable=...)``: the same call as
   ``streaming.base.converters.dataframe_to_mds``, imported from ``spark_mds``, written through
   ``format("mds")`` (the jar here; the Python source where a cluster takes no jars).
3. Stream it with ``StreamingDataset(remote=..., local=...)`` from object storage: here a local
   S3-compatible server (moto) that the dataset is uploaded to (on Databricks the dataset is written
   to a Unity Catalog volume or a bucket directly, and this upload does not exist).
4. Train with Spark's ``TorchDistributor`` (2 processes, DDP on gloo, 2 loader workers each): the
   run stops mid-epoch and saves the loader's ``state_dict``; a second run resumes from it. The
   batches each rank saw before and after the resume are exactly those of an uninterrupted epoch.

Usage: python examples/databricks_workflow.py [WORK_DIR]
(default: a temporary directory, removed at the end)
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from pyspark.sql import SparkSession

import spark_mds
from spark_mds import dataframe_to_mds  # was: from streaming.base.converters import dataframe_to_mds

BATCH = 16
ROWS = 1_200
STOP_AFTER = 20  # batches per rank before the interruption (an epoch has ROWS / 2 / BATCH = 37.5)


# ---------------------------------------------------------------- 1. preprocess with Spark

def preprocess(spark: SparkSession):
    """Raw events -> one row per example: a text, 8 numeric features and a label."""
    raw = spark.range(ROWS, numPartitions=4).selectExpr(
        "id", "concat('event ', id) AS text", "transform(sequence(0, 7), k -> (id * (k + 1)) % 13) AS raw_features")
    return raw.selectExpr("id", "text", "aggregate(raw_features, 0L, (a, x) -> a + x) % 3 AS label", "raw_features")


# ---------------------------------------------------------------- 2. convert with a udf_iterable

def to_samples(frame, scale):
    """Runs in Spark's Python workers, once per batch of a partition (a pandas DataFrame): the samples
    to write, as the reference's udf_iterable yields them."""
    for row in frame.itertuples():
        yield {"id": int(row.id), "text": row.text,
               "features": np.asarray(row.raw_features, dtype=np.float32) / scale, "label": int(row.label)}


COLUMNS = {"id": "int64", "text": "str", "features": "ndarray:float32:8", "label": "int32"}


# ---------------------------------------------------------------- 3. object storage (moto's S3 server)

def start_s3() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            return proc, endpoint
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto's S3 server did not start (pip install 'moto[server]')")


# ---------------------------------------------------------------- 4. train with TorchDistributor

def train(remote: str, local: str, storage_options: dict, state_file: str, stop_after: int | None, log_dir: str) -> str:
    """One DDP run over the dataset (in each TorchDistributor process): resumes from `state_file`
    if it exists; with `stop_after`, stops after that many batches and saves the loader's state."""
    import torch
    import torch.distributed as dist

    from mds_loader import StreamingDataLoader, StreamingDataset

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(8, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    dataset = StreamingDataset(remote=remote, local=local, storage_options=storage_options, batch_size=BATCH,
                               shuffle=True, shuffle_seed=42)  # fmt: skip
    loader = StreamingDataLoader(dataset, batch_size=BATCH, num_workers=2)
    if os.path.exists(state_file):
        loader.load_state_dict(torch.load(state_file))
    seen, loss = [], None
    for step, batch in enumerate(loader):
        loss = torch.nn.functional.cross_entropy(model(batch["features"]), batch["label"].long())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen.append(batch["id"].tolist())
        if stop_after is not None and step + 1 == stop_after:
            if rank == 0:  # every rank's loader has yielded as many samples: one state for all
                torch.save(loader.state_dict(), state_file)
            break
    with open(os.path.join(log_dir, f"rank{rank}.json"), "w") as f:
        json.dump(seen, f)
    dist.barrier()
    dist.destroy_process_group()
    return f"{len(seen)} batches, last loss {loss.item():.3f}"


def distributed(spark: SparkSession, *args) -> tuple[str, list[list[list[int]]]]:
    from pyspark.ml.torch.distributor import TorchDistributor

    log_dir = tempfile.mkdtemp(dir=args[-1])
    result = TorchDistributor(num_processes=2, local_mode=True, use_gpu=False).run(train, *args[:-1], log_dir)
    return result, [json.loads(Path(log_dir, f"rank{r}.json").read_text()) for r in range(2)]


def main(work: Path) -> None:
    # Spark's Python workers (the udf_iterable) and TorchDistributor's processes run this interpreter.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    spark = (spark_mds.configure(SparkSession.builder.master("local[2]").appName("databricks workflow"))
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false").getOrCreate())
    s3, endpoint = start_s3()
    try:
        print(f"format('mds') served by: {spark_mds.register(spark)}")
        df = preprocess(spark)
        print(f"1. preprocessed {df.count():,} rows with Spark")

        volume = str(work / "volume" / "events")  # on Databricks: /Volumes/<catalog>/<schema>/<volume>/events
        out_local, out_remote = dataframe_to_mds(
            df.repartition(4), merge_index=True,
            mds_kwargs={"out": volume, "columns": COLUMNS, "compression": "zstd", "hashes": ["sha1"],
                        "size_limit": 1 << 14},
            udf_iterable=to_samples, udf_kwargs={"scale": 13.0})  # fmt: skip
        index = json.loads(Path(volume, "index.json").read_text())
        print(f"2. dataframe_to_mds -> {out_local!r}: {len(index['shards'])} shards, "
              f"{sum(s['samples'] for s in index['shards']):,} samples")  # fmt: skip

        import boto3
        import fsspec

        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="training")
        storage_options = {"client_kwargs": {"endpoint_url": endpoint}}
        fsspec.filesystem("s3", **storage_options).put(volume, "training/events", recursive=True)
        remote, cache = "s3://training/events", str(work / "local_disk0" / "cache")
        print(f"3. streaming from {remote} through the cache {cache}")

        checkpoint = str(work / "loader_state.pt")
        full, uninterrupted = distributed(spark, remote, cache, storage_options, str(work / "none.pt"), None, str(work))
        print(f"4a. uninterrupted epoch: {full} (rank 0)")
        first, before = distributed(spark, remote, cache, storage_options, checkpoint, STOP_AFTER, str(work))
        print(f"4b. interrupted after {STOP_AFTER} batches per rank: {first}; loader state saved")
        rest, after = distributed(spark, remote, cache, storage_options, checkpoint, None, str(work))
        print(f"4c. resumed from the saved state: {rest}")
        same = all(before[r] + after[r] == uninterrupted[r] for r in range(2))
        ids = sorted(i for rank in uninterrupted for b in rank for i in b)
        print(f"resumed batches equal the uninterrupted epoch's, rank by rank: {same}")
        print(f"every sample once per epoch: {ids == list(range(ROWS))}")
    finally:
        spark.stop()
        s3.kill()
        s3.wait()


if __name__ == "__main__":
    given = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    work = given or Path(tempfile.mkdtemp(prefix="mds-databricks-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        main(work)
    finally:
        if given is None:
            shutil.rmtree(work, ignore_errors=True)

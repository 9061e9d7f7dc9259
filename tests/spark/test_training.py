"""Spark's TorchDistributor trains DDP (gloo) for an epoch on a dataset written by format("mds"),
on every Spark line the suite runs; each rank's samples are the order's (generate_work, which the
ordering tests hold to the reference's). (Lightning: tests/loader/test_lightning.py.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from pyspark import cloudpickle

from mds_loader import StreamingDataset
from mds_loader.ordering import generate_work, rank_batches, resolve_shuffle_block_size

pytestmark = [pytest.mark.spark]

# The training functions run in processes where this module is not importable.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

BATCH = 8


@pytest.fixture(scope="module")
def mds_dataset(spark, tmp_path_factory) -> Path:
    """200 rows written by format("mds"): an id, 4 features and a label."""
    path = tmp_path_factory.mktemp("train") / "ds"
    (spark.range(200, numPartitions=2)
     .selectExpr("id", "array(cast(id AS float), 1.0f, 2.0f, 3.0f) AS features", "cast(id % 2 AS int) AS label")
     .write.format("mds").option("encoding.features", "ndarray:float32:4").save(str(path)))
    return path


def _expected(path: Path, ranks: int, workers: int, epoch: int = 0) -> list[list[list[int]]]:
    """Each rank's batches of the order for one node with `ranks` ranks."""
    ds = StreamingDataset(local=str(path), batch_size=BATCH, shuffle=True, shuffle_seed=17)
    work = generate_work("random", ds._weighted, epoch=epoch, sample_in_epoch=0, world=(1, ranks, max(workers, 1)),
                         batch_size=BATCH, num_canonical_nodes=1, seed=17, shuffle=True, shuffle_algo="py1e",
                         shuffle_block_size=resolve_shuffle_block_size(None, 1))
    return [[b.tolist() for b in rank_batches(work, 0, rank, BATCH)] for rank in range(ranks)]


def _ddp_epoch(path: str, workers: int, out: str) -> str:
    """One DDP epoch (gloo) of a linear model; each rank writes the ids it trained on."""
    import os

    import torch
    import torch.distributed as dist

    from mds_loader import StreamingDataLoader, StreamingDataset

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    ds = StreamingDataset(local=path, batch_size=BATCH, shuffle=True, shuffle_seed=17)
    seen = []
    for batch in StreamingDataLoader(ds, batch_size=BATCH, num_workers=workers):
        loss = torch.nn.functional.cross_entropy(model(batch["features"]), batch["label"].long())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen.append(batch["id"].tolist())
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(seen, f)
    dist.barrier()
    dist.destroy_process_group()
    return "trained"


@pytest.mark.parametrize("workers", [0, 2])
def test_torch_distributor_trains_on_spark_written_mds(spark, mds_dataset, tmp_path, workers):
    from pyspark.ml.torch.distributor import TorchDistributor

    result = TorchDistributor(num_processes=2, local_mode=True, use_gpu=False).run(
        _ddp_epoch, str(mds_dataset), workers, str(tmp_path))
    assert result == "trained"
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert seen == _expected(mds_dataset, 2, workers)
    assert sorted(x for rank in seen for b in rank for x in b) == list(range(200))

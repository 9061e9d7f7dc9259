"""The training integrations users run, in the suite: Spark's TorchDistributor trains DDP (gloo)
for an epoch on a dataset written by format("mds"), and a Lightning Trainer checkpointed in the
middle of an epoch resumes with the uninterrupted run's batches (Lightning saves and restores the
StreamingDataLoader's state). Each rank's samples are the order's (generate_work, which the
ordering tests hold to the reference's)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
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


LIGHTNING = r'''
import json, sys
import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from mds_loader import StreamingDataLoader, StreamingDataset

path, workers, ckpt_dir, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

class Model(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)
        self.seen = []
    def training_step(self, batch, i):
        self.seen.append(batch["id"].tolist())
        return torch.nn.functional.cross_entropy(self.layer(batch["features"]), batch["label"].long())
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

class Stop(Callback):  # the run is cut after 7 steps: the last checkpoint is mid-epoch
    def on_train_batch_end(self, trainer, *args):
        if mode == "cut" and trainer.global_step == 7:
            trainer.should_stop = True

L.seed_everything(0)
loader = StreamingDataLoader(StreamingDataset(local=path, batch_size=8, shuffle=True, shuffle_seed=17),
                             batch_size=8, num_workers=workers)
model = Model()
trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                    enable_model_summary=False, num_sanity_val_steps=0,
                    callbacks=[Stop(), ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=5, save_top_k=-1)])
trainer.fit(model, loader, ckpt_path=None if mode != "resume" else f"{ckpt_dir}/epoch=0-step=5.ckpt")
print(json.dumps(model.seen))
'''


@pytest.mark.parametrize("workers", [0, 2])
def test_lightning_resumes_mid_epoch(mds_dataset, tmp_path, workers):
    """Lightning checkpoints the loader's state at step 5 of an epoch of 25; a new process
    resumed from that checkpoint trains on exactly the batches the uninterrupted run trained on
    after step 5, through the next epoch."""
    from support import run_python

    full = run_python(LIGHTNING, str(mds_dataset), str(workers), str(tmp_path / "full"), "full")
    run_python(LIGHTNING, str(mds_dataset), str(workers), str(tmp_path / "cut"), "cut")
    resumed = run_python(LIGHTNING, str(mds_dataset), str(workers), str(tmp_path / "cut"), "resume")
    assert len(full) == 50  # 2 epochs of 25 batches
    assert full[:25] == _expected(mds_dataset, 1, workers)[0]
    assert resumed == full[5:]
    assert np.array_equal(sorted(x for b in full[:25] for x in b), np.arange(200))

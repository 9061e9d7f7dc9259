"""A Lightning Trainer checkpointed in the middle of an epoch resumes with the uninterrupted run's
batches: Lightning saves and restores the StreamingDataLoader's state in its checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from mds_loader import StreamingDataset, write_table
from mds_loader.ordering import generate_work, rank_batches, resolve_shuffle_block_size
from support import run_python

BATCH = 8


@pytest.fixture(scope="module")
def mds_dataset(tmp_path_factory) -> Path:
    """200 rows: an id, 4 features and a label, in 4 shards."""
    path = tmp_path_factory.mktemp("train") / "ds"
    ids = np.arange(200)
    features = pa.FixedSizeListArray.from_arrays(pa.array(np.repeat(ids, 4).astype(np.float32)), 4)
    write_table(pa.table({"id": ids, "features": features, "label": (ids % 2).astype(np.int32)}), str(path),
                columns={"features": "ndarray:float32:4"}, size_limit=2000)
    return path


def _expected(path: Path, workers: int, epoch: int) -> list[list[int]]:
    """The batches of the order of `epoch` (one rank)."""
    ds = StreamingDataset(local=str(path), batch_size=BATCH, shuffle=True, shuffle_seed=17)
    work = generate_work("random", ds._weighted, epoch=epoch, sample_in_epoch=0, world=(1, 1, max(workers, 1)),
                         batch_size=BATCH, num_canonical_nodes=1, seed=17, shuffle=True, shuffle_algo="py1e",
                         shuffle_block_size=resolve_shuffle_block_size(None, 1))
    return [b.tolist() for b in rank_batches(work, 0, 0, BATCH)]


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
    """Lightning checkpoints the loader's state every 5 steps of an epoch of 25, and the run is
    stopped at step 7; a new process resumed from the step-5 checkpoint trains on exactly the
    batches of the order from there, through the next epoch."""
    cut = run_python(LIGHTNING, str(mds_dataset), str(workers), str(tmp_path), "cut")
    resumed = run_python(LIGHTNING, str(mds_dataset), str(workers), str(tmp_path), "resume")
    epochs = _expected(mds_dataset, workers, 0) + _expected(mds_dataset, workers, 1)
    assert len(epochs) == 50
    assert cut == epochs[:7]
    assert resumed == epochs[5:]

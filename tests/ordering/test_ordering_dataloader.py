"""`rank_batches` models what a real torch DataLoader yields from per-worker sample streams:
workers' batches dealt round-robin, exhausted workers skipped, partial batches where a worker's
stream ends (or where -1 padding sits inside its stream)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from mds_loader.ordering import get_partitions, rank_batches, worker_sample_ids

pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")


class _Epoch(IterableDataset):
    """Yields what a StreamingDataset worker yields: its slice of the epoch, -1 skipped."""

    def __init__(self, epoch_ids: np.ndarray, node: int, rank: int) -> None:
        self.epoch_ids, self.node, self.rank = epoch_ids, node, rank

    def __iter__(self):
        info = get_worker_info()
        worker = info.id if info else 0
        yield from worker_sample_ids(self.epoch_ids, self.node, self.rank, worker).tolist()


def _loader_batches(epoch_ids, node, rank, batch, num_workers, drop_last=False):
    loader = DataLoader(_Epoch(epoch_ids, node, rank), batch_size=batch, num_workers=num_workers,
                        drop_last=drop_last,
                        multiprocessing_context="fork" if num_workers else None)
    return [b.tolist() for b in loader]


def _partitions():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Uneven worker batch counts: 13 samples, 3 workers, batch 2.
        yield "uneven", get_partitions("orig", 13, 1, 1, 1, 3, 2), 2
        # Relaxed re-deal (4 initial nodes -> 3): -1 padding inside workers' streams.
        yield "redealt", get_partitions("relaxed", 30, 4, 3, 1, 3, 4,
                                        initial_physical_nodes=4), 4
        # Several ranks, tail padding.
        yield "ranks", get_partitions("orig", 101, 2, 1, 3, 2, 5), 5


@pytest.mark.parametrize("case", list(_partitions()), ids=lambda c: c[0])
def test_rank_batches_match_torch_dataloader(case):
    _, epoch_ids, batch = case
    workers = epoch_ids.shape[2]
    torch.manual_seed(0)
    mid_padding = False
    for node in range(epoch_ids.shape[0]):
        for rank in range(epoch_ids.shape[1]):
            for worker in range(workers):
                raw = worker_sample_ids(epoch_ids, node, rank, worker, drop_padding=False)
                valid = np.flatnonzero(raw >= 0)
                mid_padding |= bool(valid.size and valid[-1] + 1 != valid.size)
            expected = [b.tolist() for b in rank_batches(epoch_ids, node, rank, batch)]
            assert _loader_batches(epoch_ids, node, rank, batch, workers) == expected
            expected = [b.tolist() for b in rank_batches(epoch_ids, node, rank, batch,
                                                         drop_last=True)]
            assert _loader_batches(epoch_ids, node, rank, batch, workers, True) == expected
    if case[0] == "redealt":
        assert mid_padding  # the case exercises -1 inside a worker's stream


def test_zero_workers_is_one_in_process_worker():
    epoch_ids = get_partitions("orig", 23, 1, 1, 1, 1, 4)
    expected = [b.tolist() for b in rank_batches(epoch_ids, 0, 0, 4)]
    assert _loader_batches(epoch_ids, 0, 0, 4, 0) == expected
    assert expected[-1] == [20, 21, 22]
    assert torch.get_num_threads() >= 1

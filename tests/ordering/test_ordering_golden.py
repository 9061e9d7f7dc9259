"""Golden orders written by mosaicml-streaming 0.13.0 (tests/data/reference) and the test vectors
of docs/ordering.md (§4.7, §4.9), reproduced exactly."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from mds_loader.ordering import (StreamSpec, apply_weights, build_state_dict, generate_work,
                                 get_partitions, get_sampling, get_shuffle, loader_num_samples,
                                 rank_batches, resolve_num_canonical_nodes, resolve_resume,
                                 resolve_shuffle_block_size)

REFERENCE = Path(__file__).resolve().parent.parent / "data" / "reference"
ORDERS_META = json.loads((REFERENCE / "orders.json").read_text())
ITERATION = json.loads((REFERENCE / "iteration.json").read_text())


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.fixture(scope="module")
def orders():
    with np.load(REFERENCE / "orders.npz") as data:
        yield {key: data[key] for key in data.files}


def _parse(key: str) -> tuple[str, str, dict[str, int]]:
    kind, algo, *fields = key.split("/")
    values = {}
    for field in fields:
        name = field.rstrip("0123456789")
        values[name] = int(field[len(name):])
    return kind, algo, values


@pytest.mark.parametrize("key", ORDERS_META["keys"])
def test_orders_npz(orders, key):
    (sizes,) = ORDERS_META["shard_sizes"]
    kind, algo, v = _parse(key)
    if kind == "shuffle":
        got = get_shuffle(algo, sizes, v["ncn"], v["seed"], v["epoch"], v["block"])
    else:
        got = get_partitions(algo, sum(sizes), v["ncn"], v["nodes"], v["ranks"], v["workers"],
                             v["batch"], v["drop"])
    expected = orders[key]
    assert got.dtype == np.int64
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_every_key_covered(orders):
    assert sorted(orders) == sorted(ORDERS_META["keys"])
    assert {k.split("/")[0] for k in orders} == {"shuffle", "partition"}


# ---------------------------------------------------------------- docs/ordering.md §4.9 / §4.7 vectors

SHUFFLE_VECTORS = {
    "naive": [23, 21, 2, 8, 28, 0, 6, 18, 10, 5, 7, 22, 20, 25, 27, 26, 1, 11, 9, 19, 24, 13, 17,
              14, 29, 15, 12, 3, 16, 4],
    "py1s": [11, 12, 14, 13, 10, 26, 22, 28, 20, 23, 29, 27, 25, 21, 24, 19, 17, 18, 15, 16, 3, 4,
             2, 6, 1, 0, 8, 9, 5, 7],
    "py2s": [12, 10, 18, 16, 15, 27, 28, 23, 22, 25, 20, 24, 26, 29, 21, 19, 11, 17, 14, 13, 6, 1,
             2, 8, 4, 3, 5, 7, 0, 9],
    "py1br": [12, 11, 10, 13, 14, 20, 21, 23, 29, 27, 26, 28, 24, 25, 22, 19, 18, 0, 1, 17, 15, 16,
              4, 5, 6, 2, 3, 7, 8, 9],
    "py1e": [11, 12, 14, 13, 10, 26, 22, 28, 20, 23, 29, 27, 25, 21, 24, 16, 18, 17, 15, 19, 6, 9,
             1, 5, 8, 2, 0, 3, 4, 7],
}


def test_numpy_generator_vector():
    # The premise of using numpy's generator directly (docs/ordering.md §4.5/§4.9).
    x = np.arange(10)
    np.random.default_rng(9176).shuffle(x)
    assert x.tolist() == [8, 1, 2, 7, 5, 6, 9, 3, 0, 4]


@pytest.mark.parametrize("algo", sorted(SHUFFLE_VECTORS))
def test_shuffle_vectors(algo):
    got = get_shuffle(algo, [10, 10, 10], 2, 9176, 0, 8)
    assert got.tolist() == SHUFFLE_VECTORS[algo]


def test_sampling_vector():
    assert get_sampling([5, 3, 4], 7, 1, 9176, 0, False).tolist() == [2, 2, 3]


def test_end_to_end_vector():
    """100 samples in 50 shards of 2, batch 4, shuffle with every other default (py1e, NCN=1,
    block 4,000,000): the first 28 ids of epoch 0."""
    streams, _ = apply_weights([StreamSpec([2] * 50)], None, 9176)
    ncn = resolve_num_canonical_nodes(None, "py1e", 1)
    block = resolve_shuffle_block_size(None, ncn)
    assert (ncn, block) == (1, 4_000_000)
    epoch = generate_work("random", streams, epoch=0, sample_in_epoch=0, world=(1, 1, 1),
                          batch_size=4, num_canonical_nodes=ncn, seed=9176, shuffle=True,
                          shuffle_algo="py1e", shuffle_block_size=block)
    order = np.concatenate(rank_batches(epoch, 0, 0, 4))
    assert order[:28].tolist() == [36, 17, 74, 1, 92, 54, 98, 43, 11, 24, 89, 64, 87, 86, 28, 13,
                                   42, 39, 30, 7, 69, 22, 9, 60, 49, 32, 73, 88]


def test_partition_examples():
    got = get_partitions("orig", 10, 2, 1, 2, 2, 2)
    assert got[0, 0].tolist() == [[[0, 1], [4, -1]], [[2, 3], [-1, -1]]]
    assert got[0, 1].tolist() == [[[5, 6], [9, -1]], [[7, 8], [-1, -1]]]
    got = get_partitions("orig", 10, 2, 2, 1, 1, 2)
    assert got[0, 0, 0].tolist() == [[0, 1], [2, 3], [4, -1]]
    assert got[1, 0, 0].tolist() == [[5, 6], [7, 8], [9, -1]]
    got = get_partitions("orig", 10, 2, 1, 1, 1, 2, drop_first=4)
    assert got[0, 0, 0].tolist() == [[2, 7], [3, 8], [4, 9]]


# ---------------------------------------------------------------- iteration.json end to end

def _tabular_sizes() -> list[int]:
    index = json.loads((REFERENCE / "datasets" / "tabular_none" / "index.json").read_text())
    return [shard["samples"] for shard in index["shards"]]


def _loader_batches(config: dict, epoch: int, state: dict | None = None) -> list[list[int]]:
    """What a StreamingDataLoader over one node / one rank yields for an epoch, computed from
    the shard sizes: the dataset's settings are resolved as at its first `__iter__`."""
    streams, _ = apply_weights([StreamSpec(_tabular_sizes())], None, config["seed"])
    point = resolve_resume(state, epoch, num_canonical_nodes=config["ncn"],
                           shuffle_seed=config["seed"], shuffle_algo=config["algo"],
                           shuffle_block_size=config.get("block"), num_nodes=1)
    workers = max(config["workers"], 1)  # 0 DataLoader workers = the dataset in-process
    ids = generate_work("random", streams, epoch=point.epoch,
                        sample_in_epoch=point.sample_in_epoch, world=(1, 1, workers),
                        batch_size=config["bs"], num_canonical_nodes=point.num_canonical_nodes,
                        seed=point.shuffle_seed, shuffle=True, shuffle_algo=config["algo"],
                        shuffle_block_size=point.shuffle_block_size,
                        initial_physical_nodes=point.initial_physical_nodes)
    return [b.tolist() for b in rank_batches(ids, 0, 0, config["bs"])]


@pytest.mark.parametrize("run", sorted(ITERATION))
def test_iteration_epochs(run):
    config = ITERATION[run]["config"]
    for epoch, expected in enumerate(ITERATION[run]["epochs"]):
        assert _loader_batches(config, epoch) == expected


@pytest.mark.parametrize("run", sorted(ITERATION))
def test_iteration_resume(run):
    config, resume = ITERATION[run]["config"], ITERATION[run]["resume"]
    state = resume["state_dict"]
    # Epoch 2 from its start: the first 7 batches, after which the state was taken ...
    full = _loader_batches(config, state["epoch"])
    assert full[:7] == resume["first_batches"]
    assert state["sample_in_epoch"] == sum(len(b) for b in resume["first_batches"])
    # ... and a fresh loader that loaded the state (next_epoch 0 < state epoch: not stale).
    rest = _loader_batches(config, 0, state)
    assert rest == resume["rest_batches"]
    assert full[7:] == rest


@pytest.mark.parametrize("run", sorted(ITERATION))
def test_iteration_state_dict(run):
    """The state dict the reference wrote after 7 batches of epoch 2 (its next_epoch was 3),
    from the state arithmetic: the loader counts samples x ranks; the dataset adds its offset."""
    config, resume = ITERATION[run]["config"], ITERATION[run]["resume"]
    next_epoch = 3
    point = resolve_resume(None, next_epoch - 1, num_canonical_nodes=config["ncn"],
                           shuffle_seed=config["seed"], shuffle_algo=config["algo"],
                           shuffle_block_size=config.get("block"), num_nodes=1)
    yielded = sum(len(b) for b in resume["first_batches"])
    state = build_state_dict(point, loader_num_samples(yielded, num_ranks=1), False, num_nodes=1)
    assert state == resume["state_dict"]

"""StreamingDataset + StreamingDataLoader reproduce the reference's order end to end: the golden
runs of iteration.json (epochs, state dicts, resumption in a fresh process), stopping anywhere
with 0, 1 or 2 workers, and a changing number of nodes."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from mds_loader import StreamingDataLoader, StreamingDataset
from mds_loader.ordering import StreamSpec, apply_weights, generate_work
from support import REFERENCE_DATA, copy_reference_dataset, run_python

ITERATION = json.loads((REFERENCE_DATA / "iteration.json").read_text())


@pytest.fixture(scope="module")
def tabular(tmp_path_factory) -> Path:
    return copy_reference_dataset("tabular_none", tmp_path_factory.mktemp("data"))


def _dataset_kwargs(config: dict) -> dict:
    return dict(shuffle=True, shuffle_seed=config["seed"], num_canonical_nodes=config["ncn"],
                shuffle_algo=config["algo"], batch_size=config["bs"], shuffle_block_size=config.get("block"))


def _ids(batch) -> list[int]:
    return [int(x) for x in batch["id"]]


def _loader(path: Path, config: dict, mode: str, **overrides) -> StreamingDataLoader:
    """mode "samples": per-sample dicts collated by a collate_fn; "batches": whole-batch decoding."""
    kwargs = {**_dataset_kwargs(config), **overrides}
    if mode == "batches":
        ds = StreamingDataset(local=str(path), columns=["id"], **kwargs)
        loader = StreamingDataLoader(ds, batch_size=kwargs["batch_size"], num_workers=config["workers"])
        assert loader.uses_batch_decoding
    else:
        ds = StreamingDataset(local=str(path), **kwargs)
        loader = StreamingDataLoader(ds, batch_size=kwargs["batch_size"], num_workers=config["workers"],
                                     collate_fn=lambda samples: {"id": [int(s["id"]) for s in samples]})
        assert not loader.uses_batch_decoding
    return loader


RESUME_SCRIPT = """
import json, sys
from mds_loader import StreamingDataLoader, StreamingDataset
path, kwargs, workers, mode, state = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4], json.loads(sys.argv[5])
if mode == "batches":
    ds = StreamingDataset(local=path, columns=["id"], **kwargs)
    loader = StreamingDataLoader(ds, batch_size=kwargs["batch_size"], num_workers=workers)
    ids = lambda b: b["id"].tolist()
else:
    ds = StreamingDataset(local=path, **kwargs)
    loader = StreamingDataLoader(ds, batch_size=kwargs["batch_size"], num_workers=workers,
                                 collate_fn=lambda s: {"id": [int(x["id"]) for x in s]})
    ids = lambda b: b["id"]
loader.load_state_dict(state)
epochs = int(sys.argv[6]) if len(sys.argv) > 6 else 1
print(json.dumps([[ids(b) for b in loader] for _ in range(epochs)]))
"""


def _resume_in_fresh_process(path: Path, kwargs: dict, workers: int, mode: str, state: dict, epochs: int = 1):
    return run_python(RESUME_SCRIPT, str(path), json.dumps(kwargs), str(workers), mode, json.dumps(state), str(epochs))


@pytest.mark.parametrize("mode", ["samples", "batches"])
@pytest.mark.parametrize("run", sorted(ITERATION))
def test_golden_runs(tabular, run, mode):
    """Both epochs batch for batch, the state dict after 7 batches of epoch 2, and the rest of
    epoch 2 yielded by a fresh process that loaded it."""
    golden = ITERATION[run]
    config = golden["config"]
    loader = _loader(tabular, config, mode)
    for epoch, expected in enumerate(golden["epochs"]):
        assert [_ids(b) for b in loader] == expected, f"epoch {epoch}"
    it = iter(loader)
    first = [_ids(next(it)) for _ in range(len(golden["resume"]["first_batches"]))]
    assert first == golden["resume"]["first_batches"]
    state = loader.state_dict()
    assert state == golden["resume"]["state_dict"]
    del it
    (rest,) = _resume_in_fresh_process(tabular, _dataset_kwargs(config), config["workers"], mode, state)
    assert rest == golden["resume"]["rest_batches"]


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_stop_anywhere_and_resume_in_a_fresh_process(tabular, workers):
    """Stopping after any batch of epoch 1 (first, middle, last) and resuming elsewhere yields
    exactly the rest of the uninterrupted run, then the next epoch."""
    config = {"seed": 5, "ncn": 2, "algo": "py1e", "bs": 7, "workers": workers, "block": 50}
    kwargs = _dataset_kwargs(config)
    loader = _loader(tabular, config, "batches")
    full = [[_ids(b) for b in loader] for _ in range(3)]  # epochs 0, 1, 2
    for stop in (1, len(full[1]) // 2, len(full[1])):
        loader = _loader(tabular, config, "batches")
        list(loader)  # epoch 0
        it = iter(loader)
        head = [_ids(next(it)) for _ in range(stop)]
        state = loader.state_dict()
        del it
        assert state["epoch"] == 1 and state["sample_in_epoch"] == sum(map(len, head))
        rest, after = _resume_in_fresh_process(tabular, kwargs, workers, "samples", state, epochs=2)
        assert sorted(x for b in head + rest for x in b) == sorted(x for b in full[1] for x in b)
        assert [x for b in head + rest for x in b] == [x for b in full[1] for x in b]
        assert after == full[2], f"the epoch after a resumed one (stop={stop})"


def _global_batches(path: Path, nodes: int, ranks_per_node: int, batch_size: int, kwargs: dict, monkeypatch,
                    state: dict | None = None) -> tuple[list[list[int]], list[StreamingDataLoader]]:
    """Simulates `nodes` x `ranks_per_node` ranks (one dataset per rank, world from the launcher's
    environment) and returns the global batches in step order."""
    num_ranks = nodes * ranks_per_node
    loaders = []
    for rank in range(num_ranks):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", str(num_ranks))
        monkeypatch.setenv("LOCAL_WORLD_SIZE", str(ranks_per_node))
        ds = StreamingDataset(local=str(path), columns=["id"], batch_size=batch_size, **kwargs)
        loader = StreamingDataLoader(ds, batch_size=batch_size)
        if state is not None:
            loader.load_state_dict(state)
        loaders.append(loader)
    per_rank = [[b["id"].tolist() for b in loader] for loader in loaders]
    steps = max(map(len, per_rank))
    return [sum((r[s] for r in per_rank if s < len(r)), []) for s in range(steps)], loaders


@pytest.mark.parametrize("algo", ["py1e", "py1s", "py2s", "py1br", "naive"])
def test_elastic_nodes(tabular, monkeypatch, algo):
    """With the global batch size and num_canonical_nodes fixed, 1, 2 and 4 nodes see the same
    global batches (the reference's elastic determinism), and a run checkpointed on 1 node
    resumes on 2 nodes with exactly the remaining global batches."""
    kwargs = dict(shuffle=True, shuffle_algo=algo, shuffle_seed=11, num_canonical_nodes=4, shuffle_block_size=40)
    global_batch = 16
    runs = {}
    for nodes, ranks in ((1, 1), (2, 1), (4, 1), (1, 2), (2, 2)):
        batches, _ = _global_batches(tabular, nodes, ranks, global_batch // (nodes * ranks), kwargs, monkeypatch)
        runs[(nodes, ranks)] = [sorted(b) for b in batches]
    base = runs[(1, 1)]
    for key, batches in runs.items():
        assert batches == base, f"{key} differs from 1 node"
    # The reference's order: generate_work on the same streams (verified against streaming 0.13.0).
    sizes = [s["samples"] for s in json.loads((tabular / "index.json").read_text())["shards"]]
    weighted, _ = apply_weights([StreamSpec(sizes)], None, 11)
    work = generate_work("random", weighted, epoch=0, sample_in_epoch=0, world=(1, 1, 1), batch_size=16,
                         num_canonical_nodes=4, seed=11, shuffle=True, shuffle_algo=algo, shuffle_block_size=40)
    flat = work.reshape(-1)
    expected = [sorted(b) for b in np.split(flat[flat >= 0], range(16, (flat >= 0).sum(), 16))]
    assert base == expected

    # Checkpoint on one node after 5 global batches, resume on 2 nodes x 1 rank.
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    ds = StreamingDataset(local=str(tabular), columns=["id"], batch_size=16, **kwargs)
    loader = StreamingDataLoader(ds, batch_size=16)
    it = iter(loader)
    for _ in range(5):
        next(it)
    state = loader.state_dict()
    del it
    resumed, _ = _global_batches(tabular, 2, 1, 8, kwargs, monkeypatch, state=state)
    assert [sorted(b) for b in resumed] == base[5:]


def test_persistent_workers_count_epochs(tabular):
    """Persistent workers start a new epoch at each pass (no shared memory involved)."""
    config = {"seed": 9176, "ncn": None, "algo": "py1e", "bs": 8, "workers": 2}
    expected = [[_ids(b) for b in _loader(tabular, config, "batches")] for _ in range(1)]
    ds = StreamingDataset(local=str(tabular), columns=["id"], **_dataset_kwargs(config))
    loader = StreamingDataLoader(ds, batch_size=8, num_workers=2, persistent_workers=True)
    fresh = _loader(tabular, config, "batches")
    reference = [[_ids(b) for b in fresh] for _ in range(3)]
    got = [[_ids(b) for b in loader] for _ in range(3)]
    assert got == reference
    assert got[0] == expected[0]
    assert ds.state_dict(0, False)["epoch"] == 2


def test_state_dict_before_iteration(tabular):
    ds = StreamingDataset(local=str(tabular), batch_size=4)
    assert ds.state_dict(0, False) == {"epoch": -1, "sample_in_epoch": 0, "num_canonical_nodes": 1,
                                       "shuffle_seed": 9176, "initial_physical_nodes": 1}


def test_iteration_without_loader(tabular):
    """Iterating the dataset itself (samples, then batches) follows the golden epochs too, and
    the torch batches are built without copying warnings."""
    ds = StreamingDataset(local=str(tabular), batch_size=8, shuffle=True, columns=["id"])
    epochs = ITERATION["run0"]["epochs"]
    assert [int(s["id"]) for s in ds] == sum(epochs[0], [])
    assert [x for b in ds.iter_batches("numpy") for x in b["id"].tolist()] == sum(epochs[1], [])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ids = [x for b in ds.iter_batches("torch") for x in b["id"].tolist()]
    assert sorted(ids) == list(range(300))

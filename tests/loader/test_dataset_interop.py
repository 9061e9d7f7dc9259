"""End to end against the real mosaicml-streaming 0.13.0: the same datasets, configurations and
DataLoader settings give the same batches, epoch after epoch and after a resume."""

from __future__ import annotations

import json
import random

import pytest

from mds_loader import MDSWriter, Stream, StreamingDataLoader, StreamingDataset
from support import run_reference

pytestmark = pytest.mark.interop

# Runs in the reference's virtualenv: one process, several configurations.
REFERENCE_SCRIPT = r"""
import json, sys, warnings, logging
warnings.simplefilter("ignore"); logging.disable(logging.WARNING)
from streaming import Stream, StreamingDataset, StreamingDataLoader
cases = json.loads(open(sys.argv[1]).read())
out = []
for case in cases:
    streams = [Stream(local=s["local"], **s["weights"]) for s in case["streams"]]
    ds = StreamingDataset(streams=streams, **case["dataset"])
    loader = StreamingDataLoader(ds, batch_size=case["dataset"]["batch_size"], num_workers=case["workers"],
                                 collate_fn=lambda b: {"key": [s["src"] + str(int(s["id"])) for s in b]})
    epochs = [[b["key"] for b in loader] for _ in range(case["epochs"])]
    it = iter(loader)
    head = [next(it)["key"] for _ in range(case["stop"])]
    state = loader.state_dict()
    del it
    ds2 = StreamingDataset(streams=[Stream(local=s["local"], **s["weights"]) for s in case["streams"]], **case["dataset"])
    loader2 = StreamingDataLoader(ds2, batch_size=case["dataset"]["batch_size"], num_workers=case["workers"],
                                  collate_fn=lambda b: {"key": [s["src"] + str(int(s["id"])) for s in b]})
    loader2.load_state_dict(state)
    rest = [b["key"] for b in loader2]
    out.append({"epochs": epochs, "head": head, "state": state, "rest": rest})
    del loader, loader2, ds, ds2
print(json.dumps(out))
"""


def _ours(case: dict) -> dict:
    def make():
        streams = [Stream(local=s["local"], **s["weights"]) for s in case["streams"]]
        ds = StreamingDataset(streams=streams, **case["dataset"])
        return StreamingDataLoader(ds, batch_size=case["dataset"]["batch_size"], num_workers=case["workers"],
                                   collate_fn=lambda b: {"key": [s["src"] + str(int(s["id"])) for s in b]})

    loader = make()
    epochs = [[b["key"] for b in loader] for _ in range(case["epochs"])]
    it = iter(loader)
    head = [next(it)["key"] for _ in range(case["stop"])]
    state = loader.state_dict()
    del it
    loader2 = make()
    loader2.load_state_dict(state)
    return {"epochs": epochs, "head": head, "state": state, "rest": [b["key"] for b in loader2]}


@pytest.fixture(scope="module")
def streams_data(tmp_path_factory) -> list[str]:
    """Three small datasets with distinct keys and uneven shard sizes."""
    root = tmp_path_factory.mktemp("streams")
    paths = []
    for name, count, limit in (("a", 230, 300), ("b", 97, 200), ("c", 61, 500)):
        path = root / name
        with MDSWriter(out=str(path), columns={"id": "int64", "src": "str"}, size_limit=limit) as writer:
            for i in range(count):
                writer.write({"id": i, "src": name})
        paths.append(str(path))
    return paths


def _random_cases(paths: list[str], count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        n = rng.choice([1, 2, 3])
        chosen = rng.sample(paths, n)
        kind = rng.choice(["none", "proportion", "repeat", "choose"]) if n > 1 else rng.choice(["none", "repeat"])
        streams = []
        for p in chosen:
            weights = {}
            if kind == "proportion":
                weights = {"proportion": rng.choice([0.2, 0.5, 1.0, 1.5])}
            elif kind == "repeat":
                weights = {"repeat": rng.choice([0.5, 1, 1.7, 2])}
            elif kind == "choose":
                weights = {"choose": rng.randint(20, 150)}
            streams.append({"local": p, "weights": weights})
        batching = rng.choice(["random", "random", "stratified", "per_stream", "device_per_stream"])
        algo = rng.choice(["naive", "py1s", "py2s", "py1br", "py1e"])
        dataset = {"batch_size": rng.choice([3, 8, 16]), "shuffle": rng.random() < 0.85, "shuffle_algo": algo,
                   "shuffle_seed": rng.randint(0, 10_000), "num_canonical_nodes": rng.choice([None, 1, 2, 4]),
                   "shuffle_block_size": rng.choice([None, 20, 64]), "batching_method": batching,
                   "sampling_method": rng.choice(["balanced", "fixed"]),
                   "partition_algo": rng.choice(["orig", "relaxed"])}
        if kind == "proportion" and rng.random() < 0.5:
            dataset["epoch_size"] = rng.choice([150, 400])
        cases.append({"streams": streams, "dataset": dataset, "workers": rng.choice([0, 0, 1, 2]),
                      "epochs": 2, "stop": rng.randint(1, 4)})
    return cases


@pytest.mark.slow
def test_same_batches_as_the_reference(streams_data, ref_python, tmp_path):
    cases = _random_cases(streams_data, 12, seed=2026)
    spec = tmp_path / "cases.json"
    spec.write_text(json.dumps(cases))
    expected = run_reference(ref_python, REFERENCE_SCRIPT, str(spec), timeout=900)
    for case, want in zip(cases, expected):
        got = _ours(case)
        where = json.dumps({k: case[k] for k in ("dataset", "workers")})
        assert got["epochs"] == want["epochs"], f"epochs differ for {where}"
        assert got["head"] == want["head"], f"head differs for {where}"
        assert got["state"] == want["state"], f"state dict differs for {where}"
        assert got["rest"] == want["rest"], f"resumed batches differ for {where}"

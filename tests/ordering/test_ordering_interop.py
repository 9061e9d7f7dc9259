"""Randomized comparison of mds_loader.ordering with the real mosaicml-streaming 0.13.0.

All cases run in ONE reference process (module fixture); each test then checks one kind of case.
Errors must coincide: when the reference raises, we must raise too (and vice versa).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from support import run_reference

from mds_loader.ordering import (SHUFFLE_ALGOS, StreamSpec, World, apply_weights, generate_work,
                                 get_partitions, get_sampling, get_shuffle, resample_streams)

pytestmark = pytest.mark.interop

DRIVER = (Path(__file__).parent / "reference_driver.py").read_text()
SEED = 20261125


# ---------------------------------------------------------------- random cases

def _sizes(rng: np.random.Generator, max_shards: int, max_size: int, zeros: float = 0.0) -> list:
    count = int(rng.integers(1, max_shards + 1))
    sizes = rng.integers(1, max_size + 1, count)
    if zeros:
        sizes[rng.random(count) < zeros] = 0
    return [int(x) for x in sizes]


def shuffle_cases(rng: np.random.Generator, count: int) -> list[dict]:
    cases = []
    blocks = [1, 2, 3, 5, 8, 16, 50, 100, 1000, 1 << 18]
    for i in range(count):
        big = rng.random() < 0.15
        cases.append({
            "kind": "shuffle", "algo": SHUFFLE_ALGOS[i % len(SHUFFLE_ALGOS)],
            "sizes": _sizes(rng, 12, 300 if big else 60, zeros=0.05),
            "ncn": int(rng.integers(1, 9)), "seed": int(rng.integers(0, 2**31)),
            "epoch": int(rng.integers(0, 6)), "block": int(rng.choice(blocks)),
        })
    return cases


def partition_cases(rng: np.random.Generator, count: int) -> list[dict]:
    cases = []
    for i in range(count):
        ncn = int(rng.integers(1, 9))
        mode = rng.random()
        if mode < 0.45:  # physical divides canonical
            nodes = int(rng.choice([d for d in range(1, ncn + 1) if ncn % d == 0]))
        elif mode < 0.8:  # canonical divides physical
            nodes = ncn * int(rng.integers(1, 4))
        else:
            nodes = int(rng.integers(1, 9))
        n = int(rng.integers(0, 12)) if rng.random() < 0.15 else int(rng.integers(1, 400))
        ranks, workers, batch = (int(rng.integers(1, 5)), int(rng.integers(1, 4)),
                                 int(rng.integers(1, 9)))
        drop = 0 if rng.random() < 0.4 else int(rng.integers(0, n + 12))
        initial = None
        if i % 2 and rng.random() < 0.35:
            # Elastic resume with `relaxed`: the initial node count divides with NCN, the
            # current one does not, and the global batch is divisible by the initial devices.
            initial = int(rng.choice([d for d in range(1, 9) if ncn % d == 0 or d % ncn == 0]))
            nodes = int(rng.choice([d for d in range(1, 10)
                                    if (ncn % d if d <= ncn else d % ncn)] or [nodes]))
            batch = initial // math.gcd(nodes, initial) * int(rng.integers(1, 4))
        elif i % 2 and rng.random() < 0.5:
            initial = int(rng.integers(1, 9))
            if rng.random() < 0.5:  # make the global batch divisible by the initial devices
                batch = initial * int(rng.integers(1, 4))
        cases.append({"kind": "partition", "algo": ("orig", "relaxed")[i % 2], "n": n,
                      "ncn": ncn, "nodes": nodes, "ranks": ranks, "workers": workers,
                      "batch": batch, "drop": drop, "initial_nodes": initial})
    return cases


def sampling_cases(rng: np.random.Generator, count: int) -> list[dict]:
    cases = []
    for _ in range(count):
        sizes = _sizes(rng, 10, 30, zeros=0.03)
        if not sum(sizes):
            sizes[0] = 1
        n = sum(sizes)
        choose = int(rng.integers(0, 3 * n + 1)) if rng.random() < 0.9 else n * int(
            rng.integers(0, 4))
        cases.append({"kind": "sampling", "sizes": sizes, "choose": choose,
                      "granularity": int(rng.integers(1, 7)), "seed": int(rng.integers(0, 10**6)),
                      "epoch": int(rng.integers(0, 5)), "use_epoch": bool(rng.random() < 0.5)})
    return cases


def _stream_specs(rng: np.random.Generator, mode: str, count: int, max_shards: int,
                  max_size: int) -> list[dict]:
    specs = []
    for _ in range(count):
        spec = {"sizes": _sizes(rng, max_shards, max_size)}
        if mode == "relative":
            spec["proportion"] = float(rng.choice([0.5, 1.0, 2.0, 1 / 3, float(rng.random())]))
        elif mode == "absolute":
            pick = rng.integers(0, 3)
            if pick == 0:
                spec["repeat"] = float(rng.choice([0.5, 1.0, 1.5, 2.25, float(rng.random() * 3)]))
            elif pick == 1:
                spec["choose"] = int(rng.integers(0, 3 * sum(spec["sizes"]) + 1))
        specs.append(spec)
    return specs


def weight_cases(rng: np.random.Generator, count: int) -> list[dict]:
    cases = []
    for i in range(count):
        mode = ("relative", "absolute", "unspecified")[i % 3]
        specs = _stream_specs(rng, mode, int(rng.integers(1, 5)), 8, 50)
        epoch_size = rng.choice([None, 0, "int", "str"])
        if epoch_size == "int":
            epoch_size = int(rng.integers(1, 600))
        elif epoch_size == "str":
            epoch_size = str(rng.choice(["1k", "0.25k", "300", "1.5K", " 2k "]))
        if rng.random() < 0.08:  # invalid: mixed relative and absolute, or two weights
            specs[0]["proportion"] = 0.5
            if len(specs) == 1:
                specs[0]["repeat"] = 2.0
        cases.append({"kind": "weights", "streams": specs, "epoch_size": epoch_size,
                      "seed": int(rng.integers(0, 10**6))})
    return cases


def work_cases(rng: np.random.Generator, count: int) -> list[dict]:
    methods = ("random", "stratified", "per_stream", "device_per_stream")
    cases = []
    for i in range(count):
        method = methods[i % 4]
        mode = ("relative", "absolute", "unspecified")[int(rng.integers(0, 3))]
        specs = _stream_specs(rng, mode, int(rng.integers(1, 4)), 6, 40)
        epoch_size = int(rng.integers(20, 300)) if mode != "absolute" and rng.random() < 0.4 \
            else None
        nodes = int(rng.choice([1, 1, 2, 4]))
        ncn = nodes * int(rng.choice([1, 1, 2])) if rng.random() < 0.85 else int(
            rng.integers(1, 9))
        initial = None
        if rng.random() < 0.15:
            initial = int(rng.choice([1, 2, 4]))
        cases.append({
            "kind": "work", "method": method, "streams": specs, "epoch_size": epoch_size,
            "seed": int(rng.integers(0, 10**6)), "epoch": int(rng.integers(0, 4)),
            "sample_in_epoch": 0 if rng.random() < 0.6 else int(rng.integers(0, 150)),
            "world": [nodes, int(rng.integers(1, 4)), int(rng.integers(1, 4))],
            "batch_size": int(rng.integers(1, 7)), "ncn": ncn,
            "shuffle": bool(rng.random() < 0.75), "algo": SHUFFLE_ALGOS[int(rng.integers(0, 5))],
            "block": int(rng.choice([8, 50, 200, 1 << 18])),
            "partition_algo": ("relaxed", "orig")[int(rng.random() < 0.3)],
            "sampling_method": ("balanced", "fixed")[int(rng.random() < 0.3)],
            "granularity": int(rng.integers(1, 5)), "initial_physical_nodes": initial,
        })
    return cases


def resample_cases(rng: np.random.Generator, count: int) -> list[dict]:
    cases = []
    for case in work_cases(rng, count):
        case = {k: case[k] for k in ("streams", "epoch_size", "seed", "epoch", "shuffle",
                                     "sampling_method", "granularity")}
        case["kind"] = "resample"
        if rng.random() < 0.5:
            case["stream_id"] = int(rng.integers(0, len(case["streams"])))
        else:
            case["stream_id"] = None
        # Fill the defaults `fake_dataset` reads but resampling does not use.
        case.update(ncn=1, batch_size=1, partition_algo="relaxed", initial_physical_nodes=None,
                    block=8, algo="py1e")
        cases.append(case)
    return cases


def world_cases(rng: np.random.Generator, count: int) -> list[dict]:
    cases = []
    for _ in range(count):
        nodes, ranks, workers = (int(rng.integers(1, 5)), int(rng.integers(1, 9)),
                                 int(rng.integers(1, 4)))
        total = nodes * ranks
        divisors = [d for d in range(1, total + 1) if total % d == 0]
        replication = int(rng.choice(divisors)) if rng.random() < 0.9 else int(
            rng.integers(1, 6))
        cases.append({"kind": "world", "nodes": nodes, "ranks": ranks, "workers": workers,
                      "worker": int(rng.integers(0, total * workers)),
                      "replication": replication})
    return cases


# ---------------------------------------------------------------- our side

def _arr(x) -> dict:
    x = np.asarray(x)
    return {"shape": list(x.shape), "data": x.reshape(-1).tolist()}


def _specs(case: dict) -> list[StreamSpec]:
    return [StreamSpec(s["sizes"], s.get("proportion"), s.get("repeat"), s.get("choose"))
            for s in case["streams"]]


def ours(case: dict) -> object:
    kind = case["kind"]
    if kind == "shuffle":
        return _arr(get_shuffle(case["algo"], case["sizes"], case["ncn"], case["seed"],
                                case["epoch"], case["block"]))
    if kind == "partition":
        return _arr(get_partitions(case["algo"], case["n"], case["ncn"], case["nodes"],
                                   case["ranks"], case["workers"], case["batch"], case["drop"],
                                   case["initial_nodes"]))
    if kind == "sampling":
        return _arr(get_sampling(case["sizes"], case["choose"], case["granularity"], case["seed"],
                                 case["epoch"], case["use_epoch"]))
    if kind == "weights":
        streams, total = apply_weights(_specs(case), case["epoch_size"], case["seed"])
        return {"epoch_size": total, "choose": [s.choose for s in streams],
                "proportion": [s.proportion for s in streams],
                "repeat": [s.repeat for s in streams]}
    if kind == "work":
        streams, _ = apply_weights(_specs(case), case["epoch_size"], case["seed"])
        return _arr(generate_work(
            case["method"], streams, epoch=case["epoch"], sample_in_epoch=case["sample_in_epoch"],
            world=tuple(case["world"]), batch_size=case["batch_size"],
            num_canonical_nodes=case["ncn"], seed=case["seed"], shuffle=case["shuffle"],
            shuffle_algo=case["algo"], shuffle_block_size=case["block"],
            partition_algo=case["partition_algo"], sampling_method=case["sampling_method"],
            sampling_granularity=case["granularity"],
            initial_physical_nodes=case["initial_physical_nodes"]))
    if kind == "resample":
        streams, _ = apply_weights(_specs(case), case["epoch_size"], case["seed"])
        units, ids = resample_streams(streams, case["seed"], case["epoch"],
                                      shuffle=case["shuffle"],
                                      sampling_method=case["sampling_method"],
                                      sampling_granularity=case["granularity"],
                                      stream_id=case["stream_id"])
        return {"units": _arr(units), "ids": _arr(ids)}
    if kind == "world":
        w = World(case["nodes"], case["ranks"], case["workers"], case["worker"])
        r = w.replicate(case["replication"])
        return [r.num_nodes, r.ranks_per_node, r.workers_per_rank, r.worker, r.node, r.rank,
                r.rank_of_node, r.worker_of_rank, r.num_ranks]
    raise ValueError(kind)


def _ours_result(case: dict) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return {"ok": ours(case)}
        except (ValueError, TypeError) as e:
            return {"error": f"{type(e).__name__}: {e}"}


# ---------------------------------------------------------------- fixture and tests

COUNTS = {"shuffle": 320, "partition": 400, "sampling": 200, "weights": 120, "work": 200,
          "resample": 80, "world": 60}


@pytest.fixture(scope="module")
def compared(ref_python, tmp_path_factory) -> dict[str, list[tuple[dict, dict, dict]]]:
    rng = np.random.default_rng(SEED)
    cases = (shuffle_cases(rng, COUNTS["shuffle"]) + partition_cases(rng, COUNTS["partition"])
             + sampling_cases(rng, COUNTS["sampling"]) + weight_cases(rng, COUNTS["weights"])
             + work_cases(rng, COUNTS["work"]) + resample_cases(rng, COUNTS["resample"])
             + world_cases(rng, COUNTS["world"]))
    path = tmp_path_factory.mktemp("ordering") / "cases.json"
    path.write_text(json.dumps(cases))
    reference = run_reference(ref_python, DRIVER, str(path))
    assert len(reference) == len(cases)
    by_kind: dict[str, list] = {}
    for case, ref in zip(cases, reference):
        by_kind.setdefault(case["kind"], []).append((case, ref, _ours_result(case)))
    return by_kind


def _check(triples: list[tuple[dict, dict, dict]]) -> tuple[int, int]:
    mismatches, errors = [], 0
    for case, ref, got in triples:
        if "error" in ref or "error" in got:
            errors += "error" in ref
            if ("error" in ref) != ("error" in got):
                mismatches.append((case, ref, got))
        elif ref["ok"] != got["ok"]:
            mismatches.append((case, ref, got))
    assert not mismatches, (f"{len(mismatches)} of {len(triples)} cases differ; first: "
                            + json.dumps(mismatches[0])[:3000])
    return len(triples), errors


@pytest.mark.parametrize("kind", list(COUNTS))
def test_matches_reference(compared, kind):
    total, errors = _check(compared[kind])
    assert total == COUNTS[kind]
    # Most cases must be real comparisons, not agreeing errors.
    assert errors < total // 2, f"{errors} of {total} {kind} cases raise in the reference"


def test_case_coverage(compared):
    """The random cases reach the interesting paths: every algorithm and batching method
    succeeds somewhere, and relaxed re-dealing (initial nodes != nodes) happens."""
    ok = {k: [c for c, r, _ in v if "ok" in r] for k, v in compared.items()}
    assert {c["algo"] for c in ok["shuffle"]} == set(SHUFFLE_ALGOS)
    assert {c["method"] for c in ok["work"]} == {"random", "stratified", "per_stream",
                                                 "device_per_stream"}
    redealt = [c for c in ok["partition"] if c["algo"] == "relaxed" and c["initial_nodes"]
               and c["nodes"] != c["initial_nodes"]
               and not (c["nodes"] <= c["ncn"] and c["ncn"] % c["nodes"] == 0)
               and not (c["nodes"] > c["ncn"] and c["nodes"] % c["ncn"] == 0)]
    assert len(redealt) >= 30
    assert any(c["drop"] > 0 for c in ok["partition"])
    assert any(c["sample_in_epoch"] > 0 for c in ok["work"])


LARGE_SHUFFLE = """
import sys
import numpy as np
from streaming.base.shuffle import get_shuffle
sizes = np.array([int(x) for x in sys.argv[1].split(",")], np.int64)
np.save(sys.argv[2], get_shuffle("py1e", sizes, int(sys.argv[3]), 77, 3, int(sys.argv[4])))
print("[]")
"""


@pytest.mark.parametrize("block", [1 << 18, 60_000])
def test_large_py1e_matches_reference(ref_python, tmp_path, block):
    """Millions of samples: py1e's positions are sorted window by window on a second thread, as
    packed integer keys (no small case reaches that); the order is still exactly the
    reference's."""
    sizes = np.random.default_rng(5).integers(5_000, 15_000, 300)  # ~3M samples
    out = tmp_path / "ref.npy"
    run_reference(ref_python, LARGE_SHUFFLE, ",".join(map(str, sizes.tolist())), str(out), "2", str(block))
    expected = np.load(out)
    for compact in (False, True):
        got = get_shuffle("py1e", sizes, 2, 77, 3, block, compact=compact)
        np.testing.assert_array_equal(got, expected)


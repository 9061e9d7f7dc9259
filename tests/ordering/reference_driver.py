"""Runs ordering cases through the REAL mosaicml-streaming 0.13.0 (in its own virtualenv).

Executed by ``run_reference(ref_python, SOURCE, cases_path)``: reads a JSON list of cases, prints
one JSON list of results on its last stdout line. Each result is ``{"ok": value}`` or
``{"error": "ExceptionType: message"}``. Arrays are returned as ``{"shape": [...], "data": [...]}``.
"""

import json
import logging
import sys
import warnings

import numpy as np

warnings.simplefilter("ignore")
logging.disable(logging.CRITICAL)

from streaming.base.batching import generate_work  # noqa: E402
from streaming.base.dataset import StreamingDataset  # noqa: E402
from streaming.base.partition import get_partitions  # noqa: E402
from streaming.base.sampling import get_sampling  # noqa: E402
from streaming.base.shuffle import get_shuffle  # noqa: E402
from streaming.base.stream import Stream  # noqa: E402
from streaming.base.util import number_abbrev_to_int  # noqa: E402
from streaming.base.world import World  # noqa: E402


def arr(x):
    x = np.asarray(x)
    return {"shape": list(x.shape), "data": x.reshape(-1).tolist()}


def make_streams(specs):
    streams = []
    for index, spec in enumerate(specs):
        weights = {k: spec[k] for k in ("proportion", "repeat", "choose") if spec.get(k) is not None}
        streams.append(Stream(local=f"/nonexistent/stream{index}", **weights))
    return streams


def weights(case):
    streams = make_streams(case["streams"])
    per_stream = np.array([sum(s["sizes"]) for s in case["streams"]], np.int64)
    epoch_size = case["epoch_size"]
    if epoch_size:  # the dataset's own parsing (`if epoch_size:`)
        epoch_size = number_abbrev_to_int(epoch_size)
        if epoch_size < 0:
            raise ValueError("Epoch size cannot be negative.")
    else:
        epoch_size = None
    total = Stream.apply_weights(streams, per_stream, epoch_size, case["seed"])
    return {"epoch_size": int(total), "choose": [int(s.choose) for s in streams],
            "proportion": [float(s.proportion) for s in streams],
            "repeat": [float(s.repeat) for s in streams]}


def fake_dataset(case):
    """A StreamingDataset shell with what `resample_streams` and `generate_work` read."""
    streams = make_streams(case["streams"])
    sizes = [np.array(s["sizes"], np.int64) for s in case["streams"]]
    per_stream = np.array([x.sum() for x in sizes], np.int64)
    epoch_size = Stream.apply_weights(streams, per_stream, case["epoch_size"] or None,
                                      case["seed"])
    ds = StreamingDataset.__new__(StreamingDataset)
    ds.streams = streams
    ds.num_streams = len(streams)
    ds.samples_per_shard = np.concatenate(sizes)
    ds.sample_offset_per_shard = ds.samples_per_shard.cumsum() - ds.samples_per_shard
    ds.shards_per_stream = np.array([x.size for x in sizes], np.int64)
    ds.shard_offset_per_stream = ds.shards_per_stream.cumsum() - ds.shards_per_stream
    ds.shuffle_seed = case["seed"]
    ds.sampling_method = case["sampling_method"]
    ds.sampling_granularity = case["granularity"]
    ds.shuffle = case["shuffle"]
    ds.epoch_seed_change = case["shuffle"] and case["sampling_method"] == "balanced"
    ds.num_canonical_nodes = case["ncn"]
    ds.batch_size = case["batch_size"]
    ds.partition_algo = case["partition_algo"]
    ds.epoch_size = epoch_size
    ds.initial_physical_nodes = case["initial_physical_nodes"]
    ds.shuffle_block_size = case["block"]
    ds.shuffle_algo = case["algo"]
    return ds


def work(case):
    ds = fake_dataset(case)
    nodes, ranks, workers = case["world"]
    return arr(generate_work(case["method"], ds, World(nodes, ranks, workers, 0), case["epoch"],
                             case["sample_in_epoch"]))


def resample(case):
    units, ids = fake_dataset(case).resample_streams(case["epoch"], case["stream_id"])
    return {"units": arr(units), "ids": arr(ids)}


def world(case):
    w = World(case["nodes"], case["ranks"], case["workers"], case["worker"])
    r = w.replicate(case["replication"])
    return [r.num_nodes, r.ranks_per_node, r.workers_per_rank, r.worker, r.node, r.rank,
            r.rank_of_node, r.worker_of_rank, r.num_ranks]


def run(case):
    kind = case["kind"]
    if kind == "shuffle":
        return arr(get_shuffle(case["algo"], np.array(case["sizes"], np.int64), case["ncn"],
                               case["seed"], case["epoch"], case["block"]))
    if kind == "partition":
        return arr(get_partitions(case["algo"], case["n"], case["ncn"], case["nodes"],
                                  case["ranks"], case["workers"], case["batch"], case["drop"],
                                  case["initial_nodes"]))
    if kind == "sampling":
        return arr(get_sampling(np.array(case["sizes"], np.int64), case["choose"],
                                case["granularity"], case["seed"], case["epoch"],
                                case["use_epoch"]))
    if kind == "weights":
        return weights(case)
    if kind == "work":
        return work(case)
    if kind == "resample":
        return resample(case)
    if kind == "world":
        return world(case)
    raise ValueError(kind)


def main():
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    results = []
    for case in cases:
        try:
            results.append({"ok": run(case)})
        except Exception as e:  # noqa: BLE001 - any failure of the reference is a result
            results.append({"error": f"{type(e).__name__}: {e}"})
    print(json.dumps(results))


main()

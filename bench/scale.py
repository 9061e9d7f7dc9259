"""Scale: time to the first batch, the node's memory and samples/s as datasets grow to a billion
samples, mds_loader vs mosaicml-streaming 0.13.0, under torchrun.

    python -m bench scale [--samples 10M,100M,1B] [--ranks 1,2,4] [--workers 0,2] [--baseline 1M]
                          [--batches 200] [--no-reference] [--reference-max 100M]

Datasets of 1-byte samples, 10,000 per shard, uncompressed, made once with ``write_table`` and
kept under bench/work/scale/. Each run is ``torchrun --standalone --nproc-per-node RANKS`` of a
script that builds ``StreamingDataset(local=..., shuffle=True, batch_size=256)`` and a
``StreamingDataLoader`` with WORKERS workers in every rank; the figures are:

- *first batch*: the slowest rank's seconds from constructing the dataset (after imports) to its
  first batch: reading the index, the epoch's sample order, worker start-up;
- *node peak PSS*: the largest sum, over every process of the job (torchrun, ranks, DataLoader
  workers), of their proportional set sizes, sampled every 50 ms (shared pages count once);
- *order's share*: that peak minus the same job's peak on the ``--baseline`` dataset (what the
  order costs, without the interpreters' baselines);
- *samples/s*: the next ``--batches`` batches after the first, summed over ranks.

The reference runs where it fits (``--reference-max``); the runs alternate between the
implementations. Writes bench/results/scale.json and a plot.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import REF_PYTHON, RESULTS, WORK, children, machine, rel, write_result

SAMPLES_PER_SHARD = 10_000
BATCH_SIZE = 256
DATA = WORK / "scale"

SCRIPT = r"""
import json, os, sys, time, warnings, logging
warnings.simplefilter("ignore"); logging.disable(logging.WARNING)
impl, path, workers, batches, done_dir = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
if impl == "streaming":
    from streaming import StreamingDataset, StreamingDataLoader
else:
    from mds_loader import StreamingDataset, StreamingDataLoader
import torch
t = time.perf_counter()
ds = StreamingDataset(local=path, shuffle=True, batch_size=%(bs)d)
loader = StreamingDataLoader(ds, batch_size=%(bs)d, num_workers=workers)
it = iter(loader)
next(it)
first = time.perf_counter() - t
t = time.perf_counter()
n = 0
for _ in range(batches):
    n += len(next(it)["x"])
rate = n / (time.perf_counter() - t)
rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
print(json.dumps({"rank": rank, "first_batch": first, "samples_per_s": rate}), flush=True)
open(os.path.join(done_dir, str(rank)), "w").close()
while len(os.listdir(done_dir)) < world:  # no rank leaves before every rank has measured
    time.sleep(0.05)
os._exit(0)
""" % {"bs": BATCH_SIZE}


def parse_count(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9}
    return int(float(text[:-1]) * scale[text[-1]]) if text[-1] in scale else int(text)


def label(n: int) -> str:
    for unit, div in (("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= div and n % div == 0:
            return f"{n // div}{unit}"
    return str(n)


def dataset(samples: int) -> Path:
    """The dataset of `samples` 1-byte samples (made once)."""
    import numpy as np
    import pyarrow as pa

    from mds_loader import write_table
    from mds_loader.format.shard import config_bytes, shard_config

    path = DATA / label(samples)
    if (path / "index.json").exists():
        return path
    shutil.rmtree(path, ignore_errors=True)
    limit = 0
    for _ in range(3):  # the size limit is part of each shard's header: find the fixed point
        limit = 8 + len(config_bytes(shard_config(["x"], ["uint8"], [1], None, [], limit))) + 5 * SAMPLES_PER_SHARD
    step = 10_000_000

    def batches():
        for start in range(0, samples, step):
            count = min(step, samples - start)
            yield pa.record_batch([pa.array((np.arange(start, start + count) % 251).astype(np.uint8))], names=["x"])

    print(f"writing {label(samples)} 1-byte samples to {rel(path)}", flush=True)
    t = time.perf_counter()
    write_table(batches(), str(path), compression=None, nulls="error", size_limit=limit, batch_rows=step)
    print(f"  {time.perf_counter() - t:.1f} s", flush=True)
    return path


def _pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children(p)
    return out


def run(python: Path | str, impl: str, path: Path, ranks: int, workers: int, batches: int) -> dict[str, Any]:
    """One torchrun job; its ranks' figures and the node's peak PSS."""
    done = Path(tempfile.mkdtemp(prefix="scale-done-", dir=WORK))
    cmd = [str(python), "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
           "--no-python", str(python), "-c", SCRIPT, impl, str(path), str(workers), str(batches), str(done)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1", "LOGLEVEL": "ERROR"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(WORK), env=env)
    peak = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], sum(_pss(p) for p in _tree(proc.pid)))
            stop.wait(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        out, err = proc.communicate(timeout=3600)
    finally:
        stop.set()
        watcher.join()
        shutil.rmtree(done, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{impl} {ranks}x{workers} on {path.name} failed:\n{err[-3000:]}")
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    if len(lines) != ranks:
        raise RuntimeError(f"{impl}: {len(lines)} of {ranks} ranks reported:\n{err[-3000:]}")
    return {"first_batch_seconds": max(r["first_batch"] for r in lines),
            "samples_per_s": sum(r["samples_per_s"] for r in lines), "node_peak_pss": peak[0]}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--samples", type=lambda s: [parse_count(x) for x in s.split(",")], default=[10**7, 10**8, 10**9])
    p.add_argument("--ranks", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4])
    p.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")], default=[0, 2])
    p.add_argument("--baseline", type=parse_count, default=10**6)
    p.add_argument("--batches", type=int, default=200)
    p.add_argument("--reference-max", type=parse_count, default=10**8,
                   help="largest dataset the reference runs on (it needs ~5 GiB per 100M samples and rank set)")
    p.add_argument("--only-shape", default=None, help="RANKSxWORKERS for the largest dataset only (default: 2x2)")
    p.add_argument("--no-reference", action="store_true")


def main(argv: list[str] | None = None, out_dir: Path = RESULTS) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m bench scale", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    args = p.parse_args(argv)
    reference = not args.no_reference and REF_PYTHON.exists()
    WORK.mkdir(parents=True, exist_ok=True)
    sizes = sorted(set(args.samples) | {args.baseline})
    paths = {n: dataset(n) for n in sizes}
    largest = max(args.samples)
    big_shape = tuple(int(x) for x in (args.only_shape or "2x2").split("x"))
    results: dict[str, Any] = {}
    for n in sizes:
        shapes = [(r, w) for r in args.ranks for w in args.workers]
        if n == largest and len(args.samples) > 1 and n > 10**8:
            shapes = [big_shape]  # the billion: one shape, ours alone if the reference cannot fit
        for ranks, workers in shapes:
            entry: dict[str, Any] = {"samples": n, "ranks": ranks, "workers": workers}
            impls = [("mds_loader", sys.executable)]
            if reference and n <= args.reference_max:
                impls.append(("streaming", REF_PYTHON))
            for impl, python in impls:
                print(f"{label(n):>5s} {ranks} ranks x {workers} workers: {impl} ...", end=" ", flush=True)
                r = run(python, impl, paths[n], ranks, workers, args.batches)
                print(f"first batch {r['first_batch_seconds']:.2f} s, node PSS {r['node_peak_pss'] / 2**30:.2f} GiB, "
                      f"{r['samples_per_s']:,.0f} samples/s", flush=True)
                entry[impl] = r
            results[f"{label(n)} {ranks}x{workers}"] = entry
    for key, entry in results.items():
        base = results.get(f"{label(args.baseline)} {entry['ranks']}x{entry['workers']}")
        for impl in ("mds_loader", "streaming"):
            if impl in entry and base and impl in base:
                entry[impl]["order_pss"] = entry[impl]["node_peak_pss"] - base[impl]["node_peak_pss"]
        if "streaming" in entry:
            o, r = entry["mds_loader"], entry["streaming"]
            entry["first_batch_ratio"] = o["first_batch_seconds"] / r["first_batch_seconds"]
            entry["pss_ratio"] = o["node_peak_pss"] / r["node_peak_pss"]
    report = {"samples_per_shard": SAMPLES_PER_SHARD, "batch_size": BATCH_SIZE, "baseline": args.baseline,
              "batches": args.batches, "machine": machine(), "results": results}
    write_result(out_dir, "scale", report)
    return report


if __name__ == "__main__":
    main()

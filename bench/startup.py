"""Time to first batch on an index of many shards: mds_loader vs mosaicml-streaming 0.13.0.

    python -m bench startup [--shards 10000] [--samples-per-shard 2] [--batch-size 256] [--repeat 3]

One dataset of ``--shards`` small shards (the standard columns, zstd, ``size_limit`` chosen so
that each shard holds ``--samples-per-shard`` samples), decompressed beforehand (a warm local
cache). Each run is a fresh process, after its imports: the clock starts before
``StreamingDataset(local=..., shuffle=True, batch_size=...)`` and stops when the first batch comes
out of ``StreamingDataLoader`` (0 and 2 workers): reading and checking index.json, the sample
order, worker start-up, the first batch's shards. Runs alternate between the implementations
(best of ``--repeat``). Writes bench/results/startup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REF_PYTHON, RESULTS, WORK, machine, proc_memory, write_result
from bench.data import make_table

SCRIPT = r"""
import json, os, sys, time, warnings, logging
warnings.simplefilter("ignore"); logging.disable(logging.WARNING)
impl, path, bs, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
t0 = time.perf_counter()
if impl == "streaming":
    from streaming import StreamingDataset, StreamingDataLoader
else:
    from mds_loader import StreamingDataset, StreamingDataLoader
import torch  # both import it; not part of the timing
t = time.perf_counter()
imports = t - t0
ds = StreamingDataset(local=path, shuffle=True, batch_size=bs)
constructed = time.perf_counter() - t
loader = StreamingDataLoader(ds, batch_size=bs, num_workers=workers)
it = iter(loader)
batch = next(it)
first = time.perf_counter() - t
assert len(batch["id"]) == bs
print(json.dumps({"imports": imports, "construct": constructed, "first_batch": first}), flush=True)
os._exit(0)  # do not time (or wait for) the rest of the epoch
"""


def run(python: Path | str, impl: str, path: str, batch_size: int, workers: int) -> dict[str, float]:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([str(python), "-c", SCRIPT, impl, path, str(batch_size), str(workers)],
                          capture_output=True, text=True, cwd=str(WORK), env=env, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"{impl} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shards", type=int, default=10_000)
    p.add_argument("--samples-per-shard", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-reference", action="store_true")


def main(argv: list[str] | None = None, out_dir: Path = RESULTS) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m bench startup", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    args = p.parse_args(argv)
    from mds_loader import read_table, write_table

    reference = not args.no_reference and REF_PYTHON.exists()
    WORK.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="startup-", dir=WORK))
    try:
        path = str(tmp / "ds")
        rows = args.shards * args.samples_per_shard
        table = make_table(rows)
        probe = tmp / "probe"  # the raw size of a shard of k samples, to cut shards of exactly k
        write_table(table.slice(0, args.samples_per_shard), str(probe), compression=None, nulls="error")
        shard_bytes = json.loads((probe / "index.json").read_text())["shards"][0]["raw_data"]["bytes"]
        t = time.perf_counter()
        write_table(table, path, compression="zstd", nulls="error", size_limit=shard_bytes)
        write_seconds = time.perf_counter() - t
        index = json.loads((Path(path) / "index.json").read_text())
        shards = len(index["shards"])
        read_table(path)  # decompresses every shard: a warm local cache
        runs: dict[str, dict[str, list[dict[str, float]]]] = {}
        for _ in range(args.repeat):
            for workers in (0, 2):
                for impl, python in [("mds_loader", sys.executable)] + ([("streaming", REF_PYTHON)] if reference else []):
                    runs.setdefault(f"{workers} workers", {}).setdefault(impl, []).append(
                        run(python, impl, path, args.batch_size, workers))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results: dict[str, Any] = {}
    for case, by_impl in runs.items():
        entry: dict[str, Any] = {}
        for impl, rs in by_impl.items():
            best = min(rs, key=lambda r: r["first_batch"])
            entry[impl] = {"first_batch_seconds": best["first_batch"], "construct_seconds": best["construct"],
                           "import_seconds": min(r["imports"] for r in rs),
                           "all_first_batch_seconds": [r["first_batch"] for r in rs]}
        if "streaming" in entry:
            entry["speedup"] = entry["streaming"]["first_batch_seconds"] / entry["mds_loader"]["first_batch_seconds"]
        results[case] = entry
    report = {"shards": shards, "samples": rows, "batch_size": args.batch_size, "compression": "zstd",
              "write_table_seconds": write_seconds, "repeat": args.repeat, "machine": machine(),
              "bench_process_rss": proc_memory().get("hwm"), "results": results}
    print(f"time to first batch: {shards:,} shards, {rows:,} samples, batch {args.batch_size}, shuffled; best of {args.repeat}")
    for case, e in results.items():
        o = e["mds_loader"]
        line = f"  {case:10s} mds_loader {o['first_batch_seconds']:6.2f} s (dataset {o['construct_seconds']:.2f} s)"
        if "streaming" in e:
            r = e["streaming"]
            line += f"   reference {r['first_batch_seconds']:6.2f} s (dataset {r['construct_seconds']:.2f} s)   {e['speedup']:.1f}x faster"
        print(line)
    write_result(out_dir, "startup", report)
    return report


if __name__ == "__main__":
    main()

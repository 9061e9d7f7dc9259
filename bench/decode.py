"""Decode throughput: mds_loader (vectorized, into Arrow) vs mosaicml-streaming 0.13.0 (per sample).

    python -m bench decode [--rows N] [--compression zstd] [--batch-size 1024]

Builds a tabular dataset with ``write_table`` (id int64, text str of 64 chars, label int32, tokens
``ndarray:int32`` of 256 values, score float64), then times, on the same files:

* ``read_table``: the whole dataset into a ``pyarrow.Table`` (all columns);
* ``read_batch``: shuffled batches within each shard (what the training loader does);
* ``get_sample``: our per-sample decode, the reference-identical values;
* the reference: ``streaming.StreamingDataset(local=...)[i]`` for every ``i``, in its own
  virtualenv (.venv-ref), timed inside that process after a warm-up pass (which decompresses);
  our timings also start after a warm-up read that decompresses the shards.

Prints samples/s and ratios, and writes bench/results/decode.json.
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

import numpy as np

from bench.common import REF_PYTHON, RESULTS, WORK, machine, write_result
from bench.data import make_table

REFERENCE_SCRIPT = r"""
import json, sys, time
from streaming import StreamingDataset
path = sys.argv[1]
ds = StreamingDataset(local=path, shuffle=False, batch_size=1)
n = len(ds)
for i in range(n):  # warm-up pass: decompresses every shard
    ds[i]
t = time.perf_counter()
for i in range(n):
    ds[i]
elapsed = time.perf_counter() - t
print(json.dumps({"samples": n, "seconds": elapsed}))
"""


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv: list[str] | None = None, out_dir: Path = RESULTS) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench decode", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--compression", default="zstd", help="shard compression ('none' for raw shards)")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-reference", action="store_true", help="skip the reference implementation")
    args = parser.parse_args(argv)

    from mds_loader import read_table, write_table
    from mds_loader.format import MDSDataset

    compression = None if args.compression in ("none", "") else args.compression
    WORK.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="decode-", dir=WORK))
    path = tmp / "ds"
    try:
        table = make_table(args.rows)
        t = time.perf_counter()
        write_table(table, path, compression=compression, nulls="error")
        write_seconds = time.perf_counter() - t
        rows = table.num_rows
        # Decompressed copies beside the compressed files, as StreamingDataset's local cache (ours
        # and the reference's) leaves them: every reader below maps them (read_table itself never
        # writes into a dataset; on compressed shards alone it decompresses in memory).
        from mds_loader.format import ShardFiles

        files = ShardFiles(path)
        for entry in MDSDataset(path).shards:
            if entry.zip_data is not None:
                (path / entry.raw_data.basename).write_bytes(files.raw_bytes(entry))
        read_table(path)  # warm-up

        results: dict[str, dict] = {}
        seconds = best_of(args.repeats, lambda: read_table(path))
        results["mds_loader.read_table"] = {"seconds": seconds, "samples_per_s": rows / seconds}

        with MDSDataset(path) as ds:
            rng = np.random.default_rng(1)
            plans = []
            for k, entry in enumerate(ds.shards):
                order = rng.permutation(entry.samples)
                plans += [(k, order[i : i + args.batch_size]) for i in range(0, entry.samples, args.batch_size)]

            def batches() -> None:
                for k, idx in plans:
                    ds.shard(k).read_batch(idx)

            seconds = best_of(args.repeats, batches)
            results["mds_loader.read_batch(shuffled)"] = {"seconds": seconds, "samples_per_s": rows / seconds, "batch_size": args.batch_size}

            sample_rows = min(rows, 20_000)
            seconds = best_of(1, lambda: [ds.get_sample(i) for i in range(sample_rows)])
            results["mds_loader.get_sample"] = {"seconds": seconds, "samples_per_s": sample_rows / seconds, "samples": sample_rows}

        if not args.no_reference:
            if not REF_PYTHON.exists():
                print(f"reference virtualenv missing at {REF_PYTHON}; run `make ref-venv` or pass --no-reference", file=sys.stderr)
            else:
                proc = subprocess.run(
                    [str(REF_PYTHON), "-c", REFERENCE_SCRIPT, str(path)], capture_output=True, text=True, check=True,
                    env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
                )  # fmt: skip
                ref = json.loads(proc.stdout.strip().splitlines()[-1])
                results["reference StreamingDataset[i]"] = {"seconds": ref["seconds"], "samples_per_s": ref["samples"] / ref["seconds"]}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    report = {
        "rows": rows,
        "columns": {"id": "int64", "text": "str (64 hex chars)", "label": "int32", "tokens": "ndarray:int32 (256)", "score": "float64"},
        "compression": compression,
        "write_table_seconds": write_seconds,
        "machine": machine(),
        "results": results,
    }
    ref_rate = results.get("reference StreamingDataset[i]", {}).get("samples_per_s")
    print(f"decode benchmark: {rows} rows, compression={compression}, {os.cpu_count()} cpus")
    for name, r in results.items():
        ratio = f"{r['samples_per_s'] / ref_rate:8.1f}x" if ref_rate else ""
        if ref_rate:
            r["vs_reference"] = r["samples_per_s"] / ref_rate
        print(f"  {name:34s} {r['samples_per_s']:14,.0f} samples/s {ratio}")
    write_result(out_dir, "decode", report)
    return report


if __name__ == "__main__":
    main()

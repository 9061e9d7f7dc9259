"""Training-side throughput: mds_loader vs mosaicml-streaming 0.13.0, same dataset, same loop.

    python -m bench.loader [--rows N] [--batch-size B] [--compression zstd]

On one dataset (id int64, text str(64), label int32, tokens int32[256], score float64; zstd),
shuffled (py1e, the default), one epoch each after a warm-up epoch that decompresses the shards:

* reference ``StreamingDataset`` iterated sample by sample, and its ``StreamingDataLoader`` with
  the default collate, 0 and 2 workers (run in the reference's virtualenv, .venv-ref);
* ours: the same per-sample iteration (reference-identical dicts), the same ``StreamingDataLoader``
  loop (whole-batch decoding, identical batches), 0 and 2 workers, and the per-sample DataLoader
  path (``collate_fn=default_collate`` forces it);
* the physical limit: reading every shard file and decompressing it, with no decoding at all.

Prints samples/s and ratios; writes bench/results/loader.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "loader.json"
REF_PYTHON = Path(os.environ.get("MDS_REF_VENV", ROOT / ".venv-ref")) / "bin" / "python"

# The same measurements for both implementations: `impl` is "streaming" or "mds_loader".
RUN_SCRIPT = r"""
import json, sys, time, warnings, logging
warnings.simplefilter("ignore"); logging.disable(logging.WARNING)
impl, path, batch_size, mode, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
if impl == "streaming":
    from streaming import StreamingDataset, StreamingDataLoader
else:
    from mds_loader import StreamingDataset, StreamingDataLoader
from torch.utils.data import default_collate

def epoch():
    ds = StreamingDataset(local=path, batch_size=batch_size, shuffle=True)
    if mode == "samples":
        return sum(1 for _ in ds)
    if mode == "loader-per-sample":
        loader = StreamingDataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=default_collate)
    else:
        loader = StreamingDataLoader(ds, batch_size=batch_size, num_workers=workers)
    return sum(len(b["id"]) for b in loader)

epoch()  # warm-up: decompresses the shards, imports, worker start-up paths
t = time.perf_counter()
n = epoch()
print(json.dumps({"samples": n, "seconds": time.perf_counter() - t}))
"""


def physical_limit(path: str) -> dict:
    """Reading and decompressing every shard file, nothing decoded: the floor for any loader."""
    from mds_loader.format.compression import get_codec
    from mds_loader.format.index import load_index

    index = load_index(path)
    t = time.perf_counter()
    total = 0
    for shard in index.shards:
        info = shard.zip_data or shard.raw_data
        with open(os.path.join(path, info.basename), "rb") as f:
            data = f.read()
        if shard.zip_data is not None:
            data = get_codec(shard.compression).decompress(data)
        total += len(data)
    seconds = time.perf_counter() - t
    return {"samples": index.num_samples, "seconds": seconds, "bytes": total}


def run(python: Path | str, impl: str, path: str, batch_size: int, mode: str, workers: int) -> dict:
    proc = subprocess.run([str(python), "-c", RUN_SCRIPT, impl, path, str(batch_size), mode, str(workers)],
                          capture_output=True, text=True, cwd=str(ROOT), timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{impl} {mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--compression", default="zstd")
    parser.add_argument("--skip-reference", action="store_true", help="only measure mds_loader")
    args = parser.parse_args(argv)

    from bench.decode import make_table
    from mds_loader import write_table

    work = Path(tempfile.mkdtemp(prefix="bench-loader-", dir=os.environ.get("BENCH_TMP")))
    path = str(work / "ds")
    write_table(make_table(args.rows), path, compression=None if args.compression == "none" else args.compression)

    cases = [("per-sample iteration", "samples", 0),
             ("DataLoader, 0 workers", "loader", 0),
             ("DataLoader, 2 workers", "loader", 2)]
    results: dict = {"rows": args.rows, "batch_size": args.batch_size, "compression": args.compression,
                     "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, "cases": {}}
    limit = physical_limit(path)
    results["physical_limit"] = {**limit, "samples_per_s": limit["samples"] / limit["seconds"]}
    print(f"physical limit (read + decompress, no decoding): {results['physical_limit']['samples_per_s']:,.0f} samples/s")
    for label, mode, workers in cases + [("DataLoader, per-sample collate, 0 workers", "loader-per-sample", 0),
                                          ("DataLoader, per-sample collate, 2 workers", "loader-per-sample", 2)]:
        ours = run(sys.executable, "mds_loader", path, args.batch_size, mode, workers)
        entry = {"mds_loader": ours["samples"] / ours["seconds"]}
        if not args.skip_reference and mode != "loader-per-sample":
            ref = run(REF_PYTHON, "streaming", path, args.batch_size, mode, workers)
            assert ref["samples"] == ours["samples"], (ref, ours)
            entry["streaming"] = ref["samples"] / ref["seconds"]
            entry["ratio"] = entry["mds_loader"] / entry["streaming"]
        entry["of_physical_limit"] = entry["mds_loader"] / results["physical_limit"]["samples_per_s"]
        results["cases"][label] = entry
        ratio = f"  {entry['ratio']:6.1f}x the reference ({entry['streaming']:,.0f}/s)" if "ratio" in entry else ""
        print(f"{label:45s} {entry['mds_loader']:12,.0f} samples/s{ratio}  "
              f"({entry['of_physical_limit']:.0%} of the limit)", flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return results


if __name__ == "__main__":
    main()

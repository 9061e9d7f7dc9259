"""Training side: mds_loader vs mosaicml-streaming 0.13.0 on the same files, the same loops.

    python -m bench loader [--rows 200000] [--batch-size 256] [--epochs 2] [--repeat 2]
                           [--variants standard,wide,image] [--no-reference] [--update]

Datasets, written once with ``write_table`` (zstd, 64 MiB shards):

* ``standard``: ``--rows`` rows of id int64, text str (64 hex chars), label int32, score float64,
  tokens int32[256] (``ndarray:int32``, as Spark writes ``array<int>``), ~1.1 KB per row;
* ``fixed``: the standard columns without text, tokens written as ``ndarray:int32:256``: every
  column has a fixed size (the "fixed-size columns" case of the physical-limit target);
* ``wide``: rows/2 rows of 100 fixed-size numeric columns (id int64, 50 float64, 49 int32);
* ``image``: rows/40 rows of id, label and a 51,200-byte binary column (JPEG-sized);
* ``jpeg`` (ImageNet-like): ``--images`` (5,000) JPEGs of about 500x375 and 110 KB, made by the
  bench (bench/data.py), with id and label; batch ``--image-batch-size`` (64). Every case yields
  (batch, 3, 224, 224) uint8 tensors: ours decodes whole batches
  (``decode={"image": ImageDecode(size=224)}``), the reference and "per-sample PIL" decode each
  sample in the dataset's ``__getitem__`` (``PIL .convert("RGB").resize((224, 224), BILINEAR)``
  to a CHW tensor, the usual subclass), then the default collate.

Each case runs in a fresh process (so are each worker's memory and start-up measured), shuffled
(py1e, the default) with one dataset and one loader for all epochs: epoch 1 starts from the
compressed files only (it decompresses, as the first epoch of a training run does), then
``--epochs`` steady-state epochs over the decompressed shards (the best counts). Cases:

* ``per-sample iteration``: ``for sample in dataset`` (reference-identical dicts), no DataLoader;
* ``DataLoader, W workers``: ``StreamingDataLoader(dataset, batch_size, num_workers=W)``, the
  default collate: ours decodes whole batches (identical tensors), the reference collates samples;
* ``DataLoader, per-sample collate, W workers`` (ours only): ``collate_fn=default_collate``
  forces our per-sample path inside a DataLoader.

The reference runs the same script in its own virtualenv (.venv-ref). Rounds alternate between the
implementations (``--repeat``), the best epoch counts.

Peak memory: a thread samples /proc of the loop's process and of each DataLoader worker every
20 ms (RSS, and its anonymous part: file-backed pages of memory-mapped shards are page cache
shared with every process); the peaks are reported per process.

The physical limit (no decoding at all, one process): epoch 1 reads every compressed shard file
and decompresses it; steady state reads the raw shard files (what a loader reads once the shards
are decompressed). Both are measured in this process, best of 3. With W workers the limit is at
most W times higher (2 cores here). For ``jpeg``, the decode limit: one process per core decodes
its share of the images with simplejpeg, then decodes and resizes them to 224x224 (torch's
antialiased bilinear), nothing else; images/s from the processes' CPU time.

Prints samples/s and ratios; writes bench/results/loader.json.
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

from bench.common import JPEG_BATCHED, JPEG_PER_SAMPLE, REF_PYTHON, RESULTS, WORK, machine, read_result, write_result
from bench.data import ENCODINGS, MAKERS, variant_rows

VARIANTS = ("standard", "fixed", "wide", "image", "jpeg")

# The same measurements for both implementations.
RUN_SCRIPT = r"""
import json, os, sys, threading, time, warnings, logging
warnings.simplefilter("ignore"); logging.disable(logging.WARNING)
cfg = json.loads(sys.argv[1])
if cfg["impl"] == "streaming":
    from streaming import StreamingDataset, StreamingDataLoader
else:
    from mds_loader import StreamingDataset, StreamingDataLoader
import torch
from torch.utils.data import default_collate

def mem(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "RssAnon"):
                    out[k] = int(v.split()[0]) * 1024
    except (OSError, ValueError):
        pass
    return out

def kids(pid):
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out

peaks = {}  # pid -> [rss, anon]
stop = threading.Event()
def sample():
    me = os.getpid()
    while not stop.is_set():
        for pid in [me] + kids(me):
            m = mem(pid)
            if m:
                p = peaks.setdefault(pid, [0, 0])
                p[0] = max(p[0], m.get("VmRSS", 0)); p[1] = max(p[1], m.get("RssAnon", 0))
        stop.wait(0.02)
threading.Thread(target=sample, daemon=True).start()

path = cfg["path"]
index = json.load(open(os.path.join(path, "index.json")))
for s in index["shards"]:  # epoch 1 starts from the compressed files only
    if s.get("zip_data"):
        try:
            os.remove(os.path.join(path, s["raw_data"]["basename"]))
        except FileNotFoundError:
            pass
mode, workers, bs = cfg["mode"], cfg["workers"], cfg["batch_size"]
if mode == "pil":  # images decoded per sample, the usual way: a subclass's __getitem__
    import numpy as np, torch
    from PIL import Image
    class PerSample(StreamingDataset):
        def __getitem__(self, i):
            s = super().__getitem__(i)
            image = s["image"].convert("RGB").resize((224, 224), Image.BILINEAR)
            return {"id": s["id"], "image": torch.from_numpy(np.array(image)).permute(2, 0, 1)}
    ds = PerSample(local=path, batch_size=bs, shuffle=True)
else:
    ds = StreamingDataset(local=path, batch_size=bs, shuffle=True)
if mode == "samples":
    def epoch():
        return sum(1 for _ in ds)
elif mode in ("decode", "pil"):
    kwargs = {}
    if mode == "decode":
        from mds_loader import ImageDecode
        kwargs["decode"] = {"image": ImageDecode(size=224)}
    loader = StreamingDataLoader(ds, batch_size=bs, num_workers=workers, **kwargs)
    def epoch():
        n = 0
        for b in loader:
            assert b["image"].shape[1:] == (3, 224, 224) and b["image"].dtype == torch.uint8, b["image"].shape
            n += len(b["id"])
        return n
else:
    kwargs = {"collate_fn": default_collate} if mode == "loader-per-sample" else {}
    loader = StreamingDataLoader(ds, batch_size=bs, num_workers=workers, **kwargs)
    key = cfg["count_column"]
    def epoch():
        return sum(len(b[key]) for b in loader)
times = []
for e in range(1 + cfg["epochs"]):
    t = time.perf_counter()
    n = epoch()
    times.append(time.perf_counter() - t)
    assert n == cfg["samples"], (n, cfg["samples"])
stop.set()
me = os.getpid()
main = peaks.pop(me, [0, 0])
print(json.dumps({"samples": n, "epoch1": times[0], "steady": times[1:],
                  "memory": {"main": {"rss": main[0], "anon": main[1]},
                             "workers": [{"rss": p[0], "anon": p[1]} for p in peaks.values()]}}))
"""


def physical_limit(path: str, repeat: int = 3) -> dict[str, Any]:
    """Reading (and for epoch 1 decompressing) every shard file, nothing decoded, one process."""
    from mds_loader.format.compression import get_codec
    from mds_loader.format.index import load_index

    index = load_index(path)
    raw_total = sum(s.raw_data.bytes for s in index.shards)

    def cold() -> None:
        for shard in index.shards:
            info = shard.zip_data or shard.raw_data
            with open(os.path.join(path, info.basename), "rb") as f:
                data = f.read()
            if shard.zip_data is not None:
                data = get_codec(shard.compression).decompress(data)

    def steady() -> None:
        for shard in index.shards:
            with open(os.path.join(path, shard.raw_data.basename), "rb") as f:
                f.read()

    out: dict[str, Any] = {"samples": index.num_samples, "raw_bytes": raw_total}
    cold()  # the files in the page cache: both limits read from memory, as the loaders do
    for name, fn in (("epoch1", cold), ("steady", steady)):
        best = float("inf")
        for _ in range(repeat):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        out[name] = {"seconds": best, "samples_per_s": index.num_samples / best, "bytes_per_s": raw_total / best}
    return out


def _decode_share(args: tuple[list[bytes], int]) -> dict[str, float]:
    """CPU seconds of one process decoding its images, then decoding and resizing them to size x size."""
    import simplejpeg
    import torch
    from torch.nn.functional import interpolate

    images, size = args
    torch.set_num_threads(1)
    out = {}
    for name in ("decode", "decode + resize"):
        t = time.process_time()
        for data in images:
            pixels = simplejpeg.decode_jpeg(data, "RGB")
            if name != "decode":
                interpolate(torch.from_numpy(pixels).permute(2, 0, 1)[None], size=(size, size), mode="bilinear", antialias=True)
        out[name] = time.process_time() - t
    return out


def decode_limit(path: str, size: int = 224) -> dict[str, Any]:
    """What the cores can do with the libraries the batched decode uses, nothing else: one process per
    core decodes its share of the JPEGs with simplejpeg, then decodes and resizes them (torch's
    antialiased bilinear); images/s over all processes."""
    from concurrent.futures import ProcessPoolExecutor

    from mds_loader import read_table

    images = read_table(path, columns=["image"]).column("image").to_pylist()
    procs = os.cpu_count() or 1
    shares = [(images[i::procs], size) for i in range(procs)]
    with ProcessPoolExecutor(procs) as pool:
        runs = list(pool.map(_decode_share, shares))
    out: dict[str, Any] = {"processes": procs}
    for name in runs[0]:
        per_image = sum(r[name] for r in runs) / len(images)  # CPU seconds
        out[name] = {"cpu_ms_per_image": per_image * 1e3, "samples_per_s": procs / per_image}
    return out


def ensure_raw(path: str) -> None:
    """Decompressed shards next to the compressed ones (what an epoch leaves behind)."""
    from mds_loader.format.compression import get_codec
    from mds_loader.format.index import load_index

    for shard in load_index(path).shards:
        raw = os.path.join(path, shard.raw_data.basename)
        if shard.zip_data is not None and not os.path.exists(raw):
            with open(os.path.join(path, shard.zip_data.basename), "rb") as f:
                data = get_codec(shard.compression).decompress(f.read())
            with open(raw, "wb") as f:
                f.write(data)


def run_case(python: Path | str, impl: str, path: str, mode: str, workers: int, args: argparse.Namespace,
             samples: int, count_column: str, batch_size: int) -> dict[str, Any]:
    cfg = {"impl": impl, "path": path, "mode": mode, "workers": workers, "batch_size": batch_size,
           "epochs": args.epochs, "samples": samples, "count_column": count_column}
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    if impl == "streaming":
        env.pop("PYTHONPATH", None)
    proc = subprocess.run([str(python), "-c", RUN_SCRIPT, json.dumps(cfg)], capture_output=True, text=True,
                          cwd=str(WORK), env=env, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{impl} {mode} {workers} workers failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


CASES = [  # (label, our mode, the reference's mode or None, workers)
    ("per-sample iteration", "samples", "samples", 0),
    ("DataLoader, 0 workers", "loader", "loader", 0),
    ("DataLoader, 2 workers", "loader", "loader", 2),
    ("DataLoader, per-sample collate, 0 workers", "loader-per-sample", None, 0),
    ("DataLoader, per-sample collate, 2 workers", "loader-per-sample", None, 2),
]
# The other variants: the batch path only (what training uses), ours vs the reference.
OTHER_CASES = [CASES[1], CASES[2]]
# The ImageNet-like JPEGs to 224x224 uint8 batches: ours decodes whole batches, the reference (and
# ours, for comparison) each sample in __getitem__ with PIL.
JPEG_CASES = [(JPEG_BATCHED.format(w), "decode", "pil", w) for w in (0, 2)] + \
             [(JPEG_PER_SAMPLE.format(w), "pil", None, w) for w in (0, 2)]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rows", type=int, default=200_000, help="rows of the standard dataset")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--epochs", type=int, default=2, help="steady-state epochs per run after the first")
    p.add_argument("--repeat", type=int, default=2, help="interleaved rounds (best epoch counts)")
    p.add_argument("--variants", type=lambda s: [v for v in s.split(",") if v], default=list(VARIANTS))
    p.add_argument("--images", type=int, default=5000, help="JPEGs of the jpeg (ImageNet-like) variant")
    p.add_argument("--image-batch-size", type=int, default=64, help="batch size of the jpeg variant")
    p.add_argument("--no-reference", action="store_true", help="only measure mds_loader")
    p.add_argument("--update", action="store_true",
                   help="replace only the measured variants in the existing results (e.g. --variants image --update)")


def main(argv: list[str] | None = None, out_dir: Path = RESULTS) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m bench loader", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    args = p.parse_args(argv)
    from mds_loader import write_table

    reference = not args.no_reference and REF_PYTHON.exists()
    if not args.no_reference and not reference:
        print(f"reference virtualenv missing at {REF_PYTHON} (make ref-venv): measuring mds_loader only", file=sys.stderr)
    WORK.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="loader-", dir=WORK))
    report: dict[str, Any] = {"batch_size": args.batch_size, "epochs": args.epochs, "repeat": args.repeat,
                              "compression": "zstd", "shuffle": "py1e (default)", "machine": machine(), "variants": {}}
    try:
        for variant in args.variants:
            rows = variant_rows(variant, args.rows, args.images)
            batch_size = args.image_batch_size if variant == "jpeg" else args.batch_size
            path = str(tmp / variant)
            table = MAKERS[variant](rows)
            write_table(table, path, columns=ENCODINGS.get(variant), compression="zstd", nulls="error")
            del table
            ensure_raw(path)
            limit = physical_limit(path)
            images_limit = decode_limit(path) if variant == "jpeg" else None
            cases = {"standard": CASES, "jpeg": JPEG_CASES}.get(variant, OTHER_CASES)
            runs: dict[str, dict[str, list[dict[str, Any]]]] = {label: {} for label, *_ in cases}
            for _ in range(args.repeat):
                for label, mode, ref_mode, workers in cases:
                    impls = [("mds_loader", sys.executable, mode)]
                    if reference and ref_mode is not None:
                        impls.append(("streaming", REF_PYTHON, ref_mode))
                    for impl, python, impl_mode in impls:
                        r = run_case(python, impl, path, impl_mode, workers, args, rows, "id", batch_size)
                        runs[label].setdefault(impl, []).append(r)
            cases_out: dict[str, Any] = {}
            for label, by_impl in runs.items():
                entry: dict[str, Any] = {}
                for impl, rs in by_impl.items():
                    steady = min(t for r in rs for t in r["steady"])
                    epoch1 = min(r["epoch1"] for r in rs)
                    mem = rs[-1]["memory"]
                    entry[impl] = {
                        "samples_per_s": rows / steady, "epoch1_samples_per_s": rows / epoch1,
                        "steady_seconds": steady, "epoch1_seconds": epoch1,
                        "all_steady_seconds": [t for r in rs for t in r["steady"]],
                        "peak_rss_main": max(r["memory"]["main"]["rss"] for r in rs),
                        "peak_anon_main": max(r["memory"]["main"]["anon"] for r in rs),
                        "peak_rss_per_worker": max((w["rss"] for r in rs for w in r["memory"]["workers"]), default=None),
                        "peak_anon_per_worker": max((w["anon"] for r in rs for w in r["memory"]["workers"]), default=None),
                        "workers_seen": len(mem["workers"]),
                    }
                ours = entry["mds_loader"]
                ours["of_physical_limit"] = ours["samples_per_s"] / limit["steady"]["samples_per_s"]
                ours["epoch1_of_physical_limit"] = ours["epoch1_samples_per_s"] / limit["epoch1"]["samples_per_s"]
                if "streaming" in entry:
                    entry["ratio"] = ours["samples_per_s"] / entry["streaming"]["samples_per_s"]
                    entry["epoch1_ratio"] = ours["epoch1_samples_per_s"] / entry["streaming"]["epoch1_samples_per_s"]
                cases_out[label] = entry
            index = json.loads((Path(path) / "index.json").read_text())
            report["variants"][variant] = {
                "rows": rows, "shards": len(index["shards"]), "batch_size": batch_size,
                "raw_bytes": sum(s["raw_data"]["bytes"] for s in index["shards"]),
                "compressed_bytes": sum((s["zip_data"] or s["raw_data"])["bytes"] for s in index["shards"]),
                "column_encodings": dict(zip(index["shards"][0]["column_names"], index["shards"][0]["column_encodings"])),
                "physical_limit": limit, "cases": cases_out, "measured": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "machine": report["machine"],
            }
            if images_limit:
                report["variants"][variant]["decode_limit"] = images_limit
            shutil.rmtree(path, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"loader: batch {args.batch_size}, shuffled, zstd; steady state = best of {args.repeat} x {args.epochs} epochs")
    for variant, v in report["variants"].items():
        lim = v["physical_limit"]
        print(f"  {variant} ({v['rows']:,} rows, {v['shards']} shards, {v['raw_bytes'] / 2**20:.0f} MiB raw): physical limit "
              f"{lim['steady']['samples_per_s']:,.0f}/s steady, {lim['epoch1']['samples_per_s']:,.0f}/s epoch 1 (1 process)")
        if "decode_limit" in v:
            dl = v["decode_limit"]
            print(f"    decode limit, {dl['processes']} processes: {dl['decode']['samples_per_s']:,.0f}/s decoding, "
                  f"{dl['decode + resize']['samples_per_s']:,.0f}/s decoding and resizing")
        for label, e in v["cases"].items():
            o = e["mds_loader"]
            ref = f"  {e['ratio']:6.1f}x ref ({e['streaming']['samples_per_s']:,.0f}/s)" if "ratio" in e else " " * 30
            e1 = f"  epoch 1 {o['epoch1_samples_per_s']:10,.0f}/s" + (f" ({e['epoch1_ratio']:.1f}x)" if "epoch1_ratio" in e else "")
            worker = o["peak_rss_per_worker"]
            memory = f"  rss main {o['peak_rss_main'] / 2**20:,.0f} MiB" + (f", worker {worker / 2**20:,.0f} MiB" if worker else "")
            print(f"    {label:42s} {o['samples_per_s']:11,.0f}/s{ref}  {o['of_physical_limit']:5.0%} of limit{e1}{memory}")
    if args.update:
        previous = read_result(out_dir, "loader")
        if previous is not None and previous.get("batch_size") == args.batch_size:
            # each variant keeps the machine that measured it (older results: the file's machine)
            kept = {name: {"machine": previous.get("machine"), **v} for name, v in previous["variants"].items()}
            report["variants"] = {**kept, **report["variants"]}
    write_result(out_dir, "loader", report)
    return report


if __name__ == "__main__":
    main()

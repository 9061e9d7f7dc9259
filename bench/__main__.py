"""The benchmark suite: spark-mds and mds_loader against every alternative, side by side.

    python -m bench all [--rows 200000] [--quick] [--only spark,loader,...] [--skip remote]
    python -m bench spark|loader|startup|decode|remote|scale [options] [--out-dir DIR]   (one benchmark; --help)
    python -m bench plot        (PNG plots from the JSON results)
    python -m bench summary [--markdown]   (the targets of the issues, met or missed; --markdown: the README tables)

``all`` runs every benchmark (building its datasets), writes bench/results/<name>.json, plots to
docs/img/bench-*.png and prints the ratios and targets. ``--quick`` runs everything on tiny sizes
(a smoke run: its results go to bench/work/results-quick and bench/work/results-quick/img, the
published figures are left alone). ``make bench`` runs ``python -m bench all``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (IMAGES, JPEG_BATCHED, JPEG_PER_SAMPLE, QUICK_RESULTS, RESULTS, loader_machines, machine_label,
                          read_result, write_result)

BENCHMARKS = ("spark", "loader", "startup", "decode", "remote", "scale")


def _module(name: str):
    import importlib

    return importlib.import_module(f"bench.{name}")


def arguments(name: str, rows: int | None, quick: bool) -> list[str]:
    """Each benchmark's arguments for ``all`` (full run or --quick)."""
    if quick:
        return {
            "spark": ["--rows", str(rows or 2000), "--repeat", "1"],
            "loader": ["--rows", str(rows or 2000), "--repeat", "1", "--epochs", "1", "--variants", "standard,jpeg",
                       "--images", "48", "--image-batch-size", "16"],
            "startup": ["--shards", "200", "--repeat", "1"],
            "decode": ["--rows", str(rows or 2000), "--repeats", "1"],
            "remote": ["--rows", str(rows or 4000), "--repeats", "1", "--size-limit", "256kb"],
            "scale": ["--samples", "100K", "--baseline", "10K", "--ranks", "1", "--workers", "0", "--batches", "5"],
        }[name]
    rows = rows or 200_000
    return {
        "spark": ["--rows", str(rows)],
        "loader": ["--rows", str(rows)],
        "startup": [],
        "decode": ["--rows", str(rows)],
        "remote": ["--rows", str(max(rows // 2, 1000))],
        "scale": [],
    }[name]


# (name, description, how to compute the measured value from the results, how it compares)
def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _scaling(cases: dict[str, Any], more: str, fewer: str) -> float | None:
    """mds_loader's samples/s in case `more` over case `fewer` (e.g. 2 workers over 0)."""
    a, b = _get(cases, more, "mds_loader", "samples_per_s"), _get(cases, fewer, "mds_loader", "samples_per_s")
    return a / b if a and b else None


def _gib_pair(o: dict[str, Any], r: dict[str, Any], key: str) -> str:
    text = f"{o[key] / 2**30:.2f} GiB" if key in o else ""
    return text + (f" / {r[key] / 2**30:.2f} GiB" if key in r else "")


def targets(out_dir: Path) -> list[dict[str, Any]]:
    spark = read_result(out_dir, "spark") or {}
    loader = read_result(out_dir, "loader") or {}
    std = _get(spark, "results", "standard", "ratios") or {}
    cases = _get(loader, "variants", "standard", "cases") or {}
    fixed = _get(loader, "variants", "fixed", "cases") or {}
    jpeg = _get(loader, "variants", "jpeg", "cases") or {}
    rows = [
        ("JVM write vs dataframe_to_mds", ">= 10x", std.get("dataframe_to_mds / mds_jvm"), lambda x: x >= 10, "x faster"),
        ("JVM write time vs Parquet", "<= 1.0x", std.get("mds_jvm / parquet (write time)"), lambda x: x <= 1.0, "x the time"),
        ("Spark full scan, MDS vs Parquet", "<= 1.5x", std.get("scan_mds / scan_parquet"), lambda x: x <= 1.5, "x the time"),
        ("fallback write vs dataframe_to_mds", ">= 3x", std.get("dataframe_to_mds / mds_fallback"), lambda x: x >= 3, "x faster"),
        ("spark_mds.dataframe_to_mds vs the reference's (jar)", ">= 3x",
         std.get("dataframe_to_mds / spark_mds.dataframe_to_mds"), lambda x: x >= 3, "x faster"),
        ("loader batches vs reference (0 workers)", ">= 50x", _get(cases, "DataLoader, 0 workers", "ratio"), lambda x: x >= 50, "x"),
        ("loader batches vs reference (2 workers)", ">= 50x", _get(cases, "DataLoader, 2 workers", "ratio"), lambda x: x >= 50, "x"),
        ("loader per-sample vs reference", ">= 3x", _get(cases, "per-sample iteration", "ratio"), lambda x: x >= 3, "x"),
        ("loader batches scale: 2 workers / 0 workers", "> 1x",
         _scaling(cases, "DataLoader, 2 workers", "DataLoader, 0 workers"), lambda x: x > 1, "x"),
        ("loader per-sample collate scales: 2 workers / 0 workers", "> 1x",
         _scaling(cases, "DataLoader, per-sample collate, 2 workers", "DataLoader, per-sample collate, 0 workers"),
         lambda x: x > 1, "x"),
        ("fixed-size columns vs read limit, steady (0 workers)", ">= 0.5 (within 2x)",
         _get(fixed, "DataLoader, 0 workers", "mds_loader", "of_physical_limit"), lambda x: x >= 0.5, "of the limit"),
        ("fixed-size columns vs read+decompress limit, epoch 1 (0 workers)", ">= 0.5 (within 2x)",
         _get(fixed, "DataLoader, 0 workers", "mds_loader", "epoch1_of_physical_limit"), lambda x: x >= 0.5, "of the limit"),
        ("JPEGs to 224x224: batched decode vs reference per-sample PIL (0 workers)", ">= 3x",
         _get(jpeg, JPEG_BATCHED.format(0), "ratio"), lambda x: x >= 3, "x"),
        ("JPEGs to 224x224: batched decode vs reference per-sample PIL (2 workers)", ">= 2.5x",
         _get(jpeg, JPEG_BATCHED.format(2), "ratio"), lambda x: x >= 2.5, "x"),
    ]
    scale = _get(read_result(out_dir, "scale") or {}, "results") or {}
    big = scale.get("100M 4x2", {})
    rows += [
        ("100M samples, 4 ranks x 2 workers: first batch vs reference", "<= 0.5x", big.get("first_batch_ratio"),
         lambda x: x <= 0.5, "x the time"),
        ("100M samples, 4 ranks x 2 workers: node peak PSS vs reference", "<= 0.5x", big.get("pss_ratio"),
         lambda x: x <= 0.5, "x the memory"),
    ]
    out = []
    for name, target, value, ok, unit in rows:
        out.append({"target": name, "wanted": target, "measured": value, "unit": unit,
                    "met": None if value is None else bool(ok(value))})
    return out


def summary(out_dir: Path) -> list[dict[str, Any]]:
    rows = targets(out_dir)
    print("\ntargets (from the issues), measured:")
    for r in rows:
        state = "n/a " if r["met"] is None else ("MET " if r["met"] else "MISS")
        value = "not measured" if r["measured"] is None else f"{r['measured']:.2f} {r['unit']}"
        print(f"  [{state}] {r['target']:62s} wanted {r['wanted']:20s} measured {value}")
    return rows


def _cores(*machines: dict[str, Any] | None) -> str:
    """' (2 cores, <cpu>)' for a table's header; '' when its machine is unknown."""
    label = machine_label(*machines)
    return f" ({label})" if label else ""


def _jpeg_table(v: dict[str, Any]) -> list[str]:
    """The ImageNet-like JPEG variant: images/s to (batch, 3, 224, 224) uint8 batches."""
    kb = v["raw_bytes"] / v["rows"] / 1000
    lines = [f"{v['rows']:,} ImageNet-like JPEGs (about 500x375, {kb:.0f} KB) to 224x224 uint8 batches of "
             f"{v['batch_size']}, images/s, steady-state epoch{_cores(v.get('machine'))}:", "",
             "| DataLoader workers | mds_loader, batched decode | mds_loader, per-sample PIL | mosaicml-streaming, per-sample PIL | ratio |",
             "|---|---|---|---|---|"]
    for workers in (0, 2):
        batched = v["cases"].get(JPEG_BATCHED.format(workers), {})
        single = v["cases"].get(JPEG_PER_SAMPLE.format(workers), {})
        ref = batched.get("streaming", {}).get("samples_per_s")
        ours = _get(batched, "mds_loader", "samples_per_s")
        mine = _get(single, "mds_loader", "samples_per_s")
        lines.append(f"| {workers} | {ours or 0:,.0f} | {mine or 0:,.0f} | " + (f"{ref:,.0f} | {ours / ref:.1f}x |" if ref and ours else "| |"))
    limit = v.get("decode_limit")
    if limit:  # (results of an older run lack it)
        d, dr = limit["decode"], limit["decode + resize"]
        lines.append(f"| limit: {limit['processes']} processes only decoding / decoding and resizing (simplejpeg, torch) "
                     f"| {d['samples_per_s']:,.0f} / {dr['samples_per_s']:,.0f} | | | |")
        lines += ["", f"CPU per image in that limit: {d['cpu_ms_per_image']:.2f} ms decoding, "
                      f"{dr['cpu_ms_per_image'] - d['cpu_ms_per_image']:.2f} ms resizing."]
    return lines + [""]


def markdown(out_dir: Path) -> str:
    """The README's performance tables from the JSON results."""
    lines: list[str] = []
    spark = read_result(out_dir, "spark")
    if spark:
        lines += [f"Spark {spark['master']}, {spark['partitions']} partitions, zstd, best of {spark['repeat']} interleaved rounds"
                  f"{_cores(spark['machine'])}:", "",
                  "| write, seconds (rows/s) | " + " | ".join(f"{v} ({r['rows']:,} rows)" for v, r in spark["results"].items()) + " |",
                  "|---|" + "---|" * len(spark["results"])]
        names = [("mds_jvm", "`format(\"mds\")`, JVM"), ("mds_fallback", "`format(\"mds\")`, Python fallback"),
                 ("parquet", "Parquet"), ("dataframe_to_mds", "`dataframe_to_mds` (mosaicml-streaming)"),
                 ("python_source_floor", "floor of any Python data source (reads its input, writes nothing)"),
                 ("spark_floor", "floor of any writer (Spark's `noop` sink)")]
        for key, label in names:
            cells = []
            for r in spark["results"].values():
                x = r.get(key)
                cells.append(f"{x['seconds']:.2f} ({x['rows_per_s']:,.0f})" if x else "")
            if any(cells):  # (results of an older run may lack a writer)
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
        for key, label in (("dataframe_to_mds / mds_jvm", "JVM vs `dataframe_to_mds`"),
                           ("dataframe_to_mds / mds_fallback", "fallback vs `dataframe_to_mds`"),
                           ("mds_jvm / parquet (write time)", "JVM time / Parquet time")):
            lines.append(f"| {label} | " + " | ".join(f"{r['ratios'][key]:.2f}x" if key in r["ratios"] else ""
                                                     for r in spark["results"].values()) + " |")
        lines += ["", "| Spark scan, seconds | " + " | ".join(spark["results"]) + " |", "|---|" + "---|" * len(spark["results"])]
        for key, label in (("scan_mds", "MDS, all columns"), ("scan_parquet", "Parquet, all columns"),
                           ("scan_mds_pruned", "MDS, 2 columns"), ("scan_parquet_pruned", "Parquet, 2 columns")):
            lines.append(f"| {label} | " + " | ".join(f"{r[key]['seconds']:.2f}" if key in r else "" for r in spark["results"].values()) + " |")
        lines.append("")
    loader = read_result(out_dir, "loader")
    if loader:
        lines += [f"Training loop, shuffled, batch {loader['batch_size']}, steady-state epoch (epoch 1 decompresses)"
                  f"{_cores(*loader_machines(loader, jpeg=False))}:", "",
                  "| dataset | loop | mds_loader samples/s | mosaicml-streaming | ratio | epoch 1 (ratio) | peak RSS main / worker |",
                  "|---|---|---|---|---|---|---|"]
        for variant, v in loader["variants"].items():
            if variant == "jpeg":
                continue
            for label, e in v["cases"].items():
                o = e["mds_loader"]
                ref = e.get("streaming")
                w = o.get("peak_rss_per_worker")
                mem = f"{o['peak_rss_main'] / 2**20:,.0f} MiB" + (f" / {w / 2**20:,.0f} MiB" if w else "")
                lines.append(f"| {variant} | {label} | {o['samples_per_s']:,.0f} | {ref['samples_per_s']:,.0f} | {e['ratio']:.1f}x | "
                             f"{o['epoch1_samples_per_s']:,.0f} ({e['epoch1_ratio']:.1f}x) | {mem} |" if ref else
                             f"| {variant} | {label} | {o['samples_per_s']:,.0f} | | | {o['epoch1_samples_per_s']:,.0f} | {mem} |")
            lim = v["physical_limit"]
            lines.append(f"| {variant} | physical limit, 1 process: read raw shards / read + decompress | "
                         f"{lim['steady']['samples_per_s']:,.0f} / {lim['epoch1']['samples_per_s']:,.0f} | | | | |")
        lines.append("")
        jpeg = loader["variants"].get("jpeg")
        if jpeg:
            lines += _jpeg_table(jpeg)
    remote = read_result(out_dir, "remote")
    if remote:
        lines += [f"Training epoch from a local S3 server ({remote['server']}) vs local disk: {remote['rows']:,} rows, "
                  f"{remote['shards']} shards, {remote['workers']} DataLoader workers, best of {remote['repeats']}:", "",
                  "| source | first epoch (cold cache), samples/s | vs local | second epoch (warm cache) | vs local |",
                  "|---|---|---|---|---|"]
        for source, e in remote["epochs"].items():
            cold, warm = e["first (cold cache)"], e["second (warm cache)"]
            lines.append(f"| {source} | {cold['samples_per_s']:,.0f} | {cold['vs_local']:.2f}x | "
                         f"{warm['samples_per_s']:,.0f} | {warm['vs_local']:.2f}x |")
        lines.append("")
    startup = read_result(out_dir, "startup")
    if startup:
        lines += [f"Time to first batch, {startup['shards']:,} shards:", "", "| DataLoader | mds_loader | mosaicml-streaming |", "|---|---|---|"]
        for case, e in startup["results"].items():
            ref = e.get("streaming", {}).get("first_batch_seconds")
            lines.append(f"| {case} | {e['mds_loader']['first_batch_seconds']:.2f} s | " + (f"{ref:.2f} s |" if ref else "|"))
        lines.append("")
    scale = read_result(out_dir, "scale")
    if scale:
        lines += [f"Scale: 1-byte samples, {scale['samples_per_shard']:,} per shard, shuffled, batch {scale['batch_size']}, "
                  f"under torchrun (RANKS x WORKERS per rank); slowest rank's first batch, the node's peak PSS (all "
                  f"processes), the order's share of it (minus the same job on {scale['baseline']:,} samples):", "",
                  "| samples | ranks x workers | first batch: mds_loader / reference | node peak PSS: mds_loader / reference "
                  "| order's share: mds_loader / reference | samples/s: mds_loader / reference |", "|---|---|---|---|---|---|"]
        for e in scale["results"].values():
            if e["samples"] == scale["baseline"]:
                continue
            o, r = e["mds_loader"], e.get("streaming", {})

            def pair(key: str, fmt: str, o=o, r=r) -> str:
                a = fmt.format(o[key]) if key in o else ""
                return a + (" / " + fmt.format(r[key]) if key in r else "")

            lines.append(f"| {e['samples']:,} | {e['ranks']} x {e['workers']} | {pair('first_batch_seconds', '{:.1f} s')} | "
                         f"{_gib_pair(o, r, 'node_peak_pss')} | {_gib_pair(o, r, 'order_pss')} | "
                         f"{pair('samples_per_s', '{:,.0f}')} |")
        lines.append("")
    rows = targets(out_dir)
    lines += ["| target | wanted | measured | |", "|---|---|---|---|"]
    for r in rows:
        value = "" if r["measured"] is None else f"{r['measured']:.2f} {r['unit']}"
        lines.append(f"| {r['target']} | {r['wanted']} | {value} | {'met' if r['met'] else 'missed' if r['met'] is False else ''} |")
    return "\n".join(lines)


def run_all(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench all", description="every benchmark, then plots and the targets")
    p.add_argument("--rows", type=int, default=None, help="rows of the standard dataset (default 200000; 2000 with --quick)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, one round: a smoke run (results in bench/work/results-quick)")
    p.add_argument("--only", type=lambda s: [x for x in s.split(",") if x], default=list(BENCHMARKS))
    p.add_argument("--skip", type=lambda s: [x for x in s.split(",") if x], default=[])
    p.add_argument("--out-dir", type=Path, default=None)
    p.add_argument("--images", type=Path, default=None)
    p.add_argument("--no-reference", action="store_true", help="only our side (no mosaicml-streaming)")
    args = p.parse_args(argv)
    out_dir = args.out_dir or (QUICK_RESULTS if args.quick else RESULTS)
    images = args.images or (out_dir / "img" if args.quick else IMAGES)
    names = [n for n in BENCHMARKS if n in args.only and n not in args.skip]
    unknown = (set(args.only) | set(args.skip)) - set(BENCHMARKS)
    if unknown:
        p.error(f"unknown benchmarks {sorted(unknown)}; choose from {BENCHMARKS}")
    timings = {}
    for name in names:
        a = arguments(name, args.rows, args.quick)
        if args.no_reference and name != "remote":  # remote compares local disk with S3, no reference
            a = a + ["--no-reference"]
        print(f"\n=== bench {name} {' '.join(a)}", flush=True)
        t = time.perf_counter()
        _module(name).main(a, out_dir=out_dir)
        timings[name] = time.perf_counter() - t
    print()
    from bench import plot

    plot.plot_all(out_dir, images)
    rows = summary(out_dir)
    write_result(out_dir, "summary", {"quick": args.quick, "benchmarks_run": names, "seconds": timings, "targets": rows})
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "all":
        return run_all(rest)
    if command in BENCHMARKS:
        out_dir = RESULTS
        if "--out-dir" in rest:  # where the JSON goes (default bench/results)
            k = rest.index("--out-dir")
            out_dir = Path(rest[k + 1])
            del rest[k : k + 2]
        _module(command).main(rest, out_dir=out_dir)
        return 0
    if command == "plot":
        from bench import plot

        plot.main(rest)
        return 0
    if command == "summary":
        p = argparse.ArgumentParser(prog="python -m bench summary")
        p.add_argument("--results", type=Path, default=RESULTS)
        p.add_argument("--markdown", action="store_true", help="print the README's tables")
        a = p.parse_args(rest)
        if a.markdown:
            print(markdown(a.results))
        else:
            summary(a.results)
        return 0
    print(f"unknown command {command!r}; see python -m bench --help", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

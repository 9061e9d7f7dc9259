"""Plots of the results (matplotlib, Agg): write time, Spark scan time, loader samples/s, time to
first batch, ours vs each alternative.

    python -m bench plot [--results bench/results] [--images docs/img]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.common import IMAGES, JPEG_BATCHED, JPEG_PER_SAMPLE, RESULTS, loader_machines, machine_label, read_result, rel

OURS = "#1f77b4"
OURS2 = "#6baed6"
REF = "#d62728"
OTHER = "#7f7f7f"
LIMIT = "#2ca02c"


def _setup():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False})
    return plt


def _machine(result: dict[str, Any]) -> str:
    return machine_label(result.get("machine"))


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_write(spark: dict[str, Any], out: Path) -> Path:
    plt = _setup()
    variants = list(spark["results"])
    writers = [("mds_jvm", "format('mds') (JVM)", OURS), ("mds_fallback", "format('mds') (Python fallback)", OURS2),
               ("parquet", "Parquet (Spark)", OTHER), ("dataframe_to_mds", "dataframe_to_mds (mosaicml-streaming)", REF)]
    fig, axes = plt.subplots(1, len(variants), figsize=(3.6 * len(variants), 3.2), squeeze=False)
    for ax, variant in zip(axes[0], variants):
        r = spark["results"][variant]
        present = [(k, label, c) for k, label, c in writers if k in r]
        secs = [r[k]["seconds"] for k, _, _ in present]
        y = range(len(present))
        ax.barh(list(y), secs, color=[c for *_, c in present])
        ax.set_yticks(list(y), [label for _, label, _ in present] if ax is axes[0][0] else [""] * len(present))
        ax.invert_yaxis()
        base = r["mds_jvm"]["seconds"] if "mds_jvm" in r else None
        for i, s in enumerate(secs):
            note = f"{s:.2f} s" + (f"  ({s / base:.1f}x)" if base and present[i][0] != "mds_jvm" else "")
            ax.text(s, i, " " + note, va="center", fontsize=8)
        ax.set_xlim(0, max(secs) * 1.55)
        ax.set_title(f"{variant}: {r['rows']:,} rows", fontsize=9)
        ax.set_xlabel("write time, s (lower is better)")
    fig.suptitle(f"Spark DataFrame -> files, zstd, {spark['master']}, {spark['partitions']} partitions "
                 f"(best of {spark['repeat']}; {_machine(spark)})", fontsize=10)
    return _save(plt, fig, out / "bench-write.png")


def plot_scan(spark: dict[str, Any], out: Path) -> Path:
    plt = _setup()
    variants = [v for v in spark["results"] if "scan_mds" in spark["results"][v]]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    width = 0.2
    series = [("scan_mds", "MDS, all columns", OURS), ("scan_parquet", "Parquet, all columns", OTHER),
              ("scan_mds_pruned", "MDS, 2 columns", OURS2), ("scan_parquet_pruned", "Parquet, 2 columns", "#bdbdbd")]
    for k, (key, label, color) in enumerate(series):
        xs = [i + (k - 1.5) * width for i in range(len(variants))]
        ys = [spark["results"][v][key]["seconds"] for v in variants]
        ax.bar(xs, ys, width, label=label, color=color)
        for x, y in zip(xs, ys):
            ax.text(x, y, f"{y:.2f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(variants)), [f"{v} ({spark['results'][v]['rows']:,} rows)" for v in variants])
    ax.set_ylabel("scan time, s (lower is better)")
    ax.legend(fontsize=8, frameon=False)
    ax.set_title(f"Spark scan (noop sink), {spark['master']} (best of {spark['repeat']}; {_machine(spark)})", fontsize=10)
    return _save(plt, fig, out / "bench-scan.png")


def plot_loader(loader: dict[str, Any], out: Path) -> Path:
    plt = _setup()
    variants = [v for v in loader["variants"] if v != "jpeg"]  # (plot_images)
    fig, axes = plt.subplots(1, len(variants), figsize=(3.9 * len(variants), 3.6), squeeze=False,
                             gridspec_kw={"width_ratios": [len(loader["variants"][v]["cases"]) + 1 for v in variants]})
    for ax, variant in zip(axes[0], variants):
        v = loader["variants"][variant]
        labels = list(v["cases"])
        short = [lbl.replace("DataLoader, ", "DL ").replace("per-sample collate, ", "per-sample\n").replace(" workers", "w")
                 .replace("per-sample iteration", "per-sample\nno DataLoader") for lbl in labels]
        width = 0.38
        ours = [v["cases"][lbl]["mds_loader"]["samples_per_s"] for lbl in labels]
        ref = [v["cases"][lbl].get("streaming", {}).get("samples_per_s") for lbl in labels]
        ax.bar([i - width / 2 for i in range(len(labels))], ours, width, color=OURS, label="mds_loader")
        ax.bar([i + width / 2 for i in range(len(labels)) if ref[i]], [r for r in ref if r], width, color=REF,
               label="mosaicml-streaming 0.13.0")
        for i, (o, r) in enumerate(zip(ours, ref)):
            if r:
                ax.text(i - width / 2, o, f"{o / r:.0f}x", ha="center", va="bottom", fontsize=8)
        lim = v["physical_limit"]
        ax.axhline(lim["steady"]["samples_per_s"], color=LIMIT, ls="--", lw=1, label="read raw shards (1 process)")
        ax.axhline(lim["epoch1"]["samples_per_s"], color=LIMIT, ls=":", lw=1, label="read + decompress (1 process)")
        ax.set_yscale("log")
        ax.set_xticks(range(len(labels)), short, fontsize=7)
        ax.set_title(f"{variant}: {v['rows']:,} rows", fontsize=9)
        if ax is axes[0][0]:
            ax.set_ylabel("samples/s, steady-state epoch (log)")
            ax.legend(fontsize=7, frameon=False, loc="lower left")
    fig.suptitle(f"Training loop throughput, shuffled, batch {loader['batch_size']} ({machine_label(*loader_machines(loader, jpeg=False))})", fontsize=10)
    return _save(plt, fig, out / "bench-loader.png")


def plot_images(v: dict[str, Any], loader: dict[str, Any], out: Path) -> Path:
    """JPEGs to 224x224 uint8 batches: ours batched and per-sample vs the reference, by workers."""
    plt = _setup()
    fig, ax = plt.subplots(figsize=(5.6, 3.2))
    width = 0.27
    bars = [("mds_loader, batched decode", JPEG_BATCHED, "mds_loader", OURS),
            ("mds_loader, per-sample PIL", JPEG_PER_SAMPLE, "mds_loader", "#9ecae1"),
            ("mosaicml-streaming 0.13.0, per-sample PIL", JPEG_BATCHED, "streaming", REF)]
    top = 0.0
    for k, (label, case, impl, color) in enumerate(bars):
        xs, ys, texts = [], [], []
        for i, workers in enumerate((0, 2)):
            entry = v["cases"].get(case.format(workers), {})
            value = entry.get(impl, {}).get("samples_per_s")
            if value:
                xs.append(i + (k - 1) * width)
                ys.append(value)
                ratio = entry.get("ratio") if k == 0 else None
                texts.append(f"{value:,.0f}" + (f"\n{ratio:.1f}x ref" if ratio else ""))
        ax.bar(xs, ys, width, color=color, label=label)
        for x, y, text in zip(xs, ys, texts):
            ax.text(x, y, text, ha="center", va="bottom", fontsize=7)
        top = max([top, *ys])
    limit = v.get("decode_limit", {}).get("decode + resize", {}).get("samples_per_s")
    if limit:  # what the cores do with the same decoder and resize and nothing else
        ax.axhline(limit, color="0.4", linestyle="--", linewidth=0.8,
                   label=f"limit: {v['decode_limit']['processes']} processes only decoding and resizing")
        top = max(top, limit)
    ax.set_ylim(0, top * 1.45)
    ax.set_xticks([0, 1], ["DataLoader, 0 workers", "DataLoader, 2 workers"])
    ax.set_ylabel("images/s (224x224 uint8 batches)")
    ax.legend(fontsize=7, frameon=False, loc="upper right")
    kb = v["raw_bytes"] / v["rows"] / 1000
    ax.set_title(f"{v['rows']:,} JPEGs (~500x375, {kb:.0f} KB), batch {v['batch_size']} ({machine_label(*loader_machines(loader, jpeg=True))})", fontsize=9)
    return _save(plt, fig, out / "bench-images.png")


def plot_startup(startup: dict[str, Any], out: Path) -> Path:
    plt = _setup()
    cases = list(startup["results"])
    fig, ax = plt.subplots(figsize=(5, 2.6))
    width = 0.38
    for k, (impl, label, color) in enumerate([("mds_loader", "mds_loader", OURS), ("streaming", "mosaicml-streaming", REF)]):
        xs = [i + (k - 0.5) * width for i, c in enumerate(cases) if impl in startup["results"][c]]
        ys = [startup["results"][c][impl]["first_batch_seconds"] for c in cases if impl in startup["results"][c]]
        if ys:
            ax.bar(xs, ys, width, color=color, label=label)
            for x, y in zip(xs, ys):
                ax.text(x, y, f"{y:.2f} s", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(cases)), [f"DataLoader, {c}" for c in cases])
    ax.set_ylabel("seconds (lower is better)")
    ax.legend(fontsize=8, frameon=False)
    ax.set_title(f"Time to first batch, {startup['shards']:,} shards ({_machine(startup)})", fontsize=10)
    return _save(plt, fig, out / "bench-startup.png")


def plot_scale(scale: dict[str, Any], out: Path) -> Path:
    """First batch and node memory against the dataset's size, one line per implementation and
    job shape."""
    plt = _setup()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3))
    lines: dict[tuple[str, str], list[tuple[int, float, float]]] = {}
    for e in scale["results"].values():
        for impl in ("mds_loader", "streaming"):
            if impl in e:
                shape = f"{e['ranks']}x{e['workers']}"
                lines.setdefault((impl, shape), []).append(
                    (e["samples"], e[impl]["first_batch_seconds"], e[impl]["node_peak_pss"] / 2**30))
    for (impl, shape), points in sorted(lines.items()):
        points.sort()
        xs = [p[0] for p in points]
        style = dict(color=OURS if impl == "mds_loader" else REF, marker="o", ms=3, lw=1,
                     ls="-" if shape.endswith("x2") else "--")
        name = f"{'mds_loader' if impl == 'mds_loader' else 'mosaicml-streaming'} {shape}"
        left.plot(xs, [p[1] for p in points], label=name, **style)
        right.plot(xs, [p[2] for p in points], label=name, **style)
    for ax, title in ((left, "slowest rank's first batch, s"), (right, "node peak PSS, GiB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("samples")
        ax.set_title(title, fontsize=9)
    right.legend(fontsize=6, frameon=False, ncol=2)
    fig.suptitle(f"Scale under torchrun, ranks x workers per rank ({_machine(scale)})", fontsize=10)
    return _save(plt, fig, out / "bench-scale.png")


def plot_all(results: Path = RESULTS, images: Path = IMAGES) -> list[Path]:
    images.mkdir(parents=True, exist_ok=True)
    made = []
    spark = read_result(results, "spark")
    if spark:
        made.append(plot_write(spark, images))
        if any("scan_mds" in r for r in spark["results"].values()):
            made.append(plot_scan(spark, images))
    loader = read_result(results, "loader")
    if loader and any(v != "jpeg" for v in loader.get("variants", {})):
        made.append(plot_loader(loader, images))
    if loader and "jpeg" in loader.get("variants", {}):
        made.append(plot_images(loader["variants"]["jpeg"], loader, images))
    startup = read_result(results, "startup")
    if startup:
        made.append(plot_startup(startup, images))
    scale = read_result(results, "scale")
    if scale:
        made.append(plot_scale(scale, images))
    for p in made:
        print(f"plotted {rel(p)}")
    return made


def main(argv: list[str] | None = None, out_dir: Path = RESULTS, images: Path = IMAGES) -> list[Path]:
    p = argparse.ArgumentParser(prog="python -m bench plot", description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=out_dir)
    p.add_argument("--images", type=Path, default=images)
    args = p.parse_args(argv)
    return plot_all(args.results, args.images)


if __name__ == "__main__":
    main()

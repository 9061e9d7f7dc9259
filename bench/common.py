"""Shared pieces of the benchmark suite: paths, result files, timing statistics, memory readings,
and the Python in which the reference's ``dataframe_to_mds`` runs."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work"
RESULTS = ROOT / "bench" / "results"  # published results (full runs)
QUICK_RESULTS = WORK / "results-quick"  # smoke runs (--quick) never overwrite the published figures
IMAGES = ROOT / "docs" / "img"
REF_VENV = Path(os.environ.get("MDS_REF_VENV", ROOT / ".venv-ref"))
REF_PYTHON = REF_VENV / "bin" / "python"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if models:
            info["cpu"] = models[0]
        with open("/proc/meminfo") as f:
            info["memory_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
        info["load_average_at_start"] = os.getloadavg()
    except OSError:
        pass
    return info


def machine_label(*machines: dict[str, Any] | None) -> str:
    """The machine(s) that measured a table or a plot, as '2 cores, <cpu>' ('; ' between several)."""
    return "; ".join(sorted({f"{m.get('cpus', '?')} cores, {m.get('cpu', '?')}" for m in machines if m}))


def loader_machines(loader: dict[str, Any], jpeg: bool) -> list[dict[str, Any] | None]:
    """The machines that measured the loader's jpeg variant, or its other variants (each variant
    records its own: ``--update`` re-measures some of them)."""
    return [v.get("machine", loader.get("machine")) for name, v in loader["variants"].items() if (name == "jpeg") == jpeg]


def summarize(times: list[float]) -> dict[str, Any]:
    """Best, median and every time of interleaved runs (the machine may be shared)."""
    return {"seconds": min(times), "median_seconds": statistics.median(times), "all_seconds": list(times)}


def write_result(out_dir: Path, name: str, result: dict[str, Any]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    result = {"benchmark": name, "written": time.strftime("%Y-%m-%dT%H:%M:%S"), **result}
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {rel(path)}", flush=True)
    return path


def read_result(out_dir: Path, name: str) -> dict[str, Any] | None:
    path = out_dir / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def rel(path: Path | str) -> str:
    p = Path(path)
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)


def proc_memory(pid: int | str = "self") -> dict[str, int]:
    """Memory of a process from /proc (bytes): rss, anon (RssAnon), file (RssFile), hwm (VmHWM)."""
    keys = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file", "VmHWM": "hwm", "RssShmem": "shmem"}
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in keys:
                    out[keys[k]] = int(v.split()[0]) * 1024
    except (OSError, ValueError):
        pass
    return out


def children(pid: int) -> list[int]:
    """Direct children of a process (from /proc/<pid>/task/*/children)."""
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return kids


def dtm_python() -> Path | None:
    """The reference's Python with pyspark beside it (tests/interop/requirements-ref.txt), which runs
    its ``dataframe_to_mds``; None without the reference's virtualenv (make ref-venv)."""
    if not REF_PYTHON.exists():
        return None
    probe = subprocess.run([str(REF_PYTHON), "-c", "import pyspark, pandas, streaming"], capture_output=True)
    return REF_PYTHON if probe.returncode == 0 else None


# The ImageNet-like JPEG variant's cases (bench/loader.py), by number of DataLoader workers: ours
# decoding whole batches against the reference's per-sample PIL pipeline, and ours per sample.
JPEG_BATCHED = "batched decode vs per-sample PIL, {} workers"
JPEG_PER_SAMPLE = "per-sample PIL, {} workers"

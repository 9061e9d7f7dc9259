"""Shared pieces of the benchmark suite: paths, result files, timing statistics, memory readings,
and the throwaway virtualenv in which ``dataframe_to_mds`` runs."""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
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
# pyspark + pandas + pyarrow, reading mosaicml-streaming from .venv-ref through a .pth file.
DTM_VENV = Path(os.environ.get("MDS_BENCH_DTM_VENV", WORK / "venv-dtm"))
DTM_PYTHON = DTM_VENV / "bin" / "python"


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


def dtm_python(create: bool) -> Path | None:
    """The Python that runs ``dataframe_to_mds`` (pyspark beside mosaicml-streaming); created
    under bench/work/ when `create` and missing (needs .venv-ref and the package index)."""
    if DTM_PYTHON.exists():
        return DTM_PYTHON
    if not create:
        return None
    if not REF_PYTHON.exists():
        print(f"no reference virtualenv at {rel(REF_VENV)} (make ref-venv): dataframe_to_mds is skipped", file=sys.stderr)
        return None
    print(f"creating {rel(DTM_VENV)} (pyspark 4.1.4 + pandas + pyarrow, mosaicml-streaming from {rel(REF_VENV)})", flush=True)
    WORK.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(DTM_VENV, ignore_errors=True)
    py = sys.executable if not hasattr(sys, "_base_executable") else sys._base_executable  # type: ignore[attr-defined]
    subprocess.run([py, "-m", "venv", str(DTM_VENV)], check=True)
    ref_site = subprocess.run([str(REF_PYTHON), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True).stdout.strip()
    site = subprocess.run([str(DTM_PYTHON), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # Appended to sys.path after the venv's own site-packages: streaming, numpy<2.2, zstd, xxhash...
    Path(site, "zz_reference_streaming.pth").write_text(ref_site + "\n")
    log = WORK / "venv-dtm-install.log"
    with open(log, "w") as f:
        proc = subprocess.run([str(DTM_PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                               "pyspark==4.1.4", "pandas", "pyarrow", "numpy<2.2"], stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0 or subprocess.run([str(DTM_PYTHON), "-c", "import pyspark, pandas, streaming"],
                                              capture_output=True).returncode != 0:
        print(f"could not build {rel(DTM_VENV)} (see {rel(log)}): dataframe_to_mds is skipped", file=sys.stderr)
        shutil.rmtree(DTM_VENV, ignore_errors=True)
        return None
    return DTM_PYTHON

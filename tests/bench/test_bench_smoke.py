"""Smoke test of the benchmark suite (bench/): every benchmark runs on tiny sizes and writes its JSON,
the plots and the target summary are made. No timing is asserted: figures on tiny data mean nothing.

The Spark benchmark runs our writers only here (the reference's dataframe_to_mds is exercised, with
the same call as ours, by tests/spark/test_dataframe_to_mds.py). The reference loader needs .venv-ref.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.common import REF_PYTHON  # noqa: E402
from support import require_jar  # noqa: E402


def _bench(*args: str, timeout: float = 300) -> str:
    proc = subprocess.run([sys.executable, "-m", "bench", *args], cwd=str(ROOT), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench-results")


def test_loader_startup_decode_scale(results: Path) -> None:
    ref = [] if REF_PYTHON.exists() else ["--no-reference"]
    out = _bench("all", "--quick", "--only", "loader,startup,decode,scale", "--out-dir", str(results), *ref)
    # tiny: the standard and the ImageNet-like JPEG variants of the loader, few shards
    loader = json.loads((results / "loader.json").read_text())
    assert list(loader["variants"]) == ["standard", "jpeg"]
    jpeg = loader["variants"]["jpeg"]["cases"]
    assert jpeg["batched decode vs per-sample PIL, 2 workers"]["mds_loader"]["samples_per_s"] > 0
    assert jpeg["per-sample PIL, 0 workers"]["mds_loader"]["samples_per_s"] > 0
    assert ("ratio" in jpeg["batched decode vs per-sample PIL, 0 workers"]) == (not ref)
    assert loader["variants"]["jpeg"]["decode_limit"]["decode + resize"]["samples_per_s"] > 0
    assert (results / "img" / "bench-images.png").stat().st_size > 0
    case = loader["variants"]["standard"]["cases"]["DataLoader, 0 workers"]
    assert case["mds_loader"]["samples_per_s"] > 0
    assert loader["variants"]["standard"]["physical_limit"]["steady"]["samples_per_s"] > 0
    if not ref:
        assert case["ratio"] > 0 and "streaming" in case
    startup = json.loads((results / "startup.json").read_text())
    assert startup["shards"] == 200
    assert json.loads((results / "decode.json").read_text())["results"]["mds_loader.read_table"]["samples_per_s"] > 0
    assert (results / "img" / "bench-loader.png").stat().st_size > 0
    assert (results / "img" / "bench-startup.png").stat().st_size > 0
    scale = json.loads((results / "scale.json").read_text())["results"]
    assert sorted(scale) == ["100K 1x0", "10K 1x0"]
    run = scale["100K 1x0"]
    assert run["mds_loader"]["node_peak_pss"] > 0 and run["mds_loader"]["first_batch_seconds"] > 0
    assert ("streaming" in run) == (not ref) and "order_pss" in run["mds_loader"]
    assert (results / "img" / "bench-scale.png").stat().st_size > 0
    assert "targets (from the issues), measured:" in out
    summary = json.loads((results / "summary.json").read_text())
    assert any(t["target"].startswith("loader per-sample") for t in summary["targets"])


def test_spark(results: Path) -> None:
    require_jar()
    _bench("spark", "--rows", "300", "--variants", "standard", "--repeat", "1", "--out-dir", str(results), "--no-reference")
    spark = json.loads((results / "spark.json").read_text())["results"]["standard"]
    for writer in ("mds_jvm", "mds_fallback", "parquet", "python_source_floor", "scan_mds", "scan_parquet_pruned"):
        assert spark[writer]["seconds"] > 0, writer
    assert spark["mds_jvm"]["samples"] == spark["mds_fallback"]["samples"] == 300
    assert "dataframe_to_mds" not in spark
    out = _bench("summary", "--results", str(results))
    assert "JVM write time vs Parquet" in out
    _bench("plot", "--results", str(results), "--images", str(results / "img"))
    assert (results / "img" / "bench-write.png").stat().st_size > 0
    assert (results / "img" / "bench-scan.png").stat().st_size > 0


def test_plot_and_summary_without_results(tmp_path: Path) -> None:
    out = _bench("summary", "--results", str(tmp_path))
    assert "not measured" in out
    _bench("plot", "--results", str(tmp_path), "--images", str(tmp_path / "img"))
    shutil.rmtree(tmp_path / "img", ignore_errors=True)

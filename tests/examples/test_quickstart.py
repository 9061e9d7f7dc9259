"""`make demo` runs examples/quickstart.py: it must keep working end to end."""

from __future__ import annotations

import subprocess
import sys

import pytest

from support import ROOT


@pytest.mark.spark
@pytest.mark.slow
def test_quickstart(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=str(ROOT))
    assert proc.returncode == 0, proc.stderr[-5000:]
    out = proc.stdout
    assert "format('mds') is served by: jvm" in out
    assert "rows read back: 20000" in out
    assert "whole-batch decoding: True" in out
    assert "epoch complete: 20000 samples, each exactly once" in out
    assert "'image': 'PngImageFile'" in out

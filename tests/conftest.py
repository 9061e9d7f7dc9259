"""Shared fixtures: paths of the golden data and of the reference implementation's virtualenv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
REFERENCE_DATA = DATA / "reference"  # written by mosaicml-streaming 0.13.0 (see its README.md)
REF_VENV = Path(os.environ.get("MDS_REF_VENV", ROOT / ".venv-ref"))


@pytest.fixture(scope="session")
def reference_data() -> Path:
    """Golden datasets, decoded values and sample orders written by mosaicml-streaming 0.13.0."""
    return REFERENCE_DATA


@pytest.fixture(scope="session")
def ref_python() -> Path:
    """Python of the virtualenv that holds the real mosaicml-streaming 0.13.0 (`make ref-venv`)."""
    python = REF_VENV / "bin" / "python"
    if not python.exists():
        pytest.fail(f"the reference virtualenv is missing at {REF_VENV}; run `make ref-venv`")
    return python


def run_reference(ref_python: Path, script: str, *args: str, timeout: float = 600) -> object:
    """Runs `script` (Python source) with the reference implementation and returns the JSON it
    prints on its last line of stdout. The script gets `args` as sys.argv[1:]."""
    proc = subprocess.run(
        [str(ref_python), "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONHASHSEED": "0", "TOKENIZERS_PARALLELISM": "false"},
    )
    if proc.returncode != 0:
        raise AssertionError(f"reference script failed ({proc.returncode}):\n{proc.stderr[-5000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    return json.loads(lines[-1])


sys.path.insert(0, str(ROOT / "tests"))

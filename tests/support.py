"""Helpers shared by the test suite (a plain module: test files import it as `support`;
tests/conftest.py puts this directory on sys.path)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
REFERENCE_DATA = DATA / "reference"  # written by mosaicml-streaming 0.13.0 (see its README.md)
REF_VENV = Path(os.environ.get("MDS_REF_VENV", ROOT / ".venv-ref"))


def require_jar() -> str:
    """The plugin jar for the installed pyspark (spark_mds.jar_path()); fails the test, saying how
    to build it, when it is missing."""
    import pytest

    import spark_mds

    try:
        return spark_mds.jar_path()
    except FileNotFoundError as exc:
        pytest.fail(str(exc))


def run_reference(ref_python: Path, script: str, *args: str, timeout: float = 600) -> object:
    """Runs `script` (Python source) with the reference implementation and returns the JSON it
    prints on its last line of stdout. The script gets `args` as sys.argv[1:]."""
    return run_python(script, *args, python=ref_python, timeout=timeout)


def run_python(script: str, *args: str, python: Path | str = sys.executable, timeout: float = 600,
               env: dict[str, str] | None = None) -> object:
    """Runs `script` in a fresh Python process and returns the JSON of its last stdout line."""
    proc = subprocess.run(
        [str(python), "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(ROOT),
        env={**os.environ, "PYTHONHASHSEED": "0", "TOKENIZERS_PARALLELISM": "false", **(env or {})},
    )
    if proc.returncode != 0:
        raise AssertionError(f"script failed ({proc.returncode}):\n{proc.stderr[-5000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    return json.loads(lines[-1])


def copy_reference_dataset(name: str, dest: Path) -> Path:
    """A private copy of a golden dataset (readers may write decompressed shards next to it)."""
    target = dest / name
    shutil.copytree(REFERENCE_DATA / "datasets" / name, target, ignore=shutil.ignore_patterns("expected.json"))
    return target

"""Shared fixtures: paths of the golden data and of the reference implementation's virtualenv."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs every property test on the same examples (a red build must be reproducible); explore
# new random examples locally with `pytest --hypothesis-profile=dev`.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import REF_VENV, REFERENCE_DATA, run_reference  # noqa: E402,F401 (re-exported)


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


@pytest.fixture
def short_tmpdir():
    """A fresh directory with a short path, for a child process's TMPDIR: multiprocessing puts
    AF_UNIX sockets there (torch shares tensors through them), whose paths may not exceed 107
    bytes, which pytest's tmp_path can (under pytest-xdist it is longer still)."""
    path = tempfile.mkdtemp(prefix="mds-t", dir="/tmp")
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)

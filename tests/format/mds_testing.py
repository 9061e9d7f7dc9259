"""Paths and helpers shared by the format tests. (A uniquely named module rather than a
conftest.py: test modules of several directories import ``conftest``, which must stay
tests/conftest.py for them.)"""

from __future__ import annotations

import importlib.util
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATASETS = HERE.parent / "data" / "reference" / "datasets"
DATASET_NAMES = sorted(p.name for p in DATASETS.iterdir() if p.is_dir())


def _root_conftest():
    spec = importlib.util.spec_from_file_location("mds_root_conftest", HERE.parent / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: tests/conftest.py's helper that runs a script with the reference implementation.
run_reference = _root_conftest().run_reference

"""Fixtures of the format tests."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # for mds_tagged and mds_samples

DATASETS = HERE.parent / "data" / "reference" / "datasets"
DATASET_NAMES = sorted(p.name for p in DATASETS.iterdir() if p.is_dir())


@pytest.fixture
def golden(tmp_path: Path):
    """Returns a function that copies a golden dataset to a temporary directory (reading a
    compressed dataset writes decompressed shards next to the compressed ones)."""

    def copy(name: str) -> Path:
        dst = tmp_path / name
        shutil.copytree(DATASETS / name, dst)
        return dst

    return copy

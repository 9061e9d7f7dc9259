"""Fixtures of the format tests."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # mds_testing, mds_tagged, mds_samples

from mds_testing import DATASETS  # noqa: E402


@pytest.fixture
def golden(tmp_path: Path):
    """Returns a function that copies a golden dataset to a temporary directory (reading a
    compressed dataset writes decompressed shards next to the compressed ones)."""

    def copy(name: str) -> Path:
        dst = tmp_path / name
        shutil.copytree(DATASETS / name, dst)
        return dst

    return copy

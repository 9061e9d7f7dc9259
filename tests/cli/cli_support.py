"""Helpers of the `mds` CLI tests (a plain module; pytest puts tests/cli on sys.path)."""

from __future__ import annotations

import datetime
import decimal
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest

from mds_loader import write_table
from mds_loader.cli import main
from support import ROOT

#: The console script of the virtualenv running the tests (what `pip install mds-loader` makes).
MDS = Path(sys.executable).parent / "mds"


def run_mds(*args: str | os.PathLike, timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs the real `mds` console script."""
    assert MDS.exists(), f"the console script is missing at {MDS}; reinstall ./loader"
    return subprocess.run([str(MDS), *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=str(ROOT))


def call(capsys: pytest.CaptureFixture, *args: str | os.PathLike) -> tuple[int, str, str]:
    """Runs `main([...])` in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def files(path: Path) -> list[str]:
    """Every file under `path`, relative, sorted."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def nulls_table(n: int = 50) -> pa.Table:
    """A table of many logical types, with nulls in several columns."""
    return pa.table({
        "id": pa.array(range(n), pa.int64()),
        "name": pa.array([None if i % 5 == 0 else f"name {i}" for i in range(n)], pa.string()),
        "score": pa.array([None if i % 7 == 3 else i / 4 for i in range(n)], pa.float64()),
        "flag": pa.array([None if i % 11 == 0 else i % 2 == 0 for i in range(n)], pa.bool_()),
        "price": pa.array([decimal.Decimal(i) / 100 for i in range(n)], pa.decimal128(10, 2)),
        "when": pa.array([datetime.datetime(2024, 5, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(minutes=i)
                          for i in range(n)], pa.timestamp("us", tz="UTC")),
        "emb": pa.array([None if i % 13 == 1 else [float(i), -1.5, 0.25] for i in range(n)], pa.list_(pa.float32())),
        "blob": pa.array([bytes([i % 256]) * (i % 4) for i in range(n)], pa.binary()),
    })  # fmt: skip


def write_nulls_dataset(path: Path, n: int = 50, **kwargs) -> pa.Table:
    """Writes `nulls_table(n)` with write_table (so the dataset has `__nulls__`); returns it."""
    table = nulls_table(n)
    write_table(table, path, **kwargs)
    return table


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def edit_index(path: Path, change: Callable[[dict], None]) -> None:
    """Rewrites `path/index.json` after `change(obj)`."""
    index = path / "index.json"
    obj = json.loads(index.read_text())
    change(obj)
    index.write_text(json.dumps(obj, sort_keys=True))

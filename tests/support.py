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


def decompress_beside(dataset: Path) -> list[Path]:
    """Writes the raw form of each compressed shard next to it, as the reference's
    StreamingDataset does in a local dataset directory (our readers never do); returns them."""
    from mds_loader.format import get_codec, load_index

    made = []
    for entry in load_index(dataset).shards:
        if entry.zip_data is not None:
            raw = get_codec(entry.compression).decompress((dataset / entry.zip_data.basename).read_bytes())
            (dataset / entry.raw_data.basename).write_bytes(raw)
            made.append(dataset / entry.raw_data.basename)
    return made


def copy_reference_dataset(name: str, dest: Path) -> Path:
    """A private copy of a golden dataset."""
    target = dest / name
    shutil.copytree(REFERENCE_DATA / "datasets" / name, target, ignore=shutil.ignore_patterns("expected.json"))
    return target


# Reads each dataset given on the command line with the reference StreamingDataset and prints its
# samples as tagged JSON (numpy scalars and arrays keep their dtype).
READ_ALL = r"""
import base64, json, sys
import numpy as np
from streaming import StreamingDataset
def tag(v):
    if isinstance(v, np.ndarray):
        return {"nd": [str(v.dtype), list(v.shape), v.astype(np.float64).tolist() if v.dtype.kind == "f" else v.tolist()]}
    if isinstance(v, np.generic):
        return {"np": [str(v.dtype), v.item() if v.dtype.kind != "f" else float(v).hex()]}
    if isinstance(v, float):
        return {"f": v.hex()}
    if isinstance(v, bytes):
        return {"b": base64.b64encode(v).decode()}
    if type(v).__name__ == "Decimal":
        return {"dec": str(v)}
    return {"v": v}
out = {}
for arg in sys.argv[1:]:
    path, validate = arg.split("|")
    ds = StreamingDataset(local=path, batch_size=1, validate_hash=validate or None)
    out[path] = [{k: tag(v) for k, v in ds[i].items()} for i in range(ds.num_samples)]
print(json.dumps(out))
"""


def check_interop_sample(s: dict, row: tuple, num_fields: int = 16) -> None:
    """One sample of the interop table (spark_tables.INTEROP_ROWS) as READ_ALL printed it: every value
    exactly as the reference decodes it, nulls as zero values plus their bit in ``__nulls__``."""
    import base64
    import datetime as dt
    import math

    (_, b, sh, i, f, d, flag, text, binv, dec, day, ts, tokens, mat, st, emb) = row
    nulls = s["__nulls__"]["nd"]
    assert nulls[0] == "uint8" and nulls[1] == [(num_fields + 7) // 8]
    bits = [(nulls[2][k // 8] >> (k % 8)) & 1 for k in range(num_fields)]
    names = ["id", "b", "s", "i", "f", "d", "flag", "text", "bin", "dec", "day", "ts", "tokens", "mat", "st", "emb"]
    for k, name in enumerate(names):
        assert bits[k] == (row[k] is None and k > 0), (name, bits)
    assert s["b"]["np"] == ["int8", b or 0]
    assert s["s"]["np"] == ["int16", sh or 0]
    assert s["i"]["np"] == ["int32", i or 0]
    assert s["f"]["np"] == ["float32", float(f or 0.0).hex()]
    if d is not None and math.isnan(d):
        assert s["d"]["np"][1] == "nan"
    else:
        assert s["d"]["np"] == ["float64", float(d or 0.0).hex()]
    assert s["flag"]["np"] == ["uint8", int(bool(flag))]
    assert s["text"]["v"] == (text or "")
    assert s["bin"]["b"] == base64.b64encode(binv or b"").decode()
    assert s["dec"]["dec"] == (str(dec) if dec is not None else "0")
    epoch = dt.date(1970, 1, 1)
    assert s["day"]["np"] == ["int32", (day - epoch).days if day else 0]
    micros = 0 if ts is None else int((ts - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)).total_seconds()) * 10**6 + ts.microsecond
    assert s["ts"]["np"] == ["int64", micros]
    assert s["tokens"]["nd"] == ["int32", [len(tokens or [])], tokens or []]
    if mat:
        assert s["mat"]["nd"] == ["float32", [len(mat), len(mat[0])], mat]
    else:
        assert s["mat"]["nd"][1] == [0, 0]
    assert s["st"]["v"] == (None if st is None else {"x": st[0], "y": st[1]})
    assert s["emb"]["nd"] == ["float32", [4], emb]


# ---------------------------------------------------------------------------- dataset files


def read_index(path: str) -> dict:
    with open(os.path.join(path, "index.json")) as f:
        return json.load(f)


def files(path: str) -> set[str]:
    """Every file under ``path``, relative."""
    out = set()
    for root, _, names in os.walk(path):
        for n in names:
            out.add(os.path.relpath(os.path.join(root, n), path))
    return out


def referenced(path: str) -> set[str]:
    """``index.json`` and the files of every shard it lists (stored files, and decompressed ones
    that mds_loader's readers may have written next to them)."""
    names = {"index.json"}
    for s in read_index(path)["shards"]:
        names.add((s["zip_data"] or s["raw_data"])["basename"])
        if os.path.exists(os.path.join(path, s["raw_data"]["basename"])):
            names.add(s["raw_data"]["basename"])
    return names

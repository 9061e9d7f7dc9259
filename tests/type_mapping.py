"""The type mapping of docs/format.md as data (docs/type-mapping.json), and the datasets that let
every implementation be checked against it: tests/format/test_type_mapping.py checks the Python
format core, tests/spark/test_implementations.py the JVM source and the Python source."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from support import ROOT

MAPPING = json.loads((ROOT / "docs" / "type-mapping.json").read_text())
WRITE: list[dict] = MAPPING["write"]
READ: list[dict] = MAPPING["read"]


def column(i: int) -> str:
    return f"c{i:02d}"


def _image(fmt: str) -> Any:
    from PIL import Image

    return Image.new("RGB", (2, 2), (10, 20, 30)) if fmt != "bytes" else None


def _value(encoding: str, sample: list | None) -> Any:
    """One value of a column of ``encoding`` (for dynamic ndarrays: of ``sample``'s dtype and depth)."""
    from decimal import Decimal

    from mds_loader.format import parse_encoding

    enc = parse_encoding(encoding)
    kind = enc.kind
    if kind == "scalar":
        return enc.dtype.type(1)
    if kind in ("int", "str_int"):
        return 1
    if kind == "str_float":
        return 1.5
    if kind == "str":
        return "a"
    if kind == "str_decimal":
        return Decimal("1.5")
    if kind == "json":
        return {"a": 1}
    if kind == "bytes":
        return b"x"
    if kind == "pkl":
        return [1]
    if kind in ("jpeg", "png", "pil"):
        return _image(kind)
    if kind in ("list", "jpeg_array"):
        return [_image("jpeg")]
    if kind == "ndarray":
        if enc.shape is not None:
            return np.ones(enc.shape, enc.dtype)
        dtype, ndim = sample
        return np.ones((1,) * ndim, dtype)
    raise AssertionError(encoding)


def write_read_datasets(root: Path) -> tuple[str, str]:
    """Two datasets holding a column ``cNN`` per entry of ``READ``: one with a single sample (each
    dynamic ndarray column of its entry's sample dtype and depth), one whose only shard has no
    sample (for the entries whose ``sample`` is null: nothing to inspect)."""
    from mds_loader import MDSWriter
    from mds_loader.format import parse_encoding
    from mds_loader.format.index import dump_index

    one, empty = root / "one-sample", root / "no-sample"
    with_sample = {column(i): e for i, e in enumerate(READ) if e.get("sample", ()) is not None}
    with MDSWriter(out=str(one), columns={c: e["encoding"] for c, e in with_sample.items()}) as w:
        w.write({c: _value(e["encoding"], e.get("sample")) for c, e in with_sample.items()})
    # A shard of 0 samples: its count, then its one offset (the end of the header).
    os.makedirs(empty)
    raw = np.array([0, 8], "<u4").tobytes()
    (empty / "shard.00000.mds").write_bytes(raw)
    names = sorted(column(i) for i in range(len(READ)))
    encodings = [READ[int(n[1:])]["encoding"] for n in names]
    sizes = [parse_encoding(e).size for e in encodings]
    shard = {"column_encodings": encodings, "column_names": names, "column_sizes": sizes,
             "compression": None, "format": "mds", "hashes": [],
             "raw_data": {"basename": "shard.00000.mds", "bytes": len(raw), "hashes": {}},
             "samples": 0, "size_limit": 1 << 26, "version": 2, "zip_data": None}  # fmt: skip
    (empty / "index.json").write_text(dump_index([shard]))
    return str(one), str(empty)


def expected_read_types(one: str, empty: str) -> dict[str, dict[str, Any]]:
    """dataset path -> column -> the logical type the table gives it."""
    out: dict[str, dict[str, Any]] = {one: {}, empty: {}}
    for i, e in enumerate(READ):
        path = empty if e.get("sample", ()) is None else one
        out[path][column(i)] = e["type"]
    return out


def normalized(t: Any) -> Any:
    """A logical type in Spark's JSON form with struct field metadata dropped (Spark adds ``{}``)."""
    if isinstance(t, dict):
        return {k: normalized(v) for k, v in t.items() if k != "metadata"}
    if isinstance(t, list):
        return [normalized(x) for x in t]
    return t

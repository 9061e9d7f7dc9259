"""Interop with the real mosaicml-streaming 0.13.0, both ways, in one reference process:

* the reference and our MDSWriter write the same samples (every encoding, every compression with
  levels, several hash sets, shard cutting quirks): the files are byte-identical (gz: except the
  mtime the reference puts in the gzip header);
* the reference reads our datasets, and we read the reference's, with identical values;
* the reference reads write_table output: zero values for nulls plus the ``__nulls__`` bitmap.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from decimal import Decimal
from pathlib import Path

import mds_samples
import numpy as np
import pyarrow as pa
import pytest
from mds_testing import HERE, run_reference
from mds_tagged import assert_tagged, tag

from mds_loader import MDSWriter, write_table
from mds_loader.format import MDSDataset

pytestmark = pytest.mark.interop

REFERENCE_SCRIPT = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
import mds_samples
from mds_tagged import tag
from streaming import MDSWriter, StreamingDataset

theirs, ours, tables = sys.argv[2:5]
mds_samples.write_all(MDSWriter, theirs)

def read(path, hashes):
    ds = StreamingDataset(local=path, shuffle=False, batch_size=1, allow_unsafe_types=True,
                          validate_hash=hashes[0] if hashes else None)
    out = [{k: tag(v) for k, v in ds[i].items()} for i in range(len(ds))]
    del ds
    return out

def hashes_of(path):
    with open(os.path.join(path, "index.json")) as f:
        shards = json.load(f)["shards"]
    return shards[0]["hashes"] if shards else []

result = {"ours": {}, "theirs": {}, "tables": {}}
for name, kind, kwargs in mds_samples.CONFIGS:
    result["ours"][name] = read(os.path.join(ours, name), kwargs.get("hashes"))
    result["theirs"][name] = read(os.path.join(theirs, name), kwargs.get("hashes"))
for name in sorted(os.listdir(tables)):
    path = os.path.join(tables, name)
    result["tables"][name] = read(path, hashes_of(path))
print(json.dumps(result))
"""


def null_table() -> pa.Table:
    """write_table input with nulls in every kind of column."""
    return pa.table({
        "i8": pa.array([1, None, -128, 127], pa.int8()),
        "u64": pa.array([5, None, 0, 2**64 - 1], pa.uint64()),
        "f32": pa.array([1.5, None, float("nan"), float("-inf")], pa.float32()),
        "flag": pa.array([True, None, False, True]),
        "s": pa.array(["é", None, "", "x" * 50]),
        "bin": pa.array([b"\x00", None, b"", b"ab"]),
        "dec": pa.array([Decimal("-1.25"), None, Decimal("0.00"), Decimal("99.99")], pa.decimal128(4, 2)),
        "d": pa.array([dt.date(2021, 3, 4), None, dt.date(1960, 1, 1), dt.date(1970, 1, 1)]),
        "ts": pa.array([1, None, -1, 2**40], pa.timestamp("us", "UTC")),
        "vec": pa.array([[1, 2, 3], None, [], [4]], pa.list_(pa.int32())),
        "mat": pa.array([[[1.0, 2.0]], None, [], [[3.0, 4.0], [5.0, 6.0]]], pa.list_(pa.list_(pa.float64()))),
        "emb": pa.array([[1, 2], None, [3, 4], [5, 6]], pa.list_(pa.float32(), 2)),
        "st": pa.array([{"a": 1, "b": [b"x"]}, None, {"a": None, "b": []}, {"a": 3, "b": None}],
                       pa.struct([("a", pa.int64()), ("b", pa.list_(pa.binary()))])),
        "m": pa.array([[("k", 1.5)], None, [], [("n", float("nan"))]], pa.map_(pa.string(), pa.float64())),
    })  # fmt: skip


def plain_table() -> pa.Table:
    n = 200
    return pa.table({
        "id": pa.array(range(n), pa.int64()),
        "text": pa.array([f"row {i} " + "é" * (i % 11) for i in range(n)]),
        "tokens": pa.array([list(range(i % 17)) for i in range(n)], pa.list_(pa.int32())),
        "emb": pa.array([[float(i)] * 4 for i in range(n)], pa.list_(pa.float32(), 4)),
        "label": pa.array([i % 3 for i in range(n)], pa.uint8()),
    })  # fmt: skip


@pytest.fixture(scope="module")
def interop(ref_python, tmp_path_factory) -> dict:

    root = tmp_path_factory.mktemp("interop")
    ours, theirs, tables = root / "ours", root / "theirs", root / "tables"
    mds_samples.write_all(MDSWriter, str(ours))
    write_table(null_table(), tables / "nulls", hashes=["xxh64"], size_limit=400)
    write_table(plain_table(), tables / "plain", compression="snappy", size_limit=2000)
    result = run_reference(ref_python, REFERENCE_SCRIPT, str(HERE), str(theirs), str(ours), str(tables))
    return {
        "ours_dir": ours, "theirs_dir": theirs, "tables_dir": tables,
        # what the reference decoded from our datasets, from its own, and from write_table's
        "ref_ours": result["ours"], "ref_theirs": result["theirs"], "ref_tables": result["tables"],
    }  # fmt: skip


def _listed_files(path: Path) -> list[str]:
    index = json.loads((path / "index.json").read_text())
    return ["index.json"] + [(s["zip_data"] or s["raw_data"])["basename"] for s in index["shards"]]


@pytest.mark.parametrize("config", mds_samples.CONFIGS, ids=[c[0] for c in mds_samples.CONFIGS])
def test_same_files_as_the_reference(interop, config) -> None:
    name, _, kwargs = config
    ours, theirs = interop["ours_dir"] / name, interop["theirs_dir"] / name
    files = _listed_files(theirs)
    assert files == _listed_files(ours)
    if name == "det_tiny_limit":
        assert json.loads((ours / "index.json").read_text())["shards"][0]["samples"] == 0
    gz = (kwargs.get("compression") or "").startswith("gz")
    for file in files:
        a, b = (ours / file).read_bytes(), (theirs / file).read_bytes()
        if gz and file.endswith(".gz"):
            assert a[4:8] == b"\0\0\0\0"
            a, b = a[:4] + a[8:], b[:4] + b[8:]
        if gz and file == "index.json" and kwargs.get("hashes"):
            continue  # the zip hashes cover the gzip mtime
        assert a == b, f"{name}/{file} differs from the reference's"


@pytest.mark.parametrize("config", mds_samples.CONFIGS, ids=[c[0] for c in mds_samples.CONFIGS])
def test_values_both_ways(interop, config) -> None:
    name, kind, _ = config
    ref_reads_ours, ref_reads_theirs = interop["ref_ours"][name], interop["ref_theirs"][name]
    originals = mds_samples.samples(kind)
    with MDSDataset(interop["ours_dir"] / name, allow_unsafe_types=True) as mine, \
         MDSDataset(interop["theirs_dir"] / name, allow_unsafe_types=True) as theirs:  # fmt: skip
        assert len(mine) == len(theirs) == len(ref_reads_ours) == len(originals)
        for i, (a, b) in enumerate(zip(ref_reads_ours, ref_reads_theirs)):
            ours_i, theirs_i = mine[i], theirs[i]
            for column in mds_samples.columns(kind):
                where = f"{name}[{i}].{column}"
                assert_tagged(ours_i[column], a[column], where + " (ours read by the reference vs by us)")
                assert_tagged(theirs_i[column], b[column], where + " (the reference's read by us vs by it)")
                if column not in ("pt", "pt2", "jpg", "ljpg", "ja", "jpegarr"):  # pass-through and lossy
                    _assert_original(ours_i[column], originals[i][column], mds_samples.columns(kind)[column], where)


def _assert_original(decoded, original, encoding: str, where: str) -> None:
    """The decoded value is what was written (up to the encoding's type)."""
    if encoding in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32", "float64"):
        with np.errstate(over="ignore"):
            assert decoded.tobytes() == np.dtype(encoding).type(original).tobytes(), where
    elif encoding in ("pil", "png", "list[pil]", "list[png]"):
        items = original if isinstance(original, list) else [original]
        got = decoded if isinstance(decoded, list) else [decoded]
        assert [np.asarray(x).tobytes() for x in got] == [np.asarray(x).tobytes() for x in items], where
    elif encoding == "pkl":
        assert decoded == original, where
    else:
        assert tag(decoded) == tag(original), where


def test_write_table_output_read_by_the_reference(interop) -> None:
    table = null_table()
    ref = interop["ref_tables"]["nulls"]
    with MDSDataset(interop["tables_dir"] / "nulls") as ds:
        assert len(ref) == len(ds) == table.num_rows
        for i, row in enumerate(ref):
            mine = ds[i]
            assert sorted(row) == sorted(mine) and "__nulls__" in row
            for column, tagged in row.items():
                assert_tagged(mine[column], tagged, f"nulls[{i}].{column}")
    # row 1 is all nulls: the reference sees every field's zero value and a full bitmap
    row = ref[1]
    bits = np.unpackbits(np.frombuffer(base64.b64decode(row["__nulls__"]["ndarray"]["data_b64"]), np.uint8), bitorder="little")
    assert bits[: table.num_columns].tolist() == [1] * table.num_columns and not bits[table.num_columns :].any()
    assert row["i8"] == {"scalar": {"dtype": "int8", "repr": "0"}} and row["s"] == {"value": ""}
    assert row["bin"] == {"bytes_b64": ""} and row["dec"] == {"decimal": "0"} and row["st"] == {"value": None}
    assert row["vec"]["ndarray"]["shape"] == [0] and row["mat"]["ndarray"]["shape"] == [0, 0]
    assert row["emb"]["ndarray"]["shape"] == [2] and row["flag"] == {"scalar": {"dtype": "uint8", "repr": "0"}}
    assert ref[0]["st"] == {"json": {"a": 1, "b": ["eA=="]}} and ref[3]["m"] == {"json": {"n": "NaN"}}
    assert ref[2]["__nulls__"]["ndarray"]["data_b64"] == base64.b64encode(bytes(2)).decode()


def test_plain_write_table_output_read_by_the_reference(interop) -> None:
    table = plain_table()
    ref = interop["ref_tables"]["plain"]
    assert len(ref) == table.num_rows and "__nulls__" not in ref[0]  # no nulls: no mask column
    for i in (0, 1, 16, 199):
        assert ref[i]["id"] == {"scalar": {"dtype": "int64", "repr": str(i)}}
        assert ref[i]["text"] == {"value": table.column("text")[i].as_py()}
        assert ref[i]["tokens"]["ndarray"]["shape"] == [i % 17]
        assert ref[i]["emb"]["ndarray"] == tag(np.full(4, i, np.float32))["ndarray"]
        assert ref[i]["label"] == {"scalar": {"dtype": "uint8", "repr": str(i % 3)}}
    assert len(os.listdir(interop["tables_dir"] / "plain")) > 3

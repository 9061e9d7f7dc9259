"""`mds inspect` and `mds head` on golden datasets (written by mosaicml-streaming) and on datasets
written by write_table with nulls."""

from __future__ import annotations

import base64
import json

import pyarrow as pa
import pytest

from cli_support import call, files, run_mds, write_nulls_dataset
from mds_loader import read_table
from mds_loader.format.index import load_index
from support import copy_reference_dataset


# ---------------------------------------------------------------------------- inspect


def test_inspect_golden_console_script(tmp_path):
    ds = copy_reference_dataset("tabular_zstd_sha1-xxh64", tmp_path)
    before = files(ds)
    proc = run_mds("inspect", ds)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    lines = out.splitlines()
    assert lines[0] == f"dataset      {ds}"
    assert "schema       inferred from the MDS encodings (no spark_mds key; docs/format.md §4)" in lines
    assert "samples      300" in lines
    assert "compression  zstd" in lines
    assert "hashes       sha1, xxh64" in lines
    assert "shards       16 (1..24 samples each)" in lines
    assert any(line.split() == ["tokens", "array<integer>", "ndarray:int32", "list<item:", "int32>", "yes"] for line in lines)
    assert any(line.split()[:3] == ["emb", "array<float>", "ndarray:float32:16"] for line in lines)
    assert any(line.split()[:3] == ["0", "19", "shard.00000.mds"] and "shard.00000.mds.zstd" in line for line in lines)
    assert files(ds) == before  # nothing decompressed into the dataset


def test_inspect_json_golden(capsys, tmp_path):
    ds = copy_reference_dataset("tabular_zstd_sha1-xxh64", tmp_path)
    rc, out, _ = call(capsys, "inspect", ds, "--json")
    assert rc == 0
    info = json.loads(out)
    index = load_index(ds)
    assert info["samples"] == 300 and info["num_shards"] == 16
    assert info["schema_source"] == "inferred" and info["null_mask"] is None
    assert info["compression"] == ["zstd"] and info["hashes"] == ["sha1", "xxh64"]
    assert info["raw_bytes"] == sum(s.raw_data.bytes for s in index.shards)
    assert info["compressed_bytes"] == sum(s.zip_data.bytes for s in index.shards)
    assert info["stored_bytes"] == info["compressed_bytes"]
    assert [c["name"] for c in info["columns"]] == index.shards[0].column_names
    assert {c["name"]: c["mds_encoding"] for c in info["columns"]} == dict(zip(index.shards[0].column_names, index.shards[0].column_encodings))
    assert all(c["inferred"] for c in info["columns"])
    shard = info["shards"][3]
    assert shard["samples"] == index.shards[3].samples
    assert shard["zip_data"] == index.shards[3].zip_data.to_json()  # with the digests
    assert set(shard["raw_data"]["hashes"]) == {"sha1", "xxh64"}


def test_inspect_inferred_types_follow_format_md_section_4(capsys, tmp_path):
    ds = copy_reference_dataset("scalars", tmp_path)
    rc, out, _ = call(capsys, "inspect", ds, "--json")
    assert rc == 0
    spark = {c["name"]: c["spark_type"] for c in json.loads(out)["columns"]}
    arrow = {c["name"]: c["arrow_type"] for c in json.loads(out)["columns"]}
    assert spark["u8"] == "short" and arrow["u8"] == "uint8"
    assert spark["u32"] == "long" and spark["u64"] == "decimal(20,0)"
    assert spark["f16"] == "float" and arrow["f16"] == "halffloat"
    assert spark["py_int"] == "long" and spark["si"] == "long" and spark["sf"] == "double"
    assert spark["sd"] == "string" and spark["js"] == "string" and spark["s"] == "string"
    assert spark["b"] == "binary" and spark["pk"] == "binary"


def test_inspect_dynamic_ndarray_types_from_first_sample(capsys, tmp_path):
    ds = copy_reference_dataset("ndarrays", tmp_path)
    rc, out, _ = call(capsys, "inspect", ds, "--json")
    assert rc == 0
    spark = {c["name"]: c["spark_type"] for c in json.loads(out)["columns"]}
    assert spark["dyn"] == "array<array<array<byte>>>"  # the first sample is int8 of shape (3, 3, 3)
    assert spark["f32fixed"] == "array<array<float>>"
    assert spark["u8img"] == "array<array<array<short>>>"
    assert spark["f64v"] == "array<double>"


def test_inspect_write_table_dataset_with_nulls(capsys, tmp_path):
    table = write_nulls_dataset(tmp_path / "ds", hashes=["xxh64"])
    rc, out, _ = call(capsys, "inspect", tmp_path / "ds")
    assert rc == 0
    lines = out.splitlines()
    assert "schema       spark_mds logical schema (format_version 1)" in lines
    assert "null mask    __nulls__ (ndarray:uint8:1)" in lines
    assert "hashes       xxh64" in lines
    rc, out, _ = call(capsys, "inspect", tmp_path / "ds", "--json")
    info = json.loads(out)
    cols = info["columns"]
    assert [c["name"] for c in cols] == table.column_names  # logical order, no __nulls__
    by_name = {c["name"]: c for c in cols}
    assert by_name["flag"]["spark_type"] == "boolean" and by_name["flag"]["mds_encoding"] == "uint8"
    assert by_name["price"]["spark_type"] == "decimal(10,2)" and by_name["price"]["mds_encoding"] == "str_decimal"
    assert by_name["when"]["spark_type"] == "timestamp" and by_name["when"]["arrow_type"] == "timestamp[us, tz=UTC]"
    assert by_name["emb"]["spark_type"] == "array<float>" and by_name["emb"]["mds_encoding"] == "ndarray:float32"
    assert not any(c["inferred"] for c in cols)
    assert info["null_mask"] == {"name": "__nulls__", "mds_encoding": "ndarray:uint8:1"}


def test_inspect_lists_20_shards_unless_all(capsys, tmp_path):
    table = pa.table({"x": pa.array(range(3000), pa.int64())})
    from mds_loader import write_table

    write_table(table, tmp_path / "ds", size_limit=1024, compression=None)
    n = len(load_index(tmp_path / "ds").shards)
    assert n > 20
    rc, out, _ = call(capsys, "inspect", tmp_path / "ds")
    assert f"  ... {n - 20} more (--all-shards lists every shard)" in out
    rc, out, _ = call(capsys, "inspect", tmp_path / "ds", "--all-shards")
    assert "more (--all-shards" not in out and f"shard.{n - 1:05d}.mds" in out


def test_inspect_malformed_index(capsys, tmp_path):
    ds = copy_reference_dataset("scalars", tmp_path)
    (ds / "index.json").write_text('{"version": 2, "shards": [{"samples": 1}]}')
    rc, _, err = call(capsys, "inspect", ds)
    assert rc == 1
    assert err.startswith(f"mds inspect: error: {ds / 'index.json'}: shard 0: a shard entry has exactly the keys")
    assert len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------- head


def test_head_golden_console_script(tmp_path):
    ds = copy_reference_dataset("tabular_zstd", tmp_path)
    before = files(ds)
    proc = run_mds("head", ds, "-n", "3", "--columns", "id,label,text")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["#", "id", "label", "text"]
    assert len(lines) == 4
    expected = read_table(copy_reference_dataset("tabular_zstd", tmp_path / "copy"), ["id", "label", "text"]).slice(0, 3).to_pylist()
    for i, (line, row) in enumerate(zip(lines[1:], expected)):
        assert line.split()[:3] == [str(i), str(row["id"]), str(row["label"])]
        assert row["text"][:20] in line
    assert files(ds) == before  # head decompressed nothing into the dataset


def test_head_json_rows_equal_read_table_with_nulls(capsys, tmp_path):
    table = write_nulls_dataset(tmp_path / "ds", n=30)
    rc, out, _ = call(capsys, "head", tmp_path / "ds", "-n", "12", "--json")
    assert rc == 0
    rows = [json.loads(line) for line in out.splitlines()]
    expected = read_table(tmp_path / "ds").slice(0, 12).to_pylist()
    assert len(rows) == 12
    for got, want in zip(rows, expected):
        assert list(got) == table.column_names
        assert got["id"] == want["id"]
        assert got["name"] == want["name"]  # None for nulls
        assert got["score"] == want["score"] and got["flag"] == want["flag"]
        assert got["emb"] == want["emb"]
        assert got["price"] == str(want["price"])
        assert got["when"] == want["when"].isoformat()
        assert base64.b64decode(got["blob"]) == want["blob"]
    assert rows[0]["name"] is None and rows[1]["emb"] is None and rows[0]["flag"] is None


def test_head_table_shows_nulls_and_respects_columns_order(capsys, tmp_path):
    write_nulls_dataset(tmp_path / "ds", n=30)
    rc, out, _ = call(capsys, "head", tmp_path / "ds", "-n", "2", "--columns", "name,id")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split() == ["#", "name", "id"]
    assert lines[1].split() == ["0", "null", "0"]
    assert lines[2].split() == ["1", "name", "1", "1"]


def test_head_more_rows_than_the_dataset_and_zero_rows(capsys, tmp_path):
    ds = copy_reference_dataset("tabular_none", tmp_path)
    total = load_index(ds).num_samples
    rc, out, _ = call(capsys, "head", ds, "-n", str(total + 10), "--json", "--columns", "id")
    assert rc == 0
    assert [json.loads(line)["id"] for line in out.splitlines()] == list(range(total))
    rc, out, _ = call(capsys, "head", ds, "-n", "0")
    assert rc == 0 and len(out.splitlines()) == 1  # the header only


def test_head_mixed_rank_ndarrays_fall_back_to_per_sample(capsys, tmp_path):
    ds = copy_reference_dataset("ndarrays", tmp_path)
    rc, out, err = call(capsys, "head", ds, "-n", "3", "--columns", "dyn")
    assert rc == 0
    assert "note:" in err and "sample 1, column 'dyn'" in err and "per-sample values" in err
    assert "ndarray[int8[3, 3, 3]]" in out.splitlines()[1]
    assert "ndarray[uint16[2, 1]]" in out.splitlines()[2]


def test_head_unknown_column_is_a_usage_error(capsys, tmp_path):
    ds = copy_reference_dataset("scalars", tmp_path)
    rc, _, err = call(capsys, "head", ds, "--columns", "s,nope")
    assert rc == 2
    assert err.strip() == "mds head: error: unknown columns ['nope']; the dataset has " + str(read_table(ds).column_names)


@pytest.mark.parametrize("name", ["scalars", "images"])
def test_head_golden_json_is_valid_json(capsys, tmp_path, name):
    ds = copy_reference_dataset(name, tmp_path)
    rc, out, _ = call(capsys, "head", ds, "-n", "4", "--json")
    assert rc == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 4 and set(rows[0]) == set(read_table(ds).column_names)

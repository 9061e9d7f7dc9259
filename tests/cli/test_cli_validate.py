"""`mds validate`: valid golden and write_table datasets pass; every kind of corruption fails with
exit status 1 and a message naming the file and the problem."""

from __future__ import annotations

import json
import struct

import pytest

from cli_support import call, edit_index, files, flip_byte, run_mds, write_nulls_dataset
from mds_loader import MDSWriter
from mds_loader.format.index import load_index
from support import copy_reference_dataset, decompress_beside


@pytest.mark.parametrize(
    "name", ["tabular_zstd_sha1-xxh64", "tabular_none_md5-xxh3_64", "tabular_br", "tabular_snappy", "scalars", "images", "ndarrays"]
)
def test_golden_datasets_are_valid(capsys, tmp_path, name):
    ds = copy_reference_dataset(name, tmp_path)
    before = files(ds)
    rc, out, err = call(capsys, "validate", ds, "--decode")
    assert rc == 0, err
    index = load_index(ds)
    assert out.startswith(f"valid: {ds}: {len(index.shards)} shards, {index.num_samples:,} samples")
    assert f"{index.num_samples:,} samples decoded" in out
    if index.shards[0].hashes:
        files_per_algo = sum(2 if s.zip_data else 1 for s in index.shards)
        expected = ", ".join(f"{a} ({files_per_algo} files)" for a in index.shards[0].hashes)
        assert f"hashes verified: {expected}" in out
    assert files(ds) == before  # validate wrote nothing into the dataset
    if name == "ndarrays":  # mixed ranks: fine per sample, noted for Arrow
        assert "warning: readable per sample but not as one Arrow table" in err


def test_write_table_dataset_with_nulls_is_valid(capsys, tmp_path):
    write_nulls_dataset(tmp_path / "ds", n=200, hashes=["sha1", "xxh64"], size_limit=2048)
    rc, out, err = call(capsys, "validate", tmp_path / "ds", "--decode")
    assert rc == 0, err
    assert "200 samples decoded" in out and "hashes verified: sha1" in out and err == ""


def test_console_script_valid_and_invalid(tmp_path):
    ds = copy_reference_dataset("tabular_zstd_sha1-xxh64", tmp_path)
    proc = run_mds("validate", ds)
    assert proc.returncode == 0 and proc.stdout.startswith(f"valid: {ds}: 16 shards, 300 samples")
    flip_byte(ds / "shard.00005.mds.zstd", 200)
    proc = run_mds("validate", ds)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith(f"error: {ds / 'shard.00005.mds.zstd'}: sha1 checksum mismatch (expected ")
    assert lines[1].startswith(f"error: {ds / 'shard.00005.mds.zstd'}: xxh64 checksum mismatch")
    assert lines[-1].startswith(f"INVALID: {ds}: 2 problem(s)")
    assert "Traceback" not in proc.stderr


def _problems(capsys, ds, *options) -> list[str]:
    rc, out, err = call(capsys, "validate", ds, *options)
    assert rc == 1, out
    assert "INVALID" in err.splitlines()[-1]
    return [line for line in err.splitlines() if line.startswith("error: ")]


def test_truncated_compressed_shard(capsys, tmp_path):
    ds = copy_reference_dataset("tabular_zstd", tmp_path)
    path = ds / "shard.00002.mds.zstd"
    path.write_bytes(path.read_bytes()[:1000])
    assert _problems(capsys, ds) == [
        f"error: {path}: shard 2 has 1000 bytes, index.json says {load_index(ds).shards[2].zip_data.bytes}; the file is truncated or was replaced"
    ]


def test_truncated_raw_shard(capsys, tmp_path):
    ds = copy_reference_dataset("tabular_none", tmp_path)
    path = ds / "shard.00007.mds"
    path.write_bytes(path.read_bytes()[:-10])
    [problem] = _problems(capsys, ds)
    assert problem.startswith(f"error: {path}: shard 7 has ") and "the file is truncated" in problem


def test_flipped_byte_in_raw_shard_with_hashes(capsys, tmp_path):
    ds = copy_reference_dataset("tabular_none_sha1-xxh64", tmp_path)
    flip_byte(ds / "shard.00000.mds", 500)
    problems = _problems(capsys, ds)
    assert len(problems) == 2
    assert all(p.startswith(f"error: {ds / 'shard.00000.mds'}: ") and "checksum mismatch" in p for p in problems)


def test_corrupt_decompressed_copy_is_checked_too(capsys, tmp_path):
    """A raw copy left by a reader is what readers use first: its hashes are verified as well."""
    ds = copy_reference_dataset("tabular_zstd_sha1-xxh64", tmp_path)
    decompress_beside(ds)  # as the reference leaves them
    flip_byte(ds / "shard.00001.mds", 300)
    problems = _problems(capsys, ds)
    assert problems and all(p.startswith(f"error: {ds / 'shard.00001.mds'}: ") for p in problems)


def test_flipped_sample_size_without_hashes(capsys, tmp_path):
    ds = copy_reference_dataset("tabular_none", tmp_path)
    path = ds / "shard.00003.mds"
    first_sample = struct.unpack_from("<I", path.read_bytes(), 4)[0]
    flip_byte(path, first_sample + 1)  # the size of sample 0's first variable-size column
    [problem] = _problems(capsys, ds)
    assert problem.startswith(f"error: {path}: sample 0 has ")
    assert "column sizes add up to" in problem


def test_corrupt_compressed_stream_without_hashes(capsys, tmp_path):
    ds = copy_reference_dataset("tabular_gz", tmp_path)
    path = ds / "shard.00004.mds.gz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))
    [problem] = _problems(capsys, ds)
    assert problem.startswith(f"error: {path}") and ("cannot decompress" in problem or "checksum" in problem or "decompresses to" in problem or "sample" in problem)


def test_sample_count_mismatch(capsys, tmp_path):
    ds = copy_reference_dataset("tabular_none", tmp_path)
    path = ds / "shard.00000.mds"
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 0, struct.unpack_from("<I", data, 0)[0] + 1)
    path.write_bytes(bytes(data))
    [problem] = _problems(capsys, ds)
    assert problem.startswith(f"error: {path}: the shard header says ")


def test_missing_shard_file(capsys, tmp_path):
    ds = copy_reference_dataset("tabular_snappy", tmp_path)
    (ds / "shard.00009.mds.snappy").unlink()
    assert _problems(capsys, ds) == [f"error: {ds / 'shard.00009.mds.snappy'}: shard 9's file is missing"]


def test_malformed_index_json(capsys, tmp_path):
    ds = copy_reference_dataset("tabular_zstd", tmp_path)
    (ds / "index.json").write_text((ds / "index.json").read_text()[:-40])
    [problem] = _problems(capsys, ds)
    assert problem.startswith(f"error: {ds / 'index.json'}: not valid JSON (")


def test_index_entry_with_an_extra_key(capsys, tmp_path):
    ds = copy_reference_dataset("tabular_zstd", tmp_path)
    edit_index(ds, lambda obj: obj["shards"][3].update(extra=1))
    [problem] = _problems(capsys, ds)
    assert problem.startswith(f"error: {ds / 'index.json'}: shard 3: a shard entry has exactly the keys")
    assert "unexpected ['extra']" in problem


@pytest.mark.parametrize("bad", ["../outside.mds", "/etc/passwd", "s3://bucket/shard.mds", "sub/../../x.mds"])
def test_path_escaping_the_dataset(capsys, tmp_path, bad):
    ds = copy_reference_dataset("tabular_none", tmp_path)
    edit_index(ds, lambda obj: obj["shards"][1]["raw_data"].update(basename=bad))
    [problem] = _problems(capsys, ds)
    assert problem.startswith(f"error: {ds / 'index.json'}: shard 1: raw_data: basename {bad!r} ")
    assert "index.json may only name files inside the dataset directory" in problem


def test_spark_mds_schema_that_does_not_match_the_columns(capsys, tmp_path):
    write_nulls_dataset(tmp_path / "ds")
    edit_index(tmp_path / "ds", lambda obj: obj["spark_mds"]["schema"]["fields"].pop())
    [problem] = _problems(capsys, tmp_path / "ds")
    assert problem.startswith(f"error: {tmp_path / 'ds' / 'index.json'}: spark_mds.schema fields ")


def test_undecodable_values_fail_only_with_decode(capsys, tmp_path):
    ds = tmp_path / "ds"
    with MDSWriter(out=str(ds), columns={"j": "str", "i": "int32"}) as writer:
        for i in range(10):
            writer.write({"j": "{}" if i != 6 else "not json", "i": i})
    edit_index(ds, lambda obj: obj["shards"][0].update(column_encodings=["int32", "json"]))
    rc, out, err = call(capsys, "validate", ds)
    assert rc == 0  # structure and sizes are fine...
    assert "warning:" in err and "embedded config differs from index.json in ['column_encodings']" in err
    [problem] = _problems(capsys, ds, "--decode")  # ...but a value does not decode
    assert problem.startswith(f"error: {ds / 'shard.00000.mds'}: sample 6, column 'j': ")


def test_json_report(capsys, tmp_path):
    ds = copy_reference_dataset("tabular_zstd_sha1-xxh64", tmp_path)
    rc, out, _ = call(capsys, "validate", ds, "--json")
    report = json.loads(out)
    assert rc == 0 and report["valid"] and report["errors"] == []
    assert report["hashes_verified"] == {"sha1": 32, "xxh64": 32} and report["samples"] == 300
    flip_byte(ds / "shard.00000.mds.zstd", 100)
    rc, out, _ = call(capsys, "validate", ds, "--json")
    report = json.loads(out)
    assert rc == 1 and not report["valid"] and len(report["errors"]) == 2


def test_progress_bar_on_stderr(capsys, tmp_path):
    ds = copy_reference_dataset("tabular_zstd", tmp_path)
    rc, out, err = call(capsys, "validate", ds, "--progress")
    assert rc == 0 and "validate" in err and "100%" in err
    rc, out, err = call(capsys, "validate", ds, "--no-progress")
    assert rc == 0 and err == ""


def test_only_the_decompressed_copy_left(capsys, tmp_path):
    """The reference's StreamingDataset with keep_zip=False leaves the raw file only: still readable
    locally, so valid with a warning; without either file the shard is missing."""
    ds = copy_reference_dataset("tabular_zstd_sha1-xxh64", tmp_path)
    decompress_beside(ds)
    (ds / "shard.00002.mds.zstd").unlink()
    rc, out, err = call(capsys, "validate", ds, "--decode")
    assert rc == 0, err
    assert f"warning: {ds / 'shard.00002.mds.zstd'}: missing; only its decompressed copy shard.00002.mds is there" in err
    (ds / "shard.00002.mds").unlink()
    assert _problems(capsys, ds) == [f"error: {ds / 'shard.00002.mds.zstd'}: shard 2's file is missing"]

"""`mds convert`: Parquet, Feather/Arrow IPC and CSV to MDS, equal through read_table; options,
destination safety and usage errors."""

from __future__ import annotations

import io
import json
import os

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from cli_support import call, files, nulls_table, run_mds
from mds_loader import read_table
from mds_loader.format.index import load_index


def _mds_columns(path) -> dict[str, str]:
    shard = load_index(path).shards[0]
    return dict(zip(shard.column_names, shard.column_encodings))


def test_parquet_round_trip_console_script(tmp_path):
    table = nulls_table(2000)
    pq.write_table(table, tmp_path / "data.parquet", row_group_size=300)
    proc = run_mds("convert", tmp_path / "data.parquet", tmp_path / "out", "--progress", "--size-limit", "16kb")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"converted 2,000 rows from {tmp_path / 'data.parquet'} (parquet) to {tmp_path / 'out'}: ")
    assert "convert: 100%" in proc.stderr  # tqdm, rows
    back = read_table(tmp_path / "out")
    assert back.equals(table) and back.schema.equals(table.schema)
    assert len(load_index(tmp_path / "out").shards) > 1
    assert "__nulls__" in _mds_columns(tmp_path / "out")  # the data has nulls


def test_feather_and_arrow_ipc_round_trip(capsys, tmp_path):
    table = nulls_table(500)
    feather.write_feather(table, tmp_path / "data.feather", chunksize=100)
    with pa.OSFile(str(tmp_path / "data.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=128)
    for name in ("data.feather", "data.arrow"):
        rc, out, err = call(capsys, "convert", tmp_path / name, tmp_path / f"out-{name}")
        assert rc == 0, err
        assert read_table(tmp_path / f"out-{name}").equals(table)


def test_csv_round_trip(capsys, tmp_path):
    table = pa.table({"id": list(range(300)), "text": [f"line {i}, with comma" for i in range(300)],
                      "x": [i * 0.5 for i in range(300)], "ok": [i % 3 == 0 for i in range(300)]})  # fmt: skip
    pacsv.write_csv(table, tmp_path / "data.csv")
    rc, out, err = call(capsys, "convert", tmp_path / "data.csv", tmp_path / "out", "--compression", "gz")
    assert rc == 0, err
    assert "(csv)" in out and "(gz, null mask)" in out
    assert read_table(tmp_path / "out").equals(pacsv.read_csv(tmp_path / "data.csv"))
    assert load_index(tmp_path / "out").shards[0].compression == "gz"


def test_tsv_and_explicit_format(capsys, tmp_path):
    (tmp_path / "data.txt").write_text("a\tb\n1\tx\n2\ty\n")
    rc, _, err = call(capsys, "convert", tmp_path / "data.txt", tmp_path / "out")
    assert rc == 2 and "cannot tell the format from the file name; pass --format" in err
    rc, _, err = call(capsys, "convert", tmp_path / "data.txt", tmp_path / "out", "--format", "tsv")
    assert rc == 0, err
    assert read_table(tmp_path / "out").to_pydict() == {"a": [1, 2], "b": ["x", "y"]}


def test_directory_of_parquet_files(capsys, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    parts = [pa.table({"id": pa.array(range(i * 100, i * 100 + 100), pa.int64())}) for i in range(3)]
    for i, part in enumerate(parts):
        pq.write_table(part, src / f"part-{i}.parquet")
    (src / "_SUCCESS").write_text("")  # ignored, like Spark's marker
    rc, out, err = call(capsys, "convert", src, tmp_path / "out", "--compression", "none")
    assert rc == 0, err
    assert sorted(read_table(tmp_path / "out").column("id").to_pylist()) == list(range(300))
    assert all(not f.endswith((".zstd", ".gz")) for f in files(tmp_path / "out"))


def _jpeg() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 10, 10)).save(out, format="JPEG")
    return out.getvalue()


def test_options_hashes_size_limit_overrides_select(capsys, tmp_path):
    table = pa.table({"id": pa.array(range(400), pa.int64()), "payload": [_jpeg()] * 400,
                      "meta": ['{"k": 1}'] * 400, "skip": ["x"] * 400})  # fmt: skip
    pq.write_table(table, tmp_path / "data.parquet")
    rc, out, err = call(capsys, "convert", tmp_path / "data.parquet", tmp_path / "out", "--hashes", "xxh64,sha1",
                        "--size-limit", "4kb", "--columns", "payload=jpeg", "--columns", "id=uint32",
                        "--columns", "meta=json", "--select", "id,payload,meta")  # fmt: skip
    assert rc == 0, err
    index = load_index(tmp_path / "out")
    assert len(index.shards) > 2
    assert all(s.hashes == ["sha1", "xxh64"] and set(s.zip_data.hashes) == {"sha1", "xxh64"} for s in index.shards)
    assert _mds_columns(tmp_path / "out") == {"id": "uint32", "meta": "json", "payload": "jpeg"}  # no null mask: no nulls
    back = read_table(tmp_path / "out")
    assert back.column_names == ["id", "payload", "meta"]
    assert back.column("payload").to_pylist() == table.column("payload").to_pylist()
    rc, _, err = call(capsys, "validate", tmp_path / "out", "--decode")
    assert rc == 0, err  # the jpeg payloads decode


def test_nulls_auto_mask_error(capsys, tmp_path):
    clean = pa.table({"a": [1, 2, 3]})
    pq.write_table(clean, tmp_path / "clean.parquet")
    pq.write_table(pa.table({"a": [1, None, 3]}), tmp_path / "holes.parquet")
    assert call(capsys, "convert", tmp_path / "clean.parquet", tmp_path / "c1")[0] == 0
    assert "__nulls__" not in _mds_columns(tmp_path / "c1")  # statistics show no null: looks like reference data
    assert call(capsys, "convert", tmp_path / "clean.parquet", tmp_path / "c2", "--nulls", "mask")[0] == 0
    assert "__nulls__" in _mds_columns(tmp_path / "c2")
    assert call(capsys, "convert", tmp_path / "holes.parquet", tmp_path / "h1")[0] == 0
    assert read_table(tmp_path / "h1").column("a").to_pylist() == [1, None, 3]
    rc, _, err = call(capsys, "convert", tmp_path / "holes.parquet", tmp_path / "h2", "--nulls", "error")
    assert rc == 1 and "column 'a' has nulls" in err
    assert not (tmp_path / "h2").exists()


def test_empty_source(capsys, tmp_path):
    pq.write_table(pa.table({"a": pa.array([], pa.int32())}), tmp_path / "empty.parquet")
    rc, out, err = call(capsys, "convert", tmp_path / "empty.parquet", tmp_path / "out")
    assert rc == 0, err
    assert read_table(tmp_path / "out").schema == pa.schema([("a", pa.int32())])


def test_destination_safety(capsys, tmp_path):
    pq.write_table(pa.table({"a": [1, 2]}), tmp_path / "v1.parquet")
    pq.write_table(pa.table({"a": [3, 4, 5]}), tmp_path / "v2.parquet")
    dst = tmp_path / "out"
    assert call(capsys, "convert", tmp_path / "v1.parquet", dst)[0] == 0
    rc, _, err = call(capsys, "convert", tmp_path / "v2.parquet", dst)
    assert rc == 1 and "exists and is not empty; pass --overwrite" in err
    assert read_table(dst).column("a").to_pylist() == [1, 2]
    assert call(capsys, "convert", tmp_path / "v2.parquet", dst, "--overwrite")[0] == 0
    assert read_table(dst).column("a").to_pylist() == [3, 4, 5]
    # A failed conversion leaves the old dataset in place and no temporary directory behind.
    (tmp_path / "bad.csv").write_text("a\n1\nnot-a-number\n")
    rc, _, err = call(capsys, "convert", tmp_path / "bad.csv", dst, "--overwrite", "--columns", "a=json")
    assert rc == 1
    assert read_table(dst).column("a").to_pylist() == [3, 4, 5]
    assert sorted(os.listdir(tmp_path)) == ["bad.csv", "out", "v1.parquet", "v2.parquet"]
    # A directory that is not an MDS dataset is never deleted.
    other = tmp_path / "precious"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    rc, _, err = call(capsys, "convert", tmp_path / "v1.parquet", other, "--overwrite")
    assert rc == 1 and "is not an MDS dataset (no index.json); refusing to delete it" in err
    assert (other / "notes.txt").read_text() == "keep me"
    # An empty directory is fine.
    (tmp_path / "empty").mkdir()
    assert call(capsys, "convert", tmp_path / "v1.parquet", tmp_path / "empty")[0] == 0
    assert oct((tmp_path / "empty").stat().st_mode & 0o777) != oct(0o700)  # not left private like a temp dir


@pytest.mark.parametrize(
    "options, message",
    [
        (["--compression", "zip"], "unknown compression 'zip'"),
        (["--compression", "zstd:99"], "invalid compression level"),
        (["--hashes", "sha1,nope"], "unknown hash algorithm(s) ['nope']"),
        (["--size-limit", "lots"], "invalid size_limit 'lots'"),
        (["--columns", "a"], "expected NAME=ENCODING"),
        (["--columns", "a=float128"], "column 'a': "),
        (["--columns", "zz=int8"], "the source has no column 'zz'"),
        (["--columns", "a=jpeg"], "column 'a' of type long cannot be stored as 'jpeg'"),
        (["--select", "a,zz"], "--select: the source has no columns ['zz']"),
        (["--format", "xlsx"], "invalid choice: 'xlsx'"),
    ],
)
def test_bad_options_are_usage_errors(capsys, tmp_path, options, message):
    pq.write_table(pa.table({"a": [1, 2]}), tmp_path / "data.parquet")
    rc, _, err = call(capsys, "convert", tmp_path / "data.parquet", tmp_path / "out", *options)
    assert rc == 2
    assert message in err
    assert not (tmp_path / "out").exists()


def test_missing_source(capsys, tmp_path):
    rc, _, err = call(capsys, "convert", tmp_path / "nope.parquet", tmp_path / "out")
    assert rc == 1 and err.strip() == f"mds convert: error: {tmp_path / 'nope.parquet'}: no such file or directory"


def test_lz4_warns_that_the_reference_cannot_read_it(capsys, tmp_path):
    pq.write_table(pa.table({"a": [1, 2]}), tmp_path / "data.parquet")
    rc, out, err = call(capsys, "convert", tmp_path / "data.parquet", tmp_path / "out", "--compression", "lz4")
    assert rc == 0 and "mosaicml-streaming cannot read this dataset" in err
    assert json.loads((tmp_path / "out" / "index.json").read_text())["shards"][0]["compression"] == "lz4"


def test_hive_partitioned_parquet(capsys, tmp_path):
    table = pa.table({"x": pa.array(range(60), pa.int64()), "part": [f"p{i % 3}" for i in range(60)]})
    pq.write_to_dataset(table, tmp_path / "src", partition_cols=["part"])
    rc, out, err = call(capsys, "convert", tmp_path / "src", tmp_path / "out", "--hive")
    assert rc == 0, err
    back = read_table(tmp_path / "out")
    assert sorted(zip(back["x"].to_pylist(), back["part"].to_pylist())) == sorted(zip(table["x"].to_pylist(), table["part"].to_pylist()))
    assert "__nulls__" in _mds_columns(tmp_path / "out")  # partition values are not in the files' statistics


def test_remote_destination_goes_through_the_writer(capsys, tmp_path):
    """A URL destination is handed to write_table, whose fsspec output writes it (memory:// here,
    in this process)."""
    import fsspec

    from mds_loader import StreamingDataset

    pq.write_table(pa.table({"a": list(range(10))}), tmp_path / "data.parquet")
    url = f"memory://cli-tests/{tmp_path.name}/ds"
    rc, out, err = call(capsys, "convert", tmp_path / "data.parquet", url, "--hashes", "xxh64")
    assert rc == 0, err
    assert out.startswith(f"converted 10 rows from {tmp_path / 'data.parquet'} (parquet) to {url}")
    fs = fsspec.filesystem("memory")
    assert sorted(p.rsplit("/", 1)[1] for p in fs.ls(url.removeprefix("memory://"), detail=False)) == ["index.json", "shard.00000.mds.zstd"]
    dataset = StreamingDataset(remote=url, local=str(tmp_path / "cache"))
    assert [int(dataset[i]["a"]) for i in range(len(dataset))] == list(range(10))
    fs.rm(url.removeprefix("memory://"), recursive=True)

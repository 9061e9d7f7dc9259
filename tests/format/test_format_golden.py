"""Every dataset written by mosaicml-streaming 0.13.0 (tests/data/reference) is read exactly:
per sample (values, types, dtypes, shapes, image pixels as the reference returns them), per batch
(read_batch / read_table agree with per-sample decoding), and rewritten byte for byte."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from mds_testing import DATASET_NAMES, DATASETS
from mds_tagged import assert_same, assert_tables_equal, assert_tagged

from mds_loader import MDSChecksumError, MDSSchemaError, MDSUnsafeError, MDSWriter, read_table
from mds_loader.format import MDSDataset, ShardReader, parse_encoding


@pytest.fixture
def golden(tmp_path: Path):
    """Returns a function that copies a golden dataset to a temporary directory (reading a
    compressed dataset writes decompressed shards next to the compressed ones)."""

    def copy(name: str) -> Path:
        dst = tmp_path / name
        shutil.copytree(DATASETS / name, dst)
        return dst

    return copy


def expected(name: str) -> dict:
    return json.loads((DATASETS / name / "expected.json").read_text())


@pytest.mark.parametrize("name", DATASET_NAMES)
def test_every_sample_equals_the_reference_values(golden, name: str) -> None:
    exp = expected(name)
    with MDSDataset(golden(name), allow_unsafe_types=True) as ds:
        assert len(ds) == len(exp["samples"])
        assert ds.index.fields is None
        for i, want in enumerate(exp["samples"]):
            got = ds[i]
            assert list(got) == sorted(want), "columns are returned in (sorted) column order"
            for column, tagged in want.items():
                assert_tagged(got[column], tagged, f"{name}[{i}].{column}")


def test_shard_reader_reads_a_raw_shard_without_its_index() -> None:
    path = DATASETS / "scalars" / "shard.00000.mds"
    exp = expected("scalars")
    with ShardReader(path, allow_unsafe_types=True) as reader:  # columns from the embedded config
        assert reader.num_samples == 40
        assert reader.column_names == sorted(exp["columns"])
        for i in (0, 7, 39, -1):
            for column, tagged in exp["samples"][i].items():
                assert_tagged(reader.get_sample(i)[column], tagged, f"scalars[{i}].{column}")
        assert set(reader.get_sample(3, ["s", "u8"])) == {"s", "u8"}
        raw = reader.sample_bytes(5)
        assert raw == (path.read_bytes()[int(reader._offsets[5]) : int(reader._offsets[6])])


def test_pickle_needs_the_opt_in(golden) -> None:
    with MDSDataset(golden("scalars")) as ds:
        with pytest.raises(MDSUnsafeError, match=r"shard\.00000\.mds: sample 0, column 'pk'.*allow_unsafe_types=True"):
            ds[0]
        assert ds.get_sample(0, ["s"]) == {"s": ""}  # other columns stay readable
        assert ds.to_table(["pk"]).column("pk").type == pa.binary()  # raw bytes are safe


def _assert_column_matches(column: pa.ChunkedArray | pa.Array, encoding: str, values: list, where: str) -> None:
    """An Arrow column (natural types, docs/format.md §4) holds the per-sample values."""
    enc = parse_encoding(encoding)
    assert len(column) == len(values)
    rows = column.to_pylist()
    if enc.kind == "scalar":
        arr = column.to_numpy() if isinstance(column, pa.Array) else column.combine_chunks().to_numpy()
        assert arr.dtype == enc.dtype and arr.tobytes() == np.array(values, enc.dtype).tobytes(), where
    elif enc.kind in ("int", "str_int", "str", "bytes"):
        assert rows == values, where
    elif enc.kind == "str_float":
        assert np.array(rows, np.float64).tobytes() == np.array(values, np.float64).tobytes(), where
    elif enc.kind == "str_decimal":
        assert rows == [str(v) for v in values], where
    elif enc.kind == "json":
        assert [json.loads(r) for r in rows] == values, where
    elif enc.kind == "pkl":
        assert [pickle.loads(r) for r in rows] == values, where
    elif enc.kind in ("pil", "jpeg", "png"):
        for i, (r, v) in enumerate(zip(rows, values)):
            assert_same(enc.decode(r), v, f"{where}[{i}]")
    elif enc.kind in ("list", "jpeg_array"):
        element = parse_encoding("jpeg" if enc.kind == "jpeg_array" else enc.element)
        for i, (r, v) in enumerate(zip(rows, values)):
            assert_same([element.decode(x) for x in r], v, f"{where}[{i}]")
    elif enc.kind == "ndarray":
        for i, (r, v) in enumerate(zip(rows, values)):
            got = np.array(r, dtype=v.dtype)
            assert got.shape == v.shape and got.tobytes() == v.tobytes(), f"{where}[{i}]"
    else:  # pragma: no cover
        raise AssertionError(enc.kind)


@pytest.mark.parametrize("name", DATASET_NAMES)
def test_read_table_and_read_batch_agree_with_per_sample_decoding(golden, name: str) -> None:
    exp = expected(name)
    columns = [c for c in sorted(exp["columns"]) if c != "dyn"]  # see test_mixed_ndarray_column
    with MDSDataset(golden(name), allow_unsafe_types=True) as ds:
        samples = [ds[i] for i in range(len(ds))]
        table = ds.to_table(columns)
        assert table.num_rows == len(samples) and table.column_names == columns
        for c in columns:
            _assert_column_matches(table.column(c), exp["columns"][c], [s[c] for s in samples], f"{name}.{c}")
        # any order, repeats, a subset of columns: rows follow the indices
        rng = np.random.default_rng(0)
        shard = ds.shard(0)
        picked = rng.integers(0, shard.num_samples, 2 * shard.num_samples)
        wanted = columns[::-1][:3]
        batch = shard.read_batch(picked, wanted)
        assert batch.schema.names == wanted
        expect = pa.Table.from_batches([shard.read_batch(np.arange(shard.num_samples), wanted)]).take(picked)
        assert_tables_equal(pa.Table.from_batches([batch]), expect)
        assert shard.read_batch([], wanted).num_rows == 0
    assert_tables_equal(read_table(ds.path, columns), table)


def test_mixed_ndarray_column(golden) -> None:
    """A dynamic ndarray column whose samples differ in depth cannot be one Arrow column: the
    error says so and names the column and the sample; per-sample reading still works."""
    path = golden("ndarrays")
    with pytest.raises(MDSSchemaError, match=r"sample 1, column 'dyn': a 2-d array, but the column is read as 3-d"):
        read_table(path)
    with MDSDataset(path) as ds:
        assert ds[1]["dyn"].shape == (2, 1)


@pytest.mark.parametrize("name", DATASET_NAMES)
def test_rewriting_the_samples_reproduces_the_files_byte_for_byte(golden, tmp_path: Path, name: str) -> None:
    exp = expected(name)
    src = golden(name)
    out = tmp_path / "out"
    with MDSDataset(src, allow_unsafe_types=True) as ds, MDSWriter(out=str(out), columns=exp["columns"], **exp["writer_kwargs"]) as writer:
        for k in range(len(ds.shards)):
            shard = ds.shard(k)
            for i in range(shard.num_samples):
                sample = shard.get_sample(i)
                if name == "images":  # re-encoding JPEG/PNG is lossy: pass the stored bytes through
                    raw = _payloads(shard, i)
                    sample = {c: (raw[c] if exp["columns"][c] != "int32" else v) for c, v in sample.items()}
                writer.write(sample)
    for file in sorted(os.listdir(DATASETS / name)):
        if file == "expected.json":
            continue
        want, got = (DATASETS / name / file).read_bytes(), (out / file).read_bytes()
        if file.endswith(".gz"):  # the reference writes the current time into the gzip header
            want, got = want[:4] + want[8:], got[:4] + got[8:]
            assert (out / file).read_bytes()[4:8] == b"\0\0\0\0"
        assert got == want, f"{name}/{file} differs"
    assert sorted(os.listdir(out)) == sorted(f for f in os.listdir(DATASETS / name) if f != "expected.json")


def _payloads(shard: ShardReader, i: int) -> dict[str, bytes]:
    data = shard.sample_bytes(i)
    pos, sizes = 0, []
    for size in shard._sizes:
        if size is None:
            size = int.from_bytes(data[pos : pos + 4], "little")
            pos += 4
        sizes.append(size)
    out = {}
    for name, size in zip(shard.column_names, sizes):
        out[name] = data[pos : pos + size]
        pos += size
    return out


@pytest.mark.parametrize(("name", "algo"), [("tabular_zstd_sha1-xxh64", "sha1"), ("tabular_zstd_sha1-xxh64", "xxh64"),
                                            ("tabular_none_md5-xxh3_64", "md5"), ("tabular_none_md5-xxh3_64", "xxh3_64")])  # fmt: skip
def test_hash_validation_of_reference_datasets(golden, name: str, algo: str) -> None:
    path = golden(name)
    with MDSDataset(path, validate_hash=algo) as ds:
        assert ds.to_table(["id"]).column("id").to_pylist() == list(range(300))
    with MDSDataset(path, validate_hash="sha256") as ds:
        if ds.shards[0].zip_data is not None:
            for f in Path(path).glob("*.mds"):
                f.unlink()  # force decompression, which verifies the zip file
        with pytest.raises(MDSChecksumError, match=r"shard\.00000\.mds.*'sha256'.*choose one of those"):
            ds.shard(0)

"""MDSWriter: the reference's arguments, validation and shard cutting (incl. its quirks)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mds_loader import MDSConfigError, MDSEncodingError, MDSSchemaError, MDSWriter, write_table
from mds_loader.format import MDSDataset, ShardSink, TableWriter, WriteOptions, load_index, parse_encoding
from mds_loader.format.shard import config_bytes, shard_config
from mds_loader.format.write_options import parse_size_limit

COLUMNS = {"id": "int64", "text": "str", "vec": "ndarray:float32"}


def sample(i: int) -> dict:
    return {"id": i, "text": "x" * (i % 17), "vec": np.full(i % 5, i, np.float32)}


def write(out: Path, n: int = 30, **kw) -> Path:
    with MDSWriter(out=str(out), columns=kw.pop("columns", COLUMNS), **kw) as w:
        for i in range(n):
            w.write(sample(i))
    return out


# ---------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"compression": "zip"}, MDSConfigError, "unknown compression 'zip'"),
        ({"compression": "zstd:99"}, MDSConfigError, "invalid compression level"),
        ({"hashes": ["xxh64", "sha1"]}, MDSConfigError, "sorted order"),
        ({"hashes": ["nope"]}, MDSConfigError, "unknown hash algorithm 'nope'"),
        ({"size_limit": "12 parsecs"}, MDSConfigError, "invalid size_limit"),
        ({"size_limit": -1}, MDSConfigError, "must not be negative"),
        ({"size_limit": 2**32}, MDSConfigError, "less than 2\\*\\*32"),
        ({"size_limit": "4gb"}, MDSConfigError, "less than 2\\*\\*32"),
        ({"columns": {"a": "int33"}}, MDSEncodingError, "column 'a': unknown encoding 'int33'"),
        ({"columns": {"a": "int32:4"}}, TypeError, "takes no ':' configuration"),
        ({"bogus": 1}, MDSConfigError, r"Invalid Writer argument\(s\): \['bogus'\]"),
        ({"out": ("local", "s3://bucket/x", "extra")}, MDSConfigError, r"a URL or a \(local, remote\) pair"),
    ],
)
def test_invalid_arguments(tmp_path: Path, kwargs, error, message) -> None:
    args = {"out": str(tmp_path / "ds"), "columns": COLUMNS, **kwargs}
    with pytest.raises(error, match=message):
        MDSWriter(**args)
    assert isinstance(error("x"), (ValueError, TypeError))


@pytest.mark.parametrize(
    ("text", "value"),
    [(100, 100), ("100", 100), ("100b", 100), ("1kb", 1024), ("1.5KB", 1536), (" 2mb ", 2 << 20), (None, None), (0, None), ("", None)],
)
def test_size_limit(text, value) -> None:
    assert parse_size_limit(text) == value


@pytest.mark.parametrize(("options", "message"), [
    ({"hashes": ["xxh64", "sha1"]}, "sorted order"),
    ({"hashes": ["crc99"]}, "unknown hash algorithm 'crc99'"),
    ({"compression": "zstd:99"}, "invalid compression level"),
    ({"size_limit": 0}, "size_limit must be a number of bytes"),
    ({"size_limit": 1 << 32}, "size_limit must be a number of bytes"),
    ({"nulls": "auto"}, "nulls must be 'mask' or 'error'"),
    ({"max_workers": -1}, "max_workers must be 0 or more"),
    ({"encodings": ["x"]}, "columns must map column names to encodings"),
])  # fmt: skip
def test_write_options_are_validated_once_when_built(options, message) -> None:
    with pytest.raises(MDSConfigError, match=message):
        WriteOptions(**options)
    assert WriteOptions(hashes=["sha1", "xxh64"]).hashes == ("sha1", "xxh64")
    assert "secret" not in repr(WriteOptions(storage_options={"key": "secret"}))


def test_size_limit_is_stored_as_bytes(tmp_path: Path) -> None:
    write(tmp_path / "a", size_limit="1kb")
    write(tmp_path / "b", size_limit=None)
    assert {s.size_limit for s in load_index(tmp_path / "a").shards} == {1024}
    assert [s.size_limit for s in load_index(tmp_path / "b").shards] == [None]


def test_output_directory(tmp_path: Path) -> None:
    out = write(tmp_path / "ds")
    with pytest.raises(FileExistsError, match="Directory is not empty"):
        write(out)
    (out / "stray").write_text("x")
    write(out, n=3, exist_ok=True)
    assert "stray" not in os.listdir(out) and MDSDataset(out).num_samples == 3
    empty = tmp_path / "empty"
    empty.mkdir()
    write(empty, n=1)  # an empty directory is fine


def test_samples(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    with MDSWriter(out=str(out), columns=COLUMNS) as w:
        w.write({**sample(0), "extra": object()})  # extra keys are ignored
        with pytest.raises(KeyError, match="sample has no column 'vec'"):
            w.write({"id": 1, "text": "a"})
        with pytest.raises(MDSSchemaError, match="column 'id': cannot encode 'x' as 'int64'"):
            w.write({**sample(1), "id": "x"})
        with pytest.raises(MDSSchemaError, match="column 'vec': 'ndarray:float32' needs dtype float32, got float64"):
            w.write({**sample(1), "vec": np.zeros(2)})
    assert MDSDataset(out).num_samples == 1
    with pytest.raises(MDSConfigError, match="after finish"):
        w.write(sample(1))


def test_an_empty_dataset(tmp_path: Path) -> None:
    out = write(tmp_path / "ds", n=0)
    assert (out / "index.json").read_text() == '{"shards": [], "version": 2}'
    assert MDSDataset(out).to_table().num_rows == 0


def test_an_exception_in_the_with_block_still_writes_the_index(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    with pytest.raises(RuntimeError), MDSWriter(out=str(out), columns=COLUMNS) as w:
        w.write(sample(0))
        raise RuntimeError("boom")
    assert MDSDataset(out).num_samples == 1  # like the reference


def test_threads_do_not_change_the_output(tmp_path: Path) -> None:
    a = write(tmp_path / "a", n=400, compression="zstd", hashes=["sha1"], size_limit=1000, max_workers=0)
    b = write(tmp_path / "b", n=400, compression="zstd", hashes=["sha1"], size_limit=1000, max_workers=3)
    assert sorted(os.listdir(a)) == sorted(os.listdir(b)) and len(os.listdir(a)) > 10
    for f in os.listdir(a):
        assert (a / f).read_bytes() == (b / f).read_bytes()


# ---------------------------------------------------------------------------- shard cutting


def reference_cut(sizes: list[int], limit: int | None, config_len: int) -> list[int]:
    """The reference's cutting rule (docs/reference-format.md §1.5), sample by sample: returns samples per shard."""
    shards, current, count = [], 8 + config_len, 0
    for size in sizes:
        cost = size + 4
        if limit and limit < current + cost:
            shards.append(count)
            current, count = 8 + config_len, 0
        count += 1
        current += cost
    if count:
        shards.append(count)
    return shards


class _Discard:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def write_bytes(self, name: str, data: bytes) -> None:
        self.files[name] = data


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 300), max_size=60),
    st.one_of(st.none(), st.integers(150, 1200)),
    st.lists(st.integers(1, 20), min_size=1, max_size=8),
)
def test_prop_cutting_matches_the_reference_rule(sizes: list[int], limit: int | None, chunks: list[int]) -> None:
    out = _Discard()
    sink = ShardSink(out, WriteOptions(compression=None, size_limit=limit, max_workers=0), [("b", parse_encoding("bytes"))])
    pos, k = 0, 0
    while pos < len(sizes):  # feed the samples in arbitrary chunks
        part = sizes[pos : pos + chunks[k % len(chunks)]]
        sink.add(np.array(part, np.int64), b"".join(bytes([i % 251]) * s for i, s in enumerate(part, pos)))
        pos += len(part)
        k += 1
    entries = sink.finish()
    assert [e["samples"] for e in entries] == reference_cut(sizes, limit, len(sink.config_data))
    data = b"".join(bytes([i % 251]) * s for i, s in enumerate(sizes))
    got = b""
    for e in entries:
        raw = out.files[e["raw_data"]["basename"]]
        assert len(raw) == e["raw_data"]["bytes"]
        if limit and e["samples"] > 1:
            assert len(raw) <= limit
        n = e["samples"]
        offsets = np.frombuffer(raw, "<u4", n + 1, 4)
        got += raw[int(offsets[0]) :]
    assert got == data


def test_oversize_first_sample_makes_an_empty_shard(tmp_path: Path) -> None:
    """The reference's quirk: a sample too big for an empty shard flushes the empty shard."""
    out = tmp_path / "ds"
    with MDSWriter(out=str(out), columns={"b": "bytes"}, size_limit=300) as w:
        w.write({"b": b"x" * 1000})
        w.write({"b": b"y" * 10})
        w.write({"b": b"z" * 1000})
    index = load_index(out)
    assert [s.samples for s in index.shards] == [0, 1, 1, 1]
    config = config_bytes(shard_config(["b"], ["bytes"], [None], None, [], 300))
    assert (out / "shard.00000.mds").read_bytes() == b"\0\0\0\0" + (8 + len(config)).to_bytes(4, "little") + config
    assert [MDSDataset(out)[i]["b"][:1] for i in range(3)] == [b"x", b"y", b"z"]


def test_table_writer_names_and_entries(tmp_path: Path) -> None:
    """The Spark fallback's use: per-task file names, entries returned, no index.json."""
    table = pa.table({"x": pa.array(range(100), pa.int64()), "s": pa.array([str(i) * 20 for i in range(100)])})
    writer = TableWriter(tmp_path, table.schema, WriteOptions(size_limit=1000), name_prefix="shard.0123456789ab.00007.3.")
    writer.write_batch(table.slice(0, 60))
    writer.write_batch(table.slice(60))
    entries = writer.finish()
    assert [e["raw_data"]["basename"] for e in entries][:2] == ["shard.0123456789ab.00007.3.00000.mds", "shard.0123456789ab.00007.3.00001.mds"]
    assert sorted(os.listdir(tmp_path)) == sorted(e["zip_data"]["basename"] for e in entries)
    assert sum(e["samples"] for e in entries) == 100
    assert writer.mds_columns == {"__nulls__": "ndarray:uint8:1", "s": "str", "x": "int64"} and writer.spark_mds["schema"]["fields"][0]["type"] == "long"
    (tmp_path / "index.json").write_text(json.dumps({"shards": entries, "version": 2, "spark_mds": writer.spark_mds}))
    with MDSDataset(tmp_path) as ds:
        assert ds.to_table().equals(table)


def test_table_writer_output_protocol() -> None:
    out = _Discard()
    writer = TableWriter(out, pa.schema([("x", pa.int32())]), WriteOptions(compression=None))
    writer.write_batch(pa.record_batch([pa.array([1, 2], pa.int32())], names=["x"]))
    assert [e["raw_data"]["basename"] for e in writer.finish()] == list(out.files) == ["shard.00000.mds"]


def test_table_writer_writes_to_an_fsspec_url() -> None:
    """A URL goes through the storage layer (the Spark source's tasks write this way)."""
    import fsspec

    writer = TableWriter("memory://table-writer/ds", pa.schema([("x", pa.int32())]), WriteOptions(compression=None))
    writer.write_batch(pa.record_batch([pa.array([1, 2], pa.int32())], names=["x"]))
    (entry,) = writer.finish()
    data = fsspec.filesystem("memory").cat_file("/table-writer/ds/shard.00000.mds")
    assert len(data) == entry["raw_data"]["bytes"]


def test_write_table_and_mdswriter_write_the_same_bytes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 500
    ids = rng.integers(-(2**62), 2**62, n)
    texts = ["".join(chr(c) for c in rng.integers(32, 0x2FF, rng.integers(0, 40))) for _ in range(n)]
    vecs = [rng.standard_normal(rng.integers(0, 9)).astype(np.float32) for _ in range(n)]
    mats = [rng.integers(-5, 5, (2, 3)).astype(np.int16) for _ in range(n)]
    labels = rng.integers(0, 255, n).astype(np.uint8)
    table = pa.table({
        "id": ids, "text": texts, "vec": pa.array([v.tolist() for v in vecs], pa.list_(pa.float32())),
        "mat": pa.array([m.tolist() for m in mats], pa.list_(pa.list_(pa.int16()))), "label": labels,
        "blob": pa.array([t.encode() for t in texts], pa.binary()),
    })  # fmt: skip
    kw = {"compression": "zstd:5", "hashes": ["md5", "xxh64"], "size_limit": 4096}
    write_table(table, tmp_path / "table", **kw, nulls="error", batch_rows=77)
    cols = {"id": "int64", "text": "str", "vec": "ndarray:float32", "mat": "ndarray:int16", "label": "uint8", "blob": "bytes"}
    with MDSWriter(out=str(tmp_path / "rows"), columns=cols, **kw) as w:
        for i in range(n):
            w.write({"id": int(ids[i]), "text": texts[i], "vec": vecs[i], "mat": mats[i], "label": labels[i], "blob": texts[i].encode()})
    a, b = tmp_path / "table", tmp_path / "rows"
    shards = sorted(f for f in os.listdir(a) if f != "index.json")
    assert len(shards) > 10 and shards == sorted(f for f in os.listdir(b) if f != "index.json")
    for f in shards:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    index_a = json.loads((a / "index.json").read_text())
    assert "spark_mds" in index_a
    del index_a["spark_mds"]
    assert json.dumps(index_a, sort_keys=True) == (b / "index.json").read_text()


def test_shard_sink_tracks_only_the_running_writes() -> None:
    """Each flush looks at the writes still running, not at every shard written so far (a
    100M-sample dataset of 10,000 shards took minutes to write when it did)."""
    out = _Discard()
    sink = ShardSink(out, WriteOptions(compression=None, size_limit=300, max_workers=2), [("b", parse_encoding("bytes"))])
    for _ in range(500):
        sink.add(np.array([100], np.int64), b"x" * 100)
        assert len(sink._running) <= 2
    entries = sink.finish()
    assert [e["raw_data"]["basename"] for e in entries] == sorted(out.files) and len(entries) == 500

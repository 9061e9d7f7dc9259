"""Compression, hashes, index.json and shard files, with bad and hostile inputs: each one gives
the right error class and a message naming the file."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mds_loader import (
    MDSChecksumError,
    MDSConfigError,
    MDSError,
    MDSFormatError,
    MDSIndexError,
    MDSPathError,
    MDSWriter,
    read_table,
)
from mds_loader.format import MDSDataset, ShardReader, compressions, get_codec, get_hash, hash_names, load_index, parse_index
from mds_loader.format.hashing import check_hashes, verify_hash
from mds_loader.format.index import dump_index

# ---------------------------------------------------------------------------- compression


def test_compression_names() -> None:
    names = compressions()
    assert len(names - {"lz4"}) == 58 and "lz4" in names
    assert get_codec(None) is None and get_codec("") is None
    assert (get_codec("zstd").level, get_codec("zstd:7").level, get_codec("br").level, get_codec("gz:0").level) == (3, 7, 11, 0)
    assert get_codec("zstd:7").extension == "zstd" and get_codec("zstd:7").name == "zstd:7"
    assert not get_codec("lz4").reference_readable and get_codec("snappy").reference_readable


@pytest.mark.parametrize("name", ["zip", "zstd:0", "zstd:23", "zstd:03", "zstd:+3", "bz2:0", "gz:10", "br:12", "snappy:1", "lz4:1", "ZSTD"])
def test_invalid_compressions(name: str) -> None:
    with pytest.raises(MDSConfigError, match="compression"):
        get_codec(name)


@pytest.mark.parametrize("name", sorted(compressions()))
def test_every_compression_round_trips(name: str) -> None:
    data = np.random.default_rng(0).integers(0, 4, 5000, dtype=np.uint8).tobytes() + b"tail"
    codec = get_codec(name)
    packed = codec.compress(data)
    assert codec.decompress(packed) == data
    assert codec.compress(data) == packed  # deterministic, gz included (mtime 0)


@pytest.mark.parametrize("name", ["zstd", "gz", "bz2", "br", "snappy", "lz4"])
def test_corrupt_compressed_data(name: str) -> None:
    with pytest.raises(MDSFormatError, match=f"shard.mds.x: cannot decompress as '{name}'"):
        get_codec(name).decompress(b"\x00garbage" * 3, source="shard.mds.x")


# ---------------------------------------------------------------------------- hashes


def test_hashes() -> None:
    names = hash_names()
    assert {"md5", "sha1", "sha256", "blake2b", "xxh32", "xxh64", "xxh128", "xxh3_64", "xxh3_128"} <= names
    assert not any(n.startswith("shake_") for n in names)
    assert get_hash("sha1", b"abc") == "a9993e364706816aba3e25717850c26c9cd0d89d"
    assert get_hash("xxh64", b"") == "ef46db3751d8e999"
    assert check_hashes(None) == [] and check_hashes(["sha1", "xxh64"]) == ["sha1", "xxh64"]
    with pytest.raises(MDSConfigError, match="sorted order"):
        check_hashes(["xxh64", "sha1"])
    with pytest.raises(MDSConfigError, match="unknown hash algorithm 'crc32'"):
        check_hashes(["crc32"])
    with pytest.raises(MDSChecksumError, match=r"f\.bin: sha1 checksum mismatch"):
        verify_hash("sha1", b"abc", {"sha1": "0" * 40}, "f.bin")
    with pytest.raises(MDSChecksumError, match=r"f\.bin: cannot verify with 'md5'"):
        verify_hash("md5", b"abc", {"sha1": "0" * 40}, "f.bin")


# ---------------------------------------------------------------------------- index.json


def _write(tmp_path: Path, compression=None, hashes=None, n=20, size_limit=1 << 26) -> Path:
    out = tmp_path / "ds"
    with MDSWriter(out=str(out), columns={"x": "int32", "s": "str"}, compression=compression, hashes=hashes, size_limit=size_limit) as w:
        for i in range(n):
            w.write({"x": i, "s": "v" * i})
    return out


def _index(tmp_path: Path) -> dict:
    return json.loads((_write(tmp_path) / "index.json").read_text())


def test_index_text_is_the_references(tmp_path: Path) -> None:
    out = _write(tmp_path)
    text = (out / "index.json").read_text()
    index = load_index(out)
    assert dump_index([s.to_json() for s in index.shards]) == text
    assert text.startswith('{"shards": [{"column_encodings": ["str", "int32"], "column_names": ["s", "x"]')
    assert not any(name.startswith(".index") for name in os.listdir(out))  # the temp file is gone


def _mutate(obj: dict, path: list, value) -> dict:
    obj = copy.deepcopy(obj)
    target = obj
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return obj


@pytest.mark.parametrize(
    ("path", "value", "error", "message"),
    [
        (["version"], 3, MDSIndexError, "unsupported index version 3"),
        (["version"], KeyError, MDSIndexError, "unsupported index version None"),
        (["shards"], {}, MDSIndexError, "'shards' must be a list"),
        (["shards", 0], [], MDSIndexError, "shard 0 must be an object"),
        (["shards", 0, "extra"], 1, MDSIndexError, r"shard 0: .*unexpected \['extra'\]"),
        (["shards", 0, "size_limit"], KeyError, MDSIndexError, r"shard 0: .*missing \['size_limit'\]"),
        (["shards", 0, "version"], 1, MDSIndexError, "shard 0: unsupported shard version 1"),
        (["shards", 0, "version"], True, MDSIndexError, "shard 0: unsupported shard version True"),
        (["shards", 0, "format"], "json", MDSIndexError, "unsupported shard format 'json'"),
        (["shards", 0, "samples"], -1, MDSIndexError, "samples must be an integer"),
        (["shards", 0, "samples"], "20", MDSIndexError, "samples must be an integer"),
        (["shards", 0, "samples"], 2**40, MDSIndexError, "samples must be an integer"),
        (["shards", 0, "samples"], 10**6, MDSIndexError, "impossible for a shard of 1000000 samples"),
        (["shards", 0, "raw_data", "bytes"], -5, MDSIndexError, "bytes must be a non-negative integer"),
        (["shards", 0, "raw_data", "bytes"], 2**40, MDSIndexError, "impossible for a shard"),
        (["shards", 0, "raw_data", "hashes"], [], MDSIndexError, "hashes must map"),
        (["shards", 0, "raw_data", "extra"], 1, MDSIndexError, "raw_data must be an object with exactly"),
        (["shards", 0, "column_names"], "x", MDSIndexError, "column_names must be a list"),
        (["shards", 0, "column_names"], ["x", "x"], MDSIndexError, "distinct strings"),
        (["shards", 0, "column_names"], ["x"], MDSIndexError, "different lengths"),
        (["shards", 0, "column_encodings"], ["str", "bogus"], MDSIndexError, "column 'x': unknown encoding 'bogus'"),
        (["shards", 0, "column_sizes"], [None, 8], MDSIndexError, r"column 'x' \(int32\) has column size 8, expected 4"),
        (["shards", 0, "compression"], "zip", MDSIndexError, "unknown compression 'zip'"),
        (["shards", 0, "zip_data"], {"basename": "a.zstd", "bytes": 1, "hashes": {}}, MDSIndexError, "compression is null"),
        (["shards", 0, "hashes"], "sha1", MDSIndexError, "hashes must be a list"),
        (["shards", 0, "size_limit"], 1.5, MDSIndexError, "size_limit must be"),
        (["shards", 0, "raw_data", "basename"], "../escape.mds", MDSPathError, r"'\.\./escape\.mds' has an empty, '\.' or '\.\.' component"),
        (["shards", 0, "raw_data", "basename"], "a/../../b.mds", MDSPathError, "component"),
        (["shards", 0, "raw_data", "basename"], "/etc/passwd", MDSPathError, "is absolute"),
        (["shards", 0, "raw_data", "basename"], "C:/x.mds", MDSPathError, "drive letter or URL scheme"),
        (["shards", 0, "raw_data", "basename"], "s3://bucket/x.mds", MDSPathError, "drive letter or URL scheme"),
        (["shards", 0, "raw_data", "basename"], "file:x.mds", MDSPathError, "drive letter or URL scheme"),
        (["shards", 0, "raw_data", "basename"], "a\\b.mds", MDSPathError, "backslash"),
        (["shards", 0, "raw_data", "basename"], "a//b.mds", MDSPathError, "component"),
        (["shards", 0, "raw_data", "basename"], "./b.mds", MDSPathError, "component"),
        (["shards", 0, "raw_data", "basename"], "", MDSPathError, "non-empty string"),
        (["shards", 0, "raw_data", "basename"], 7, MDSPathError, "non-empty string"),
        (["shards", 0, "raw_data", "basename"], "a\x00.mds", MDSPathError, "NUL"),
        (["spark_mds"], [], MDSIndexError, "spark_mds must be an object"),
        (["spark_mds"], {"format_version": 2, "schema": {}}, MDSIndexError, "format_version is 2"),
        (["spark_mds"], {"format_version": 1, "schema": {"type": "struct", "fields": [{"name": "x"}]}}, MDSIndexError, "malformed struct field"),
        (["spark_mds"], {"format_version": 1, "schema": {"type": "struct", "fields": []}, "null_mask": "m"}, MDSIndexError, "null_mask must be"),
    ],
)  # fmt: skip
def test_hostile_index(tmp_path: Path, path, value, error, message) -> None:
    obj = _mutate(_index(tmp_path), path, value)
    with pytest.raises(error, match=message) as info:
        parse_index(obj, "/data/ds/index.json")
    assert str(info.value).startswith("/data/ds/index.json: ")
    assert isinstance(info.value, ValueError)  # the reference raises ValueError/TypeError on bad indexes


def test_index_is_not_json(tmp_path: Path) -> None:
    (tmp_path / "index.json").write_bytes(b'{"shards": [')
    with pytest.raises(MDSIndexError, match=r"index\.json: not valid JSON"):
        load_index(tmp_path)
    (tmp_path / "index.json").write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(MDSIndexError, match="not valid JSON|an index is a JSON object"):
        load_index(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_index(tmp_path / "missing")


def test_duplicate_file_names(tmp_path: Path) -> None:
    obj = _index(tmp_path)
    obj["shards"].append(copy.deepcopy(obj["shards"][0]))
    with pytest.raises(MDSIndexError, match="shard 1 names 'shard.00000.mds', already used by shard 0"):
        parse_index(obj, "index.json")


def test_unknown_top_level_keys_are_ignored(tmp_path: Path) -> None:
    obj = _index(tmp_path)
    obj["something_else"] = {"a": 1}
    assert parse_index(obj).num_samples == 20


# ---------------------------------------------------------------------------- shard files


def _shard(tmp_path: Path) -> tuple[Path, bytes]:
    out = _write(tmp_path)
    path = out / "shard.00000.mds"
    return path, path.read_bytes()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: d[:5], "too short for a shard"),
        (lambda d: d[:-1], "the last sample offset is .* but the file has"),
        (lambda d: d + b"x", "the last sample offset is .* but the file has"),
        (lambda d: (10**6).to_bytes(4, "little") + d[4:], "header says 1000000 samples, index.json says 20|a header of 1000000 samples needs"),
        (lambda d: d[:4] + (3).to_bytes(4, "little") + d[8:], "first sample offset 3 points into the header"),
        (lambda d: d[:12] + (2**32 - 1).to_bytes(4, "little") + d[16:], "offsets decrease"),
        (lambda d: d, None),
    ],
)
def test_corrupt_shard_headers(tmp_path: Path, damage, message) -> None:
    path, data = _shard(tmp_path)
    new = damage(data)
    if message is None:  # no damage: a control
        assert ShardReader(path).num_samples == 20
        return
    path.write_bytes(new)
    with pytest.raises(MDSFormatError, match=message) as info:
        ShardReader(path)  # without the index entry (the embedded config is read)
    assert str(path) in str(info.value)


def test_sample_whose_sizes_overflow(tmp_path: Path) -> None:
    path, data = _shard(tmp_path)
    reader = ShardReader(path)
    start = int(reader._offsets[3])
    reader.close()
    bad = bytearray(data)
    bad[start : start + 4] = (2**32 - 1).to_bytes(4, "little")  # the size of column 's' of sample 3
    path.write_bytes(bytes(bad))
    reader = ShardReader(path)
    with pytest.raises(MDSFormatError, match=r"shard\.00000\.mds: sample 3 has 11 bytes, but its column sizes add up to 4294967303"):
        reader.get_sample(3)
    with pytest.raises(MDSFormatError, match=r"shard\.00000\.mds: sample 3 has 11 bytes, but its column sizes add up to 4294967303"):
        reader.read_batch([0, 3])
    assert reader.read_batch([0, 1, 2]).num_rows == 3  # the other samples are fine
    with pytest.raises(IndexError, match="sample 20 is out of range"):
        reader.read_batch([20])
    with pytest.raises(IndexError):
        reader.get_sample(-21)


def test_bad_payloads_in_a_batch(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    with MDSWriter(out=str(out), columns={"s": "str", "a": "ndarray:int32", "n": "str_int"}) as w:
        w.write({"s": b"\xff\xfe", "a": np.arange(3, dtype=np.int32), "n": 5})  # bytes pass through unchecked
        w.write({"s": "ok", "a": b"\x05\x07", "n": b"x"})
    reader = ShardReader(out / "shard.00000.mds")
    with pytest.raises(MDSFormatError, match=r"shard\.00000\.mds: sample 0, column 's': not valid UTF-8"):
        reader.read_batch([0], ["s"])
    with pytest.raises(MDSFormatError, match=r"shard\.00000\.mds: sample 1, column 'a': ndarray payload ends inside its shape"):
        reader.read_batch([1, 0], ["a"])
    with pytest.raises(MDSFormatError, match=r"shard\.00000\.mds: sample 1, column 'n': 'x' is not a number"):
        reader.read_batch([0, 1], ["n"])
    with pytest.raises(MDSFormatError, match=r"shard\.00000\.mds: sample 1, column 'a'"):
        reader.get_sample(1)


@pytest.mark.parametrize("compression", [None, "zstd"])
def test_missing_truncated_and_replaced_files(tmp_path: Path, compression) -> None:
    out = _write(tmp_path, compression=compression, hashes=["sha1", "xxh64"], n=50, size_limit=300)
    entry = load_index(out).shards[1]
    info = entry.zip_data or entry.raw_data
    target = out / info.basename
    data = target.read_bytes()
    target.write_bytes(data[:-3])
    with MDSDataset(out) as ds:
        with pytest.raises(MDSFormatError, match=rf"{info.basename}: {len(data) - 3} bytes, index.json says {len(data)}; the file is truncated"):
            ds.shard(1)
    flipped = bytearray(data)
    flipped[-1] ^= 0xFF
    target.write_bytes(bytes(flipped))
    with MDSDataset(out, validate_hash="xxh64") as ds:
        with pytest.raises(MDSChecksumError, match=rf"{info.basename}: xxh64 checksum mismatch"):
            ds.shard(1)
        assert ds.shard(0).num_samples > 0  # an intact shard is still readable
    target.unlink()
    with MDSDataset(out) as ds, pytest.raises(FileNotFoundError, match=rf"{info.basename}: shard file listed in index.json is missing"):
        ds.shard(1)


def test_wrong_compression(tmp_path: Path) -> None:
    out = _write(tmp_path, compression="zstd")
    index = json.loads((out / "index.json").read_text())
    for shard in index["shards"]:
        shard["compression"] = "bz2"  # the file is zstd
    (out / "index.json").write_text(json.dumps(index))
    with pytest.raises(MDSFormatError, match=r"shard\.00000\.mds\.zstd: cannot decompress as 'bz2'"):
        read_table(out)


def test_decompressed_size_differs(tmp_path: Path) -> None:
    out = _write(tmp_path, compression="zstd")
    index = json.loads((out / "index.json").read_text())
    raw_size = index["shards"][0]["raw_data"]["bytes"]
    index["shards"][0]["raw_data"]["bytes"] = raw_size + 1
    (out / "index.json").write_text(json.dumps(index))
    with pytest.raises(MDSFormatError, match=rf"decompresses to {raw_size} bytes, index.json says {raw_size + 1}"):
        read_table(out)


def test_reading_writes_nothing_and_uses_a_decompressed_copy(tmp_path: Path) -> None:
    """read_table decompresses in memory; a raw copy that the reference's StreamingDataset left
    beside the compressed file is mapped instead (and a stale one of the wrong size is ignored)."""
    out = _write(tmp_path, compression="br")
    before_files = {p.name: p.read_bytes() for p in out.iterdir()}
    before = read_table(out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before_files
    raw = get_codec("br").decompress((out / "shard.00000.mds.br").read_bytes())
    (out / "shard.00000.mds").write_bytes(raw[:-1])  # stale: ignored
    assert read_table(out).equals(before)
    (out / "shard.00000.mds").write_bytes(raw)
    (out / "shard.00000.mds.br").unlink()  # the raw copy is used from now on
    assert read_table(out).equals(before)


def test_every_error_is_an_mds_error() -> None:
    for cls in (MDSChecksumError, MDSConfigError, MDSFormatError, MDSIndexError, MDSPathError):
        assert issubclass(cls, MDSError) and issubclass(cls, ValueError)


def test_the_index_lists_the_only_files_read(tmp_path: Path) -> None:
    out = _write(tmp_path)
    shutil.copy(out / "shard.00000.mds", out / "shard.00001.mds")  # not in the index: ignored
    assert read_table(out).num_rows == 20


# ---------------------------------------------------------------------------- fuzzing

_FUZZ_COLUMNS = {"s": "str", "x": "int32", "a": "ndarray", "f": "ndarray:float32:2", "j": "json", "n": "str_int",
                 "b": "bytes", "l": "list[pil]", "d": "str_decimal"}  # fmt: skip


@pytest.fixture(scope="module")
def fuzz_shard(tmp_path_factory) -> tuple[bytes, dict]:
    from decimal import Decimal

    from PIL import Image

    out = tmp_path_factory.mktemp("fuzz") / "ds"
    with MDSWriter(out=str(out), columns=_FUZZ_COLUMNS) as w:
        for i in range(6):
            w.write({"s": "é" * i, "x": i, "a": np.arange(i + 1, dtype=np.int16).reshape(1, -1), "f": np.ones(2, np.float32),
                     "j": {"i": [i]}, "n": -i, "b": bytes(i), "l": [Image.new("L", (2, 1), i)] * (i % 2), "d": Decimal(i)})  # fmt: skip
    return (out / "shard.00000.mds").read_bytes(), load_index(out).shards[0]


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_prop_corrupt_shards_raise_only_mds_errors(tmp_path_factory, fuzz_shard, data) -> None:
    """Truncated, extended and bit-flipped shards: every failure is an MDSError naming the file
    (never an IndexError, a numpy error, a crash or a huge allocation)."""
    original, entry = fuzz_shard
    raw = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["flip", "set", "truncate", "extend"]))
        if action == "truncate" and raw:
            del raw[data.draw(st.integers(0, len(raw) - 1)) :]
        elif action == "extend":
            raw += data.draw(st.binary(min_size=1, max_size=8))
        elif raw:
            pos = data.draw(st.integers(0, len(raw) - 1))
            raw[pos] = data.draw(st.integers(0, 255)) if action == "set" else raw[pos] ^ (1 << data.draw(st.integers(0, 7)))
    path = tmp_path_factory.mktemp("f") / "shard.00000.mds"
    path.write_bytes(bytes(raw))
    use_entry = data.draw(st.booleans())
    try:
        reader = ShardReader(path, entry if use_entry else None)
    except MDSError as exc:
        assert str(path) in str(exc)
        return
    n = reader.num_samples
    for i in range(min(n, 8)):
        try:
            reader.get_sample(i)
        except MDSError as exc:
            assert str(path) in str(exc)
    for columns in (None, ["s", "x"], ["a", "f"], ["j", "n", "d"], ["b", "l"]):
        try:
            reader.read_batch(np.arange(min(n, 8))[::-1], columns)
        except KeyError:
            assert not use_entry  # the embedded config was damaged: a column was renamed
        except MDSError as exc:
            assert str(path) in str(exc) or "column" in str(exc)
    reader.close()


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_prop_hostile_index_values(tmp_path_factory, data) -> None:
    """Any value at any place of an index gives an MDSIndexError (or is valid), nothing else."""
    obj = _index(tmp_path_factory.mktemp("i"))
    node = obj  # walk down a random path, then replace one entry of the node reached
    for step in data.draw(st.lists(st.sampled_from(["shards", 0, "raw_data", "zip_data", "column_sizes", "hashes",
                                                    "column_encodings", "column_names"]), max_size=4)):  # fmt: skip
        if isinstance(node, dict) and step in node and isinstance(node[step], (dict, list)):
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int) and step < len(node) and isinstance(node[step], (dict, list)):
            node = node[step]
    value = data.draw(_json_values)
    if isinstance(node, dict):
        node[data.draw(st.sampled_from(sorted(node) + ["extra"]))] = value
    elif node:
        node[data.draw(st.integers(0, len(node) - 1))] = value
    try:
        parse_index(json.loads(json.dumps(obj)), "idx.json")
    except MDSIndexError as exc:
        assert str(exc).startswith("idx.json")


def test_verify_checks_every_listed_file(tmp_path: Path) -> None:
    out = _write(tmp_path, compression="zstd", hashes=["sha1", "xxh64"], n=50, size_limit=300)
    with MDSDataset(out) as ds:
        ds.verify()
        ds.verify("xxh64")
    entry = load_index(out).shards[2]
    raw = out / entry.raw_data.basename
    data = bytearray(get_codec("zstd").decompress((out / entry.zip_data.basename).read_bytes()))
    data[-1] ^= 1
    raw.write_bytes(bytes(data))  # a damaged decompressed copy beside the (intact) compressed file
    with MDSDataset(out) as ds, pytest.raises(MDSChecksumError, match=rf"{raw.name}: sha1 checksum mismatch"):
        ds.verify()


def test_read_table_through_fsspec(tmp_path: Path) -> None:
    """A dataset behind an fsspec URL, or a path in a given fsspec file system (as pyarrow's
    ``filesystem=``), reads exactly as the local one, hashes checked."""
    import fsspec

    out = _write(tmp_path, compression="zstd", hashes=["sha1"], n=50, size_limit=300)
    expected = read_table(out)
    fs = fsspec.filesystem("memory")
    for f in out.iterdir():
        fs.pipe_file(f"/mds-test-{tmp_path.name}/{f.name}", f.read_bytes())
    assert read_table(f"memory://mds-test-{tmp_path.name}", validate_hash="sha1").equals(expected)
    assert read_table(f"/mds-test-{tmp_path.name}", filesystem=fs).equals(expected)
    with MDSDataset(f"memory://mds-test-{tmp_path.name}") as ds:
        assert ds.get_sample(3) == MDSDataset(out).get_sample(3)

"""A large index.json is parsed once per node (mds_loader.index_cache): later loads read the
compact table the first one stored, with the same entries; a changed index, an unreadable
cache file, or one other users may write are never trusted."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mds_loader import StreamingDataset, write_table
from mds_loader.format.index import FileInfo, ShardEntry, load_index
from mds_loader.format.shard_table import ShardTable
from mds_loader.index_cache import cache_dir, load_index_shared


@pytest.fixture
def tmpdir_root(tmp_path, monkeypatch) -> Path:
    """Cached indexes (and order files) of this test under tmp_path."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    return tmp_path / "tmp"


def _many_shards(path: Path, rows: int = 2400, offset: int = 0) -> Path:
    """About 1,200 small shards (an index.json of ~500 KB: large enough to be cached), with
    hashes and compressed files."""
    table = pa.table({"id": pa.array(range(offset, offset + rows), pa.int64()),
                      "text": pa.array([f"row {i}" for i in range(offset, offset + rows)])})
    write_table(table, str(path), size_limit=40, hashes=["sha1", "xxh64"], exist_ok=True)
    return path


def test_second_load_reads_the_cached_table(tmp_path, tmpdir_root):
    data = _many_shards(tmp_path / "ds")
    assert os.path.getsize(data / "index.json") > 256 << 10
    parsed = load_index(data)
    first = load_index_shared(str(data))
    assert isinstance(first.shards, list)  # the first process parses ...
    cached = list(Path(cache_dir()).glob("*.npz"))
    assert len(cached) == 1 and cached[0].stat().st_mode & 0o777 == 0o600
    second = load_index_shared(str(data))  # ... the others load its table
    assert isinstance(second.shards, ShardTable)
    assert len(second.shards) == len(parsed.shards) > 1000
    assert list(second.shards) == list(parsed.shards)
    assert second.shards[-1] == parsed.shards[-1] and second.shards[5:8] == parsed.shards[5:8]
    assert (second.fields, second.null_mask, second.spark_mds, second.source) == \
           (parsed.fields, parsed.null_mask, parsed.spark_mds, parsed.source)
    np.testing.assert_array_equal(second.samples_per_shard, parsed.samples_per_shard)
    np.testing.assert_array_equal(second.stored_bytes_per_shard, parsed.stored_bytes_per_shard)
    assert second.num_samples == 2400 and second.column_mismatch() is None


def test_dataset_over_a_cached_index_reads_every_sample(tmp_path, tmpdir_root):
    data = _many_shards(tmp_path / "ds")
    load_index_shared(str(data))
    ds = StreamingDataset(local=str(data), shuffle=True, batch_size=16)
    assert isinstance(ds.streams[0].index.shards, ShardTable)
    ids = sorted(int(s["id"]) for s in ds)
    assert ids == list(range(2400))
    assert ds[1234]["text"] == "row 1234"


def test_a_changed_index_is_parsed_again(tmp_path, tmpdir_root):
    data = _many_shards(tmp_path / "ds")
    load_index_shared(str(data))
    _many_shards(data, rows=2600, offset=10_000)  # rewritten in place: other content, other digest
    index = load_index_shared(str(data))
    assert isinstance(index.shards, list) and index.num_samples == 2600
    assert len(list(Path(cache_dir()).glob("*.npz"))) == 2


@pytest.mark.parametrize("damage", ["truncated", "writable by others"])
def test_a_damaged_or_foreign_cache_file_is_ignored(tmp_path, tmpdir_root, damage):
    data = _many_shards(tmp_path / "ds")
    load_index_shared(str(data))
    (cached,) = Path(cache_dir()).glob("*.npz")
    if damage == "truncated":
        cached.write_bytes(cached.read_bytes()[:5000])
    else:
        cached.chmod(0o666)
    index = load_index_shared(str(data))
    assert isinstance(index.shards, list)  # parsed, not loaded
    assert list(index.shards) == list(load_index(data).shards)


_text = st.text(min_size=1, max_size=12)
_file = st.builds(FileInfo, _text, st.integers(0, 2**32 - 1), st.dictionaries(_text, _text, max_size=2))
_entry = st.builds(
    ShardEntry,
    st.sampled_from([["int64", "str"], ["bytes"]]), st.sampled_from([["a", "b"], ["c"]]),
    st.sampled_from([[8, None], [None]]), st.sampled_from([None, "zstd", "gz:3"]),
    st.sampled_from([[], ["sha1"], ["sha1", "xxh64"]]), _file, st.integers(0, 2**32 - 1),
    st.sampled_from([None, 1 << 26, "64mb"]), st.none() | _file)


@settings(max_examples=60, deadline=None)
@given(st.lists(_entry, max_size=30))
def test_shard_table_round_trip(entries):
    """Entries go into a table, through plain arrays and back unchanged (unicode names and
    digests, shared and distinct column groups, with and without compressed files)."""
    table = ShardTable.from_arrays(ShardTable.of(entries).to_arrays())
    assert list(table) == entries
    assert len(table) == len(entries)
    if entries:
        assert table[-1] == entries[-1]

"""`remote` and `local` as in the reference: remote only (a per-remote cache under the temporary
directory), local only, both; a remote that is a plain local directory; `split`; Streams."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from mds_loader import Stream, StreamingDataLoader, StreamingDataset, write_table
from mds_loader.stream import default_cache_dir
from remote_data import HASHES, SIZE_LIMIT, make_table, run_epochs, tree

ROWS = 1000
KWARGS = dict(batch_size=20, shuffle=True, shuffle_seed=3, shuffle_block_size=1000)


@pytest.fixture(scope="module")
def data(s3, tmp_path_factory):
    """Two splits written to S3 and to a local directory."""
    bucket = s3.new_bucket("where")
    root = tmp_path_factory.mktemp("where")
    for split, seed in (("train", 0), ("val", 1)):
        table = make_table(ROWS, seed=seed)
        write_table(table, root / "local" / split, size_limit=SIZE_LIMIT, hashes=HASHES)
        write_table(table, f"s3://{bucket}/ds/{split}", size_limit=SIZE_LIMIT, hashes=HASHES,
                    storage_options=s3.storage_options)
    return {"url": f"s3://{bucket}/ds", "local": root / "local"}


def _epochs(ds: StreamingDataset) -> list:
    return run_epochs(StreamingDataLoader(ds, batch_size=KWARGS["batch_size"]), 1)


@pytest.fixture(scope="module")
def expected(data):
    return {split: _epochs(StreamingDataset(local=str(data["local"] / split), **KWARGS)) for split in ("train", "val")}


def test_remote_only_uses_a_cache_under_the_temp_dir(s3, data, expected, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ds = StreamingDataset(remote=data["url"], split="val", storage_options=s3.storage_options, **KWARGS)
    assert _epochs(ds) == expected["val"]
    cache = Path(default_cache_dir(data["url"], s3.storage_options)) / "val"
    assert cache.parent.parent == tmp_path / "mds-loader" / "cache"
    assert ds.streams[0].local_dir == str(cache)
    assert (cache / "index.json").is_file() and len(list(cache.glob("shard.*.mds"))) > 1
    # The same bucket and path on another server is another dataset: another cache directory.
    other = {**s3.storage_options, "client_kwargs": {"endpoint_url": "http://127.0.0.1:1"}}
    assert default_cache_dir(data["url"], other) != default_cache_dir(data["url"], s3.storage_options)


def test_local_only_is_read_in_place(data, expected):
    before = tree(data["local"] / "train")
    ds = StreamingDataset(local=str(data["local"] / "train"), cache_limit="10mb", **KWARGS)
    assert _epochs(ds) == expected["train"]
    after = tree(data["local"] / "train")
    # Shards are decompressed next to their compressed files (as the reference does); nothing of
    # the dataset is removed or changed, and no cache bookkeeping is written into it.
    assert {k: v for k, v in after.items() if k in before} == before
    assert all(name.endswith(".mds") for name in set(after) - set(before))
    assert not (data["local"] / "train" / ".mds-locks").exists()


def test_remote_and_local_with_split(s3, data, expected, tmp_path):
    ds = StreamingDataset(remote=data["url"], local=str(tmp_path), split="train", storage_options=s3.storage_options,
                          **KWARGS)
    assert _epochs(ds) == expected["train"]
    assert (tmp_path / "train" / "index.json").is_file()
    assert not (tmp_path / "val").exists()


@pytest.mark.parametrize("form", ["path", "file-url"])
def test_remote_that_is_a_local_directory(data, expected, tmp_path, form):
    """A remote given as a directory (or file:// URL) is copied into the cache like any remote;
    the remote directory is left as it was."""
    source = data["local"] / "val"
    before = tree(source)
    remote = str(source) if form == "path" else f"file://{source}"
    ds = StreamingDataset(remote=remote, local=str(tmp_path / "cache"), validate_hash="xxh64", cache_limit="200kb", **KWARGS)
    assert not ds.streams[0].is_local
    assert _epochs(ds) == expected["val"]
    assert tree(source) == before
    assert (tmp_path / "cache" / "index.json").is_file()


def test_remote_equal_to_local_is_local(data, expected):
    path = str(data["local"] / "val")
    ds = StreamingDataset(remote=path, local=path + "/", **KWARGS)
    assert ds.streams[0].is_local
    assert _epochs(ds) == expected["val"]


def test_streams_mix_remote_splits(s3, data, tmp_path):
    streams = [Stream(remote=data["url"], local=str(tmp_path / "c"), split=split, storage_options=s3.storage_options)
               for split in ("train", "val")]
    ds = StreamingDataset(streams=streams, batch_size=50, validate_hash="sha1")
    ids = sorted(int(i) for batch in StreamingDataLoader(ds, batch_size=50) for i in batch["id"])
    assert ids == sorted(list(range(ROWS)) * 2)

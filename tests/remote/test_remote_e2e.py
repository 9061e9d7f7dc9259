"""End to end against a real S3-compatible server (moto, on 127.0.0.1): write a dataset to it with
write_table and MDSWriter, then train-iterate it through the cache with 2 DataLoader workers,
validated hashes and a cache_limit smaller than the dataset; the batches must be those of the
same dataset read from local disk."""

from __future__ import annotations

import json
import tempfile
import warnings

import numpy as np
import pytest

from mds_loader import MDSWriter, StreamingDataLoader, StreamingDataset, write_table
from remote_data import HASHES, SIZE_LIMIT, dataset_bytes, make_table, run_epochs, tree

ROWS = 4000
BATCH = 32


@pytest.fixture(scope="module")
def written(s3, tmp_path_factory):
    """The same table written to S3 (write_table to a URL) and to a local directory."""
    bucket = s3.new_bucket("e2e")
    local = tmp_path_factory.mktemp("e2e") / "local"
    table = make_table(ROWS)
    url = f"s3://{bucket}/datasets/table"
    write_table(table, url, size_limit=SIZE_LIMIT, hashes=HASHES, storage_options=s3.storage_options)
    write_table(table, local, size_limit=SIZE_LIMIT, hashes=HASHES)
    return {"bucket": bucket, "url": url, "local": local}


def _objects(s3, bucket: str, prefix: str) -> dict[str, bytes]:
    client = s3.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", [])]
    return {k[len(prefix) + 1:]: client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def test_write_table_uploads_the_same_files(s3, written):
    """The uploaded objects are byte for byte the files of the local write."""
    uploaded = _objects(s3, written["bucket"], "datasets/table")
    assert uploaded == tree(written["local"])
    assert len(uploaded) > 10  # many shards: the cache has something to evict


@pytest.mark.parametrize("mode", ["batches", "samples"])
def test_train_iterate_through_cache_equals_local(s3, written, tmp_path, mode):
    """2 DataLoader workers, validate_hash, cache_limit of ~40% of the dataset, 2 epochs with a
    shuffle: every batch equals the one read from local disk, and the cache stays within its
    limit (shards were evicted and downloaded again)."""
    total = dataset_bytes(written["local"])
    limit = int(total * 0.4)
    common = dict(batch_size=BATCH, shuffle=True, shuffle_seed=7, shuffle_block_size=512)
    collate = None if mode == "batches" else (lambda samples: {k: [s[k] for s in samples] for k in ("id", "text")})

    def loader(ds):
        dl = StreamingDataLoader(ds, batch_size=BATCH, num_workers=2, collate_fn=collate)
        assert dl.uses_batch_decoding == (mode == "batches")
        return dl

    cache = tmp_path / "cache"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "cache_limit is exceeded"
        remote = StreamingDataset(remote=written["url"], local=str(cache), storage_options=s3.storage_options,
                                  validate_hash="sha1", cache_limit=limit, **common)
        got = run_epochs(loader(remote), 2)
    expected = run_epochs(loader(StreamingDataset(local=str(written["local"]), **common)), 2)
    assert got == expected
    assert len(got[0]) == ROWS // BATCH + (ROWS % BATCH > 0)
    assert got[0] != got[1]  # a new shuffle per epoch
    ids = sorted(i for batch in got[0] for name, values in batch if name == "id" for i in values)
    assert ids == list(range(ROWS))
    # The cache honoured its limit; with 2 epochs of a dataset 2.5 times its size, shards were
    # evicted (not all raw files are present at the end).
    usage = remote._cache.usage()
    assert 0 < usage <= limit
    present = sum((cache / s.raw_data.basename).exists() for s in remote.streams[0].index.shards)
    assert present < len(remote.streams[0].index.shards)
    assert not list(cache.glob(".*.part")) and not list(cache.glob(".*.download"))


def test_mdswriter_remote_out(s3, tmp_path):
    """MDSWriter(out=URL) uploads each file as it is finished, with no local copy; the dataset reads
    back with the writer's values; a (local, remote) pair keeps the files with keep_local, and
    leaves no local directory without it."""
    bucket = s3.new_bucket("writer")
    columns = {"id": "int64", "text": "str", "vec": "ndarray:float32:4"}
    rng = np.random.default_rng(3)
    samples = [{"id": i, "text": f"sample {i}", "vec": rng.random(4, dtype=np.float32)} for i in range(500)]

    url = f"s3://{bucket}/writer/plain"
    with MDSWriter(out=url, columns=columns, compression="zstd", hashes=HASHES, size_limit=4096,
                   storage_options=s3.storage_options) as writer:
        for sample in samples:
            writer.write(sample)
    assert writer.remote == url
    assert writer.local is None
    scratch = tmp_path / "scratch"
    with MDSWriter(out=(str(scratch), f"s3://{bucket}/writer/scratch"), columns=columns, compression="zstd",
                   hashes=HASHES, size_limit=4096, storage_options=s3.storage_options) as writer:
        for sample in samples:
            writer.write(sample)
    assert not scratch.exists()

    pair_local = tmp_path / "kept"
    pair_url = f"s3://{bucket}/writer/pair"
    with MDSWriter(out=(str(pair_local), pair_url), columns=columns, compression="zstd", hashes=HASHES,
                   size_limit=4096, keep_local=True, storage_options=s3.storage_options) as writer:
        for sample in samples:
            writer.write(sample)
    kept = tree(pair_local)
    assert "index.json" in kept and len(kept) > 5
    assert _objects(s3, bucket, "writer/pair") == kept
    assert _objects(s3, bucket, "writer/plain") == _objects(s3, bucket, "writer/scratch") == kept  # same bytes

    ds = StreamingDataset(remote=url, local=str(tmp_path / "cache"), storage_options=s3.storage_options,
                          validate_hash="xxh64", batch_size=50)
    got = [ds[i] for i in range(len(samples))]
    for want, have in zip(samples, got):
        assert have["id"] == want["id"] and have["text"] == want["text"]
        np.testing.assert_array_equal(have["vec"], want["vec"])


def test_remote_output_refuses_an_existing_dataset(s3, written, tmp_path):
    """Like a non-empty local directory, a remote that holds a dataset is not overwritten
    without exist_ok; with exist_ok it is replaced, index.json last."""
    table = make_table(100, seed=1)
    with pytest.raises(FileExistsError, match="already holds a dataset.*exist_ok=True"):
        write_table(table, written["url"], storage_options=s3.storage_options)
    url = f"s3://{s3.new_bucket('replace')}/ds"
    write_table(make_table(300), url, size_limit=SIZE_LIMIT, storage_options=s3.storage_options)
    write_table(table, url, exist_ok=True, storage_options=s3.storage_options)
    ds = StreamingDataset(remote=url, local=str(tmp_path / "cache"), storage_options=s3.storage_options)
    assert len(ds) == 100
    assert [ds[i]["score"] for i in range(100)] == table.column("score").to_pylist()


def test_index_is_uploaded_last(s3, tmp_path, monkeypatch):
    """A write that fails while uploading a shard publishes no index.json (readers never see a
    half-uploaded dataset) and leaves no local file."""
    from mds_loader.storage import RemoteStore

    url = f"s3://{s3.new_bucket('fail')}/ds"
    original = RemoteStore.write_bytes
    uploads = []

    def failing(self, relpath, data):
        uploads.append(relpath)
        if len(uploads) == 3:
            raise OSError(f"injected upload failure of {relpath}")
        return original(self, relpath, data)

    monkeypatch.setattr(RemoteStore, "write_bytes", failing)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where a temporary local copy would go
    with pytest.raises(OSError, match="injected upload failure"):
        write_table(make_table(2000), url, size_limit=SIZE_LIMIT, storage_options=s3.storage_options, max_workers=1)
    names = json.dumps(sorted(_objects(s3, url.split("/")[2], "ds")))
    assert "index.json" not in names and "shard.00001.mds" in names
    assert list(tmp_path.iterdir()) == []

"""Faults between the cache and a real S3-compatible server: a download that fails once is retried;
a corrupted or truncated object is rejected and never cached; a server that stops answering
gives a TimeoutError within download_timeout x download_retry, not a hang; a full disk gives a
clear error at once; a missing dataset or shard names its URL."""

from __future__ import annotations

import errno
import time
from pathlib import Path

import pytest

import mds_loader.storage as storage
from mds_loader import MDSChecksumError, MDSFormatError, StreamingDataLoader, StreamingDataset, write_table
from remote_data import HASHES, SIZE_LIMIT, FlakyFileSystem, full_disk_open, make_table, run_epochs
from s3server import Proxy, SilentServer, storage_options

ROWS = 1500


@pytest.fixture(scope="module")
def datasets(s3, tmp_path_factory):
    """One bucket with the same table written compressed (zstd) and raw, plus a local copy."""
    bucket = s3.new_bucket("faults")
    table = make_table(ROWS, seed=5)
    local = tmp_path_factory.mktemp("faults") / "local"
    write_table(table, local, size_limit=SIZE_LIMIT, hashes=HASHES)
    for compression in ("zstd", None):
        write_table(table, f"s3://{bucket}/{compression}", compression=compression, size_limit=SIZE_LIMIT,
                    hashes=HASHES, storage_options=s3.storage_options)
    return {"bucket": bucket, "local": local}


def _shard_names(ds: StreamingDataset) -> list[str]:
    return [(s.zip_data or s.raw_data).basename for s in ds.streams[0].index.shards]


def _no_leftovers(cache: Path, name: str) -> None:
    """Neither the file under its final name nor any temporary of it is in the cache."""
    stem = name.removesuffix(".zstd")
    assert not [p.name for p in cache.iterdir() if p.name.lstrip(".").startswith(stem)]


def test_failed_download_is_retried(s3, datasets, tmp_path):
    """Every shard's first GET fails (connection reset): with download_retry=2 each is fetched
    on its second attempt and the epoch equals the local one; with download_retry=1 the error
    names the URL and the attempts."""
    FlakyFileSystem.calls.clear()
    bucket = datasets["bucket"]
    options = {"target_options": s3.storage_options, "fail_opens": 1}
    kwargs = dict(batch_size=16, shuffle=True, shuffle_block_size=1024)
    ds = StreamingDataset(remote=f"flaky://{bucket}/zstd", local=str(tmp_path / "a"), storage_options=options,
                          download_retry=2, validate_hash="sha1", **kwargs)
    got = run_epochs(StreamingDataLoader(ds, batch_size=16), 1)
    assert got == run_epochs(StreamingDataLoader(StreamingDataset(local=str(datasets["local"]), **kwargs), batch_size=16), 1)
    names = _shard_names(ds)
    opens = {path.rsplit("/", 1)[1]: n for (method, path), n in FlakyFileSystem.calls.items() if method == "open"}
    assert opens == {name: 2 for name in names}  # one failure + one success each, no more

    FlakyFileSystem.calls.clear()
    ds = StreamingDataset(remote=f"flaky://{bucket}/zstd", local=str(tmp_path / "b"), storage_options=options,
                          download_retry=1, **kwargs)
    with pytest.raises(OSError, match=r"downloading flaky://.*/shard\.\d+\.mds\.zstd failed after 1 attempt\(s\).*"
                                      r"injected failure 1"):
        ds[0]


def test_index_is_fetched_once_per_node(s3, datasets, tmp_path):
    """Datasets constructed together on one node (ranks, several jobs) download index.json once."""
    FlakyFileSystem.calls.clear()
    url = f"flaky://{datasets['bucket']}/zstd"
    options = {"target_options": s3.storage_options}
    for _ in range(3):
        StreamingDataset(remote=url, local=str(tmp_path / "cache"), storage_options=options)
    assert FlakyFileSystem.calls[("cat_file", f"{datasets['bucket']}/zstd/index.json")] == 1


@pytest.mark.parametrize("compression", ["zstd", None])
@pytest.mark.parametrize("algo", ["sha1", "xxh64"])
def test_corrupted_object_fails_hash_validation(s3, datasets, tmp_path, compression, algo):
    """An object whose bytes changed (same size) fails validate_hash with an error naming the URL
    and the algorithm; it is not left in the cache, under its final name or any other."""
    bucket = s3.new_bucket("corrupt")
    url = f"s3://{bucket}/ds"
    write_table(make_table(ROWS, seed=5), url, compression=compression, size_limit=SIZE_LIMIT, hashes=HASHES,
                storage_options=s3.storage_options)
    cache = tmp_path / "cache"
    ds = StreamingDataset(remote=url, local=str(cache), storage_options=s3.storage_options, validate_hash=algo)
    name = _shard_names(ds)[2]
    client = s3.client()
    data = bytearray(client.get_object(Bucket=bucket, Key=f"ds/{name}")["Body"].read())
    data[len(data) // 2] ^= 0xFF
    client.put_object(Bucket=bucket, Key=f"ds/{name}", Body=bytes(data))

    first = int(ds.sample_offset_per_shard[2])
    ds[first - 1]  # the shard before is fine
    with pytest.raises(MDSChecksumError, match=rf"{url}/{name}: {algo} checksum mismatch .*discarded, not cached"):
        ds[first]
    _no_leftovers(cache, name)
    # Asking again downloads again and fails again (nothing bad was cached).
    with pytest.raises(MDSChecksumError):
        ds[first]


def test_validate_hash_needs_a_recorded_hash(s3, datasets, tmp_path):
    ds = StreamingDataset(remote=f"s3://{datasets['bucket']}/zstd", local=str(tmp_path / "cache"),
                          storage_options=s3.storage_options, validate_hash="md5")
    with pytest.raises(MDSChecksumError, match=r"cannot verify with 'md5': the index has no md5 hash for this file; it has sha1, xxh64"):
        ds[0]


def test_truncated_or_missing_object(s3, tmp_path):
    bucket = s3.new_bucket("truncated")
    url = f"s3://{bucket}/ds"
    write_table(make_table(ROWS), url, size_limit=SIZE_LIMIT, storage_options=s3.storage_options)
    ds = StreamingDataset(remote=url, local=str(tmp_path / "cache"), storage_options=s3.storage_options)
    names = _shard_names(ds)
    client = s3.client()
    body = client.get_object(Bucket=bucket, Key=f"ds/{names[0]}")["Body"].read()
    client.put_object(Bucket=bucket, Key=f"ds/{names[0]}", Body=body[:-10])
    client.delete_object(Bucket=bucket, Key=f"ds/{names[1]}")
    with pytest.raises(MDSFormatError, match=rf"{url}/{names[0]}: downloaded {len(body) - 10} bytes, index.json says "
                                             rf"{len(body)}"):
        ds[0]
    _no_leftovers(tmp_path / "cache", names[0])
    with pytest.raises(FileNotFoundError, match=rf"{url}/{names[1]} does not exist"):
        ds[int(ds.sample_offset_per_shard[1])]


def test_missing_dataset(s3, tmp_path):
    bucket = s3.new_bucket("empty")
    start = time.monotonic()
    with pytest.raises(FileNotFoundError, match=rf"s3://{bucket}/nothing/index.json does not exist.*check remote and split"):
        StreamingDataset(remote=f"s3://{bucket}/nothing", local=str(tmp_path), storage_options=s3.storage_options)
    assert time.monotonic() - start < 5  # not retried


def test_silent_server_times_out(tmp_path):
    """A server that accepts connections and never answers: TimeoutError after download_retry
    attempts of download_timeout seconds each, not a hang."""
    server = SilentServer()
    try:
        start = time.monotonic()
        with pytest.raises(TimeoutError, match=r"reading s3://bucket/ds/index.json failed after 2 attempt\(s\).*timed "
                                               r"out after 1 s.*raise download_timeout"):
            StreamingDataset(remote="s3://bucket/ds", local=str(tmp_path), storage_options=storage_options(server.endpoint),
                             download_timeout=1, download_retry=2)
        elapsed = time.monotonic() - start
    finally:
        server.close()
    assert 2 <= elapsed < 6, elapsed


def test_server_stops_answering_mid_epoch(s3, datasets, tmp_path):
    """The server answers (index.json, first shards), then stops: the DataLoader (2 workers)
    raises a TimeoutError within download_timeout x download_retry instead of hanging."""
    proxy = Proxy(s3.endpoint)
    try:
        ds = StreamingDataset(remote=f"s3://{datasets['bucket']}/zstd", local=str(tmp_path / "cache"),
                              storage_options=storage_options(proxy.endpoint), download_timeout=1, download_retry=2,
                              batch_size=16, predownload=16)
        ds[0]  # shard 0 is cached
        proxy.silent.set()
        start = time.monotonic()
        with pytest.raises(TimeoutError, match=r"downloading s3://.*/shard\.\d+\.mds\.zstd failed after 2 attempt\(s\)"):
            for _ in StreamingDataLoader(ds, batch_size=16, num_workers=2):
                pass
        elapsed = time.monotonic() - start
    finally:
        proxy.close()
    assert elapsed < 15, elapsed


def test_full_disk(s3, datasets, tmp_path, monkeypatch):
    """ENOSPC while writing a download: a clear error at once (not retried), naming the shard,
    the cache directory and what to do; no partial file is left."""
    FlakyFileSystem.calls.clear()
    monkeypatch.setattr(storage, "open", full_disk_open(budget=100), raising=False)
    cache = tmp_path / "cache"
    ds = StreamingDataset(remote=f"flaky://{datasets['bucket']}/zstd", local=str(cache),
                          storage_options={"target_options": s3.storage_options}, download_retry=3)
    name = _shard_names(ds)[0]
    with pytest.raises(OSError, match=rf"no space left on device while caching shard shard.00000.mds of "
                                      rf"flaky://.* in {cache}.*free disk space or set a smaller cache_limit") as info:
        ds[0]
    assert info.value.errno == errno.ENOSPC
    assert sum(n for (method, path), n in FlakyFileSystem.calls.items() if method == "open") == 1
    _no_leftovers(cache, name)

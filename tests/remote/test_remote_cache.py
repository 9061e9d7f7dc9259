"""The shared cache: eviction never removes a shard another process has open and never touches a
local-only dataset; two training processes on one cache directory at once both get correct
data; a rewritten remote dataset is not read from stale files; what a dead process left behind
(temporary files, a download reservation) is cleaned up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

import mds_loader.stream as stream_module
from mds_loader import Stream, StreamingDataLoader, StreamingDataset, write_table
from remote_data import HASHES, SIZE_LIMIT, dataset_bytes, fingerprint, make_table, run_epochs, tree
from support import ROOT

ROWS = 5000
KWARGS = dict(batch_size=25, shuffle=True, shuffle_seed=11, shuffle_block_size=600)


@pytest.fixture(scope="module")
def data(s3, tmp_path_factory):
    bucket = s3.new_bucket("cache")
    local = tmp_path_factory.mktemp("cache") / "local"
    table = make_table(ROWS, seed=2)
    write_table(table, local, size_limit=SIZE_LIMIT, hashes=HASHES)
    url = f"s3://{bucket}/ds"
    write_table(table, url, size_limit=SIZE_LIMIT, hashes=HASHES, storage_options=s3.storage_options)
    return {"url": url, "local": local, "bytes": dataset_bytes(local)}


def _spawn(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, *args], cwd=str(ROOT), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parent), **(env or {})})


def _result(proc: subprocess.Popen, timeout: float = 600) -> object:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-4000:]
    return json.loads(out.strip().splitlines()[-1])


HOLDER = """
import json, sys
from mds_loader import StreamingDataset
url, local, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
ds = StreamingDataset(remote=url, local=local, storage_options=options, batch_size=1)
it = iter(ds)
first = next(it)          # shard 0 is now open in this process
print("ready", flush=True)
sys.stdin.readline()      # hold it until told
print(json.dumps({"first": int(first["id"]), "more": [int(next(it)["id"]) for _ in range(3)]}))
"""


def test_eviction_spares_a_shard_open_in_another_process(s3, data, tmp_path):
    """Process A has shard 0 open; process B (this one) streams the whole dataset through the
    same cache with a limit of ~1/3 of it, in order, so shard 0 is the least recently used one.
    B evicts older shards but never shard 0, which A then reads normally."""
    cache = tmp_path / "cache"
    holder = _spawn(HOLDER, data["url"], str(cache), json.dumps(s3.storage_options))
    try:
        assert holder.stdout.readline().strip() == "ready", holder.stderr.read()[-3000:]
        ds = StreamingDataset(remote=data["url"], local=str(cache), storage_options=s3.storage_options,
                              cache_limit=data["bytes"] // 3, batch_size=25)
        shards = ds.streams[0].index.shards
        raw = [cache / s.raw_data.basename for s in shards]
        seen = []
        for sample in ds:  # shuffle off: shards in order
            seen.append(int(sample["id"]))
            assert raw[0].exists()
        assert seen == list(range(ROWS))
        assert ds._cache.stats["evictions"] > 0
        assert not raw[1].exists() and not raw[2].exists()  # evicted: LRU and nobody had them open
        assert raw[0].exists()
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert _result(holder) == {"first": 0, "more": [1, 2, 3]}
    finally:
        holder.kill()


def test_local_only_stream_is_never_evicted(s3, data, tmp_path):
    """A local-only stream next to a cached one, with a cache_limit far below the total: the
    cached stream is evicted from, the local dataset keeps every file."""
    local_copy = tmp_path / "local"
    write_table(make_table(ROWS, seed=9), local_copy, size_limit=SIZE_LIMIT, hashes=HASHES)
    before = tree(local_copy)
    streams = [Stream(local=str(local_copy)),
               Stream(remote=data["url"], local=str(tmp_path / "cache"), storage_options=s3.storage_options)]
    ds = StreamingDataset(streams=streams, cache_limit=data["bytes"] // 3, **KWARGS)
    ids = sorted(int(i) for batch in StreamingDataLoader(ds, batch_size=25, num_workers=2) for i in batch["id"])
    assert ids == sorted(list(range(ROWS)) * 2)
    after = tree(local_copy)
    assert {k: after.get(k) for k in before} == before  # decompressed .mds files were added, nothing removed
    assert ds._cache.usage() <= data["bytes"] // 3


TRAINER = """
import json, sys
from mds_loader import StreamingDataLoader, StreamingDataset
from remote_data import fingerprint, run_epochs
url, local, options, limit, kwargs = sys.argv[1], sys.argv[2] or None, json.loads(sys.argv[3]), int(sys.argv[4]), json.loads(sys.argv[5])
ds = StreamingDataset(remote=url, local=local, storage_options=options, validate_hash="sha1", cache_limit=limit, **kwargs)
epochs = run_epochs(StreamingDataLoader(ds, batch_size=kwargs["batch_size"], num_workers=2), 2)
print(json.dumps({"fingerprint": fingerprint(epochs), "batches": [len(e) for e in epochs], "local": ds.streams[0].local_dir}))
"""


@pytest.mark.parametrize("local", ["given", "default"])
def test_two_jobs_share_one_cache(s3, data, tmp_path, short_tmpdir, local):
    """Two training processes (2 DataLoader workers each) on the same remote and cache directory
    at the same time, with a cache_limit of half the dataset: both get exactly the local
    dataset's batches. With local omitted both use the default per-remote cache directory."""
    expected = run_epochs(StreamingDataLoader(StreamingDataset(local=str(data["local"]), **KWARGS), batch_size=25,
                                              num_workers=2), 2)
    cache = str(tmp_path / "cache") if local == "given" else ""
    env = {"TMPDIR": str(short_tmpdir)}
    args = (data["url"], cache, json.dumps(s3.storage_options), str(data["bytes"] // 2), json.dumps(KWARGS))
    jobs = [_spawn(TRAINER, *args, env=env) for _ in range(2)]
    try:
        results = [_result(job) for job in jobs]
    finally:
        for job in jobs:
            job.kill()
    for result in results:
        assert result["fingerprint"] == fingerprint(expected)
        assert result["batches"] == [len(e) for e in expected]
    if local == "default":
        assert results[0]["local"] == results[1]["local"]
        assert results[0]["local"].startswith(str(short_tmpdir / "mds-loader" / "cache"))


def test_rewritten_dataset_is_not_read_from_stale_files(s3, tmp_path, monkeypatch):
    """The same shard names with new content: cached files whose index entries changed are
    dropped when the new index.json is fetched."""
    monkeypatch.setattr(stream_module, "INDEX_REUSE_SECONDS", 0.0)
    url = f"s3://{s3.new_bucket('rewrite')}/ds"
    cache = str(tmp_path / "cache")
    write_table(make_table(500, seed=1), url, size_limit=SIZE_LIMIT, hashes=HASHES, storage_options=s3.storage_options)
    old = StreamingDataset(remote=url, local=cache, storage_options=s3.storage_options)
    assert [old[i]["score"] for i in range(500)] == make_table(500, seed=1).column("score").to_pylist()
    new_table = make_table(500, seed=2)
    write_table(new_table, url, size_limit=SIZE_LIMIT, hashes=HASHES, exist_ok=True, storage_options=s3.storage_options)
    new = StreamingDataset(remote=url, local=cache, storage_options=s3.storage_options)
    assert [new[i]["score"] for i in range(500)] == new_table.column("score").to_pylist()


def test_leftovers_of_a_dead_process_are_cleaned(s3, data, tmp_path):
    """A dead downloader's temporary files and its reservation (in the shard's lock file, which
    nobody holds any more) neither stay in the cache nor count against cache_limit."""
    cache = tmp_path / "cache"
    ds = StreamingDataset(remote=data["url"], local=str(cache), storage_options=s3.storage_options,
                          cache_limit=data["bytes"] // 3)
    shards = ds.streams[0].index.shards
    name = (shards[0].zip_data or shards[0].raw_data).basename
    junk = [cache / f".{name}.x1y2z3.part", cache / f".{name}.download", cache / f".{shards[0].raw_data.basename}.abc.tmp"]
    for path in junk:
        path.write_bytes(b"partial")
    lock = Path(ds._cache._lock_path(5))
    lock.parent.mkdir(exist_ok=True)
    lock.write_text(str(10 * data["bytes"]))  # a reservation far above the limit
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # honouring it would warn "cache_limit is exceeded"
        ds[0]
    assert not any(path.exists() for path in junk)
    assert lock.stat().st_size == 0  # the stale reservation was dropped


KILLED = """
import json, sys
import remote_data  # registers flaky://
from mds_loader import StreamingDataset
ds = StreamingDataset(remote=sys.argv[1], local=sys.argv[2], storage_options=json.loads(sys.argv[3]))
print("started", flush=True)
ds[0]  # a download that holds half way, and is killed there
"""


def test_a_killed_download_leaves_no_shard_that_looks_complete(s3, data, tmp_path):
    """SIGKILL in the middle of a download: the partial data is only in a temporary file, never
    under the shard's name; the next reader downloads the shard again and removes the debris."""
    cache = tmp_path / "cache"
    held = tmp_path / "held"  # created by the child once it has written 2 KiB of the shard; it then waits
    url = "flaky://" + data["url"].removeprefix("s3://")
    proc = _spawn(KILLED, url, str(cache), json.dumps({"target_options": s3.storage_options, "hold": str(held)}))
    try:
        assert proc.stdout.readline().strip() == "started", proc.stderr.read()[-3000:]
        ds = StreamingDataset(remote=url, local=str(cache), storage_options={"target_options": s3.storage_options})
        name = (ds.streams[0].index.shards[0].zip_data or ds.streams[0].index.shards[0].raw_data).basename
        deadline = time.monotonic() + 600  # a generous bound on reaching the hold, not a pace
        while not held.exists():
            assert time.monotonic() < deadline and proc.poll() is None, proc.poll()
            time.sleep(0.05)
        assert [p for p in cache.glob(f".{name}.*") if p.stat().st_size > 1024]  # some data written
    finally:
        proc.kill()
        proc.wait()
    assert not (cache / name).exists() and not (cache / ds.streams[0].index.shards[0].raw_data.basename).exists()
    assert list(cache.glob(f".{name}.*"))  # the debris of the dead process
    assert int(ds[0]["id"]) == 0
    assert not list(cache.glob(f".{name}.*"))

"""The Python fallback's remote storage without Spark, against a real S3-compatible server (moto on
127.0.0.1): the storage options of the data source options, open_store's errors, every
RemoteStore operation the source uses, and the write protocol (tasks, commit, abort) and the reader called directly,
as tests/fallback/test_fallback_units.py does for local paths."""

from __future__ import annotations

import json
import pickle

import pyarrow as pa
import pytest
from pyspark.sql.types import ArrayType, IntegerType, LongType, StringType, StructField, StructType

from mds_loader.errors import MDSChecksumError, MDSConfigError, MDSFormatError, MDSPathError
from mds_loader.format import ShardReader, parse_index, write_table
from mds_loader.format.write_jobs import job_marker
from spark_mds.fallback import writer as writer_mod
from spark_mds.fallback.layout import spark_arrow_schema
from spark_mds.fallback.options import ReadOptions, parse_write_options, parse_storage_options
from spark_mds.fallback.reader import MdsReader, infer_schema
from mds_loader.storage import LocalStorage, RemoteStore
from spark_mds.fallback.storage import open_store
from spark_mds.fallback.writer import ConcurrentWriteError, MdsArrowWriter, plan_write

SCHEMA = StructType([StructField("id", LongType(), False), StructField("text", StringType()),
                     StructField("tokens", ArrayType(IntegerType(), False))])  # fmt: skip


@pytest.fixture
def url(s3):
    return f"s3://{s3.new_bucket('store')}/data/ds"


def options_of(s3, **more: str) -> dict[str, str]:
    """Data source options: the path's storage options as JSON, plus ``more``."""
    return {"storage_options": json.dumps(s3.storage_options), **more}


def names(s3, url: str) -> set[str]:
    """The relative names of the objects under ``url``."""
    bucket, _, prefix = url[len("s3://"):].partition("/")
    contents = s3.client().list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", [])
    return {o["Key"][len(prefix) + 1:] for o in contents}


def referenced(store: RemoteStore) -> set[str]:
    index = json.loads(store.read_bytes("index.json"))
    return {"index.json"} | {(s["zip_data"] or s["raw_data"])["basename"] for s in index["shards"]}


# ---------------------------------------------------------------------------- options


def test_storage_options_from_json_and_prefixed_options():
    opts = {
        "path": "s3://b/x",
        "storage_options": '{"key": "K", "client_kwargs": {"region_name": "eu-west-1"}, "default_block_size": 1024}',
        "storage.secret": "12345",  # stays a string
        "storage.anon": "False",
        "storage.client_kwargs.endpoint_url": "http://h:9000",
        "compression": "none",
    }
    assert parse_storage_options(opts) == {
        "key": "K", "secret": "12345", "anon": False, "default_block_size": 1024,
        "client_kwargs": {"region_name": "eu-west-1", "endpoint_url": "http://h:9000"},
    }  # fmt: skip
    assert parse_storage_options({"STORAGE.Key": "k"}) == {"Key": "k"}  # the name as Spark hands it over
    assert parse_write_options(opts).storage_options == ReadOptions.parse(opts).storage_options == parse_storage_options(opts)
    assert parse_write_options({}).storage_options == {} and "secret" not in repr(parse_write_options(opts))


@pytest.mark.parametrize("opts, message", [
    ({"storage_options": "{key: 1}"}, "option storage_options is not valid JSON"),
    ({"storage_options": '["a"]'}, "option storage_options must be a JSON object of fsspec options, not a list"),
    ({"storage.": "x"}, "option storage.: empty name"),
    ({"storage.a..b": "x"}, "option storage.a..b: empty name"),
    ({"storage.key": "x", "storage.key.inner": "y"}, "storage.key is already set to a value"),
])  # fmt: skip
def test_bad_storage_options(opts, message):
    with pytest.raises(MDSConfigError, match=message.replace(".", r"\.")):
        ReadOptions.parse(opts)


# ---------------------------------------------------------------------------- open_store


def test_open_store_chooses_and_refuses():
    assert isinstance(open_store("/tmp/x", {"key": "ignored"}), LocalStorage)
    assert isinstance(open_store("memory://bucket/ds"), RemoteStore)
    with pytest.raises(MDSConfigError, match=r"cannot open 'dbfs:/mnt/ds': dbfs:/ paths .* \(/dbfs/\.\.\. or .* /Volumes/"):
        open_store("dbfs:/mnt/ds")
    with pytest.raises(MDSConfigError, match=r"cannot open 'wat:/x': give a local path or a URL of the form wat://"):
        open_store("wat:/x")
    with pytest.raises(MDSConfigError, match=r"cannot open 'nosuchfs://b/ds': fsspec knows no file system for nosuchfs://"):
        open_store("nosuchfs://b/ds")


def test_open_store_names_the_missing_package(monkeypatch):
    import fsspec

    def missing(protocol):
        raise ImportError("Install s3fs to access S3")

    monkeypatch.setattr(fsspec, "get_filesystem_class", missing)
    with pytest.raises(MDSConfigError, match=r"cannot open 's3://b/ds': fsspec needs another package for s3:// "
                                             r"\(Install s3fs to access S3\); pip install s3fs in the Python environment "
                                             r"of the driver and of every executor"):  # fmt: skip
        open_store("s3://b/ds")


# ---------------------------------------------------------------------------- the store


def test_remote_store_operations(s3, url):
    store = open_store(url + "/", s3.storage_options)
    assert isinstance(store, RemoteStore) and store.location == url and repr(store) == f"RemoteStore({url!r})"
    assert store.local_file("index.json") is None
    store.ensure_dir()
    assert not store.exists("index.json")
    with pytest.raises(FileNotFoundError, match=rf"{url}/index.json does not exist"):
        store.read_bytes("index.json")
    assert store.list_names("shard.") == []
    store.write_bytes("shard.a.00000.mds", b"one")
    store.write_bytes("shard.a.00001.mds", memoryview(b"two"))
    store.write_bytes("shard.b.00000.mds", b"three")
    store.write_bytes("sub/shard.a.00002.mds", b"nested")  # not directly in the directory
    assert store.read_bytes("shard.a.00001.mds") == b"two" and store.exists("shard.b.00000.mds")
    assert store.list_names("shard.a.") == ["shard.a.00000.mds", "shard.a.00001.mds"]
    store.delete(["shard.a.00000.mds", "shard.a.00001.mds", "shard.never.mds"])  # missing files are fine
    assert store.list_names("shard.") == ["shard.b.00000.mds"]
    with pytest.raises(MDSPathError, match=r"basename '\.\./escape' has an empty, '\.' or '\.\.' component"):
        store.read_bytes("../escape")
    again = pickle.loads(pickle.dumps(store))  # how a store travels to the tasks
    assert again.read_bytes("shard.b.00000.mds") == b"three"


def test_publish_index_if_unchanged(s3, url):
    store = open_store(url, s3.storage_options)
    calls = []
    assert store.publish_index_if_unchanged(b"v1", "job1", None, lambda: calls.append(1))
    assert calls == [1] and store.read_bytes("index.json") == b"v1"
    assert not store.publish_index_if_unchanged(b"v2", "job2", None)  # an index appeared
    assert not store.publish_index_if_unchanged(b"v2", "job2", b"v0", lambda: calls.append(2))  # it changed
    assert calls == [1] and store.read_bytes("index.json") == b"v1"
    assert store.publish_index_if_unchanged(b"v2", "job2", b"v1")
    store.publish_index(b"v3", "job3")
    assert store.read_bytes("index.json") == b"v3" and store.list_names(".index") == []  # no temporary object


def test_shard_reader_from_bytes_reads_like_the_file(tmp_path):
    table = pa.table({"id": list(range(50)), "text": [f"t{i}" if i % 3 else None for i in range(50)]})
    write_table(table, tmp_path / "ds", compression=None)
    index = parse_index(json.loads((tmp_path / "ds" / "index.json").read_text()))
    entry = index.shards[0]
    path = tmp_path / "ds" / entry.raw_data.basename
    with ShardReader(path, entry) as a, ShardReader.from_bytes(path.read_bytes(), entry, source="mem://x") as b:
        assert a.read_batch(list(range(50))).equals(b.read_batch(list(range(50))))
        assert [a.get_sample(i) for i in (0, 7, 49)] == [b.get_sample(i) for i in (0, 7, 49)]
        assert b.path == "mem://x"
    with pytest.raises(MDSFormatError, match="mem://y: 3 bytes is too short for a shard"):
        ShardReader.from_bytes(b"abc", entry, source="mem://y")


# ---------------------------------------------------------------------------- write protocol and reads


def _batch(ids) -> pa.RecordBatch:
    data = {"id": list(ids), "text": [None if i % 5 == 0 else f"t{i}" * 10 for i in ids], "tokens": [[i, i + 1] for i in ids]}
    return pa.RecordBatch.from_pydict(data, schema=spark_arrow_schema(SCHEMA))


def _task(writer, partition, attempt, batches, monkeypatch):
    monkeypatch.setattr(writer_mod, "_task_ids", lambda: (partition, attempt))
    return pickle.loads(pickle.dumps(writer)).write(iter(batches))  # the writer goes to the tasks pickled


def _plan(url, options, overwrite=False) -> MdsArrowWriter:
    return MdsArrowWriter(plan_write({"path": url, **options}, SCHEMA, overwrite, url))


def _read_ids(url, options, **read) -> list[int]:
    """Every id of the dataset, read by the fallback's reader (its partitions read in turn)."""
    opts = {"path": url, **options, **read}
    planned = MdsReader(url, infer_schema(url, opts), opts, 2)
    reader = pickle.loads(pickle.dumps(planned))  # as the read tasks get it
    return sorted(i for p in planned.partitions() for b in reader.read(p) for i in b.column(0).to_pylist())


def test_job_commit_read_and_overwrite(s3, url, monkeypatch):
    options = options_of(s3, size_limit="1kb", hashes="sha1")
    w = _plan(url, options)
    w.commit([_task(w, 0, 3, [_batch(range(0, 40))], monkeypatch), _task(w, 1, 4, [_batch(range(40, 70))], monkeypatch)])
    store = w.plan.store()
    assert names(s3, url) == referenced(store) and len(names(s3, url)) > 4
    assert _read_ids(url, options) == list(range(70))
    assert _read_ids(url, options, validate_hash="sha1") == list(range(70))
    w2 = _plan(url, options, overwrite=True)
    w2.commit([_task(w2, 0, 5, [_batch(range(100, 110))], monkeypatch)])
    assert names(s3, url) == referenced(store) and _read_ids(url, options) == list(range(100, 110))
    assert all(w2.plan.job_id in n for n in names(s3, url) - {"index.json"})  # the replaced shards are gone


def test_validate_hash_catches_a_corrupt_object(s3, url, monkeypatch):
    options = options_of(s3, hashes="sha1", compression="none")
    w = _plan(url, options)
    w.commit([_task(w, 0, 0, [_batch(range(10))], monkeypatch)])
    shard = next(n for n in names(s3, url) if n.startswith("shard."))
    store = w.plan.store()
    data = bytearray(store.read_bytes(shard))
    data[-1] ^= 0xFF
    store.write_bytes(shard, bytes(data))
    with pytest.raises(MDSChecksumError, match=f"{url}/{shard}: sha1 checksum mismatch"):
        _read_ids(url, options, validate_hash="sha1")


def test_failed_task_and_abort_leave_no_objects(s3, url, monkeypatch):
    options = options_of(s3, size_limit="1kb")
    w = _plan(url, options)
    w.commit([_task(w, 0, 1, [_batch(range(10))], monkeypatch)])
    before = names(s3, url)

    def failing():
        yield _batch(range(0, 40))
        raise RuntimeError("injected")

    w2 = _plan(url, options)
    with pytest.raises(RuntimeError, match="injected"):
        _task(w2, 1, 7, failing(), monkeypatch)
    assert names(s3, url) == before | {job_marker(w2.plan.job_id)}  # the failed task removed its uploads
    msg = _task(w2, 0, 8, [_batch(range(100, 140))], monkeypatch)
    assert len(names(s3, url)) > len(before)
    w2.abort([msg, None])
    assert names(s3, url) == before


def test_concurrent_change_fails_the_commit_and_removes_the_job(s3, url, monkeypatch):
    options = options_of(s3)
    w = _plan(url, options)
    w.commit([_task(w, 0, 0, [_batch(range(3))], monkeypatch)])
    slow = _plan(url, options)
    msg = _task(slow, 0, 1, [_batch(range(3, 6))], monkeypatch)
    other = _plan(url, options)
    other.commit([_task(other, 0, 2, [_batch(range(6, 9))], monkeypatch)])  # another job commits meanwhile
    published = names(s3, url)
    assert any(slow.plan.job_id in n for n in published)
    with pytest.raises(ConcurrentWriteError, match="was changed by another writer while this job ran"):
        slow.commit([msg])
    assert names(s3, url) == {n for n in published if slow.plan.job_id not in n}
    assert _read_ids(url, options) == list(range(3)) + list(range(6, 9))

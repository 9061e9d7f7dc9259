"""The fallback's options, type mapping and commit protocol, without Spark: the writer's tasks and
commit are called directly (outside a task, a writer is partition 0, attempt 0)."""

from __future__ import annotations

import json
import os
import pickle

import pyarrow as pa
import pytest
from pyspark.sql.types import (
    ArrayType, BinaryType, BooleanType, ByteType, CalendarIntervalType, DateType, DayTimeIntervalType, DecimalType,
    DoubleType, FloatType, IntegerType, LongType, MapType, NullType, ShortType, StringType, StructField, StructType,
    TimestampNTZType, TimestampType, VariantType, YearMonthIntervalType,
)  # fmt: skip

from support import files, read_index, referenced
from mds_loader.errors import MDSConfigError, MDSEncodingError, MDSSchemaError
from mds_loader.format import read_table
from mds_loader.format.write_jobs import job_marker
from mds_loader.storage import is_local_path
from spark_mds.fallback import writer as writer_mod
from spark_mds.fallback.layout import new_write_layout, spark_arrow_schema
from spark_mds.fallback.options import ReadOptions, parse_size, parse_write_options, resolve_encodings
from spark_mds.fallback.reader import plan_partitions
from spark_mds.fallback.storage import open_store
from spark_mds.fallback.writer import ConcurrentWriteError, MdsCommitMessage, MdsArrowWriter, plan_write
from mds_loader.format import WriteOptions, parse_index

# ---------------------------------------------------------------------------- options


def test_write_option_defaults_match_the_jvm_source():
    o = parse_write_options({"path": "/x"})
    assert (o.compression, o.hashes, o.size_limit, o.nulls, o.encodings) == ("zstd", (), 1 << 26, "mask", {})


@pytest.mark.parametrize("text, expected", [
    ("1024", 1024), ("64mb", 64 << 20), ("64MB", 64 << 20), ("1.5kb", 1536), ("100b", 100), (" 2 kb ", 2048),
    ("0", None), ("none", None), ("null", None), ("", None), ("1e3", 1000), ("4095mb", 4095 << 20),
])  # fmt: skip
def test_size_limit_parses_like_the_jvm(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["4gb", "abc", "-5", "1..5kb", "12 parsecs"])
def test_bad_size_limits_name_the_option(text):
    with pytest.raises(MDSConfigError, match=r"option size_limit='.*' is invalid"):
        parse_write_options({"size_limit": text})


def test_compression_hashes_nulls():
    assert parse_write_options({"compression": "none"}).compression is None
    assert parse_write_options({"compression": " zstd:7 "}).compression == "zstd:7"
    assert parse_write_options({"compression": "br"}).compression == "br"  # Python writes Brotli (the JVM cannot)
    for bad in ("zstd:99", "lzma", "snappy:3"):
        with pytest.raises(MDSConfigError, match="invalid option compression"):
            parse_write_options({"compression": bad})
    assert parse_write_options({"hashes": "xxh64, sha1,,md5,sha1"}).hashes == ("md5", "sha1", "xxh64")
    with pytest.raises(MDSConfigError, match="option hashes: unknown hash 'crc99'"):
        parse_write_options({"hashes": "sha1,crc99"})
    assert parse_write_options({"nulls": " ERROR "}).nulls == "error"
    with pytest.raises(MDSConfigError, match="option nulls='maybe' is invalid; allowed values: mask"):
        parse_write_options({"nulls": "maybe"})


def test_read_options():
    assert ReadOptions.parse({}) == ReadOptions(128 << 20, None)
    assert ReadOptions.parse({"max_partition_bytes": "8gb", "validate_hash": "sha1"}) == ReadOptions(8 << 30, "sha1")
    with pytest.raises(MDSConfigError, match="max_partition_bytes='0' must be a positive size"):
        ReadOptions.parse({"max_partition_bytes": "0"})
    with pytest.raises(MDSConfigError, match="validate_hash: unknown hash"):
        ReadOptions.parse({"validate_hash": "nope"})


def test_encoding_options_match_columns_ignoring_case():
    # Spark hands Python sources lower-cased option keys
    assert resolve_encodings({"myimage": "jpeg", "id": "str_int"}, ["id", "MyImage"]) == {"MyImage": "jpeg", "id": "str_int"}
    with pytest.raises(MDSConfigError, match="differ only in case"):
        resolve_encodings({"b": "int8"}, ["B", "b", "c"])
    with pytest.raises(MDSConfigError, match="option encoding.nope names no column; columns are id, x"):
        resolve_encodings({"nope": "int8"}, ["id", "x"])


def test_paths():
    assert is_local_path("/tmp/x") and is_local_path("file:/tmp/x") and is_local_path("file:///tmp/x") and is_local_path("rel/x")
    assert not is_local_path("s3://b/x") and not is_local_path("dbfs:/x")
    assert open_store("file:/tmp/x").location == "/tmp/x" == open_store("file:///tmp/x").location
    try:
        import s3fs  # noqa: F401 - a dev extra, absent from the venvs of tools/make_spark_venv.sh
    except ImportError:
        pass
    else:
        assert open_store("s3a://bucket/ds").location == "s3a://bucket/ds"  # remote: through fsspec (tests/remote)
    with pytest.raises(MDSConfigError, match="dbfs:/ paths are reached through Spark's Hadoop file systems"):
        open_store("dbfs:/x")


# ---------------------------------------------------------------------------- type mapping


def _enc(t, **opts):
    return new_write_layout(StructType([StructField("c", t)]), parse_write_options(opts)).encodings["c"]


@pytest.mark.parametrize("t, enc", [
    (ByteType(), "int8"), (ShortType(), "int16"), (IntegerType(), "int32"), (LongType(), "int64"),
    (FloatType(), "float32"), (DoubleType(), "float64"), (BooleanType(), "uint8"), (StringType(), "str"),
    (BinaryType(), "bytes"), (DecimalType(10, 2), "str_decimal"), (DateType(), "int32"), (TimestampType(), "int64"),
    (TimestampNTZType(), "int64"), (DayTimeIntervalType(), "int64"), (ArrayType(IntegerType()), "ndarray:int32"),
    (ArrayType(BooleanType()), "ndarray:uint8"), (ArrayType(ArrayType(DoubleType())), "ndarray:float64"),
    (ArrayType(StringType()), "json"), (ArrayType(BinaryType()), "json"), (ArrayType(DecimalType(5, 1)), "json"),
    (ArrayType(DateType()), "json"), (MapType(StringType(), LongType()), "json"),
    (StructType([StructField("a", IntegerType())]), "json"),
])  # fmt: skip
def test_default_encodings_are_the_format_table(t, enc):
    assert _enc(t) == enc


def test_overrides_are_checked_with_the_jvm_messages():
    assert _enc(IntegerType(), **{"encoding.c": "uint8"}) == "uint8"
    assert _enc(ArrayType(FloatType()), **{"encoding.c": "ndarray:float32:2,3"}) == "ndarray:float32:2,3"
    assert _enc(BinaryType(), **{"encoding.c": "jpeg"}) == "jpeg"
    with pytest.raises(MDSSchemaError, match=r"option encoding.c='jpeg' is not allowed for column 'c' of type INT; allowed: int8"):
        _enc(IntegerType(), **{"encoding.c": "jpeg"})
    with pytest.raises(MDSSchemaError, match=r"give the dtype"):
        _enc(ArrayType(FloatType()), **{"encoding.c": "ndarray"})
    with pytest.raises(MDSSchemaError, match=r"a static shape of 2 dimensions needs a flat array or an array nested 2 deep"):
        _enc(ArrayType(ArrayType(ArrayType(FloatType()))), **{"encoding.c": "ndarray:float32:2,3"})
    with pytest.raises(MDSEncodingError, match=r"option encoding.c='bogus'"):
        _enc(StringType(), **{"encoding.c": "bogus"})


@pytest.mark.parametrize("t, sql", [
    (NullType(), "VOID"), (CalendarIntervalType(), "INTERVAL"), (VariantType(), "VARIANT"),
    (ArrayType(NullType()), "ARRAY<VOID>"),
])  # fmt: skip
def test_unstorable_types_fail_naming_the_column(t, sql):
    with pytest.raises(MDSSchemaError, match=rf"column 'c' has type {sql}.*which MDS cannot store"):
        _enc(t)


def test_year_month_intervals_fail_with_the_workaround():
    with pytest.raises(MDSSchemaError, match=r"cannot write year-month intervals .*extract\(year from c\) \* 12"):
        _enc(YearMonthIntervalType())


def test_reserved_and_duplicate_names():
    with pytest.raises(MDSSchemaError, match="'__nulls__' is reserved"):
        new_write_layout(StructType([StructField("__nulls__", IntegerType())]), WriteOptions())
    with pytest.raises(MDSSchemaError, match="duplicate column names a"):
        new_write_layout(StructType([StructField("a", IntegerType()), StructField("a", LongType())]), WriteOptions())


def test_null_mask_rule():
    nn = StructType([StructField("a", IntegerType(), False)])
    assert not new_write_layout(nn, WriteOptions()).null_mask
    mixed = StructType([StructField("a", IntegerType(), False), StructField("b", StringType())])
    layout = new_write_layout(mixed, WriteOptions())
    assert layout.null_mask and layout.mds_columns == {"__nulls__": "ndarray:uint8:1", "a": "int32", "b": "str"}
    assert not new_write_layout(mixed, WriteOptions(nulls="error")).null_mask


# ---------------------------------------------------------------------------- write protocol

SCHEMA = StructType([StructField("id", LongType(), False), StructField("text", StringType()),
                     StructField("tokens", ArrayType(IntegerType(), False))])  # fmt: skip


def _batch(ids, schema=SCHEMA):
    arrow = spark_arrow_schema(schema)
    data = {"id": list(ids), "text": [None if i % 5 == 0 else f"t{i}" * 10 for i in ids], "tokens": [[i, i + 1] for i in ids]}
    return pa.RecordBatch.from_pydict({f.name: data[f.name] for f in schema.fields}, schema=arrow)


def _task(writer, partition, attempt, batches, monkeypatch):
    monkeypatch.setattr(writer_mod, "_task_ids", lambda: (partition, attempt))
    # the writer goes to the tasks pickled, like in Spark
    return pickle.loads(pickle.dumps(writer)).write(iter(batches))


def _write_job(path, batches_per_partition, monkeypatch, overwrite=False, **options):
    writer = MdsArrowWriter(plan_write({"path": path, **options}, SCHEMA, overwrite, path))
    msgs = [_task(writer, p, 10 + p, b, monkeypatch) for p, b in enumerate(batches_per_partition)]
    pickle.loads(pickle.dumps(writer)).commit(msgs)
    return writer


def test_job_names_commit_and_read_back(tmp_path, monkeypatch):
    out = str(tmp_path / "ds")
    w = _write_job(out, [[_batch(range(0, 50))], [], [_batch(range(50, 80)), _batch(range(80, 100))]], monkeypatch,
                   size_limit="1kb")  # fmt: skip
    idx = read_index(out)
    names = [s["zip_data"]["basename"] for s in idx["shards"]]
    job = w.plan.job_id
    assert len(job) == 12 and all(c in "0123456789abcdef" for c in job)
    assert names[0] == f"shard.{job}.00000.10.00000.mds.zstd"
    assert all(n.startswith(f"shard.{job}.0000") for n in names) and len(names) > 3
    parts = [n.split(".")[2] for n in names]
    assert parts == sorted(parts) and "00001" not in parts  # partition order; the empty partition wrote nothing
    assert files(out) == referenced(out)
    assert idx["spark_mds"]["schema"] == json.loads(SCHEMA.json())
    assert read_table(out).column("id").to_pylist() == list(range(100))
    parse_index(idx)


def test_failed_attempt_leaves_no_orphans(tmp_path, monkeypatch):
    out = str(tmp_path / "ds")
    writer = MdsArrowWriter(plan_write({"path": out, "size_limit": "1kb"}, SCHEMA, False, out))

    def failing():
        yield _batch(range(0, 40))
        raise RuntimeError("injected")

    with pytest.raises(RuntimeError, match="injected"):
        _task(writer, 1, 7, failing(), monkeypatch)
    assert not [f for f in files(out) if ".00001.7." in f]  # the failed task removed its own files
    # a partial file that the failed attempt could not remove (killed executor) ...
    open(os.path.join(out, f"shard.{writer.plan.job_id}.00001.7.00003.mds.zstd"), "wb").write(b"partial")
    # ... and a duplicate attempt (speculation) that wrote but whose commit was not accepted
    _task(writer, 0, 9, [_batch(range(0, 10))], monkeypatch)
    msgs = [_task(writer, 0, 8, [_batch(range(0, 10))], monkeypatch), _task(writer, 1, 12, [_batch(range(10, 40))], monkeypatch)]
    writer.commit(msgs)
    assert files(out) == referenced(out)
    assert read_table(out).column("id").to_pylist() == list(range(40))


def test_abort_removes_every_file_of_the_job(tmp_path, monkeypatch):
    out = str(tmp_path / "ds")
    _write_job(out, [[_batch(range(10))]], monkeypatch)
    before = {f: open(os.path.join(out, f), "rb").read() for f in files(out)}
    writer = MdsArrowWriter(plan_write({"path": out}, SCHEMA, True, out))
    msg = _task(writer, 0, 3, [_batch(range(100, 200))], monkeypatch)
    writer.abort([msg, None])
    assert {f: open(os.path.join(out, f), "rb").read() for f in files(out)} == before


def test_append_merges_and_overwrite_replaces(tmp_path, monkeypatch):
    out = str(tmp_path / "ds")
    _write_job(out, [[_batch(range(10))]], monkeypatch)
    first = read_index(out)["shards"]
    _write_job(out, [[_batch(range(10, 20))]], monkeypatch, compression="gz")  # append: the dataset's layout wins
    idx = read_index(out)
    assert idx["shards"][: len(first)] == first and len(idx["shards"]) == len(first) + 1
    assert idx["shards"][-1]["compression"] == "gz"
    assert read_table(out).column("id").to_pylist() == list(range(20))
    _write_job(out, [[_batch(range(5))]], monkeypatch, overwrite=True)
    assert read_table(out).column("id").to_pylist() == list(range(5))
    assert files(out) == referenced(out)  # the replaced shards are gone


def test_append_keeps_unknown_index_keys_and_checks_the_schema(tmp_path, monkeypatch):
    out = str(tmp_path / "ds")
    _write_job(out, [[_batch(range(3))]], monkeypatch)
    idx = read_index(out)
    idx["x_custom"] = {"keep": 1}
    open(os.path.join(out, "index.json"), "w").write(json.dumps(idx, sort_keys=True))
    _write_job(out, [[_batch(range(3, 6))]], monkeypatch)
    assert read_index(out)["x_custom"] == {"keep": 1}
    other = StructType([StructField("id", IntegerType(), False), StructField("text", StringType()),
                        StructField("extra", StringType())])  # fmt: skip
    with pytest.raises(MDSSchemaError, match=r"cannot append to the MDS dataset at .*: the data's schema differs from the "
                                             r"dataset's \(missing columns tokens; new columns extra; different types: "
                                             r"id \(existing BIGINT, new INT\)\)"):  # fmt: skip
        plan_write({"path": out}, other, False, out)
    with pytest.raises(MDSSchemaError, match=r"option encoding.text='json' conflicts with the existing dataset"):
        plan_write({"path": out, "encoding.text": "json"}, SCHEMA, False, out)


def test_concurrent_change_fails_the_commit_and_removes_the_job(tmp_path, monkeypatch):
    out = str(tmp_path / "ds")
    _write_job(out, [[_batch(range(3))]], monkeypatch)
    writer = MdsArrowWriter(plan_write({"path": out}, SCHEMA, False, out))
    msg = _task(writer, 0, 1, [_batch(range(3, 6))], monkeypatch)
    _write_job(out, [[_batch(range(6, 9))]], monkeypatch)  # another job commits meanwhile
    job = writer.plan.job_id
    snapshot = {f: open(os.path.join(out, f), "rb").read() for f in files(out) if job not in f}
    with pytest.raises(ConcurrentWriteError, match="was changed by another writer while this job ran"):
        writer.commit([msg])
    assert {f: open(os.path.join(out, f), "rb").read() for f in files(out)} == snapshot  # the job's files are gone


def test_nulls_the_layout_cannot_store(tmp_path, monkeypatch):
    out = str(tmp_path / "ds")
    writer = MdsArrowWriter(plan_write({"path": out, "nulls": "error"}, SCHEMA, False, out))
    with pytest.raises(MDSSchemaError, match="column 'text' holds a null but option nulls=error forbids nulls"):
        _task(writer, 0, 0, [_batch(range(10))], monkeypatch)
    assert files(out) == {job_marker(writer.plan.job_id)}  # the job runs on (its marker), the task left nothing
    writer.abort([None])
    assert files(out) == set()


def test_commit_message_pickles():
    m = MdsCommitMessage(3, 17, [{"samples": 1}])
    assert pickle.loads(pickle.dumps(m)) == m


def test_read_partitions_group_small_shards():
    from mds_loader.format.index import FileInfo, ShardEntry

    def shard(n):
        return ShardEntry(["a"], ["int32"], [4], None, [], FileInfo(f"s{n}", n, {}), 1, None, None)

    mb = 1 << 20
    groups = plan_partitions([shard(mb)] * 10, 128 * mb, 2)  # 10 MiB total, 2 cores: 5 MiB groups
    assert [len(g.shards) for g in groups] == [5, 5]
    groups = plan_partitions([shard(64 * mb)] * 4, 100 * mb, 1)  # a group never exceeds the maximum
    assert [len(g.shards) for g in groups] == [1, 1, 1, 1]
    groups = plan_partitions([shard(100)] * 3, 128 * mb, 8)  # tiny: one group
    assert [len(g.shards) for g in groups] == [3]
    assert pickle.loads(pickle.dumps(groups[0])).shards == groups[0].shards


def test_decimals_are_stored_in_plain_notation(tmp_path, monkeypatch):
    from decimal import Decimal

    values = [Decimal("0.000000000000000001"), None, Decimal("0"), Decimal("-1.5E-7"), Decimal("123.45")]
    arr = pa.array(values, pa.decimal128(38, 18))
    schema = StructType([StructField("id", LongType(), False), StructField("dec", DecimalType(38, 18))])
    out = str(tmp_path / "ds")
    writer = MdsArrowWriter(plan_write({"path": out, "compression": "none"}, schema, False, out))
    batch = pa.RecordBatch.from_pydict({"id": list(range(5)), "dec": arr}, schema=spark_arrow_schema(schema))
    writer.commit([_task(writer, 0, 0, [batch], monkeypatch)])
    data = open(os.path.join(out, read_index(out)["shards"][0]["raw_data"]["basename"]), "rb").read()
    assert b"0.000000000000000001" in data and b"E-" not in data
    assert read_table(out).column("dec").to_pylist() == values


def test_save_mode_names():
    from spark_mds.save_modes import SAVE_MODES, write

    assert {SAVE_MODES[m] for m in ("error", "errorifexists", "default")} == {"errorifexists"}
    with pytest.raises(ValueError, match="unknown save mode 'upsert'"):
        write(None, "/tmp/x", mode="upsert")


def test_register_reports_a_jvm_source():
    from spark_mds.python_source import MdsDataSource, python_source_class, register_python_source

    class Exists(Exception):
        def getCondition(self):
            return "DATA_SOURCE_ALREADY_EXISTS"

    class Registry:
        def __init__(self, exc=None):
            self.exc, self.registered = exc, []

        def register(self, cls):
            if self.exc:
                raise self.exc
            self.registered.append(cls)

    class Session:
        def __init__(self, exc=None):
            self.dataSource = Registry(exc)

    s = Session()
    assert register_python_source(s, "mds_py") is True
    cls = s.dataSource.registered[0]  # spark_mds.worker_guard.source_class: a DataSource that makes MdsDataSource
    from pyspark.sql.datasource import DataSource

    assert issubclass(cls, DataSource) and cls.name() == "mds_py" and cls.parallelism == 0
    with pytest.raises(FileNotFoundError, match="index.json is missing"):  # delegates to MdsDataSource
        cls({"path": "/nonexistent/spark-mds/ds"}).schema()
    assert issubclass(python_source_class("mds_py"), MdsDataSource)
    assert register_python_source(Session(Exists())) is False
    with pytest.raises(RuntimeError, match="boom"):
        register_python_source(Session(RuntimeError("boom")))
    assert python_source_class("x", 8).parallelism == 8
    # the class made for a name pickles by value, with its settings
    from pyspark import cloudpickle

    copy = cloudpickle.loads(cloudpickle.dumps(python_source_class("mds_x", 3)))
    assert (copy.name(), copy.parallelism) == ("mds_x", 3)

"""spark_mds.dataframe_to_mds: the reference's call, written through format("mds"). The reference
reads the output, and its samples are the ones the reference's own MDSWriter gives for the same
data and columns: a DataFrame's rows, and the samples a udf_iterable yields."""

from __future__ import annotations

import json
import sys

import pytest
from pyspark import cloudpickle

from mds_testutil import run_reference
from spark_mds import dataframe_to_mds
from support import read_index, run_python

pytestmark = [pytest.mark.spark, pytest.mark.interop]

# The udf_iterable functions below run in Spark's Python workers, where this module is not importable.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

#: The samples of row ``i``, as a udf_iterable makes them (run in Spark's workers and, to write the
#: expected dataset, in the reference's virtualenv).
MAKE = '''
import numpy as np
from PIL import Image

def make(i, scale):
    return {
        "id": i, "text": f"row {i} " * (i % 3), "tokens": np.arange(1 + i % 5, dtype=np.int32) * scale,
        "emb": np.full(4, i / 8, np.float32), "meta": {"i": i, "tags": ["a", "b"][: i % 3], "x": None},
        "obj": (i, {"k": [i] * 2}), "img": Image.new("RGB", (3, 2), (i % 256, 7, 9)),
        "score": i * 0.25, "flag": i % 2, "raw": bytes([i % 256]) * (i % 4),
    }
'''
UDF_COLUMNS = {"id": "int64", "text": "str", "tokens": "ndarray:int32", "emb": "ndarray:float32:4", "meta": "json",
               "obj": "pkl", "img": "png", "score": "float32", "flag": "uint8", "raw": "bytes"}

#: In the reference's virtualenv: our dataset's samples against those of its own MDSWriter for the
#: same samples (argv: our dataset, the columns, the sample code or "" for the rows, the ids).
COMPARE = r'''
import json, sys, tempfile
import numpy as np
from streaming import MDSWriter, StreamingDataset
path, columns, code, spec = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
scope = {}
exec(code, scope)
samples = [scope["make"](i, *spec["args"]) for i in spec["ids"]]

def norm(v):
    if isinstance(v, np.ndarray):
        return ["ndarray", str(v.dtype), list(v.shape), v.tolist()]
    if isinstance(v, np.generic):
        return ["scalar", str(v.dtype), v.item()]
    if hasattr(v, "mode") and hasattr(v, "tobytes"):
        return ["image", v.mode, list(v.size), v.tobytes().hex()]
    if isinstance(v, (bytes, bytearray)):
        return ["bytes", bytes(v).hex()]
    if isinstance(v, (list, tuple)):
        return [type(v).__name__, [norm(x) for x in v]]
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items()}
    return v

def read(p):
    ds = StreamingDataset(local=p, shuffle=False, batch_size=1, allow_unsafe_types=True)
    return sorted((norm(ds[i]) for i in range(ds.num_samples)), key=lambda s: s["id"][2])

with tempfile.TemporaryDirectory() as tmp:
    with MDSWriter(out=tmp, columns=columns, compression="zstd") as w:
        for s in samples:
            w.write(s)
    expected = read(tmp)
got = read(path)
print(json.dumps({"count": len(got), "same": got == expected,
                  "first_difference": next(([a, b] for a, b in zip(got, expected) if a != b), None)}))
'''


def _udf(frame, scale):
    scope: dict = {}
    exec(MAKE, scope)
    for i in frame["id"]:
        yield scope["make"](int(i), scale)


def test_udf_iterable_samples_read_by_the_reference(spark, tmp_path, ref_python):
    """Python values of every kind (numpy arrays, JSON, pickles, PIL images, numbers, bytes), made
    by a udf_iterable in Spark's workers: the reference reads the samples its own MDSWriter writes
    for them."""
    df = spark.range(0, 300, numPartitions=3)
    out = str(tmp_path / "ds")
    result = dataframe_to_mds(df, mds_kwargs={"out": out, "columns": UDF_COLUMNS, "size_limit": 4096},
                              udf_iterable=_udf, udf_kwargs={"scale": 3})
    assert result == (out, "")
    index = read_index(out)
    assert len(index["shards"]) > 3 and "spark_mds" in index
    assert {s["compression"] for s in index["shards"]} == {"zstd"}  # the converter's default
    assert "__nulls__" not in index["shards"][0]["column_names"]
    got = run_reference(ref_python, COMPARE, out, json.dumps(UDF_COLUMNS), MAKE,
                        json.dumps({"ids": list(range(300)), "args": [3]}))
    assert got == {"count": 300, "same": True, "first_difference": None}


ROWS_MAKE = '''
import numpy as np

def make(i):
    return {"id": i, "text": f"text {i}", "tokens": np.arange(1 + i % 4, dtype=np.int32), "label": i % 3,
            "score": i / 3, "blob": bytes([i % 256, 1]), "small": i % 100, "obj": f"pickled {i}", "doc": f"doc {i}"}
'''
ROW_COLUMNS = {"id": "int64", "text": "str", "tokens": "ndarray:int32", "label": "int32", "score": "float64",
               "blob": "bytes", "small": "uint8", "obj": "pkl", "doc": "json"}


@pytest.mark.parametrize("in_python", [False, True])
def test_rows_read_by_the_reference(spark, tmp_path, ref_python, in_python):
    """A DataFrame's rows with the reference's own mds_kwargs (its type mapping: a byte column as
    uint8). Values the reference encodes in Python (pkl of any column, json of a string column)
    are encoded as it does; without them the rows go to format("mds") as they are."""
    columns = dict(ROW_COLUMNS) if in_python else {k: v for k, v in ROW_COLUMNS.items() if k not in ("obj", "doc")}
    df = spark.createDataFrame(
        [(i, f"text {i}", list(range(1 + i % 4)), i % 3, i / 3, bytearray([i % 256, 1]), i % 100, f"pickled {i}", f"doc {i}")
         for i in range(200)],
        "id long, text string, tokens array<int>, label int, score double, blob binary, small byte, obj string, "
        "doc string",
    ).repartition(2)
    out = str(tmp_path / "ds")
    dataframe_to_mds(df, merge_index=True, mds_kwargs={"out": out, "columns": columns, "hashes": ["sha1"]})
    index = read_index(out)
    assert set(index["shards"][0]["column_names"]) == set(columns)
    assert index["shards"][0]["hashes"] == ["sha1"]
    code = ROWS_MAKE if in_python else ROWS_MAKE.replace(', "obj": f"pickled {i}", "doc": f"doc {i}"', "")
    got = run_reference(ref_python, COMPARE, out, json.dumps(columns), code, json.dumps({"ids": list(range(200)), "args": []}))
    assert got == {"count": 200, "same": True, "first_difference": None}


#: One conversion as a user writes it. It runs unchanged after either library's import; ``spark``
#: and ``OUT`` are given.
SAME_CALL = '''
import numpy as np

df = spark.range(0, 240, numPartitions=3).selectExpr("id", "concat('text ', id) AS text", "CAST(id % 3 AS INT) AS label")

def add_tokens(frame, scale):
    for row in frame.itertuples():
        yield {"id": int(row.id), "text": row.text.upper(), "label": int(row.label),
               "tokens": np.arange(1 + int(row.id) % 5, dtype=np.int32) * scale}

out_local, out_remote = dataframe_to_mds(
    df,
    merge_index=True,
    mds_kwargs={"out": OUT, "columns": {"id": "int64", "text": "str", "label": "int32", "tokens": "ndarray:int32"},
                "compression": "zstd", "hashes": ["sha1"], "size_limit": 1 << 12},
    udf_iterable=add_tokens,
    udf_kwargs={"scale": 2},
)
'''

#: The reference's side of SAME_CALL: its own import, a local Spark whose workers run this Python.
REFERENCE_CALL = '''
import json, sys
from pyspark.sql import SparkSession
from streaming.base.converters import dataframe_to_mds
spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
OUT = sys.argv[1]
''' + SAME_CALL + '''
print(json.dumps([out_local, out_remote]))
'''

#: In the reference's virtualenv: both datasets decoded by its StreamingDataset, by id.
READ_BOTH = r'''
import json, sys
import numpy as np
from streaming import StreamingDataset
def read(p):
    ds = StreamingDataset(local=p, shuffle=False, batch_size=1)
    rows = [ds[i] for i in range(ds.num_samples)]
    return sorted(([int(r["id"]), r["text"], int(r["label"]), str(r["tokens"].dtype), r["tokens"].tolist()] for r in rows))
ours, theirs = read(sys.argv[1]), read(sys.argv[2])
print(json.dumps({"count": [len(ours), len(theirs)], "same": ours == theirs, "first": ours[:1]}))
'''


def test_the_same_call_in_both_libraries(spark, tmp_path, ref_python):
    """The issue's must-show: one dataframe_to_mds call with a udf_iterable, unchanged but for the
    import, through the reference and through ours; the two datasets decode to the same samples."""
    theirs = str(tmp_path / "theirs")
    got = run_python(REFERENCE_CALL, theirs, python=ref_python, env={"PYSPARK_PYTHON": str(ref_python)})
    assert got == [theirs, None] or got == [theirs, ""]
    ours = str(tmp_path / "ours")
    scope = {"__name__": "same_call", "spark": spark, "OUT": ours, "dataframe_to_mds": dataframe_to_mds}
    exec(SAME_CALL, scope)
    assert (scope["out_local"], scope["out_remote"]) == (ours, "")
    result = run_reference(ref_python, READ_BOTH, ours, theirs)
    assert result == {"count": [240, 240], "same": True, "first": [[0, "TEXT 0", 0, "int32", [0]]]}


def test_out_forms():
    """``out`` as the reference's MDSWriter takes it: a path, a URL, or a (local, remote) pair."""
    from spark_mds.converters import _split_out

    assert _split_out("/data/ds") == ("/data/ds", "")
    assert _split_out("file:///data/ds") == ("/data/ds", "")
    assert _split_out("s3://bucket/ds") == ("", "s3://bucket/ds")
    assert _split_out(("/local_disk0/tmp", "s3://bucket/ds")) == ("/local_disk0/tmp", "s3://bucket/ds")
    with pytest.raises(ValueError, match="a path, a URL or a \\(local, remote\\) pair"):
        _split_out(("a", "b", "c"))


def test_pair_out_writes_the_remote_and_keeps_a_local_copy(spark, tmp_path):
    """``out=(local, remote)``: the dataset is written to the remote (here a ``file:`` URL), and
    ``keep_local`` leaves the same files in ``local``; the result is the pair."""
    df = spark.range(50, numPartitions=2).selectExpr("id", "cast(id AS string) AS text")
    local, remote = str(tmp_path / "local"), (tmp_path / "remote").as_uri()
    result = dataframe_to_mds(df, mds_kwargs={"out": (local, remote), "columns": {"id": "int64", "text": "str"},
                                              "keep_local": True})
    assert result == (local, remote)
    assert read_index(local) == read_index(str(tmp_path / "remote"))
    kept = sorted(p.name for p in (tmp_path / "local").iterdir())
    written = sorted(p.name for p in (tmp_path / "remote").iterdir() if not p.name.startswith("."))
    assert kept == written and "index.json" in kept


def test_errors_name_what_to_fix(spark, tmp_path):
    df = spark.range(5).selectExpr("id", "cast(id AS string) AS text")
    out = str(tmp_path / "ds")
    with pytest.raises(ValueError, match="None or Empty"):
        dataframe_to_mds(df.limit(0), mds_kwargs={"out": out})
    with pytest.raises(ValueError, match="`out` and `columns` need to be specified"):
        dataframe_to_mds(df, mds_kwargs={"columns": {"id": "int64"}})
    with pytest.raises(ValueError, match="udf_iterable is specified, user must provide correct `columns`"):
        dataframe_to_mds(df, mds_kwargs={"out": out}, udf_iterable=_udf)
    with pytest.raises(ValueError, match="nope is not a column of input dataframe"):
        dataframe_to_mds(df, mds_kwargs={"out": out, "columns": {"nope": "int64"}})
    with pytest.raises(TypeError, match="'text'.*fancy"):
        dataframe_to_mds(df, mds_kwargs={"out": out, "columns": {"text": "fancy"}})
    with pytest.raises(ValueError, match="encoding.text='int32' is not allowed for column 'text' of type STRING"):
        dataframe_to_mds(df, mds_kwargs={"out": out, "columns": {"text": "int32"}})
    with pytest.raises(ValueError, match=r"Invalid Writer argument\(s\): \['colums'\]"):
        dataframe_to_mds(df, mds_kwargs={"out": out, "colums": {"id": "int64"}})
    assert not (tmp_path / "ds").exists()


def _missing(frame):
    for i in frame["id"]:
        yield {"id": int(i)}


def _unfit(frame):
    for i in frame["id"]:
        yield {"id": int(i), "text": int(i)}


@pytest.mark.parametrize("udf, message", [(_missing, "a sample of udf_iterable has no column 'text'"),
                                          (_unfit, "column 'text' \\(str\\): '\\d+' does not fit: str needs a str, got int")])
def test_bad_samples_fail_naming_the_column(spark, tmp_path, udf, message):
    df = spark.range(3)
    with pytest.raises(Exception, match=message):
        dataframe_to_mds(df, mds_kwargs={"out": str(tmp_path / "ds"), "columns": {"id": "int64", "text": "str"}},
                         udf_iterable=udf)
    assert not (tmp_path / "ds" / "index.json").exists()

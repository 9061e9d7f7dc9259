"""The JVM source reads every dataset that mosaicml-streaming 0.13.0 wrote (tests/data/reference)."""

from __future__ import annotations

import base64
import io
import json
import pickle
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pyspark.sql.types import (
    ArrayType, BinaryType, ByteType, DecimalType, DoubleType, FloatType, IntegerType, LongType,
    ShortType, StringType, StructField, StructType,
)

from mds_testutil import canon, decode_ndarray_dynamic

pytestmark = pytest.mark.spark

DATASETS = Path(__file__).resolve().parent.parent / "data" / "reference" / "datasets"
TABULAR = sorted(p.name for p in DATASETS.iterdir() if p.name.startswith("tabular_") and p.name != "tabular_br")


def expected(name: str) -> dict:
    return json.loads((DATASETS / name / "expected.json").read_text())


def nd(tag) -> np.ndarray:
    a = tag["ndarray"]
    return np.frombuffer(base64.b64decode(a["data_b64"]), dtype=a["dtype"]).reshape(a["shape"])


def untag(t):
    """The value Spark should return for a tagged reference value (images excepted)."""
    if "value" in t:
        return t["value"]
    if "float_hex" in t:
        return float.fromhex(t["float_hex"])
    if "scalar" in t:
        d, r = t["scalar"]["dtype"], t["scalar"]["repr"]
        if d.startswith("float"):
            return float(np.dtype(d).type(float.fromhex(r)))
        return Decimal(int(r)) if d == "uint64" else int(r)
    if "bytes_b64" in t:
        return base64.b64decode(t["bytes_b64"])
    if "decimal" in t:
        return t["decimal"]
    if "ndarray" in t:
        return nd(t).tolist()
    if "json" in t:
        return t["json"]
    raise AssertionError(t)


def test_tabular_every_compression_and_hash(spark):
    for name in TABULAR:
        exp = expected(name)["samples"]
        df = spark.read.format("mds").load(str(DATASETS / name))
        assert df.schema == StructType([
            StructField("emb", ArrayType(FloatType(), False), False),
            StructField("id", LongType(), False),
            StructField("label", IntegerType(), False),
            StructField("text", StringType(), False),
            StructField("tokens", ArrayType(IntegerType(), False), False),
        ]), name
        rows = df.collect()
        assert len(rows) == len(exp) == 300
        for r, e in zip(rows, exp):  # index order is preserved
            assert canon(r.asDict()) == canon({k: untag(v) for k, v in e.items()}), name
        # a pruned read decodes only what it needs
        assert [r.text for r in df.select("text").collect()] == [e["text"]["value"] for e in exp]
        assert df.count() == 300
    # hashes are checked on request
    spark.read.format("mds").option("validate_hash", "sha1").load(str(DATASETS / "tabular_zstd_sha1-xxh64")).count()
    spark.read.format("mds").option("validate_hash", "xxh64").load(str(DATASETS / "tabular_none_sha1-xxh64")).count()
    spark.read.format("mds").option("validate_hash", "md5").load(str(DATASETS / "tabular_zstd_md5-xxh3_64")).count()
    with pytest.raises(Exception, match="hash 'xxh3_64' is not available on the JVM"):
        spark.read.format("mds").option("validate_hash", "xxh3_64").load(str(DATASETS / "tabular_none_md5-xxh3_64")).count()
    with pytest.raises(Exception, match="has no sha1 hash"):
        spark.read.format("mds").option("validate_hash", "sha1").load(str(DATASETS / "tabular_zstd")).count()


def test_brotli_is_a_clear_error(spark):
    with pytest.raises(Exception, match=r"Brotli \('br'\) compression is not supported by the JVM mds source"):
        spark.read.format("mds").load(str(DATASETS / "tabular_br")).collect()


def test_scalars(spark):
    exp = expected("scalars")["samples"]
    df = spark.read.format("mds").load(str(DATASETS / "scalars"))
    types = {f.name: f.dataType for f in df.schema.fields}
    assert types == {
        "b": BinaryType(), "f16": FloatType(), "f32": FloatType(), "f64": DoubleType(), "i16": ShortType(),
        "i32": IntegerType(), "i64": LongType(), "i8": ByteType(), "js": StringType(), "pk": BinaryType(),
        "py_int": LongType(), "s": StringType(), "sd": StringType(), "sf": DoubleType(), "si": LongType(),
        "u16": IntegerType(), "u32": LongType(), "u64": DecimalType(20, 0), "u8": ShortType(),
    }
    rows = df.collect()
    assert len(rows) == len(exp)

    def plain(v):
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, set):
            return sorted(plain(x) for x in v)
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    for r, e in zip(rows, exp):
        got = r.asDict()
        for k, t in e.items():
            if k == "js":
                assert json.loads(got[k]) == t["json"]
            elif k == "pk":  # pkl is the stored pickle bytes; the test may unpickle its own fixture
                assert plain(pickle.loads(got[k])) == t["json"]
            else:
                assert canon(got[k]) == canon(untag(t)), (k, got[k], t)
    # uint64 extremes survive as decimal(20,0)
    assert max(r.u64 for r in rows) <= Decimal(2**64 - 1)


def test_ndarrays(spark):
    path = str(DATASETS / "ndarrays")
    exp = expected("ndarrays")["samples"]
    # 'dyn' changes dtype and rank from sample to sample: no single Spark type fits it
    with pytest.raises(Exception, match="column 'dyn' .*read this column as binary"):
        spark.read.format("mds").load(path).collect()
    df = spark.read.format("mds").load(path)
    types = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    assert types == {"dyn": "array<array<array<tinyint>>>", "f32fixed": "array<array<float>>",
                     "f64v": "array<double>", "i32v": "array<int>", "i64big": "array<array<bigint>>",
                     "u8img": "array<array<array<smallint>>>"}
    rows = df.drop("dyn").collect()
    for r, e in zip(rows, exp):
        for k, v in r.asDict().items():
            assert canon(v) == canon(nd(e[k]).tolist()), k
    # any column can be read as its stored bytes with a user schema
    schema = StructType([StructField("dyn", BinaryType()), StructField("i32v", ArrayType(LongType()))])
    got = spark.read.format("mds").schema(schema).load(path).collect()
    codes = {9: "int8", 8: "uint8", 17: "int16", 16: "uint16", 33: "int32", 32: "uint32", 65: "int64",
             64: "uint64", 18: "float16", 34: "float32", 66: "float64"}
    for r, e in zip(got, exp):
        code, shape, data = decode_ndarray_dynamic(r.dyn)
        want = nd(e["dyn"])
        assert codes[code] == str(want.dtype) and shape == list(want.shape) and data == want.tobytes()
        assert r.i32v == nd(e["i32v"]).tolist()


def test_images_as_stored_bytes(spark):
    exp = expected("images")["samples"]
    df = spark.read.format("mds").load(str(DATASETS / "images"))
    types = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    assert types == {"jpg": "binary", "png": "binary", "pil": "binary", "pil_l": "binary",
                     "jpgs": "array<binary>", "pngs": "array<binary>", "label": "int"}
    rows = df.collect()
    assert len(rows) == len(exp)

    def pixels(b):
        return np.asarray(Image.open(io.BytesIO(b)))

    for r, e in zip(rows, exp):
        assert r.label == int(e["label"]["scalar"]["repr"])
        for k in ("jpg", "png"):
            assert (pixels(r[k]) == nd(e[k]["image"]["pixels"])).all()
        for k in ("jpgs", "pngs"):
            assert len(r[k]) == len(e[k]["list"])
            for b, t in zip(r[k], e[k]["list"]):
                assert (pixels(b) == nd(t["image"]["pixels"])).all()
        for k in ("pil", "pil_l"):
            b = r[k]
            w, h, n = np.frombuffer(b[:12], "<u4")
            mode = b[12:12 + n].decode()
            assert mode == e[k]["image"]["mode"] and [w, h] == e[k]["image"]["size"]
            assert b[12 + n:] == nd(e[k]["image"]["pixels"]).tobytes()


def test_merged_index_with_subdirectories(spark, tmp_path, ref_python):
    """A `dataframe_to_mds` / `merge_index` layout: shards under task-attempt subdirectories, an index
    written without sorted keys. Built from the tabular_zstd fixture; the reference reads it too."""
    import shutil

    src = DATASETS / "tabular_zstd"
    idx = json.loads((src / "index.json").read_text())
    shards = []
    for i, s in enumerate(idx["shards"]):
        sub = str(8 + i % 3)
        (tmp_path / sub).mkdir(exist_ok=True)
        shutil.copy(src / s["zip_data"]["basename"], tmp_path / sub / s["zip_data"]["basename"])
        s = dict(s, raw_data=dict(s["raw_data"], basename=f"{sub}/{s['raw_data']['basename']}"),
                 zip_data=dict(s["zip_data"], basename=f"{sub}/{s['zip_data']['basename']}"))
        shards.append(s)
    (tmp_path / "index.json").write_text(json.dumps({"version": 2, "shards": shards}))
    df = spark.read.format("mds").load(str(tmp_path))
    assert [r.id for r in df.select("id").collect()] == [int(e["id"]["scalar"]["repr"]) for e in expected("tabular_zstd")["samples"]]
    # appending keeps the foreign layout and its basenames; overwrite removes the old subdirectory shards
    df.limit(5).write.format("mds").mode("append").option("nulls", "error").save(str(tmp_path))
    assert spark.read.format("mds").load(str(tmp_path)).count() == 305
    merged = json.loads((tmp_path / "index.json").read_text())
    assert "spark_mds" not in merged and merged["shards"][0]["raw_data"]["basename"].startswith("8/")
    from mds_testutil import run_reference

    n = run_reference(ref_python, "import sys, json\nfrom streaming import StreamingDataset\n"
                          "ds = StreamingDataset(local=sys.argv[1], batch_size=1)\n"
                          "print(json.dumps([int(ds[i]['id']) for i in range(ds.num_samples)]))", str(tmp_path))
    assert len(n) == 305 and n[-5:] == n[:5]
    df2 = spark.range(3)
    df2.write.format("mds").mode("overwrite").save(str(tmp_path))
    left = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert left == {"index.json"} | {s["raw_data"]["basename"] + ".zstd" for s in json.loads((tmp_path / "index.json").read_text())["shards"]}

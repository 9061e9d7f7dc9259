"""mosaicml-streaming 0.13.0 reads what the JVM source writes; the JVM writes the reference's bytes."""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
import zstandard

from mds_testutil import SPARK_MAJOR, read_index, run_reference

pytestmark = [pytest.mark.spark, pytest.mark.interop]

DATASETS = Path(__file__).resolve().parent.parent / "data" / "reference" / "datasets"

# Reads each dataset given on the command line with the reference StreamingDataset and prints its
# samples as tagged JSON (numpy scalars and arrays keep their dtype).
READ_ALL = r"""
import base64, json, sys
import numpy as np
from streaming import StreamingDataset
def tag(v):
    if isinstance(v, np.ndarray):
        return {"nd": [str(v.dtype), list(v.shape), v.astype(np.float64).tolist() if v.dtype.kind == "f" else v.tolist()]}
    if isinstance(v, np.generic):
        return {"np": [str(v.dtype), v.item() if v.dtype.kind != "f" else float(v).hex()]}
    if isinstance(v, float):
        return {"f": v.hex()}
    if isinstance(v, bytes):
        return {"b": base64.b64encode(v).decode()}
    if type(v).__name__ == "Decimal":
        return {"dec": str(v)}
    return {"v": v}
out = {}
for arg in sys.argv[1:]:
    path, validate = arg.split("|")
    ds = StreamingDataset(local=path, batch_size=1, validate_hash=validate or None)
    out[path] = [{k: tag(v) for k, v in ds[i].items()} for i in range(ds.num_samples)]
print(json.dumps(out))
"""

ROWS = [
    (0, -128, -32768, -2147483648, 1.5, float("nan"), True, "", b"", Decimal("-12.50"),
     dt.date(1, 1, 1), dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.timezone.utc),
     [1, 2, 3], [[1.0, 2.0], [3.0, 4.0]], (1, "a"), [1.0] * 4),
    (1, 127, 32767, 2147483647, float("inf"), -0.5, False, "héllo ✓ 𝄞", b"\x00\xff",
     Decimal("99999999.99"), dt.date(2000, 2, 29), dt.datetime(1900, 1, 1, tzinfo=dt.timezone.utc),
     [], [[5.0, 6.0, 7.0]], (None, "b"), [0.0, 1.0, 2.0, 3.0]),
    (2, None, None, None, None, None, None, None, None, None, None, None, None, None, None, [2.0] * 4),
]
SCHEMA = ("id long, b byte, s short, i int, f float, d double, flag boolean, text string, bin binary, "
          "dec decimal(10,2), day date, ts timestamp, tokens array<int>, mat array<array<float>>, "
          "st struct<x:int,y:string>, emb array<float>")


def test_reference_reads_jvm_output(spark, tmp_path, ref_python):
    df = spark.createDataFrame(
        [(i,) + r[1:] for i, r in enumerate(ROWS * 20)], SCHEMA).repartition(2)
    paths = {}
    for comp in ["zstd", "gz", "bz2", "snappy", "none", "zstd:9"]:
        p = str(tmp_path / comp.replace(":", "-"))
        (df.write.format("mds").option("compression", comp).option("hashes", "sha1,xxh64")
         .option("size_limit", "1kb").option("encoding.emb", "ndarray:float32:4").save(p))
        paths[p] = "sha1"
    got = run_reference(ref_python, READ_ALL, *[f"{p}|{v}" for p, v in paths.items()])
    for p, samples in got.items():
        idx = read_index(p)
        assert len(idx["shards"]) > 2
        assert len(samples) == 60
        by_id = {s["id"]["np"][1]: s for s in samples}
        assert sorted(by_id) == list(range(60))
        for i, s in by_id.items():
            row = ROWS[i % 3]
            check_sample(s, row, num_fields=16)


def check_sample(s, row, num_fields):
    (_, b, sh, i, f, d, flag, text, binv, dec, day, ts, tokens, mat, st, emb) = row
    nulls = s["__nulls__"]["nd"]
    assert nulls[0] == "uint8" and nulls[1] == [(num_fields + 7) // 8]
    bits = [(nulls[2][k // 8] >> (k % 8)) & 1 for k in range(num_fields)]
    names = ["id", "b", "s", "i", "f", "d", "flag", "text", "bin", "dec", "day", "ts", "tokens", "mat", "st", "emb"]
    for k, name in enumerate(names):
        assert bits[k] == (row[k] is None and k > 0), (name, bits)
    assert s["b"]["np"] == ["int8", b or 0]
    assert s["s"]["np"] == ["int16", sh or 0]
    assert s["i"]["np"] == ["int32", i or 0]
    assert s["f"]["np"] == ["float32", float(f or 0.0).hex()]
    if d is not None and math.isnan(d):
        assert s["d"]["np"][1] == "nan"
    else:
        assert s["d"]["np"] == ["float64", float(d or 0.0).hex()]
    assert s["flag"]["np"] == ["uint8", int(bool(flag))]
    assert s["text"]["v"] == (text or "")
    assert s["bin"]["b"] == (__import__("base64").b64encode(binv or b"").decode())
    assert s["dec"]["dec"] == (str(dec) if dec is not None else "0")
    epoch = dt.date(1970, 1, 1)
    assert s["day"]["np"] == ["int32", (day - epoch).days if day else 0]
    micros = 0 if ts is None else int((ts - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)).total_seconds()) * 10**6 + ts.microsecond
    assert s["ts"]["np"] == ["int64", micros]
    assert s["tokens"]["nd"] == ["int32", [len(tokens or [])], tokens or []]
    if mat:
        assert s["mat"]["nd"] == ["float32", [len(mat), len(mat[0])], mat]
    else:
        assert s["mat"]["nd"][1] == [0, 0]
    assert s["st"]["v"] == (None if st is None else {"x": st[0], "y": st[1]})
    assert s["emb"]["nd"] == ["float32", [4], emb]


def test_jvm_writes_the_reference_bytes(spark, tmp_path):
    """Same data and settings as the reference's tabular fixtures -> identical shard files."""
    import base64

    exp = json.loads((DATASETS / "tabular_none" / "expected.json").read_text())["samples"]

    def arr(t, dtype):
        a = t["ndarray"]
        return np.frombuffer(base64.b64decode(a["data_b64"]), dtype=dtype).tolist()

    rows = [(int(e["id"]["scalar"]["repr"]), e["text"]["value"], arr(e["tokens"], "<i4"),
             int(e["label"]["scalar"]["repr"]), arr(e["emb"], "<f4")) for e in exp]
    df = spark.createDataFrame(rows, "id long, text string, tokens array<int>, label int, emb array<float>").coalesce(1)
    for name, opts in [("tabular_none", {"compression": "none"}), ("tabular_zstd", {"compression": "zstd"}),
                       ("tabular_zstd-7", {"compression": "zstd:7"}),
                       ("tabular_none_sha1-xxh64", {"compression": "none", "hashes": "sha1,xxh64"})]:
        p = tmp_path / name
        w = df.write.format("mds").option("nulls", "error").option("size_limit", 16384) \
            .option("encoding.emb", "ndarray:float32:16")
        for k, v in opts.items():
            w = w.option(k, v)
        w.save(str(p))
        ours, ref = read_index(str(p))["shards"], read_index(str(DATASETS / name))["shards"]
        assert len(ours) == len(ref)
        for a, b in zip(ours, ref):
            # everything but the (job-unique) file names is identical, hashes included
            for key in ("column_encodings", "column_names", "column_sizes", "compression", "format", "hashes",
                        "samples", "size_limit", "version"):
                assert a[key] == b[key], key
            assert a["raw_data"]["bytes"] == b["raw_data"]["bytes"]
            assert a["raw_data"]["hashes"] == b["raw_data"]["hashes"]
            stored_a = (p / (a["zip_data"] or a["raw_data"])["basename"]).read_bytes()
            stored_b = (DATASETS / name / (b["zip_data"] or b["raw_data"])["basename"]).read_bytes()
            if a["zip_data"] is None:
                assert stored_a == stored_b
            else:
                raw_a = zstandard.ZstdDecompressor().decompress(stored_a)
                raw_b = zstandard.ZstdDecompressor().decompress(stored_b)
                assert raw_a == raw_b
                # Spark 3.5's zstd-jni (an older libzstd) compresses differently: valid frames, other bytes
                if SPARK_MAJOR >= 4:
                    assert stored_a == stored_b, "zstd-jni and python-zstd frames differ"
                    assert a["zip_data"]["bytes"] == b["zip_data"]["bytes"]
                else:
                    assert a["zip_data"]["bytes"] == len(stored_a)

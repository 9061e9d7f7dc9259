"""mosaicml-streaming 0.13.0 reads what the JVM source writes; the JVM writes the reference's bytes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zstandard

from mds_testutil import SPARK_MAJOR, run_reference
from support import read_index
from spark_tables import INTEROP_ROWS, INTEROP_SCHEMA
from support import READ_ALL, check_interop_sample

pytestmark = [pytest.mark.spark, pytest.mark.interop]

DATASETS = Path(__file__).resolve().parent.parent / "data" / "reference" / "datasets"


def test_reference_reads_jvm_output(spark, tmp_path, ref_python):
    df = spark.createDataFrame(
        [(i,) + r[1:] for i, r in enumerate(INTEROP_ROWS * 20)], INTEROP_SCHEMA).repartition(2)
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
            check_interop_sample(s, INTEROP_ROWS[i % 3])


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

"""The Python fallback of format("mds") in a Spark session without the spark-mds jar (local[2,2]:
one retry per task)."""

from __future__ import annotations

import pytest

from fallback_support import SparkProcess

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def py():
    proc = SparkProcess("local[2,2]", jar=False, register_as="mds")
    yield proc
    proc.close()


def test_registered(py):
    assert py.registered is True


def test_roundtrip_every_type(py, tmp_path):
    res = py.call("roundtrip_every_type", out=str(tmp_path / "ds"))
    enc = res["encodings"]
    assert enc["bool"] == "uint8" and enc["date"] == "int32" and enc["ts"] == "int64" and enc["dt_iv"] == "int64"
    assert enc["dec"] == "str_decimal" and enc["arr_i"] == "ndarray:int32"
    assert enc["arr2_l"] == "ndarray:int64" and enc["arr_b"] == "ndarray:uint8"
    assert enc["st"] == enc["map_s"] == enc["arr_s"] == enc["arr_bin"] == "json"
    assert enc["__nulls__"] == "ndarray:uint8:4"
    assert res["index"]["spark_mds"]["null_mask"] == "__nulls__"
    assert res["files"] == res["referenced"]

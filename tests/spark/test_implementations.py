"""The Spark suite of format("mds"), run for both implementations, in the style of Spark's AvroSuite
with its V1 and V2 subclasses: one body of tests, one parameter that says which implementation
serves it.

* ``jar``: the Scala data source of the plugin jar, ``df.write.format("mds")``.
* ``python``: the pure-Python path. Where PySpark has the Python Data Source API (4.x), its data
  source, registered beside the jar as ``mds_py`` and driven as users drive it when the jar is
  absent (``df.write`` / ``spark_mds.write`` for the modes df.write refuses, ``spark.read``); where
  it has none (3.5), ``spark_mds.write`` / ``spark_mds.read`` through mapInArrow.

Both run in the suite's shared session, on the default Spark and on Spark 3.5 (``make
test-spark35``). What only one implementation has is tested beside it: catalog tables of the jar
in test_roundtrip.py, the Python source without the jar in tests/fallback.
"""

from __future__ import annotations

import os

import pytest

from mds_testutil import JVM_WRITES_INTERVALS, PYTHON_SOURCE, assert_same_rows
from support import files, read_index, referenced
from spark_tables import ROWS
from type_mapping import WRITE, column, expected_read_types, normalized, write_read_datasets

pytestmark = pytest.mark.spark

@pytest.fixture
def table(impl, spark):
    return impl.every_type(spark).cache()


def _encodings(path: str) -> dict[str, str]:
    shard = read_index(path)["shards"][0]
    return dict(zip(shard["column_names"], shard["column_encodings"]))


def test_every_type_round_trips(impl, spark, table, out):
    impl.write(table, out)
    back = impl.read(spark, out)
    assert_same_rows(back, table)
    idx = read_index(out)
    enc = _encodings(out)
    assert enc["bool"] == "uint8" and enc["date"] == "int32" and enc["ts"] == "int64"
    assert enc["dec"] == "str_decimal" and enc["arr_i"] == "ndarray:int32"
    assert enc["arr2_l"] == "ndarray:int64" and enc["arr_b"] == "ndarray:uint8"
    assert enc["st"] == enc["map_s"] == enc["arr_s"] == enc["arr_bin"] == "json"
    assert enc["__nulls__"] == f"ndarray:uint8:{(len(table.columns) + 7) // 8}"
    assert idx["shards"][0]["column_names"] == sorted(enc)
    assert idx["spark_mds"]["null_mask"] == "__nulls__"
    assert idx["shards"][0]["compression"] == "zstd"
    assert files(out) == referenced(out)
    # pruned reads decode only some columns: by a projection, and by a user schema (in its order)
    assert_same_rows(back.select("id", "st", "ts"), table.select("id", "st", "ts"))
    schema = f"st {table.schema['st'].dataType.simpleString()}, id BIGINT NOT NULL, ts TIMESTAMP"
    assert_same_rows(impl.read(spark, out, schema=schema), table.select("st", "id", "ts"))
    assert back.count() == 4
    assert back.where("b = 127").select("str").first()[0] == ROWS[1][8]


def test_type_mapping_table(impl, spark, out, tmp_path):
    """docs/type-mapping.json, the table of docs/format.md that the format core is checked against
    too (tests/format/test_type_mapping.py): each type's default encoding, and the type each
    encoding reads as without a logical schema, with a first sample and with none to inspect."""
    from pyspark.sql.types import StructType

    def carried(t) -> bool:
        if t == "interval year to month":
            return impl.jar and JVM_WRITES_INTERVALS
        return t != "interval day to second" or not impl.jar or JVM_WRITES_INTERVALS

    written = {column(i): e for i, e in enumerate(WRITE) if carried(e["type"])}
    fields = [{"name": c, "type": e["type"], "nullable": True, "metadata": {}} for c, e in written.items()]
    schema = StructType.fromJson({"type": "struct", "fields": fields})
    df = spark.sql("SELECT " + ", ".join(f"CAST(NULL AS {f.dataType.simpleString()}) AS {f.name}" for f in schema.fields))
    impl.write(df, out)
    encodings = _encodings(out)
    assert {c: encodings[c] for c in written} == {c: e["encoding"] for c, e in written.items()}
    one, empty = write_read_datasets(tmp_path)
    for path, types in expected_read_types(one, empty).items():
        schema = impl.read(spark, path).schema
        got = {f.name: f.dataType.jsonValue() for f in schema.fields if f.name in types}
        assert normalized(got) == normalized(types), path


def test_reading_is_read_only(impl, spark, table, out):
    """A read leaves the dataset byte-for-byte as it was: compressed shards are decompressed in
    memory, never beside their files."""
    impl.write(table, out, compression="zstd", hashes="sha1")

    def contents() -> dict[str, bytes]:
        return {n: open(os.path.join(out, n), "rb").read() for n in files(out)}

    before = contents()
    for options in ({}, {"validate_hash": "sha1"}):  # every column decoded, nothing collected
        impl.read(spark, out, **options).write.format("noop").mode("overwrite").save()
    assert contents() == before


def test_save_modes(impl, spark, table, out):
    impl.write(table, out, mode="errorifexists")  # a new path
    with pytest.raises(Exception, match=r"an MDS dataset already exists at .*mode\('append'\)"):
        impl.write(table, out)
    before = files(out)
    impl.write(table, out, mode="ignore")  # no-op
    assert files(out) == before
    impl.write(table, out, mode="append")
    back = impl.read(spark, out)
    assert back.count() == 8
    assert_same_rows(back.where("id < 2"), table.unionAll(table).where("id < 2"))
    assert files(out) == referenced(out)
    impl.write(table.where("id >= 2"), out, mode="overwrite")
    assert_same_rows(impl.read(spark, out), table.where("id >= 2"))
    assert files(out) == referenced(out)  # the replaced shards are gone
    # overwrite from a query that reads the same dataset: old shards go only after the new index is out
    impl.write(impl.read(spark, out).where("id = 3"), out, mode="overwrite")
    assert_same_rows(impl.read(spark, out), table.where("id = 3"))
    assert files(out) == referenced(out)
    impl.write(table, out + "_ignore", mode="ignore", compression="gz")  # ignore on a new path writes
    assert_same_rows(impl.read(spark, out + "_ignore"), table)


@pytest.mark.skipif(not PYTHON_SOURCE, reason="no Python Data Source API: nothing serves df.write")
def test_python_source_refuses_the_modes_df_write_cannot_pass(impl, table, out):
    """PySpark's Python data sources take only append and overwrite on df.write (spark_mds.write
    implements the others, test_save_modes); the jar takes every mode there."""
    if impl.jar:
        pytest.skip("the jar takes every mode on df.write (test_save_modes)")
    for mode in ("errorifexists", "ignore"):
        with pytest.raises(Exception, match="UNSUPPORTED_DATA_SOURCE_SAVE_MODE"):
            table.write.format(impl.fmt).mode(mode).save(out)


def test_compressions_hashes_and_size_limit(impl, spark, table, out):
    table = table.coalesce(1)
    for comp in impl.compressions:
        p = f"{out}_{comp.replace(':', '-')}"
        impl.write(table, p, compression=comp, hashes="xxh64,sha1,md5,xxh32,sha3_256", size_limit="2kb")
        assert_same_rows(impl.read(spark, p, validate_hash="sha1"), table)
        shards = read_index(p)["shards"]
        assert len(shards) > 1, "size_limit 2kb cuts several shards"
        for s in shards:
            assert s["hashes"] == ["md5", "sha1", "sha3_256", "xxh32", "xxh64"]
            assert s["size_limit"] == 2048
            assert s["raw_data"]["bytes"] <= 2048 or s["samples"] == 1
            if comp == "none":
                assert s["zip_data"] is None and s["compression"] is None
            else:
                assert s["compression"] == comp
                assert s["zip_data"]["basename"].endswith("." + comp.split(":")[0])
    # an oversize first sample yields an empty shard first, like the reference
    impl.write(table, out + "_tiny", size_limit=100)
    assert read_index(out + "_tiny")["shards"][0]["samples"] == 0
    assert impl.read(spark, out + "_tiny").count() == 4
    with pytest.raises(Exception, match="the index has no sha256 hash"):
        impl.read(spark, out + "_tiny", validate_hash="sha256").collect()


def test_encoding_overrides(impl, spark, out):
    df = spark.createDataFrame(
        [(1, 200, 1.5, "{\"a\": [1, 2]}", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [[1, 2], [3, 4]], [1, None], True),
         (2, -3, float("inf"), "null", [0.0] * 6, [[0, 0], [0, 0]], [], False)],
        "id long, small int, h float, MyJs string, flat array<double>, sq array<array<int>>, "
        "nn array<int>, flag boolean").coalesce(1)  # fmt: skip
    # (a column name in capitals: option keys reach the Python source lower-cased)
    impl.write(df, out, **{"encoding.small": "int16", "encoding.h": "float16", "encoding.MyJs": "json",
                           "encoding.flat": "ndarray:float32:2,3", "encoding.sq": "ndarray:uint8:2,2",
                           "encoding.nn": "json", "encoding.flag": "int8", "encoding.id": "str_int"})  # fmt: skip
    assert_same_rows(impl.read(spark, out), df)
    assert _encodings(out) == {"MyJs": "json", "__nulls__": "ndarray:uint8:1", "flag": "int8",
                               "flat": "ndarray:float32:2,3", "h": "float16", "id": "str_int", "nn": "json",
                               "small": "int16", "sq": "ndarray:uint8:2,2"}  # fmt: skip
    with pytest.raises(Exception, match=r"option encoding.small='jpeg' is not allowed for column 'small' of type INT; "
                                        r"allowed: int8"):  # fmt: skip
        impl.write(df, out + "_bad", **{"encoding.small": "jpeg"})
    with pytest.raises(Exception, match="option encoding.nope names no column"):
        impl.write(df, out + "_bad", **{"encoding.nope": "int8"})


def test_empty_dataframe_and_nulls(impl, spark, out):
    empty = spark.createDataFrame([], "id long, s string")
    impl.write(empty, out)
    back = impl.read(spark, out)
    assert back.count() == 0 and back.schema == empty.schema
    assert read_index(out)["shards"] == [] and read_index(out)["spark_mds"]["schema"]["fields"][0]["name"] == "id"
    df = spark.createDataFrame([(1, "a")], "id long, s string")
    impl.write(df, out + "_e", nulls="error")
    idx = read_index(out + "_e")
    assert "__nulls__" not in idx["shards"][0]["column_names"] and "null_mask" not in idx["spark_mds"]
    assert_same_rows(impl.read(spark, out + "_e"), df)
    with_null = spark.createDataFrame([(1, None)], "id long, s string")
    with pytest.raises(Exception, match="column 's' holds a null but option nulls=error forbids nulls"):
        impl.write(with_null, out + "_n", nulls="error")
    # appending nulls to a dataset without a mask fails: the dataset's layout wins over the option
    with pytest.raises(Exception, match="column 's' holds a null but option nulls=error forbids nulls"):
        impl.write(with_null, out + "_e", mode="append")
    assert_same_rows(impl.read(spark, out + "_e"), df)
    assert files(out + "_e") == referenced(out + "_e")

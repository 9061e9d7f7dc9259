"""The jar's own Spark tests: SQL statements and catalog tables, shards of many small samples, column
order. The round trips that both implementations share (every type, SaveModes, options, encodings,
nulls) are in test_implementations.py."""

from __future__ import annotations

import pytest

from mds_testutil import JVM_WRITES_INTERVALS, SPARK_MAJOR, assert_same_rows
from support import files, read_index, referenced
from spark_tables import every_type

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def all_types(spark):
    # (Spark 3.5 refuses intervals in the jar's write path: test_errors)
    return every_type(spark, day_time_intervals=JVM_WRITES_INTERVALS, year_month_intervals=JVM_WRITES_INTERVALS).cache()


def test_sql_statements(spark, all_types, out, tmp_path):
    src = "mds_src"
    all_types.createOrReplaceTempView(src)
    all_types.write.format("mds").save(out)
    cols = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in all_types.schema.fields)
    try:
        # existing data, no column list
        spark.sql(f"CREATE TABLE t_loc USING mds LOCATION '{out}'")
        assert_same_rows(spark.table("t_loc"), all_types)
        described = {r.col_name: r.data_type for r in spark.sql("DESCRIBE TABLE t_loc").collect()}
        assert described["dec"] == "decimal(38,18)" and described["st"].startswith("struct<a:int")
        assert spark.sql("SELECT count(*) FROM t_loc WHERE bool").first()[0] == 2

        # column list on a new location, INSERT / INSERT OVERWRITE
        loc2 = str(tmp_path / "t_cols")
        spark.sql(f"CREATE TABLE t_cols ({cols}) USING mds LOCATION '{loc2}'")
        assert spark.table("t_cols").count() == 0
        spark.sql(f"INSERT INTO t_cols SELECT * FROM {src}")
        spark.sql(f"INSERT INTO t_cols SELECT * FROM {src} WHERE id = 1")
        assert spark.table("t_cols").count() == 5
        spark.sql(f"INSERT OVERWRITE t_cols SELECT * FROM {src}")
        # a table declared with columns is all nullable: values equal, schema = the DDL's
        expected = all_types
        assert spark.table("t_cols").schema == spark.read.format("mds").load(loc2).schema
        assert_same_rows(spark.table("t_cols"), expected, nullability=False)
        assert files(loc2) == referenced(loc2)

        # managed table, CTAS, saveAsTable, insertInto
        spark.sql(f"CREATE TABLE t_managed ({cols}) USING mds")
        spark.sql(f"INSERT INTO t_managed SELECT * FROM {src}")
        assert_same_rows(spark.table("t_managed"), expected, nullability=False)
        spark.sql(f"CREATE TABLE t_ctas USING mds AS SELECT * FROM {src}")
        assert_same_rows(spark.table("t_ctas"), all_types, nullability=False)
        spark.sql(f"CREATE TABLE t_ctas_loc USING mds LOCATION '{tmp_path / 'ctas'}' AS SELECT id, st FROM {src}")
        assert_same_rows(spark.read.format("mds").load(str(tmp_path / "ctas")), spark.table("t_ctas_loc"))

        if SPARK_MAJOR >= 4:
            spark.sql(f"CREATE OR REPLACE TABLE t_ctas USING mds AS SELECT id, str FROM {src} WHERE id < 2")
            assert sorted(r.id for r in spark.table("t_ctas").collect()) == [0, 1]
            all_types.select("id", "str").writeTo("t_ctas").append()
            assert spark.table("t_ctas").count() == 6
        else:  # Spark 3.5 writes catalog tables of V1 sources only through V1 commands (README: limits)
            with pytest.raises(Exception, match="Cannot write into v1 table"):
                all_types.select("id", "str").writeTo("t_ctas").append()
            with pytest.raises(Exception, match="does not support truncate in batch mode"):
                spark.sql(f"CREATE OR REPLACE TABLE t_ctas USING mds AS SELECT id, str FROM {src} WHERE id < 2")

        all_types.write.format("mds").saveAsTable("t_saved")
        all_types.write.format("mds").mode("append").saveAsTable("t_saved")
        assert spark.table("t_saved").count() == 8
        all_types.write.format("mds").mode("overwrite").saveAsTable("t_saved")
        assert_same_rows(spark.table("t_saved"), all_types, nullability=False)
        all_types.write.insertInto("t_saved")
        assert spark.table("t_saved").count() == 8
        all_types.write.insertInto("t_saved", overwrite=True)
        assert spark.table("t_saved").count() == 4

        # temporary view with OPTIONS (path ...)
        spark.sql(f"CREATE TEMPORARY VIEW v_mds USING mds OPTIONS (path '{out}')")
        assert_same_rows(spark.table("v_mds"), all_types)
        spark.sql(f"INSERT INTO v_mds SELECT * FROM {src} WHERE id = 3")
        assert spark.table("v_mds").count() == 5
    finally:
        for t in ["t_loc", "t_cols", "t_managed", "t_ctas", "t_ctas_loc", "t_saved"]:
            spark.sql(f"DROP TABLE IF EXISTS {t}")
        spark.sql("DROP VIEW IF EXISTS v_mds")


def test_many_small_samples_per_shard(spark, out):
    """Shards of thousands of tiny samples (headers larger than the writer's initial reserve)."""
    df = spark.range(0, 30000, numPartitions=1).selectExpr("id", "cast(id % 7 as byte) as b")
    df.write.format("mds").option("size_limit", "100kb").option("hashes", "sha1").save(out)
    idx = read_index(out)
    assert len(idx["shards"]) >= 3 and all(s["raw_data"]["bytes"] <= 102400 for s in idx["shards"])
    assert sum(s["samples"] for s in idx["shards"]) == 30000
    back = spark.read.format("mds").option("validate_hash", "sha1").load(out)
    assert [r.id for r in back.select("id").collect()] == list(range(30000))
    one = out + "_one"
    df.write.format("mds").option("compression", "none").save(one)  # one shard, 30000 samples
    assert [r.b for r in spark.read.format("mds").load(one).select("b").collect()] == [i % 7 for i in range(30000)]


def test_column_names_sorted_like_python(spark, out):
    names = ["b", "Z", "é", "\U0001d11ex", "\uffffz", "a b", "_x", "id"]
    df = spark.createDataFrame([tuple(range(len(names)))], ", ".join(f"`{n}` int" for n in names))
    df.write.format("mds").save(out)
    assert read_index(out)["shards"][0]["column_names"] == sorted(names + ["__nulls__"])
    assert_same_rows(spark.read.format("mds").load(out), df)

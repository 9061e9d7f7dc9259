"""Partitioned datasets (docs/format.md §8): ``df.write.partitionBy(...).format("mds")`` and SQL
``PARTITIONED BY`` write Hive-style directories, each a complete MDS dataset, under a root index
that merges them. Both implementations read the partition columns back; the jar prunes partitions
on filters; the reference reads each partition through ``split=`` and the merged root."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest

import spark_mds
from mds_testutil import PYTHON_SOURCE, SPARK_MAJOR, Implementation, run_reference
from spark_mds.fallback.partitions import escape_path_name, unescape_path_name

pytestmark = pytest.mark.spark

#: A partition value with characters Spark escapes in directory names, and a null one.
SPLITS = ["train", "va/l:1", None]


def source(spark, n: int = 60):
    rows = [(i, f"text {i}", SPLITS[i % 3], i % 2 == 0, dt.date(2024, 1, 1 + i % 2)) for i in range(n)]
    return spark.createDataFrame(rows, "id BIGINT, text STRING, split STRING, even BOOLEAN, day DATE").repartition(3)


def rows(df) -> list[tuple]:
    return sorted(tuple(r) for r in df.collect())


def test_partitioned_layout_and_index(spark, tmp_path, impl):
    out = tmp_path / "ds"
    impl.write_partitioned(source(spark), str(out), ["split", "even"])
    root = json.loads((out / "index.json").read_text())
    schema = root["spark_mds"]
    assert [f["name"] for f in schema["schema"]["fields"]] == ["id", "text", "day"]
    assert [(f["name"], f["type"]) for f in schema["partition_columns"]["fields"]] == [("split", "string"), ("even", "boolean")]
    dirs = {"/".join(s["raw_data"]["basename"].split("/")[:2]) for s in root["shards"]}
    assert dirs == {f"split={d}/even={e}" for d in ("train", "va%2Fl%3A1", "__HIVE_DEFAULT_PARTITION__") for e in ("true", "false")}
    # Each partition directory is a complete dataset: its index lists the root's shards under it.
    for d in dirs:
        sub = json.loads((out / d / "index.json").read_text())
        assert "partition_columns" not in sub["spark_mds"]
        assert [s["raw_data"]["basename"] for s in sub["shards"]] == [
            s["raw_data"]["basename"][len(d) + 1:] for s in root["shards"] if s["raw_data"]["basename"].startswith(d + "/")]
    assert sum(s["samples"] for s in root["shards"]) == 60


def test_both_implementations_restore_the_partition_columns(spark, tmp_path, impl):
    out = str(tmp_path / "ds")
    df = source(spark)
    impl.write_partitioned(df, out, ["split", "day"])
    back = impl.read(spark, out)
    assert back.columns == ["id", "text", "even", "split", "day"]  # partition columns last, as Spark's file sources
    assert rows(back.select(*df.columns)) == rows(df)
    assert rows(back.where("split = 'va/l:1' AND day = DATE'2024-01-02'").select("id")) == [
        (i,) for i in range(60) if i % 3 == 1 and i % 2 == 1]
    assert back.where("split IS NULL").count() == 20
    # One partition directory reads as a dataset of the data columns.
    part = impl.read(spark, f"{out}/split=train/day=2024-01-01")
    assert part.columns == ["id", "text", "even"] and part.count() == 10


def test_filters_on_partition_columns_skip_other_partitions(spark, tmp_path):
    """Pruning is shown by damage: with the shards of every other partition deleted, a query
    filtered to one partition still reads; without the filter, the read fails."""
    out = tmp_path / "ds"
    source(spark).write.format("mds").partitionBy("split").save(str(out))
    shutil.rmtree(out / "split=__HIVE_DEFAULT_PARTITION__")
    for f in (out / f"split={escape_path_name('va/l:1')}").glob("shard.*"):
        f.unlink()
    df = spark.read.format("mds").load(str(out))
    assert df.where("split = 'train'").count() == 20
    assert df.where("split IN ('train', 'x') AND id >= 30").count() == 10
    plan = df.where("split = 'train'")._jdf.queryExecution().executedPlan().toString()
    assert "PartitionFilters: [IsNotNull(split), EqualTo(split,train)]" in plan
    with pytest.raises(Exception, match="shard"):
        df.where("id >= 0").count()


def test_append_keeps_the_partitioning_and_overwrite_replaces_it(spark, tmp_path):
    out = tmp_path / "ds"
    df = source(spark)
    df.write.format("mds").partitionBy("split").save(str(out))
    df.write.format("mds").mode("append").partitionBy("split").save(str(out))
    assert spark.read.format("mds").load(str(out)).count() == 120
    assert spark.read.format("mds").load(str(out / "split=train")).count() == 40
    with pytest.raises(Exception, match=r"with no partition columns: it was written with partitionBy\(split\)"):
        df.write.format("mds").mode("append").save(str(out))
    with pytest.raises(Exception, match=r"with partitionBy\(even\): it was written with partitionBy\(split\)"):
        df.write.format("mds").mode("append").partitionBy("even").save(str(out))
    with pytest.raises(Exception, match="dynamic partition overwrite is not supported by the mds source"):
        df.write.format("mds").mode("overwrite").option("partitionOverwriteMode", "dynamic").partitionBy("split").save(str(out))
    assert spark.read.format("mds").load(str(out)).count() == 120
    df.write.format("mds").mode("overwrite").partitionBy("even").save(str(out))
    assert sorted(p.name for p in out.iterdir()) == ["even=false", "even=true", "index.json"]
    back = spark.read.format("mds").load(str(out))
    assert back.columns == ["id", "text", "split", "day", "even"] and back.count() == 60


@pytest.mark.parametrize("how", ["option", "session"])
def test_dynamic_partition_overwrite_is_refused_by_every_implementation(spark, tmp_path, impl, how):
    """Dynamic partition overwrite would keep the partitions the new rows do not touch; an
    implementation that replaced the whole dataset instead would delete them. Every implementation
    refuses before writing, whether the mode comes as an option or as the session's setting."""
    out = tmp_path / "ds"
    impl.write_partitioned(source(spark), str(out), ["split"])
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    train = source(spark).where("split = 'train'")
    key = "spark.sql.sources.partitionOverwriteMode"
    options = {"partitionOverwriteMode": "dynamic"} if how == "option" else {}
    if how == "session":
        spark.conf.set(key, "dynamic")
    try:
        with pytest.raises(Exception, match=r"dynamic partition overwrite is not supported by the mds source .*"
                                            r"Set spark.sql.sources.partitionOverwriteMode=static to replace it, or append"):
            impl.write_partitioned(train, str(out), ["split"], mode="overwrite", **options)
    finally:
        spark.conf.unset(key)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before
    assert impl.read(spark, str(out)).count() == 60
    impl.write_partitioned(train, str(out), ["split"], mode="overwrite")  # static: the whole dataset
    assert impl.read(spark, str(out)).count() == 20


@pytest.mark.parametrize("columns, message", [
    (["nope"], "partition column 'nope' is not a column of the data"),
    (["id", "text", "split", "even", "day"], "an MDS dataset needs at least one data column"),
])
def test_bad_partition_columns(spark, tmp_path, columns, message):
    with pytest.raises(Exception, match=message):
        source(spark).write.format("mds").partitionBy(*columns).save(str(tmp_path / "ds"))
    assert not (tmp_path / "ds" / "index.json").exists()


def test_unsupported_partition_type(spark, tmp_path):
    df = spark.range(4).selectExpr("id", "CAST(id AS DOUBLE) / 2 AS ratio")
    with pytest.raises(Exception, match="partition column 'ratio' has type DOUBLE; mds partitions by string, integer"):
        df.write.format("mds").partitionBy("ratio").save(str(tmp_path / "ds"))


def test_a_table_over_a_partitioned_dataset_keeps_its_partitioning(spark, tmp_path):
    loc = tmp_path / "t"
    source(spark).write.format("mds").partitionBy("split").save(str(loc))
    spark.sql(f"CREATE TABLE part_existing USING mds LOCATION '{loc}'")
    try:
        assert spark.table("part_existing").columns == ["id", "text", "even", "day", "split"]
        spark.sql("INSERT INTO part_existing SELECT 99, 'new', true, DATE'2024-02-01', 'fresh'")
        assert (loc / "split=fresh" / "index.json").exists()
        assert rows(spark.sql("SELECT id, split FROM part_existing WHERE split = 'fresh'")) == [(99, "fresh")]
    finally:
        spark.sql("DROP TABLE IF EXISTS part_existing")


@pytest.mark.skipif(SPARK_MAJOR < 4, reason="Spark 3.5 passes a catalog table's partition columns only to file formats, "
                    "not to V1 relation providers (a table over a partitioned dataset keeps its partitioning: above)")
def test_sql_partitioned_by(spark, tmp_path):
    loc = tmp_path / "t"
    spark.sql(f"CREATE TABLE part_t (id BIGINT, text STRING, split STRING) USING mds PARTITIONED BY (split) LOCATION '{loc}'")
    try:
        spark.sql("INSERT INTO part_t SELECT id, concat('x', id), IF(id % 2 = 0, 'a', 'b') FROM range(10)")
        assert sorted(p.name for p in loc.iterdir()) == ["index.json", "split=a", "split=b"]
        assert spark.sql("SELECT count(*) FROM part_t WHERE split = 'a'").first()[0] == 5
        spark.sql("INSERT OVERWRITE part_t SELECT id, 'y', 'c' FROM range(3)")
        assert sorted(p.name for p in loc.iterdir()) == ["index.json", "split=c"]
        assert rows(spark.table("part_t")) == [(i, "y", "c") for i in range(3)]
    finally:
        spark.sql("DROP TABLE IF EXISTS part_t")
    spark.sql(f"CREATE TABLE part_ctas USING mds PARTITIONED BY (split) LOCATION '{tmp_path / 'c'}' "
              "AS SELECT id, IF(id < 4, 'a', 'b') AS split FROM range(10)")
    try:
        assert spark.sql("SELECT count(*) FROM part_ctas WHERE split = 'b'").first()[0] == 6
        assert json.loads((tmp_path / "c" / "index.json").read_text())["spark_mds"]["partition_columns"]["fields"][0]["name"] == "split"
    finally:
        spark.sql("DROP TABLE IF EXISTS part_ctas")


READ_PARTITIONS = r'''
import json, sys
from streaming import StreamingDataset
root, splits = sys.argv[1], json.loads(sys.argv[2])
def ids(**kw):
    ds = StreamingDataset(local=root, shuffle=False, batch_size=1, **kw)
    samples = [ds[i] for i in range(ds.num_samples)]
    return (sorted([int(x["id"]), x["text"], int(x["even"]), int(x["day"])] for x in samples),
            sorted(samples[0].keys()) if samples else [])
print(json.dumps({"root": ids(), "splits": {s: ids(split=s) for s in splits}}))
'''


def test_the_reference_reads_each_partition_and_the_merged_root(spark, tmp_path, ref_python):
    out = tmp_path / "ds"
    source(spark).write.format("mds").partitionBy("split").save(str(out))
    dirs = ["split=train", f"split={escape_path_name('va/l:1')}", "split=__HIVE_DEFAULT_PARTITION__"]
    got = run_reference(ref_python, READ_PARTITIONS, str(out), json.dumps(dirs))
    # The reference sees the stored values: booleans as uint8, dates as days since 1970-01-01.
    expected = [[i, f"text {i}", int(i % 2 == 0), 19723 + i % 2] for i in range(60)]
    keys = ["__nulls__", "day", "even", "id", "text"]
    assert got["root"] == [expected, keys]
    for k, d in enumerate(dirs):
        assert got["splits"][d] == [[e for e in expected if e[0] % 3 == k], keys]
    # mds_loader reads them the same way.
    from mds_loader import StreamingDataset

    for split, k in [(None, None), ("split=train", 0)]:
        ds = StreamingDataset(local=str(out), split=split, shuffle=False, batch_size=1)
        assert sorted(int(ds[i]["id"]) for i in range(ds.num_samples)) == [i for i in range(60) if k is None or i % 3 == k]


def test_path_escaping_is_sparks():
    for text in ["a/b", "x:y=z", "50%", "tab\there", "plain", "ü"]:
        assert unescape_path_name(escape_path_name(text)) == text
    assert escape_path_name("va/l:1") == "va%2Fl%3A1"


def test_a_shard_outside_the_partition_directories_is_named(spark, tmp_path, impl):
    out = tmp_path / "ds"
    source(spark, 6).write.format("mds").partitionBy("split").save(str(out))
    index = json.loads((out / "index.json").read_text())
    index["shards"][0]["raw_data"]["basename"] = "elsewhere/" + Path(index["shards"][0]["raw_data"]["basename"]).name
    (out / "index.json").write_text(json.dumps(index))
    with pytest.raises(Exception, match="shard 'elsewhere/.*' has directory 'elsewhere' where 'split=...' belongs"):
        impl.read(spark, str(out)).collect()


def test_each_implementation_appends_to_the_others_partitioned_dataset(spark, tmp_path, impl):
    """The same partitions and samples from both implementations: one writes, the other appends,
    and every partition directory's index lists its shards of both writes."""
    out = tmp_path / "ds"
    other = Implementation("python" if impl.jar else "jar")
    if PYTHON_SOURCE:
        from spark_mds.python_source import register_python_source

        register_python_source(spark, "mds_py")
    impl.write_partitioned(source(spark, 30), str(out), ["split"])
    other.write_partitioned(source(spark, 30), str(out), ["split"], mode="append")
    with pytest.raises(Exception, match=r"with no partition columns: it was written with partitionBy\(split\)"):
        other.write(source(spark, 6), str(out), mode="append")
    for d, k in [("split=train", 0), ("split=__HIVE_DEFAULT_PARTITION__", 2)]:
        sub = json.loads((out / d / "index.json").read_text())
        assert sum(s["samples"] for s in sub["shards"]) == 20
        assert rows(impl.read(spark, str(out / d)).select("id")) == sorted((i,) for i in range(30) if i % 3 == k for _ in "ab")
    assert rows(other.read(spark, str(out)).select("id", "split")) == sorted(
        (i, SPLITS[i % 3]) for i in range(30) for _ in "ab")


def test_a_failed_partitioned_write_leaves_no_files(spark, tmp_path, impl):
    """A task fails (a null with nulls=error) after others wrote shards into several partition
    directories: the job's files are removed from all of them, and no index is published."""
    out = tmp_path / "ds"
    if PYTHON_SOURCE:
        from spark_mds.python_source import register_python_source

        register_python_source(spark, "mds_py")
    df = spark.createDataFrame([(i, None if i == 59 else f"t{i}", "ab"[i % 2]) for i in range(60)],
                               "id BIGINT, text STRING, split STRING").coalesce(1)
    with pytest.raises(Exception, match="text"):
        impl.write_partitioned(df, str(out), ["split"], nulls="error", size_limit="200")
    assert [p for p in out.rglob("*") if p.is_file()] == []


def test_spark_mds_write_partitions_through_the_jar_too(spark, tmp_path):
    """spark_mds.write(partition_by=...) is one call for every implementation: with the jar serving
    format("mds"), the option reaches it (and a wrong column fails there, naming it)."""
    out = tmp_path / "ds"
    spark_mds.write(source(spark, 12), str(out), partition_by="split")
    assert sorted(p.name for p in out.iterdir()) == ["index.json", "split=__HIVE_DEFAULT_PARTITION__", "split=train",
                                                     f"split={escape_path_name('va/l:1')}"]
    assert spark.read.format("mds").load(str(out)).columns[-1] == "split"
    with pytest.raises(Exception, match="partition column 'nope' is not a column of the data"):
        spark_mds.write(source(spark, 12), str(tmp_path / "other"), partition_by=["nope"])

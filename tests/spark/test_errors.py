"""Clear, actionable errors: existing paths, schema mismatches, unsupported types, bad options, hostile indexes."""

from __future__ import annotations

import json
import os

import pytest
from pyspark.sql import functions as F

from mds_testutil import JVM_WRITES_INTERVALS
from support import files, read_index

pytestmark = pytest.mark.spark


def raises(fn, pattern):
    with pytest.raises(Exception) as info:
        fn()
    import re

    assert re.search(pattern, str(info.value), re.S), f"{pattern!r} not in:\n{str(info.value)[:3000]}"


def test_existing_path_and_append_schema_mismatch(spark, out):
    df = spark.createDataFrame([(1, "a", 1.0)], "id long, s string, x double")
    df.write.format("mds").save(out)
    raises(lambda: df.write.format("mds").mode("errorifexists").save(out),
           r"an MDS dataset already exists at .*ds .*mode\('append'\).*mode\('overwrite'\).*mode\('ignore'\)")
    before = files(out)
    raises(lambda: spark.createDataFrame([(1, 2)], "id long, s int").write.format("mds").mode("append").save(out),
           r"cannot append to the MDS dataset at .*missing columns x; different types: s \(existing STRING, new INT\)")
    raises(lambda: df.withColumn("extra", F.lit(1)).write.format("mds").mode("append").save(out), r"new columns extra")
    assert files(out) == before
    # append with columns in another order and different nullability works
    df.select("x", "s", "id").write.format("mds").mode("append").save(out)
    assert spark.read.format("mds").load(out).count() == 2
    raises(lambda: df.write.format("mds").mode("append").option("encoding.x", "float32").save(out),
           r"encoding.x='float32' conflicts with the existing dataset .* stores 'x' as 'float64'")
    raises(lambda: df.write.format("mds").partitionBy("s").mode("append").save(out),
           r"cannot append to the MDS dataset at .* with partitionBy\(s\): it was written with no partition columns")
    raises(lambda: spark.read.format("mds").load(out + "_missing").collect(), r"no MDS dataset at .*index.json is missing")


def test_unsupported_types(spark, out):
    raises(lambda: spark.range(1).withColumn("n", F.lit(None)).write.format("mds").save(out),
           r"column 'n' has type VOID, which MDS cannot store")
    # Spark 3.5 refuses every interval column before the source sees it, with its own message.
    interval = r"Cannot save interval data type into external storage" if not JVM_WRITES_INTERVALS else None
    raises(lambda: spark.range(1).withColumn("c", F.expr("make_interval(1, 2)")).write.format("mds").save(out),
           interval or r"column 'c' has type INTERVAL, which MDS cannot store")
    raises(lambda: spark.range(1).withColumn("a", F.expr("array(make_interval(1))")).write.format("mds").save(out),
           interval or r"column 'a' has type ARRAY<INTERVAL> \(containing INTERVAL\)")
    raises(lambda: spark.range(1).withColumn("__nulls__", F.lit(1)).write.format("mds").save(out),
           r"'__nulls__' is reserved")
    assert not os.path.exists(os.path.join(out, "index.json"))


def test_bad_options(spark, out):
    df = spark.createDataFrame([(1, "a", [1, 2])], "id long, s string, arr array<int>")

    def w(**opts):
        writer = df.write.format("mds").mode("overwrite")
        for k, v in opts.items():
            writer = writer.option(k.replace("__", "."), v)
        return lambda: writer.save(out)

    raises(w(compression="lzma"), r"invalid option compression 'lzma': unknown compression 'lzma'.*Allowed: none, zstd")
    raises(w(compression="zstd:99"), r"zstd levels are 1..22")
    raises(w(compression="br"), r"compression='br': Brotli cannot be written on the JVM.*use compression=zstd")
    raises(w(hashes="sha1,xxh3_64"), r"hash 'xxh3_64' is not available on the JVM.*use one of")
    raises(w(hashes="crc32"), r"unknown hash 'crc32'")
    raises(w(size_limit="lots"), r"option size_limit='lots' is invalid: not a number")
    raises(w(size_limit="4gb"), r"must be below 4 GiB")
    raises(w(nulls="maybe"), r"option nulls='maybe' is invalid; allowed values: mask \(default\), error")
    raises(w(encoding__s="int8"), r"option encoding.s='int8' is not allowed for column 's' of type STRING; allowed: str, json")
    raises(w(encoding__nope="int8"), r"option encoding.nope names no column; columns are id, s, arr")
    raises(w(encoding__id="int99"), r"unsupported MDS encoding 'int99'")
    raises(w(encoding__arr="ndarray"), r"give the dtype")
    raises(w(encoding__arr="ndarray:int32:5"), r"a value has shape \(2\), expected \(5\)")
    big = spark.createDataFrame([(300,)], "v int")
    raises(lambda: big.write.format("mds").option("encoding.v", "int8").save(out + "_r"),
           r"column 'v': value 300 does not fit encoding 'int8' \(range -128..127\)")
    nulls = spark.createDataFrame([(1, None)], "id long, s string")
    raises(lambda: nulls.write.format("mds").option("nulls", "error").save(out + "_n"),
           r"column 's' holds a null but option nulls=error forbids nulls")
    holes = spark.createDataFrame([(1, [1, None])], "id long, arr array<int>")
    raises(lambda: holes.write.format("mds").save(out + "_h"),
           r"column 'arr' .*an array element is null.*encoding.arr=json")
    ragged = spark.createDataFrame([(1, [[1], [2, 3]])], "id long, arr array<array<int>>")
    raises(lambda: ragged.write.format("mds").save(out + "_g"), r"column 'arr' .*not rectangular")
    notjson = spark.createDataFrame([(1, "{nope")], "id long, s string")
    raises(lambda: notjson.write.format("mds").option("encoding.s", "json").save(out + "_j"),
           r"column 's' \(encoding json\): value \{nope is not valid JSON")
    png = spark.createDataFrame([(1, bytearray(b"not a png"))], "id long, b binary")
    raises(lambda: png.write.format("mds").option("encoding.b", "png").save(out + "_p"),
           r"column 'b': a value is not a valid png image")
    for p in [out + "_r", out + "_n", out + "_h", out + "_g", out + "_j", out + "_p"]:
        assert not os.path.exists(os.path.join(p, "index.json"))
        assert not [f for f in files(p) if f.startswith("shard.")] if os.path.exists(p) else True


def test_hostile_and_corrupt_indexes(spark, out):
    spark.range(10).write.format("mds").option("compression", "none").save(out)
    good = read_index(out)
    for bad, why in [("../evil.mds", "'..' component"), ("/etc/passwd", "absolute path"),
                     ("s3://bucket/x.mds", "URL or drive letter"), ("C:\\x.mds", "backslash"),
                     ("a//b.mds", "empty or '.' component")]:
        idx = json.loads(json.dumps(good))
        idx["shards"][0]["raw_data"]["basename"] = bad
        with open(os.path.join(out, "index.json"), "w") as f:
            json.dump(idx, f)
        raises(lambda: spark.read.format("mds").load(out).collect(), rf"unsafe shard basename .*{why}")
    idx = json.loads(json.dumps(good))
    idx["shards"][0]["extra"] = 1
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(idx, f)
    raises(lambda: spark.read.format("mds").load(out).collect(), r"unknown keys extra")
    # a truncated shard and a header that lies
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(good, f)
    shard = os.path.join(out, good["shards"][0]["raw_data"]["basename"])
    data = open(shard, "rb").read()
    with open(shard, "wb") as f:
        f.write(data[:-3])
    raises(lambda: spark.read.format("mds").load(out).collect(), r"MDS file .*shard.* is shorter \(\d+ bytes\) than the \d+ bytes its index entry says")
    with open(shard, "wb") as f:
        f.write((10**6).to_bytes(4, "little") + data[4:])
    raises(lambda: spark.read.format("mds").load(out).collect(),
           r"corrupt MDS shard .*shard\..*mds: the header announces 1000000 samples")


def test_concurrent_change_of_the_index_fails_the_job(spark, out):
    """The driver publishes only if index.json is still the one the job started from."""
    spark.range(5).write.format("mds").save(out)
    index_path = os.path.join(out, "index.json")
    original = open(index_path, "rb").read()

    @F.udf("long")
    def meddle(x):  # another writer publishes while this job runs
        if x == 0:
            with open(index_path, "wb") as f:
                f.write(original.replace(b'"version": 2}', b'"other_writer": 1, "version": 2}'))
        return x

    raises(lambda: spark.range(10, numPartitions=1).select(meddle("id").alias("id"))
           .write.format("mds").mode("append").save(out),
           r"was changed by another writer while this job ran .*retry the write")
    assert b"other_writer" in open(index_path, "rb").read()
    assert files(out) == {"index.json"} | {s["zip_data"]["basename"] for s in read_index(out)["shards"]}

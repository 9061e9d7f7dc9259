"""spark_mds.configure / register: the jar is shipped and the JVM source serves format("mds")."""

from __future__ import annotations

import pytest
from pyspark.sql import SparkSession

import spark_mds

pytestmark = pytest.mark.spark


def test_register_reports_jvm(spark):
    assert spark_mds.register(spark) == "jvm"
    assert spark_mds.jar_path() in spark.sparkContext.getConf().get("spark.jars")


def test_register_without_jvm_source_is_a_clear_error():
    class NoJvm:  # e.g. a Spark Connect session: no JVM in this process
        pass

    with pytest.raises(RuntimeError, match="Python fallback data source is not there yet.*spark_mds.configure"):
        spark_mds.register(NoJvm())


def test_configure_keeps_other_jars():
    b = SparkSession.builder.config("spark.jars", "/x/other.jar")
    spark_mds.configure(b)
    jars = b._options["spark.jars"].split(",")
    assert jars == ["/x/other.jar", spark_mds.jar_path()]
    spark_mds.configure(b)  # idempotent
    assert b._options["spark.jars"].split(",") == jars

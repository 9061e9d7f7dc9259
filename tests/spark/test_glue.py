"""spark_mds.configure / register: the jar is shipped and the JVM source serves format("mds")."""

from __future__ import annotations

import pytest
from pyspark.sql import SparkSession

import spark_mds

pytestmark = pytest.mark.spark


def test_register_reports_jvm(spark):
    assert spark_mds.register(spark) == "jvm"
    assert spark_mds.jar_path() in spark.sparkContext.getConf().get("spark.jars")


def test_register_without_jvm_source_uses_the_python_fallback():
    """A session without the jar (e.g. Spark Connect: no JVM in this process) gets the Python data
    source; if Spark says a JVM source owns "mds" after all, register reports that one."""

    class Registry:
        def __init__(self, condition=None):
            self.condition, self.names = condition, []

        def register(self, cls):
            if self.condition:
                error = RuntimeError(self.condition)
                error.getCondition = lambda: self.condition
                raise error
            self.names.append(cls.name())

    class ConnectLike:  # no _jvm attribute
        def __init__(self, condition=None):
            self.dataSource = Registry(condition)

    session = ConnectLike()
    assert spark_mds.register(session) == "python"
    assert session.dataSource.names == ["mds"]
    assert spark_mds.register(ConnectLike("DATA_SOURCE_ALREADY_EXISTS")) == "jvm"


def test_configure_keeps_other_jars():
    b = SparkSession.builder.config("spark.jars", "/x/other.jar")
    spark_mds.configure(b)
    jars = b._options["spark.jars"].split(",")
    assert jars == ["/x/other.jar", spark_mds.jar_path()]
    spark_mds.configure(b)  # idempotent
    assert b._options["spark.jars"].split(",") == jars

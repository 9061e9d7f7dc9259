"""spark_mds.configure / register: the jar is shipped and the JVM source serves format("mds")."""

from __future__ import annotations

import os
import sys

import pytest
from pyspark.sql import SparkSession

import spark_mds
from mds_testutil import SPARK_MAJOR
from support import run_python

pytestmark = pytest.mark.spark


def test_register_reports_jvm(spark):
    assert spark_mds.register(spark) == "jvm"
    assert spark_mds.jar_path() in spark.sparkContext.getConf().get("spark.jars")


@pytest.mark.skipif(SPARK_MAJOR < 4, reason="PySpark 3.5 has no Python Data Source API")
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


def test_configure_sets_the_workers_interpreter(monkeypatch):
    monkeypatch.delenv("PYSPARK_PYTHON", raising=False)
    b = spark_mds.configure(SparkSession.builder)
    assert b._options["spark.pyspark.python"] == os.environ["PYSPARK_PYTHON"] == sys.executable
    monkeypatch.delenv("PYSPARK_PYTHON")
    b = spark_mds.configure(SparkSession.builder.config("spark.pyspark.python", "/opt/py/bin/python"))
    assert b._options["spark.pyspark.python"] == os.environ["PYSPARK_PYTHON"] == "/opt/py/bin/python"  # the user's
    monkeypatch.setenv("PYSPARK_PYTHON", "/opt/other/python")  # so is the environment's
    assert spark_mds.configure(SparkSession.builder)._options["spark.pyspark.python"] == "/opt/other/python"
    assert os.environ["PYSPARK_PYTHON"] == "/opt/other/python"


def test_jar_path_for_each_spark_line():
    assert os.path.basename(spark_mds.jar_path("3.5.2")) == "spark-mds-spark3.5_2.12.jar"
    for version in ("4.0.0", "4.1.4", "4.2.1", "4.3.0"):
        assert os.path.basename(spark_mds.jar_path(version)) == "spark-mds-spark4_2.13.jar"
    assert spark_mds.jar_path() == spark_mds.jar_path(__import__("pyspark").__version__)
    with pytest.raises(spark_mds.SparkVersionError, match="supports Spark 3.5 and 4.x, not 3.4.1"):
        spark_mds.jar_path("3.4.1")
    with pytest.raises(spark_mds.SparkVersionError, match="no jar for Spark 3.5.2 with Scala 2.13 .*Scala 2.12 image"):
        spark_mds.jar_path("3.5.2", scala_version="2.13")


REGISTER = r"""
import json, sys
from pyspark.sql import SparkSession
import spark_mds
b = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false")
if sys.argv[1]:
    b = b.config("spark.jars", sys.argv[1])
spark = b.getOrCreate()
try:
    print(json.dumps({"register": spark_mds.register(spark)}))
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
"""


def test_register_without_the_jar():
    """No jar: the Python data source on Spark 4; on 3.5 (no Python Data Source API) an error that
    says what works instead."""
    r = run_python(REGISTER, "", env={"PYSPARK_PYTHON": sys.executable})
    if SPARK_MAJOR >= 4:
        assert r == {"register": "python"}
    else:
        assert r["error"] == "SparkVersionError", r
        assert "needs the spark-mds jar on Spark 3.5" in r["message"] and "spark_mds.write(df, path" in r["message"]
        assert "spark_mds.read(spark, path)" in r["message"] and "spark_mds.jar_path(spark_version='3.5" in r["message"]


def test_register_proves_the_jar_loads():
    """The other Spark line's jar can be found on the classpath but does not load: register says
    so, naming the jar to use, instead of answering "jvm" and failing at the first read."""
    other = spark_mds.jar_path("3.5.8" if SPARK_MAJOR >= 4 else "4.1.4")
    r = run_python(REGISTER, other, env={"PYSPARK_PYTHON": sys.executable})
    assert r["error"] == "SparkVersionError", r
    built_for = "Spark 3.5 with Scala 2.12" if SPARK_MAJOR >= 4 else "Spark 4 with Scala 2.13"
    assert f"is built for {built_for} and does not load on this Spark {__import__('pyspark').__version__}" in r["message"]
    assert f"Use the jar for this Spark: {spark_mds.jar_path()}" in r["message"], r["message"]

"""spark-mds: the Spark data source for the Mosaic Data Shard (MDS) format."""

from __future__ import annotations

import os

__version__ = "0.1.0"

#: The JVM class that serves ``format("mds")`` (listed in the jar's DataSourceRegister services).
JVM_SOURCE_CLASS = "io.sparkmds.spark.v2.MdsDataSource"


def jar_path() -> str:
    """Absolute path of the bundled plugin jar (built by `make setup` / Gradle)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "jars", "spark-mds.jar")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"the spark-mds jar is missing at {path}; build it with `make jar` "
            "(or use the Python fallback: spark_mds.register(spark))"
        )
    return path


def configure(builder):
    """Adds the plugin jar to a ``SparkSession.builder`` (``spark.jars``) and returns the builder.

    Jars already listed in ``spark.jars`` on the builder are kept.
    """
    jar = jar_path()
    existing = getattr(builder, "_options", {}).get("spark.jars", "")
    jars = [j for j in existing.split(",") if j.strip()]
    if jar not in jars:
        jars.append(jar)
    return builder.config("spark.jars", ",".join(jars))


def _jvm_source_loadable(spark) -> bool:
    jvm = getattr(spark, "_jvm", None)
    if jvm is None:  # Spark Connect: no JVM in this process
        return False
    try:
        loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
        jvm.java.lang.Class.forName(JVM_SOURCE_CLASS, False, loader)
        return True
    except Exception:  # py4j raises Py4JJavaError for ClassNotFoundException
        return False


def register(spark) -> str:
    """Makes ``format("mds")`` available on ``spark`` and returns which implementation serves it.

    Returns ``"jvm"`` when the plugin jar is on the session's classpath (see :func:`configure`).
    """
    if _jvm_source_loadable(spark):
        return "jvm"
    raise RuntimeError(
        "format('mds') is not available: the spark-mds JVM source "
        f"({JVM_SOURCE_CLASS}) is not on this session's classpath, and the Python fallback data "
        "source is not there yet. Create the session with "
        "spark_mds.configure(SparkSession.builder) (which adds spark.jars) and retry."
    )

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

    Returns:
        ``"jvm"`` when the plugin jar is on the session's classpath (see :func:`configure`): the
        Scala DataSource V2, with every SaveMode and full SQL. Otherwise (no jar, e.g. a Spark
        Connect client or a serverless cluster) the pure-Python fallback is registered and
        ``"python"`` is returned: same format, options and commit protocol; ``append`` and
        ``overwrite`` through ``df.write``, every mode through :func:`write`, and SQL through
        temporary views (see the README).
    """
    if _jvm_source_loadable(spark):
        return "jvm"
    from .python_source import register_python_source

    # False: Spark says a JVM source owns the name (a jar added in a way we could not see).
    return "python" if register_python_source(spark) else "jvm"


def write(df, path: str, mode: str = "errorifexists", **options) -> None:
    """Writes ``df`` as an MDS dataset at ``path`` with any SaveMode (``errorifexists``, ``ignore``,
    ``append``, ``overwrite``), whichever implementation serves ``format("mds")``; ``options`` are
    the writer options (``compression``, ``hashes``, ``size_limit``, ``nulls``, and
    ``encoding.<column>`` as ``**{"encoding.image": "jpeg"}``). See :mod:`spark_mds.save_modes`."""
    from .save_modes import write as _write

    _write(df, path, mode, **options)

"""spark-mds: the Spark data source for the Mosaic Data Shard (MDS) format."""

from __future__ import annotations

import os
import sys
from typing import Any

__version__ = "0.1.0"

#: The JVM class that serves ``format("mds")`` (listed in the jar's DataSourceRegister services).
JVM_SOURCE_CLASS = "io.sparkmds.spark.v2.MdsDataSource"

#: The jars bundled with this package: (Spark line, Scala binary version) -> file name. Spark 3.5 is
#: built with Scala 2.12 (open-source 3.5, Databricks Runtime 15.x/16.x), 4.x with Scala 2.13.
JARS = {("3.5", "2.12"): "spark-mds-spark3.5_2.12.jar", ("4", "2.13"): "spark-mds-spark4_2.13.jar"}
_DEFAULT_SCALA = {"3.5": "2.12", "4": "2.13"}


class SparkVersionError(RuntimeError):
    """The plugin jar cannot serve this Spark: an unsupported version, or a jar that does not load."""


def _spark_line(spark_version: str) -> str:
    parts = str(spark_version).split(".")
    if parts[0] == "3" and parts[1:2] == ["5"]:
        return "3.5"
    if parts[0] == "4":
        return "4"
    raise SparkVersionError(
        f"spark-mds supports Spark 3.5 and 4.x, not {spark_version}: upgrade Spark, or write MDS without Spark "
        "(mds_loader.write_table / MDSWriter)"
    )


def _installed_spark_version() -> str:
    import pyspark

    return pyspark.__version__


def jar_path(spark_version: str | None = None, scala_version: str | None = None) -> str:
    """Absolute path of the bundled plugin jar for a Spark version (built by ``make setup``).

    Args:
        spark_version: the Spark that will load the jar, e.g. ``"3.5.2"`` or ``"4.1.0"`` (default: the
            installed pyspark's version). On a cluster whose Spark differs from the local pyspark
            (Databricks: the runtime's Spark), pass it to get the jar to install there.
        scala_version: its Scala binary version (default: 2.12 for Spark 3.5, 2.13 for 4.x).

    Raises:
        SparkVersionError: no jar for that Spark and Scala (the Python fallback serves it instead).
        FileNotFoundError: the jar was not built.
    """
    version = spark_version or _installed_spark_version()
    line = _spark_line(version)
    scala = scala_version or _DEFAULT_SCALA[line]
    name = JARS.get((line, scala))
    if name is None:
        raise SparkVersionError(
            f"spark-mds has no jar for Spark {version} with Scala {scala} (it has "
            f"{', '.join(f'Spark {k[0]} with Scala {k[1]}' for k in JARS)}): on Databricks Runtime 16.4, use the "
            "Scala 2.12 image; or use the Python fallback (spark_mds.register(spark) without the jar)"
        )
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "jars", name)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"the spark-mds jar for Spark {version} is missing at {path}; build it with `make jar` "
            "(or use the Python fallback: spark_mds.register(spark))"
        )
    return path


def configure(builder: Any) -> Any:
    """Prepares a ``SparkSession.builder`` for ``format("mds")`` and returns it: adds the plugin jar
    for the installed pyspark's Spark (``spark.jars``, keeping jars already listed there), and makes
    Spark's Python workers run this interpreter unless ``spark.pyspark.python`` or the environment
    variable ``PYSPARK_PYTHON`` already chooses one. (PySpark's default is ``python3`` on the PATH,
    which may not have spark-mds installed. A driver that Python starts takes the workers'
    interpreter from ``PYSPARK_PYTHON`` when the session starts, not from ``spark.pyspark.python``,
    which only spark-submit reads; so the choice is set as both, the variable only where unset.)
    """
    options = getattr(builder, "_options", {})
    jar = jar_path()
    jars = [j for j in options.get("spark.jars", "").split(",") if j.strip()]
    if jar not in jars:
        jars.append(jar)
    builder = builder.config("spark.jars", ",".join(jars))
    python = options.get("spark.pyspark.python") or os.environ.get("PYSPARK_PYTHON") or sys.executable
    if "spark.pyspark.python" not in options:
        builder = builder.config("spark.pyspark.python", python)
    os.environ.setdefault("PYSPARK_PYTHON", python)
    return builder


def _jvm_source(spark: Any) -> str | None:
    """A description of the plugin jar that serves ``format("mds")`` in ``spark``'s JVM, or None
    when the jar is not on its classpath (or the session has no JVM here: Spark Connect).

    Raises:
        SparkVersionError: the jar is on the classpath but does not load on this Spark.
    """
    jvm = getattr(spark, "_jvm", None)
    if jvm is None:  # Spark Connect: no JVM in this process
        return None
    loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
    try:
        jvm.java.lang.Class.forName(JVM_SOURCE_CLASS, False, loader)
    except Exception:  # py4j raises Py4JJavaError for ClassNotFoundException
        return None
    try:  # found: prove that it loads and runs here (a jar built for another Spark or Scala does not)
        return str(jvm.io.sparkmds.BuildInfo.check())
    except Exception as exc:
        built_for = "another Spark line"
        try:
            built_for = f"Spark {jvm.io.sparkmds.BuildInfo.sparkLine()} with Scala {jvm.io.sparkmds.BuildInfo.scalaBinaryVersion()}"
        except Exception:
            pass
        scala = "?"
        try:
            scala = str(jvm.scala.util.Properties.versionNumberString())
        except Exception:
            pass
        try:
            wanted = jar_path(spark.version, ".".join(scala.split(".")[:2]) if scala != "?" else None)
        except (SparkVersionError, FileNotFoundError) as why:
            wanted = f"none ({why})"
        jars = spark.sparkContext.getConf().get("spark.jars", "")
        cause = getattr(exc, "java_exception", None) or exc  # py4j: the JVM's own exception
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(exc).__name__
        raise SparkVersionError(
            f"the spark-mds jar on this session's classpath (spark.jars={jars!r}) is built for {built_for} and does "
            f"not load on this Spark {spark.version} with Scala {scala}: {first[:500]}. Use the jar for this Spark: "
            f"{wanted} (spark_mds.configure(SparkSession.builder) picks it from the installed pyspark; on a cluster, "
            "spark_mds.jar_path(spark_version=...))"
        ) from None


def register(spark: Any) -> str:
    """Makes ``format("mds")`` available on ``spark`` and returns which implementation serves it.

    Returns:
        ``"jvm"`` when the plugin jar is on the session's classpath (see :func:`configure`) and
        loads there: the Scala data source, with every SaveMode and full SQL. Otherwise (no jar,
        e.g. a Spark Connect client or a serverless cluster) the pure-Python data source is
        registered and ``"python"`` is returned: same format, options and commit protocol;
        ``append`` and ``overwrite`` through ``df.write``, every mode through :func:`write`, and
        SQL through temporary views (see the README).

    Raises:
        SparkVersionError: the jar on the classpath was built for another Spark or Scala version
            (the message names the jar to use), or this Spark has neither the jar nor PySpark's
            Python Data Source API (open-source Spark 3.5): add the jar, or use :func:`write` and
            :func:`read`, which work there without it.
    """
    if _jvm_source(spark) is not None:
        return "jvm"
    if getattr(spark, "dataSource", None) is None:  # no Python Data Source API before Spark 4.0
        raise SparkVersionError(
            f"format('mds') needs the spark-mds jar on Spark {spark.version}, which has no Python Data Source API: "
            "add it (spark_mds.configure(SparkSession.builder), or spark.jars / the cluster's libraries with "
            f"spark_mds.jar_path(spark_version='{spark.version}')), or use spark_mds.write(df, path, mode=...) and "
            "spark_mds.read(spark, path), which work without it"
        )
    from .python_source import register_python_source

    # False: Spark says a JVM source owns the name (a jar added in a way we could not see).
    return "python" if register_python_source(spark) else "jvm"


def dataframe_to_mds(dataframe, merge_index: bool = True, mds_kwargs=None, udf_iterable=None, udf_kwargs=None):
    """mosaicml-streaming's ``dataframe_to_mds``, call for call, written through ``format("mds")``
    (see :mod:`spark_mds.converters`); returns ``(out_local, out_remote)``."""
    from .converters import dataframe_to_mds as _convert

    return _convert(dataframe, merge_index, mds_kwargs, udf_iterable, udf_kwargs)


def write(df, path: str, mode: str = "errorifexists", *, engine: str = "auto", format: str = "mds",
          partition_by=None, **options) -> None:
    """Writes ``df`` as an MDS dataset at ``path`` with any SaveMode (``errorifexists``, ``ignore``,
    ``append``, ``overwrite``), whichever implementation serves ``format("mds")``; ``options`` are
    the writer options (``compression``, ``hashes``, ``size_limit``, ``nulls``, and
    ``encoding.<column>`` as ``**{"encoding.image": "jpeg"}``). Where nothing serves ``format("mds")``
    (PySpark 3.5 without the jar, classic or Spark Connect), the same files are written by
    ``mapInArrow`` jobs; ``engine="mapInArrow"`` or ``"format"`` forces one way; ``format``: the
    data source name (another name where the Python fallback was registered under one, e.g.
    ``"mds_py"``); ``partition_by``: partition columns, for every implementation (docs/format.md
    §8). See :mod:`spark_mds.save_modes` and :mod:`spark_mds.arrow_jobs`."""
    from .save_modes import write as _write

    _write(df, path, mode, engine=engine, format=format, partition_by=partition_by, **options)


def read(spark, path: str, schema=None, *, engine: str = "auto", format: str = "mds", **options):
    """Reads the MDS dataset at ``path`` into a DataFrame: ``spark.read.format("mds")`` when the JVM
    source or the registered Python fallback serves it, else (PySpark 3.5 without the jar, classic or
    Spark Connect) ``mapInArrow`` tasks that decode the shards with the fallback's reader; the same
    values either way. ``schema``: a ``StructType`` or DDL string (a subset of the columns, or stored
    bytes as ``BINARY``), else the dataset's. ``options``: read options (``max_partition_bytes``,
    ``validate_hash``, ``storage_options`` / ``storage.<name>``). ``engine="mapInArrow"`` or
    ``"format"`` forces one way; ``format``: the data source name (another name where the Python
    fallback was registered under one, as for :func:`write`). See :mod:`spark_mds.arrow_jobs`."""
    from .arrow_jobs import engine_name, read as _read_with_arrow, source_missing
    from .save_modes import _option_text

    engine = engine_name(engine)
    texts = {k: _option_text(v) for k, v in options.items()}
    if engine != "mapInArrow":
        reader = spark.read.format(format).options(**texts)
        if schema is not None:
            reader = reader.schema(schema)
        try:
            df = reader.load(path)
            df.schema  # noqa: B018 - Spark Connect resolves the source only when asked
            return df
        except Exception as exc:
            if engine == "format" or not source_missing(exc, format):
                raise
    return _read_with_arrow(spark, path, schema, texts)

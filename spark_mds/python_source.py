"""The pure-Python ``format("mds")``: a PySpark (4.0+) Python Data Source for sessions that cannot
load the spark-mds jar (Spark Connect clients, serverless). Where PySpark has no Python Data Source
API (open-source 3.5), ``spark_mds.write`` / ``spark_mds.read`` run the same reader and writer in
``mapInArrow`` jobs instead (:mod:`spark_mds.arrow_jobs`).

It writes and reads exactly what the JVM source does (docs/format.md): same options, type mapping,
file names and commit protocol, so either implementation reads the other's datasets.

Use::

    from spark_mds.python_source import register_python_source
    register_python_source(spark)            # False: the JVM source already serves "mds"
    df.write.format("mds").mode("append").save(path)        # or mode("overwrite")
    spark.read.format("mds").load(path)
    spark_mds.save_modes.write(df, path, mode="errorifexists")  # every SaveMode, either implementation

The Python workers of the executors (and the driver's planner workers) need ``spark_mds`` and
``mds_loader`` installed, with pyarrow. Spark starts them with ``spark.pyspark.python``, else
``PYSPARK_PYTHON``, else ``python3`` from the PATH; where that interpreter lacks them, reads and
writes fail naming it and the setting (:mod:`spark_mds.worker_guard`), not with a bare
``ModuleNotFoundError``.

What PySpark's Python Data Source API cannot do, and what works instead:

* **Save modes**: ``df.write.format("mds")`` accepts only ``append`` and ``overwrite``; ``errorifexists``
  (Spark's default, so also no mode at all) and ``ignore`` fail with
  ``UNSUPPORTED_DATA_SOURCE_SAVE_MODE``. Use :func:`spark_mds.save_modes.write`, which implements
  them by asking the source whether ``index.json`` exists and then appending (from Spark Connect too).
* **SQL tables**: ``CREATE TABLE t USING mds LOCATION '...'`` succeeds, but the table's location never
  reaches the Python source, so ``SELECT``/``INSERT``/CTAS on the table fail
  (``PYTHON_DATA_SOURCE_ERROR``). These forms work::

      CREATE OR REPLACE TEMPORARY VIEW v USING mds OPTIONS (path '/data/ds');
      SELECT * FROM v;
      INSERT INTO v SELECT * FROM src;          -- appends
      INSERT OVERWRITE v SELECT * FROM src;     -- replaces

      CREATE TABLE t (id BIGINT, text STRING) USING mds;   -- a declaration only
      SELECT * FROM t WITH ('path' = '/data/ds');
      INSERT INTO t WITH ('path' = '/data/ds') SELECT * FROM src;

  ``SELECT * FROM mds.`/data/ds``` fails (``UNSUPPORTED_DATASOURCE_FOR_DIRECT_QUERY``).
* **Snapshots**: Spark (from 4.1; 4.0 plans a view again for every query) plans a Python source's
  relation once, when a DataFrame or temporary view is first used, and reuses that plan
  (``REFRESH TABLE`` does not renew it). So a DataFrame or view keeps reading the dataset as it was then: after writing, load the DataFrame again or run
  ``CREATE OR REPLACE TEMPORARY VIEW`` again (``WITH ('path' = ...)`` queries are planned afresh each
  time). A plan whose shards were replaced by an overwrite fails, saying so.
* **Column pruning**: the reader is not told which columns a query uses, so it decodes every column
  of its schema; pass a schema naming only the columns you need to decode fewer
  (``spark.read.schema("id BIGINT, text STRING").format("mds").load(path)``).
* **Year-month intervals** cannot cross PySpark's Arrow transfer: write the number of months instead,
  and read such a column as ``INT`` with a user schema.
* ``partitionBy`` is refused by Spark for Python sources: write partitioned datasets (docs/format.md §8)
  with ``spark_mds.write(df, path, partition_by=[...])`` (the ``partition_by`` option); reading them
  restores the partition columns, without pruning.
* **Paths**: a local directory (a mount that the driver and executors share, e.g. ``/Volumes/...``),
  or a URL that fsspec opens (``s3://``, ``gs://``, ``abfs://``, ...; its package, e.g. s3fs,
  installed on the driver and executors), chosen by :func:`spark_mds.fallback.storage.open_store`.
  Credentials and endpoints are fsspec storage options, given as ``storage.<name>`` options
  (``.option("storage.endpoint_url", "https://...")``; dots nest) or as a JSON object in
  ``storage_options``. Hadoop-only paths (``dbfs:/``, ``hdfs://`` without its Python libraries) fail
  saying what to use instead. Concurrent write jobs to one *remote* path are not protected against
  lost updates (object stores have no compare-and-swap through fsspec): serialize them.
* ``encoding.<column>`` option keys reach Python lower-cased; the column is matched ignoring case.
"""

from __future__ import annotations

from typing import ClassVar

from pyspark.sql.datasource import DataSource, DataSourceReader, DataSourceWriter
from pyspark.sql.types import StructType

from .fallback.compat import error_condition, session_parallelism
from .fallback.options import dataset_path
from .fallback.reader import MdsReader, default_parallelism, infer_schema
from .fallback.writer import MdsArrowWriter, plan_write
from .worker_guard import source_class

__all__ = ["MdsDataSource", "register_python_source", "python_source_class", "DEFAULT_NAME"]

#: The short name the fallback registers by default (the JVM source's name).
DEFAULT_NAME = "mds"


class MdsDataSource(DataSource):
    """``format("mds")`` in Python. Options: see :mod:`spark_mds.fallback.options`.

    Class attributes (set by :func:`python_source_class`): ``short_name``, the format name it is
    registered under, and ``parallelism``, the session's default parallelism used to group small
    shards into read partitions (0: the driver's CPU count).
    """

    short_name: ClassVar[str] = DEFAULT_NAME
    parallelism: ClassVar[int] = 0

    @classmethod
    def name(cls) -> str:
        return cls.short_name

    def schema(self) -> StructType:
        """The dataset's schema: ``spark_mds`` of its index, else inferred from the encodings."""
        return infer_schema(dataset_path(self.options), dict(self.options))

    def reader(self, schema: StructType) -> DataSourceReader:
        return MdsReader(dataset_path(self.options), schema, dict(self.options), self.parallelism or default_parallelism())

    def writer(self, schema: StructType, overwrite: bool) -> DataSourceWriter:
        """Plans the write on the driver (options, layout, job id); the writer goes to the tasks."""
        return MdsArrowWriter(plan_write(dict(self.options), schema, overwrite, dataset_path(self.options)))


def python_source_class(name: str = DEFAULT_NAME, parallelism: int = 0) -> type[MdsDataSource]:
    """A subclass of :class:`MdsDataSource` registered as ``name`` (e.g. ``"mds_py"``, to use it beside
    the JVM source in one session) that groups shards for ``parallelism`` cores."""
    if not name or not isinstance(name, str):
        raise ValueError(f"the data source name must be a non-empty string, got {name!r}")
    # A class made here is pickled by value (it is no module attribute), so its settings reach the workers.
    return type(f"MdsDataSource_{name}", (MdsDataSource,), {"short_name": name, "parallelism": int(parallelism)})


def register_python_source(spark, name: str = DEFAULT_NAME) -> bool:
    """Registers the Python ``format(name)`` source on ``spark``.

    The class registered is :func:`spark_mds.worker_guard.source_class`: it reaches Spark's Python
    workers by value and creates :func:`python_source_class` there, so that a worker whose
    interpreter lacks spark-mds fails naming that interpreter and ``spark.pyspark.python``.

    Returns:
        True when registered (or re-registered); False when a JVM data source already owns ``name``
        (Spark raises ``DATA_SOURCE_ALREADY_EXISTS``: the spark-mds jar is on the classpath and
        serves ``format("mds")`` itself).
    """
    python_source_class(name)  # validates the name
    cls = source_class(name, session_parallelism(spark))
    try:
        spark.dataSource.register(cls)
    except Exception as exc:
        if error_condition(exc) == "DATA_SOURCE_ALREADY_EXISTS" or "DATA_SOURCE_ALREADY_EXISTS" in str(exc):
            return False
        raise
    return True

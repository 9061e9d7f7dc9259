"""The one place where the fallback depends on the PySpark version (3.5 - 4.3).

Everything else in :mod:`spark_mds.fallback` uses only public PySpark API that exists on every
supported version (``pyspark.sql.types``, ``pyspark.TaskContext``) and our own Spark -> Arrow type
mapping (:func:`spark_mds.fallback.layout.spark_arrow_type`), never ``pyspark.sql.pandas`` internals.

PySpark's Python Data Source API (``pyspark.sql.datasource``) exists from 4.0. The fallback's reader
and writer subclass its classes so that Spark can run them as ``format("mds")``; the same reader and
writer also run inside ``DataFrame.mapInArrow`` tasks (:mod:`spark_mds.arrow_jobs`), which is how
``spark_mds.read`` / ``spark_mds.write`` work where the API is missing (open-source 3.5). There the
base classes are stand-ins with the same names and the methods the fallback uses.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "HAS_PYTHON_DATA_SOURCE",
    "DataSourceArrowWriter",
    "DataSourceReader",
    "InputPartition",
    "WriterCommitMessage",
    "error_condition",
    "session_parallelism",
]

try:
    from pyspark.sql.datasource import DataSourceArrowWriter, DataSourceReader, InputPartition, WriterCommitMessage

    #: Whether this PySpark has the Python Data Source API (``spark.dataSource.register``): 4.0 and later.
    HAS_PYTHON_DATA_SOURCE = True
except ImportError:  # pyspark 3.5
    HAS_PYTHON_DATA_SOURCE = False

    @dataclass
    class InputPartition:  # type: ignore[no-redef]
        """Stand-in for ``pyspark.sql.datasource.InputPartition`` (PySpark < 4.0)."""

        value: object = None

    class DataSourceReader:  # type: ignore[no-redef]
        """Stand-in for ``pyspark.sql.datasource.DataSourceReader`` (PySpark < 4.0)."""

        def partitions(self):  # pragma: no cover - overridden
            raise NotImplementedError

        def read(self, partition):  # pragma: no cover - overridden
            raise NotImplementedError

    @dataclass
    class WriterCommitMessage:  # type: ignore[no-redef]
        """Stand-in for ``pyspark.sql.datasource.WriterCommitMessage`` (PySpark < 4.0)."""

    class DataSourceArrowWriter:  # type: ignore[no-redef]
        """Stand-in for ``pyspark.sql.datasource.DataSourceArrowWriter`` (PySpark < 4.0)."""

        def write(self, iterator):  # pragma: no cover - overridden
            raise NotImplementedError

        def commit(self, messages):  # pragma: no cover - overridden
            raise NotImplementedError

        def abort(self, messages):  # pragma: no cover - overridden
            raise NotImplementedError


def error_condition(exc: BaseException) -> str:
    """The error condition of a PySpark exception (``getCondition`` from 4.0, ``getErrorClass``
    before; classic and Spark Connect), or ``""``."""
    for attr in ("getCondition", "getErrorClass"):
        get = getattr(exc, attr, None)
        if get is None:
            continue
        try:
            value = get()
        except Exception:
            continue
        if value:
            return str(value)
    return ""


def session_parallelism(spark) -> int:
    """The session's default parallelism (``sparkContext.defaultParallelism``; on Spark Connect, which
    has no SparkContext, ``spark.default.parallelism`` if set), or 0 when unknown."""
    try:
        return int(spark.sparkContext.defaultParallelism)  # classic sessions
    except Exception:
        try:
            return int(spark.conf.get("spark.default.parallelism", "0") or 0)
        except Exception:
            return 0

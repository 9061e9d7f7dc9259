"""``spark_mds.read`` / ``spark_mds.write`` where nothing serves ``format("mds")``: ``mapInArrow`` jobs.

Open-source PySpark 3.5 (classic sessions and Spark Connect clients) has no Python Data Source API,
and without the spark-mds jar no JVM source either. ``DataFrame.mapInArrow`` (3.3+, also over
Spark Connect) runs the Python fallback's own reader and writer there, with the same files, values
and commit protocol as ``format("mds")`` (docs/format.md §6):

* **write**: the driver (the process that calls :func:`write`) plans the job with
  :func:`~spark_mds.fallback.writer.plan_write` (options, layout, job id, the job's marker); one
  ``mapInArrow`` task per partition of the DataFrame writes its shards with
  :meth:`~spark_mds.fallback.writer.MdsArrowWriter.write` (names from the task's ``partitionId`` and
  ``taskAttemptId``) and returns its commit message; the driver collects the messages and publishes
  ``index.json`` with :meth:`~spark_mds.fallback.writer.MdsArrowWriter.commit`, or, if the job
  fails, removes every file of the job with :meth:`~spark_mds.fallback.writer.MdsArrowWriter.abort`.
  Spark keeps one result per partition (retried and speculative attempts are dropped), and the
  commit deletes the files of the attempts whose results were dropped.
* **read**: the driver infers the schema and groups the shards into input partitions
  (:class:`~spark_mds.fallback.reader.MdsReader`); a small DataFrame of the pickled partitions, one
  per Spark partition, is mapped to the dataset's rows by ``mapInArrow`` tasks that decode them into
  Arrow batches of exactly the schema. Like a Python data source's DataFrame, the result reads the
  shards listed when :func:`read` ran.

The driver reads ``index.json`` and writes the index and the job's marker itself, so it must see the
path as the executors do (a shared mount, or a URL such as ``s3://...``), as for the Python data
source. Year-month intervals cannot cross Spark's Arrow transfer: they fail as in the fallback.
"""

from __future__ import annotations

import pickle
from typing import Any

from .fallback.compat import error_condition, session_parallelism
from .fallback.dataset import read_index
from .fallback.options import parse_storage_options
from .fallback.reader import MdsReader, default_parallelism, infer_schema
from .fallback.storage import open_store
from .fallback.writer import MdsArrowWriter, plan_write
from .worker_guard import read_task, write_task

__all__ = ["ENGINES", "engine_name", "source_missing", "write", "read"]

#: ``engine`` values of ``spark_mds.read`` / ``spark_mds.write`` (case-insensitive): ``auto`` uses
#: ``format("mds")`` when something serves it (the JVM source or the registered Python data source)
#: and ``mapInArrow`` jobs otherwise; ``format`` and ``mapInArrow`` force one of them.
ENGINES = {"auto": "auto", "format": "format", "mapinarrow": "mapInArrow"}


def engine_name(engine: str) -> str:
    """The canonical name of an ``engine`` value.

    Raises:
        ValueError: an unknown engine.
    """
    key = str(engine).strip().lower()
    if key not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; use one of auto, format, mapInArrow")
    return ENGINES[key]


def source_missing(exc: BaseException, format: str) -> bool:
    """Whether ``exc`` says that no data source serves ``format`` in the session (Spark's
    ``DATA_SOURCE_NOT_FOUND``, classic or Spark Connect): nothing ran yet, so the write or read can
    go through ``mapInArrow`` instead."""
    text = f"{error_condition(exc)} {exc}"
    return "DATA_SOURCE_NOT_FOUND" in text and format.lower() in text.lower()


def _exists_error(path: str) -> Exception:
    from .save_modes import DatasetExistsError

    return DatasetExistsError(
        f"an MDS dataset already exists at {path} (it has an index.json); use mode('append') to add to it, "
        "mode('overwrite') to replace it, or mode('ignore') to skip the write"
    )


def write(df: Any, path: str, mode: str, options: dict[str, str]) -> None:
    """Writes ``df`` at ``path`` with ``mapInArrow`` tasks (see the module docstring).

    Args:
        df: a classic or Spark Connect DataFrame.
        path: the dataset directory (local, shared with the executors, or an fsspec URL).
        mode: ``errorifexists``, ``ignore``, ``append`` or ``overwrite`` (canonical names).
        options: the writer options, as text.

    Raises:
        DatasetExistsError: ``errorifexists`` and a dataset exists at ``path``.
        MDSConfigError, MDSSchemaError, MDSEncodingError: before any task runs.
    """
    if mode in ("errorifexists", "ignore"):
        store = open_store(path, parse_storage_options(options))
        if read_index(store).exists:
            if mode == "errorifexists":
                raise _exists_error(store.location)
            return
    plan = plan_write(options, df.schema, mode == "overwrite", path)
    writer = MdsArrowWriter(plan)
    if mode in ("errorifexists", "ignore") and plan.start_digest is not None:  # created in the meantime
        writer.abort([])
        if mode == "errorifexists":
            raise _exists_error(plan.location)
        return
    try:
        rows = df.mapInArrow(write_task(writer), "message BINARY").collect()
        messages = [pickle.loads(bytes(row[0])) for row in rows]
    except BaseException:
        writer.abort([])
        raise
    writer.commit(messages)


def read(spark: Any, path: str, schema: Any, options: dict[str, str]) -> Any:
    """A DataFrame of the dataset at ``path`` read by ``mapInArrow`` tasks (see the module docstring).

    Args:
        spark: a classic or Spark Connect session.
        path: the dataset directory or URL.
        schema: None (the dataset's), a ``StructType`` or a DDL string (a subset of the columns, or
            other types, as for ``spark.read.schema(...)``).
        options: the read options, as text.

    Raises:
        FileNotFoundError: no ``index.json`` and no schema given.
        MDSSchemaError, MDSConfigError: as the Python fallback, before any task runs.
    """
    if schema is None:
        schema = infer_schema(path, options)
    elif isinstance(schema, str):
        schema = spark.createDataFrame([], schema).schema
    reader = MdsReader(path, schema, options, session_parallelism(spark) or default_parallelism())
    parts = reader.partitions()
    if not parts:
        return spark.createDataFrame([], schema)
    seeds = spark.createDataFrame([(pickle.dumps(p),) for p in parts], "partition BINARY").coalesce(1)
    if len(parts) > 1:  # round-robin from one partition: one input partition per task
        seeds = seeds.repartition(len(parts))
    return seeds.mapInArrow(read_task(reader), schema)

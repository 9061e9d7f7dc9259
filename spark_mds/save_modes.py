"""``write(df, path, mode=...)``: every SaveMode of ``format("mds")``, with either implementation,
in classic and Spark Connect sessions.

The JVM source supports every mode itself, so the helper asks for the mode first. PySpark's Python
Data Source API (the fallback) accepts only ``append`` and ``overwrite`` and refuses the others with
``UNSUPPORTED_DATA_SOURCE_SAVE_MODE`` before anything runs; the helper then implements them the way
the JVM source defines them (docs/format.md §6): a dataset *exists* at a path when the path holds
``index.json``; ``errorifexists`` fails naming the path, ``ignore`` does nothing, and otherwise the
data is appended (which creates the dataset). Existence is asked of the source itself (a schema
lookup that runs where the data source runs), so the check also works from a Spark Connect client.
The check and the append are two steps: a concurrent writer may create the dataset in between.

Where nothing serves ``format("mds")`` (open-source PySpark 3.5 without the jar, classic or Spark
Connect: Spark says ``DATA_SOURCE_NOT_FOUND`` before anything runs), the write goes through
``mapInArrow`` jobs (:mod:`spark_mds.arrow_jobs`) with the same files, modes and commit protocol;
there the existence check reads ``index.json`` on the driver and is repeated against the job's own
snapshot of the index, so a dataset created in between fails the commit instead of being appended to.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .fallback.compat import error_condition

__all__ = ["write", "SAVE_MODES", "DatasetExistsError"]

#: Accepted ``mode`` values (Spark's names and aliases, case-insensitive).
SAVE_MODES = {
    "errorifexists": "errorifexists", "error": "errorifexists", "default": "errorifexists",
    "append": "append", "overwrite": "overwrite", "ignore": "ignore",
}  # fmt: skip


class DatasetExistsError(FileExistsError):
    """``mode="errorifexists"`` and the path already holds an MDS dataset."""


def _option_text(value: Any) -> str:
    """An option value as Spark passes it: a string (a dict or list, e.g. ``storage_options``, as JSON)."""
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def _storage_options(options: dict[str, str]) -> dict[str, str]:
    """The options that a read of the same path needs: the storage options of a remote path."""
    return {k: v for k, v in options.items() if k.lower() == "storage_options" or k.lower().startswith("storage.")}


def _exists(spark: Any, format: str, path: str, options: dict[str, str]) -> bool:
    """Whether ``path`` holds an MDS dataset, as the data source sees it."""
    try:
        spark.read.format(format).options(**_storage_options(options)).load(path).schema  # noqa: B018 - planning asks the source
    except Exception as exc:
        text = str(exc)
        if "index.json is missing" in text:  # the fallback's FileNotFoundError
            return False
        if "year-month intervals" in text:  # readable by the JVM source only, but there
            return True
        raise
    return True


_SESSION_OVERWRITE_MODE = "spark.sql.sources.partitionOverwriteMode"


def write(df: Any, path: str, mode: str = "errorifexists", *, format: str = "mds", engine: str = "auto",
          partition_by: str | Sequence[str] | None = None, **options: Any) -> None:
    """Writes ``df`` as an MDS dataset at ``path`` with any SaveMode.

    Args:
        df: the DataFrame (classic or Spark Connect).
        path: the dataset directory.
        mode: ``errorifexists`` (default, alias ``error``), ``ignore``, ``append`` or ``overwrite``.
        format: the data source name (``"mds"``; another name when the Python fallback was registered
            under one, e.g. ``"mds_py"``).
        engine: ``auto`` (default): ``df.write.format(format)`` when the session has a source of that
            name (the JVM source, or the registered Python fallback), else ``mapInArrow`` jobs
            (:mod:`spark_mds.arrow_jobs`: PySpark 3.5, or no source registered); ``format`` or
            ``mapInArrow`` forces one of them. Either writes the same files with the same protocol.
        partition_by: partition columns (a name or a list): one MDS dataset per value under a root
            index (docs/format.md §8), as ``df.write.partitionBy(...)`` writes with the jar; here for
            every implementation (Spark refuses ``partitionBy`` for Python data sources).
        options: writer options (``compression="zstd"``, ``size_limit="64mb"``, ``hashes="sha1"``,
            ``nulls="mask"``, and ``encoding.<column>`` given as ``**{"encoding.img": "jpeg"}``); for
            a remote path of the Python fallback, ``storage_options={...}`` (a dict, passed as JSON)
            or ``**{"storage.endpoint_url": "..."}``, also used by the existence check.

    Raises:
        DatasetExistsError: ``errorifexists`` and a dataset exists at ``path`` (the fallback; the JVM
            source raises its own error with the same message).
        ValueError: an unknown mode or engine.
    """
    from .arrow_jobs import engine_name, source_missing

    key = str(mode).strip().lower()
    if key not in SAVE_MODES:
        raise ValueError(f"unknown save mode {mode!r}; use one of errorifexists, ignore, append, overwrite")
    mode = SAVE_MODES[key]
    engine = engine_name(engine)
    texts = {k: _option_text(v) for k, v in options.items()}
    if partition_by:
        from .fallback.options import OVERWRITE_MODE, overwrite_mode
        from .fallback.partitions import Partitioning

        columns = [partition_by] if isinstance(partition_by, str) else list(partition_by)
        Partitioning.for_write(df.schema, columns)  # the column errors of every implementation, before the sort
        texts["partition_by"] = ",".join(columns)
        if mode == "overwrite" and overwrite_mode(texts) is None:
            # The Python fallback cannot see the session's setting; it refuses a dynamic one (as the jar does).
            texts[OVERWRITE_MODE] = df.sparkSession.conf.get(_SESSION_OVERWRITE_MODE, "static")
        if engine == "mapInArrow" or not _jar_serves(df, format):  # the JVM source sorts by itself
            df = _sorted_by(df, columns)
    if engine == "mapInArrow":
        _write_with_arrow(df, path, mode, texts)
        return
    try:
        _write_with_source(df, path, mode, format, texts)
    except Exception as exc:
        if engine == "auto" and source_missing(exc, format):  # nothing ran: no source of that name
            _write_with_arrow(df, path, mode, texts)
            return
        raise


def _jar_serves(df: Any, format: str) -> bool:
    """Whether the spark-mds jar serves ``format`` in this (classic) session; unknown on Spark Connect."""
    from . import _jvm_source

    return format.lower() == "mds" and _jvm_source(df.sparkSession) is not None


def _sorted_by(df: Any, columns: list[str]) -> Any:
    """Each partition's rows grouped by ``columns``, in their order otherwise: a write task then has
    one shard writer open at a time (the JVM source sorts the same way itself)."""
    from pyspark.sql import functions as F

    order = "__mds_row_order"
    return (df.withColumn(order, F.monotonically_increasing_id())
            .sortWithinPartitions(*[F.col(f"`{c}`") for c in columns], order).drop(order))  # fmt: skip


def _write_with_arrow(df: Any, path: str, mode: str, texts: dict[str, str]) -> None:
    from .arrow_jobs import write as write_with_arrow

    write_with_arrow(df, path, mode, texts)


def _write_with_source(df: Any, path: str, mode: str, format: str, texts: dict[str, str]) -> None:
    writer = df.write.format(format).options(**texts)
    if mode in ("append", "overwrite"):
        writer.mode(mode).save(path)
        return
    try:
        # The JVM source implements every mode. "error", not "errorifexists": Spark Connect clients
        # (4.x) accept only the former.
        writer.mode("error" if mode == "errorifexists" else mode).save(path)
        return
    except Exception as exc:
        if "UNSUPPORTED_DATA_SOURCE_SAVE_MODE" not in error_condition(exc) + str(exc):
            raise
    if _exists(df.sparkSession, format, path, texts):
        if mode == "errorifexists":
            raise DatasetExistsError(
                f"an MDS dataset already exists at {path} (it has an index.json); use mode('append') to add to it, "
                "mode('overwrite') to replace it, or mode('ignore') to skip the write"
            )
        return  # ignore
    writer.mode("append").save(path)

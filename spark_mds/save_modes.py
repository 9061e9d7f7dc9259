"""``write(df, path, mode=...)``: every SaveMode of ``format("mds")``, with either implementation.

The JVM source supports every mode itself. PySpark's Python Data Source API (the fallback) accepts
only ``append`` and ``overwrite``; this helper gives the fallback the other two, the way the JVM
source defines them (docs/format.md §6): a dataset *exists* at a path when the path holds
``index.json``; ``errorifexists`` then fails naming the path, ``ignore`` does nothing, and otherwise
the data is appended (which creates the dataset).
"""

from __future__ import annotations

from typing import Any

from mds_loader.format.index import INDEX_BASENAME

from .fallback.storage import open_store

__all__ = ["write", "SAVE_MODES", "DatasetExistsError"]

#: Accepted ``mode`` values (Spark's names and aliases, case-insensitive).
SAVE_MODES = {
    "errorifexists": "errorifexists", "error": "errorifexists", "default": "errorifexists",
    "append": "append", "overwrite": "overwrite", "ignore": "ignore",
}  # fmt: skip

_JVM_SOURCE_CLASS = "io.sparkmds.spark.v2.MdsDataSource"


class DatasetExistsError(FileExistsError):
    """``mode="errorifexists"`` and the path already holds an MDS dataset."""


def _jvm_serves(spark: Any, format: str) -> bool:
    """Whether the JVM source serves ``format`` in this session (it wins over a Python source of
    the same name): the jar's class is loadable and the name is the JVM source's."""
    if format != "mds":
        return False
    jvm = getattr(spark, "_jvm", None)
    if jvm is None:  # Spark Connect: no JVM in this process, so no jar to load either
        return False
    try:
        loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
        jvm.java.lang.Class.forName(_JVM_SOURCE_CLASS, False, loader)
        return True
    except Exception:
        return False


def write(df: Any, path: str, mode: str = "errorifexists", *, format: str = "mds", **options: Any) -> None:
    """Writes ``df`` as an MDS dataset at ``path`` with any SaveMode.

    Args:
        df: the DataFrame.
        path: the dataset directory.
        mode: ``errorifexists`` (default, alias ``error``), ``ignore``, ``append`` or ``overwrite``.
        format: the data source name (``"mds"``; another name when the Python fallback was registered
            under one, e.g. ``"mds_py"``).
        options: writer options (``compression="zstd"``, ``size_limit="64mb"``, ``hashes="sha1"``,
            ``nulls="mask"``, and ``encoding.<column>`` given as ``**{"encoding.img": "jpeg"}``).

    Raises:
        DatasetExistsError: ``errorifexists`` and a dataset exists at ``path``.
        ValueError: an unknown mode.
    """
    key = str(mode).strip().lower()
    if key not in SAVE_MODES:
        raise ValueError(f"unknown save mode {mode!r}; use one of errorifexists, ignore, append, overwrite")
    mode = SAVE_MODES[key]
    writer = df.write.format(format).options(**{k: str(v) for k, v in options.items()})
    if mode in ("append", "overwrite") or _jvm_serves(df.sparkSession, format):
        writer.mode(mode).save(path)
        return
    exists = open_store(path).exists(INDEX_BASENAME)
    if exists and mode == "errorifexists":
        raise DatasetExistsError(
            f"an MDS dataset already exists at {path} (it has an index.json); use mode('append') to add to it, "
            "mode('overwrite') to replace it, or mode('ignore') to skip the write"
        )
    if exists:  # ignore
        return
    writer.mode("append").save(path)

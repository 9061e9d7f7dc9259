"""A clear error when Spark's Python workers run an interpreter without spark-mds.

Spark runs the Python parts of a job (a Python data source's planning, reading and writing, and
``mapInArrow`` functions) in worker processes started with the interpreter named by
``spark.pyspark.python``, else the ``PYSPARK_PYTHON`` environment variable, else ``python3`` from the
PATH: not necessarily the interpreter of the driver program. When that interpreter cannot import
``spark_mds`` or ``mds_loader``, unpickling the first object that refers to them fails inside
Spark's worker with a bare ``ModuleNotFoundError``, before any of our code runs.

This module is pickled *by value* (:func:`by_value`, cloudpickle's ``register_pickle_by_value``):
its functions travel to the workers as code, and need nothing there but the standard library and
PySpark. What the workers receive goes through them:

* the Python data source class registered as ``format("mds")`` (:func:`source_class`) subclasses
  only PySpark's ``DataSource`` and imports the implementation when it is created;
* the fallback's reader and writer pickle themselves through :func:`seal` (their ``__reduce__``):
  unpickling them first imports their classes, inside :func:`_unseal`;
* the functions of the ``mapInArrow`` jobs (:func:`write_task`, :func:`read_task`) carry a sealed
  writer or reader.

Each raises :class:`WorkerEnvironmentError`, naming the worker's interpreter (``sys.executable``)
and the setting to change, instead of the bare import error.
"""

from __future__ import annotations

import importlib
import pickle
import sys
from typing import Any

__all__ = ["WorkerEnvironmentError", "by_value", "seal", "require", "source_class", "write_task", "read_task"]


class WorkerEnvironmentError(ImportError):
    """A Spark Python worker's interpreter cannot import what spark-mds needs."""


def _message(exc: BaseException, planner: str | None) -> str:
    missing = getattr(exc, "name", None) or "spark_mds"
    version = ".".join(str(v) for v in sys.version_info[:3])
    hint = f" (e.g. the one that planned this job: {planner})" if planner and planner != sys.executable else ""
    return (
        f"spark-mds cannot run in this Spark Python worker: its interpreter {sys.executable} (Python {version}) cannot "
        f"import {missing} ({type(exc).__name__}: {exc}). Spark starts Python workers with the interpreter named by "
        "the spark.pyspark.python setting, else the PYSPARK_PYTHON environment variable, else `python3` from the PATH. "
        f"Set spark.pyspark.python (or PYSPARK_PYTHON, before the session starts) to an interpreter that has spark-mds "
        f"installed{hint}, or install spark-mds (with mds-loader and pyarrow) into {sys.executable}"
    )


def by_value() -> None:
    """Makes PySpark's cloudpickle pickle this module's functions and classes by value (once per
    process; a no-op where this module itself arrived by value)."""
    module = sys.modules.get(__name__)
    if module is None or getattr(module, "by_value", None) is not by_value:
        return
    from pyspark import cloudpickle

    cloudpickle.register_pickle_by_value(module)


def require(module: str, planner: str | None = None) -> Any:
    """Imports ``module``; raises :class:`WorkerEnvironmentError` when this interpreter cannot."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise WorkerEnvironmentError(_message(exc, planner)) from None


def seal(obj: object) -> tuple:
    """A ``__reduce__`` value for ``obj``: unpickling it runs :func:`_unseal`, which imports the
    object's class and state and fails with :class:`WorkerEnvironmentError` where they are missing.
    The object's state is ``__getstate__()`` (else ``__dict__``)."""
    by_value()
    from pyspark import cloudpickle

    getstate = getattr(obj, "__getstate__", None)
    state = getstate() if getstate is not None else obj.__dict__
    return _unseal, (cloudpickle.dumps((type(obj), state)), sys.executable)


def _unseal(payload: bytes, planner: str | None) -> object:
    try:
        cls, state = pickle.loads(payload)
    except ImportError as exc:
        raise WorkerEnvironmentError(_message(exc, planner)) from None
    obj = cls.__new__(cls)
    setstate = getattr(obj, "__setstate__", None)
    if setstate is not None:
        setstate(state)
    else:
        obj.__dict__.update(state)
    return obj


# ---------------------------------------------------------------------------- the Python data source


def source_class(name: str, parallelism: int) -> type:
    """The class registered as ``format(name)`` (PySpark 4.0+): a ``DataSource`` whose methods create
    the implementation, :func:`spark_mds.python_source.python_source_class` ``(name, parallelism)``,
    in the worker that runs them. It reaches the workers by value, so a worker without spark-mds
    fails creating it, with :class:`WorkerEnvironmentError`."""
    by_value()
    from pyspark.sql.datasource import DataSource

    planner = sys.executable

    def implementation(self: Any) -> Any:
        module = require("spark_mds.python_source", planner)
        return module.python_source_class(name, parallelism)(self.options)

    def __init__(self: Any, options: Any) -> None:
        require("spark_mds.python_source", planner)  # the first worker that creates the source says it
        DataSource.__init__(self, options)

    def source_name(cls: type) -> str:
        return cls.short_name  # type: ignore[attr-defined]

    def schema(self: Any) -> Any:
        return implementation(self).schema()

    def reader(self: Any, schema: Any) -> Any:
        return implementation(self).reader(schema)

    def writer(self: Any, schema: Any, overwrite: bool) -> Any:
        return implementation(self).writer(schema, overwrite)

    namespace = {
        "__doc__": f"format({name!r}): the Python fallback of the mds source (spark_mds.python_source.MdsDataSource).",
        "__module__": __name__,
        "short_name": name,
        "parallelism": int(parallelism),
        "__init__": __init__,
        "name": classmethod(source_name),
        "schema": schema,
        "reader": reader,
        "writer": writer,
    }
    return type(f"MdsDataSource_{name}", (DataSource,), namespace)


# ---------------------------------------------------------------------------- mapInArrow jobs


def write_task(writer: Any):
    """The function of a ``mapInArrow`` write job (:mod:`spark_mds.arrow_jobs`): writes the task's
    batches with ``writer`` (a :class:`~spark_mds.fallback.writer.MdsArrowWriter`, sealed) and
    returns its pickled commit message as one row of ``message BINARY``."""

    def run(batches):
        import pyarrow as pa

        message = writer.write(batches)
        yield pa.RecordBatch.from_arrays([pa.array([pickle.dumps(message)], pa.binary())], names=["message"])

    return run


def read_task(reader: Any):
    """The function of a ``mapInArrow`` read (:mod:`spark_mds.arrow_jobs`): for each pickled input
    partition in its input (column 0), the batches of ``reader`` (a
    :class:`~spark_mds.fallback.reader.MdsReader`, sealed)."""

    def run(batches):
        for batch in batches:
            for blob in batch.column(0).to_pylist():
                yield from reader.read(pickle.loads(blob))

    return run

"""The write job of the Python fallback: Arrow batches in, shards out, ``index.json`` committed on
the driver (docs/format.md §6), exactly as the JVM source does it (``MdsWriteJob.scala``).

Process model of PySpark 4.1's Python data sources (see the class docstrings): ``writer()`` runs
once on the driver and its result is pickled; :meth:`MdsArrowWriter.write` runs once per task in
an executor's Python worker; :meth:`MdsArrowWriter.commit` / :meth:`MdsArrowWriter.abort` run in
another driver-side Python process that sees the writer as ``writer()`` returned it. So the plan
travels in the writer, and everything a task learns travels back in its commit message.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import pyarrow as pa
from pyspark.sql.types import StructType

from mds_loader.errors import MDSError, MDSSchemaError
from mds_loader.format import TableWriter, WriteOptions
from mds_loader.format.write_jobs import job_marker, job_prefix, new_job_id, temp_index
from mds_loader.storage import Storage

from .compat import DataSourceArrowWriter, WriterCommitMessage
from .dataset import IndexSnapshot, check_same_columns, index_where, ndarray_infos, read_index
from .layout import WriteLayout, append_write_layout, dataset_spark_schema, new_write_layout
from .options import parse_write_options
from .partitions import Partitioning
from .storage import open_store

__all__ = [
    "ConcurrentWriteError",
    "JobEndedError",
    "MdsCommitMessage",
    "WritePlan",
    "MdsArrowWriter",
    "plan_write",
    "new_job_id",
    "job_prefix",
]

log = logging.getLogger("spark_mds.fallback")


class ConcurrentWriteError(MDSError, RuntimeError):
    """Another writer changed ``index.json`` while this job ran (docs/format.md §6)."""


class JobEndedError(MDSError, RuntimeError):
    """A task attempt's job has ended (failed, or committed with another attempt of its partition):
    the attempt removed its files."""


def _digest(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


@dataclass
class MdsCommitMessage(WriterCommitMessage):
    """What a write task sends back to the driver: its shard entries, in write order."""

    partition: int
    task_attempt_id: int
    shards: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class WritePlan:
    """Everything a write task and the commit need, drawn once on the driver by :func:`plan_write`.

    Attributes:
        location: the dataset directory (a local path, or a URL of a remote store).
        job_id: this job's id, in every file name it writes.
        overwrite: replace the dataset (else append, or create).
        layout: columns, encodings, null mask, logical schema.
        options: compression, hashes, size limit, storage options of a remote location, and the
            layout's encodings and null handling.
        start_digest: SHA-256 of ``index.json`` when the job started (None: there was none).
    """

    location: str
    job_id: str
    overwrite: bool
    layout: WriteLayout
    options: WriteOptions
    start_digest: str | None

    def store(self) -> Storage:
        """The dataset's store, opened anew in each process (driver, tasks, commit)."""
        return open_store(self.location, self.options.storage_options)

    def table_writer(self, out: object, name_prefix: str) -> TableWriter:
        """The shard writer of one task."""
        return TableWriter(out, self.layout.arrow_schema, self.options, name_prefix=name_prefix)  # type: ignore[arg-type]


class _DryOutput:
    def write_bytes(self, name: str, data: bytes) -> None:  # pragma: no cover - never called
        raise AssertionError("dry run")


def plan_write(options: dict, schema: StructType, overwrite: bool, path: str) -> WritePlan:
    """Plans a write job on the driver: validates the options, reads the existing index, builds
    the layout (an append keeps the dataset's), checks it with a dry-run shard writer, draws the
    job id, creates the directory and the job's marker (:func:`job_marker`; Spark ends the job
    it plans with :meth:`MdsArrowWriter.commit` or :meth:`MdsArrowWriter.abort`, which delete it).

    Raises:
        MDSConfigError, MDSSchemaError, MDSEncodingError, MDSIndexError: before any task runs,
            naming the option, column or file.
    """
    opts = parse_write_options(options)
    store = open_store(path, opts.storage_options)
    where = store.location
    snap = read_index(store)
    index = snap.index
    if index is not None and not overwrite and (index.shards or index.spark_mds is not None):
        partitioned = Partitioning.of(index, index_where(store))
        if partitioned:
            raise MDSSchemaError(
                f"cannot append to the MDS dataset at {where}: it is partitioned by {', '.join(partitioned.names)} "
                "(written with partitionBy), and the Python fallback writes no partitioned datasets yet; append with "
                "the spark-mds jar (df.write.partitionBy(...).format('mds')), or overwrite the dataset"
            )
        check_same_columns(index)
        infos = ndarray_infos(store, index)
        old = dataset_spark_schema(index, infos, index_where(store))
        layout = append_write_layout(index, old, schema, opts, where)
    else:
        layout = new_write_layout(schema, opts)
    opts = replace(opts, encodings=layout.encodings, nulls="mask" if layout.null_mask else "error")
    plan = WritePlan(where, new_job_id(), overwrite, layout, opts, _digest(snap.data))
    dry = TableWriter(_DryOutput(), layout.arrow_schema, replace(opts, max_workers=0), name_prefix="dry.")
    if dry.mds_columns != layout.mds_columns:  # the format core and this layout must agree
        raise MDSSchemaError(
            f"cannot write to {where}: the shard writer would store the columns {dry.mds_columns}, but the dataset needs "
            f"{layout.mds_columns}"
        )
    dry.abort()
    if opts.compression and opts.compression.split(":")[0] == "lz4":
        log.warning("writing %s with lz4 compression, an spark-mds extension that mosaicml-streaming cannot read", where)
    store.ensure_dir()
    store.write_bytes(job_marker(plan.job_id), b"")
    return plan


class _RecordingOutput:
    """The shard writer's output for one task attempt: writes each shard file from memory through
    the store (a local file, or one upload to a remote store) and remembers the names, so that a
    failing attempt can remove its own files (like the JVM's ``DataWriter.abort``).

    Before and after each file it checks that the job still runs (its marker): a file created before
    the driver's commit or abort listed the job's files is listed, and one created after that finds
    the marker gone, so the attempt fails and removes it (docs/format.md §6)."""

    def __init__(self, store: Storage, job_id: str) -> None:
        self.store = store
        self.root = store.location
        self.written: list[str] = []
        self._job_id = job_id
        self._lock = threading.Lock()

    def _check_job(self) -> None:
        if not self.store.exists(job_marker(self._job_id)):
            raise JobEndedError(
                f"write job {self._job_id} of {self.root} has ended (it failed, or finished with another attempt of this "
                "partition): this attempt removed its files"
            )

    def write_bytes(self, basename: str, data: bytes) -> None:
        self._check_job()
        with self._lock:
            self.written.append(basename)
        self.store.write_bytes(basename, data)
        self._check_job()


def _conform(batch: pa.RecordBatch, layout: WriteLayout, writer_schema: pa.Schema) -> pa.RecordBatch:
    """The batch in the layout's column order and Arrow types (Spark sends timestamps in the
    session time zone, and large strings when configured so), after the null checks."""
    arrays = []
    names = batch.schema.names
    for source, target in zip(layout.data_columns, layout.arrow_schema):
        i = names.index(source) if source in names else -1
        if i < 0:
            raise MDSSchemaError(f"the data has no column '{source}'")
        arr = batch.column(i)
        if arr.null_count and not layout.masks(target.name):
            raise layout.null_error(target.name)
        if arr.type != target.type:
            arr = arr.cast(target.type)
        arrays.append(arr)
    return pa.RecordBatch.from_arrays(arrays, schema=writer_schema)


def _task_ids() -> tuple[int, int]:
    from pyspark import TaskContext

    ctx = TaskContext.get()
    if ctx is None:  # called outside a Spark task (tests)
        return 0, 0
    return ctx.partitionId(), ctx.taskAttemptId()


def _basenames(entry: dict) -> list[str]:
    names = [entry["raw_data"]["basename"]]
    if entry.get("zip_data"):
        names.append(entry["zip_data"]["basename"])
    return names


class MdsArrowWriter(DataSourceArrowWriter):
    """The ``DataSourceArrowWriter`` of the fallback: one vectorized :class:`TableWriter` per task
    attempt, shards named ``shard.<job>.<partition>.<taskAttemptId>.<seq>.mds[.ext]``.

    Commit (driver): ``index.json`` is built only from the commit messages (partition order), merged
    with the existing index on append (its columns, encodings and logical schema win), checked to be
    unchanged since the job started, published atomically; then the job's unreferenced files (failed
    or duplicate attempts; a failed task's message is None and its partial files stay on disk) and,
    on overwrite, the replaced shards are deleted. Abort deletes every file of the job.
    """

    def __init__(self, plan: WritePlan) -> None:
        self.plan = plan

    def __reduce__(self) -> tuple:
        # Unpickling checks first that the worker's interpreter has spark-mds (a clear error if not).
        from ..worker_guard import seal

        return seal(self)

    # ------------------------------------------------------------------ executors

    def write(self, iterator: Iterator[pa.RecordBatch]) -> MdsCommitMessage:
        """Writes one task's batches as shards; returns their index entries."""
        plan = self.plan
        partition, attempt = _task_ids()
        out = _RecordingOutput(plan.store(), plan.job_id)
        writer = plan.table_writer(out, f"{job_prefix(plan.job_id)}{partition:05d}.{attempt}.")
        try:
            for batch in iterator:
                if batch.num_rows:
                    writer.write_batch(_conform(batch, plan.layout, writer.schema))
            shards = writer.finish()
        except BaseException:
            writer.abort()  # waits for the shard threads, so every written name is known
            try:
                out.store.delete(list(out.written))
            except Exception as exc:  # the commit or abort of the job removes them anyway
                log.warning("could not remove the files of a failed task under %s: %s", plan.location, exc)
            raise
        return MdsCommitMessage(partition, attempt, shards)

    # ------------------------------------------------------------------ driver

    def commit(self, messages: Sequence[MdsCommitMessage | None]) -> None:
        """Publishes ``index.json`` from the tasks' messages (docs/format.md §6)."""
        plan = self.plan
        store = plan.store()
        msgs = sorted((m for m in messages if m is not None), key=lambda m: m.partition)
        new_shards = [s for m in msgs for s in m.shards]
        changed = ConcurrentWriteError(
            f"the MDS dataset at {plan.location} was changed by another writer while this job ran (its "
            "index.json differs from the one read at the start); this job's files were removed, retry the write"
        )
        try:
            snap = read_index(store)
            if _digest(snap.data) != plan.start_digest:
                raise changed
            # The check and the replacement are one step: two jobs that both passed the check above
            # cannot both publish (the second one would silently drop the first one's shards).
            if not store.publish_index_if_unchanged(_index_text(plan, snap, new_shards).encode("ascii"), plan.job_id,
                                                    snap.data):
                raise changed
        except BaseException:
            _end_failed_job(store, plan.job_id)
            raise
        # Published: end the job, then remove its unreferenced files (failed or duplicate attempts;
        # an attempt still writing removes its own) and, on overwrite, the replaced shards.
        referenced = {n for s in new_shards for n in _basenames(s)}
        try:
            store.delete([job_marker(plan.job_id)])
            store.delete([n for n in store.list_names(job_prefix(plan.job_id)) if n not in referenced])
            if plan.overwrite and snap.obj is not None:
                old = {n for s in snap.obj.get("shards", []) for n in _basenames(s)}
                store.delete(sorted(old - referenced))
        except Exception as exc:
            log.warning("could not remove unreferenced files under %s: %s", plan.location, exc)

    def abort(self, messages: Sequence[MdsCommitMessage | None]) -> None:
        """Removes every file of this job (messages may hold None for failed tasks).

        Spark calls this as soon as the job fails, without waiting for the job's other running
        tasks. They find the job's marker gone at their next file and remove their own files.
        """
        _end_failed_job(self.plan.store(), self.plan.job_id)


def _index_text(plan: WritePlan, snap: IndexSnapshot, new_shards: list[dict]) -> str:
    """The new ``index.json``: sorted keys, ASCII, like the reference and the JVM source. Unknown
    top-level keys of the existing index are kept."""
    obj: dict = {}
    if snap.obj is not None:
        obj.update({k: v for k, v in snap.obj.items() if k not in ("shards", "version", "spark_mds")})
    appending = snap.obj is not None and not plan.overwrite
    obj["shards"] = (list(snap.obj["shards"]) if appending else []) + new_shards  # type: ignore[index]
    obj["version"] = 2
    if plan.layout.spark_mds is not None:
        obj["spark_mds"] = plan.layout.spark_mds
    return json.dumps(obj, sort_keys=True)


def _end_failed_job(store: Storage, job_id: str) -> None:
    """Deletes the job's marker, then every file of the job (docs/format.md §6)."""
    try:
        store.delete([job_marker(job_id)])
        store.delete(store.list_names(job_prefix(job_id)) + [temp_index(job_id)])
    except Exception as exc:
        log.warning("could not remove the files of an aborted write under %s: %s", store.location, exc)

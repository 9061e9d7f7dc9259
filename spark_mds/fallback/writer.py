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
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql.types import StructType

from mds_loader.errors import MDSError, MDSSchemaError
from mds_loader.format import TableWriter, WriteOptions
from mds_loader.format.write_jobs import job_marker, job_prefix, new_job_id, temp_index
from mds_loader.storage import Storage

from .compat import DataSourceArrowWriter, WriterCommitMessage
from .dataset import IndexSnapshot, check_same_columns, index_where, ndarray_infos, read_index
from .layout import WriteLayout, append_write_layout, dataset_spark_schema, new_write_layout
from .options import check_overwrite_mode, parse_write_options
from .partitions import Partitioning, partition_columns_option
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
        partitioning: the partition columns (the ``partition_by`` option; docs/format.md §8).
    """

    location: str
    job_id: str
    overwrite: bool
    layout: WriteLayout
    options: WriteOptions
    start_digest: str | None
    partitioning: Partitioning = field(default_factory=lambda: Partitioning(StructType([])))

    def store(self, directory: str = "") -> Storage:
        """The dataset's store (or that of one of its partition directories, ``a=1/b=x``), opened
        anew in each process (driver, tasks, commit)."""
        location = f"{self.location.rstrip('/')}/{directory.strip('/')}" if directory.strip("/") else self.location
        return open_store(location, self.options.storage_options)

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
    partitioning = Partitioning.for_write(schema, partition_columns_option(options))
    check_overwrite_mode(options, overwrite, bool(partitioning), where)
    schema = StructType([f for f in schema.fields if f.name not in partitioning.names])
    if index is not None and not overwrite and (index.shards or index.spark_mds is not None):
        had = Partitioning.of(index, index_where(store))
        if had.names != partitioning.names:
            def show(p: Partitioning) -> str:
                return f"partitionBy({', '.join(p.names)})" if p else "no partition columns"

            raise MDSSchemaError(f"cannot append to the MDS dataset at {where} with {show(partitioning)}: it was written "
                                 f"with {show(had)}. Append with the dataset's partitioning, or overwrite it")  # fmt: skip
        check_same_columns(index)
        infos = ndarray_infos(store, index)
        old = dataset_spark_schema(index, infos, index_where(store))
        layout = append_write_layout(index, old, schema, opts, where)
    else:
        layout = new_write_layout(schema, opts)
    opts = replace(opts, encodings=layout.encodings, nulls="mask" if layout.null_mask else "error")
    plan = WritePlan(where, new_job_id(), overwrite, layout, opts, _digest(snap.data), partitioning)
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


def _runs(batch: pa.RecordBatch, partitioning: Partitioning) -> Iterator[tuple[str, pa.Array]]:
    """The batch's runs of rows with equal partition values: (their directory, their row indices).
    Where values change is found with Arrow kernels; only each run's first row becomes Python values."""
    names = batch.schema.names
    n = batch.num_rows
    starts = np.zeros(n, dtype=bool)
    starts[0] = True
    columns = []
    for name in partitioning.names:
        if name not in names:
            raise MDSSchemaError(f"the data has no partition column '{name}'")
        col = batch.column(names.index(name))
        columns.append(col)
        prev, cur = col.slice(0, n - 1), col.slice(1)
        same = pc.or_(pc.fill_null(pc.equal(prev, cur), False), pc.and_(prev.is_null(), cur.is_null()))
        starts[1:] |= ~same.to_numpy(zero_copy_only=False)
    bounds = np.append(np.flatnonzero(starts), n)
    for start, end in zip(bounds[:-1], bounds[1:]):
        values = tuple(c[int(start)].as_py() for c in columns)
        yield partitioning.dir_of(values), pa.array(np.arange(start, end))


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
        """Writes one task's batches as shards; returns their index entries. A partitioned write
        starts a shard sequence in the partition's directory whenever the partition values change
        (``spark_mds.write`` sorts each task's rows by them, as the JVM source does)."""
        plan = self.plan
        partition, attempt = _task_ids()
        out = _RecordingOutput(plan.store(), plan.job_id)
        prefix = f"{job_prefix(plan.job_id)}{partition:05d}.{attempt}."
        writers: list[TableWriter] = []
        shards: list[dict] = []
        runs: dict[str, int] = {}  # partition directory -> sequences started there (unsorted input)
        current = None
        try:
            for batch in iterator:
                if not batch.num_rows:
                    continue
                if not plan.partitioning:
                    if not writers:
                        writers.append(plan.table_writer(out, prefix))
                    writers[0].write_batch(_conform(batch, plan.layout, writers[0].schema))
                    continue
                for d, rows in _runs(batch, plan.partitioning):
                    if d != current:
                        if writers:
                            shards += writers[-1].finish()
                        k = runs.get(d, 0)
                        runs[d] = k + 1
                        writers.append(plan.table_writer(out, f"{d}/{prefix}" + (f"r{k}." if k else "")))
                        current = d
                    writers[-1].write_batch(_conform(batch.take(rows), plan.layout, writers[-1].schema))
            if not plan.partitioning and not writers:  # an empty task still records the columns
                writers.append(plan.table_writer(out, prefix))
            if writers:
                shards += writers[-1].finish()
        except BaseException:
            for w in writers:
                w.abort()  # waits for the shard threads, so every written name is known
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
            text = _index_text(plan, snap, new_shards)
            if not store.publish_index_if_unchanged(text.encode("ascii"), plan.job_id, snap.data):
                raise changed
        except BaseException:
            _end_failed_job(plan, msgs)
            raise
        # Published: end the job, then remove its unreferenced files (failed or duplicate attempts;
        # an attempt still writing removes its own) and, on overwrite, the replaced shards.
        referenced = {n for s in new_shards for n in _basenames(s)}
        dirs = sorted({plan.partitioning.dir_prefix(n) + "/" for n in referenced}) if plan.partitioning else [""]
        try:
            store.delete([job_marker(plan.job_id)])
            for d in dirs:  # a task's attempts write the same partitions (the same rows)
                store.delete([n for n in (d + x for x in plan.store(d).list_names(job_prefix(plan.job_id))) if n not in referenced])
            if plan.overwrite and snap.obj is not None:
                old = {n for s in snap.obj.get("shards", []) for n in _basenames(s)}
                store.delete(sorted(old - referenced))
        except Exception as exc:
            log.warning("could not remove unreferenced files under %s: %s", plan.location, exc)
        if plan.partitioning or (plan.overwrite and snap.index is not None):
            _publish_partition_indexes(plan, json.loads(text), snap)

    def abort(self, messages: Sequence[MdsCommitMessage | None]) -> None:
        """Removes every file of this job (messages may hold None for failed tasks).

        Spark calls this as soon as the job fails, without waiting for the job's other running
        tasks. They find the job's marker gone at their next file and remove their own files.
        """
        _end_failed_job(self.plan, messages)


def _publish_partition_indexes(plan: WritePlan, root: dict, replaced: IndexSnapshot) -> None:
    """Each partition directory's ``index.json``, a view of the ``root`` index that was published
    (docs/format.md §8), and, after an overwrite, the removal of the replaced partitions' indexes."""
    try:
        prefixes = sorted({plan.partitioning.dir_prefix(s["raw_data"]["basename"]) for s in root["shards"]}) \
            if plan.partitioning else []
        meta = {k: v for k, v in (root.get("spark_mds") or {}).items() if k != "partition_columns"}
        for p in prefixes:
            def strip(f: dict | None) -> dict | None:
                return None if f is None else {**f, "basename": f["basename"][len(p) + 1:]}

            shards = [{**s, "raw_data": strip(s["raw_data"]), "zip_data": strip(s.get("zip_data"))}
                      for s in root["shards"] if s["raw_data"]["basename"].startswith(p + "/")]  # fmt: skip
            sub = {"shards": shards, "version": 2, **({"spark_mds": meta} if meta else {})}
            plan.store(p).publish_index(
                json.dumps(sub, sort_keys=True).encode("ascii"), plan.job_id)
        old = Partitioning.of(replaced.index, plan.location) if replaced.index is not None else None
        if plan.overwrite and old:
            gone = sorted({old.dir_prefix(s.raw_data.basename) for s in replaced.index.shards} - set(prefixes))  # type: ignore[union-attr]
            store = plan.store()
            store.delete([f"{p}/index.json" for p in gone])
            for p in gone:  # then the emptied directories, from the deepest (object stores have none)
                parts = p.split("/")
                for depth in range(len(parts), 0, -1):
                    local = store.local_file("/".join(parts[:depth]))
                    if local is None or not os.path.isdir(local) or os.listdir(local):
                        break
                    os.rmdir(local)
    except Exception as exc:
        log.warning("could not write the partition indexes under %s: %s", plan.location, exc)


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
        obj["spark_mds"] = dict(plan.layout.spark_mds)
        if plan.partitioning:
            obj["spark_mds"]["partition_columns"] = plan.partitioning.schema.jsonValue()
    return json.dumps(obj, sort_keys=True)


def _end_failed_job(plan: WritePlan, messages: Sequence[MdsCommitMessage | None]) -> None:
    """Deletes the job's marker, then every file of the job (docs/format.md §6): in the dataset's
    directory, and in the partition directories that the tasks' messages name (a failed task
    removed its own files)."""
    store = plan.store()
    dirs = {plan.partitioning.dir_prefix(s["raw_data"]["basename"]) + "/" for m in messages if m is not None
            for s in m.shards} if plan.partitioning else set()  # fmt: skip
    try:
        store.delete([job_marker(plan.job_id)])
        store.delete(store.list_names(job_prefix(plan.job_id)) + [temp_index(plan.job_id)])
        for d in sorted(dirs):
            store.delete([d + n for n in plan.store(d).list_names(job_prefix(plan.job_id))])
    except Exception as exc:
        log.warning("could not remove the files of an aborted write under %s: %s", store.location, exc)

"""Writing MDS datasets: :class:`MDSWriter` (the reference's per-sample API, byte-identical
output) and :func:`write_table` / :class:`TableWriter` (Arrow batches, vectorized).

Both feed encoded samples to one :class:`ShardSink`, which cuts them into shards exactly as the
reference does (greedy, by raw size, including its empty-shard quirk), builds each shard file,
and compresses, hashes and writes finished shards on background threads.
"""

from __future__ import annotations

import os
import shutil
import struct
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa

from ..errors import MDSConfigError, MDSSchemaError
from .columnar import EncodedColumn, FieldPlan, encode_column, join_samples, null_mask_column
from .compression import Codec
from .encodings import Encoding, parse_encoding
from .hashing import check_hashes, get_hash
from .index import INDEX_BASENAME, dump_index
from .schema import NULL_MASK, Field, check_encoding, default_encoding, logical_from_arrow, make_spark_mds
from .shard import build_shard, config_bytes, shard_config
from .write_options import WriteOptions, parse_size_limit

if TYPE_CHECKING:
    from ..storage import Storage

__all__ = [
    "FileSink",
    "Destination",
    "open_destination",
    "ShardSink",
    "MDSWriter",
    "TableWriter",
    "write_table",
]

# ---------------------------------------------------------------------------- destination


class FileSink(Protocol):
    """Where :class:`ShardSink` puts shard files: a :class:`~mds_loader.storage.Storage`, a
    :class:`Destination`, or a Spark task's recording wrapper of a storage."""

    def write_bytes(self, name: str, data: bytes) -> None:
        """Writes one file (``name`` is relative, ``/``-separated), creating parent directories."""


class Destination:
    """Where a new dataset goes (the reference's ``out``): a local directory, a remote one, or
    both. Shard files are written to each as they are finished (a remote receives each in one
    PUT, in parallel with encoding); ``index.json`` is published last, after every shard, so
    readers never see an index that names a file not written yet.

    Attributes:
        local: the local directory, or None when the dataset goes to a remote only.
        remote: the remote URL (or directory of a ``(local, remote)`` pair), or None.
    """

    def __init__(self, stores: Sequence[Storage], *, local: str | None = None, remote: str | None = None,
                 scratch: str | None = None) -> None:
        self._stores = list(stores)
        self._scratch = scratch  # a pair's local directory that keeps nothing: removed at the end
        self.local = local
        self.remote = remote

    def __repr__(self) -> str:
        return f"Destination(local={self.local!r}, remote={self.remote!r})"

    def write_bytes(self, name: str, data: bytes) -> None:
        for store in self._stores:
            store.write_bytes(name, data)

    def publish(self, index_text: str) -> None:
        """Publishes ``index.json`` (call it after every shard is written)."""
        data = index_text.encode("ascii")
        for store in self._stores:
            store.publish_index(data, uuid.uuid4().hex[:12])
        self.discard()

    def discard(self) -> None:
        """Removes a pair's local directory that keeps nothing (after a failed write as after a
        successful one: nothing is published before the index)."""
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)


def _prepare_local(root: str, exist_ok: bool) -> None:
    if os.path.exists(root):
        if exist_ok:
            shutil.rmtree(root)
        elif not os.path.isdir(root) or os.listdir(root):
            raise FileExistsError(f"Directory is not empty: {root}; pass exist_ok=True to replace it")
    os.makedirs(root, exist_ok=True)


def open_destination(out: Any, options: WriteOptions) -> Destination:
    """The destination of a new dataset, like the reference's ``out``:

    * a local directory: with ``options.exist_ok`` an existing directory is deleted first;
      otherwise it must be empty or absent;
    * a URL (``s3://bucket/path``, any fsspec URL): files are written there directly;
    * a ``(local, remote)`` pair: files are written to ``remote`` (a URL or another directory)
      and, with ``options.keep_local``, to ``local`` too (same rules as a local directory; without
      ``keep_local`` it is absent at the end, as the reference leaves it).

    A remote that already holds a dataset (an ``index.json``) is refused unless ``exist_ok``;
    with ``exist_ok`` its files are replaced one by one and its index last (files of the old
    dataset that the new one does not name stay, unread). Unlike the reference, the remote is
    checked: mixing two datasets' shards silently is worse than an error.

    Raises:
        FileExistsError: the local directory is not empty, or the remote holds a dataset (and
            ``exist_ok`` is false).
        MDSConfigError: a malformed ``out``.
    """
    from ..storage import LocalStorage, RemoteStore, is_remote, local_path  # (storage imports this package)

    if isinstance(out, (tuple, list)):
        if len(out) != 2 or not all(isinstance(p, (str, os.PathLike)) for p in out):
            raise MDSConfigError(f"out must be a directory, a URL or a (local, remote) pair, got {out!r}")
        local, remote = os.fspath(out[0]), os.fspath(out[1])
        if is_remote(local):
            raise MDSConfigError(f"out=(local, remote): local must be a local directory, got {local!r}")
        root: str | None = local_path(local)
    elif is_remote(out):
        remote, root = out, None
    else:
        root = local_path(out)
        _prepare_local(root, options.exist_ok)
        return Destination([LocalStorage(root)], local=root)
    store = RemoteStore(remote, retry=options.retry, timeout=None, storage_options=dict(options.storage_options))
    if not options.exist_ok and store.exists(INDEX_BASENAME):
        raise FileExistsError(f"{remote} already holds a dataset ({INDEX_BASENAME}); pass exist_ok=True to replace it, "
                              f"or write elsewhere")
    if root is None:
        return Destination([store], remote=remote)
    _prepare_local(root, options.exist_ok)
    if options.keep_local:
        return Destination([LocalStorage(root), store], local=root, remote=remote)
    return Destination([store], local=root, remote=remote, scratch=root)


# ---------------------------------------------------------------------------- shards


class ShardSink:
    """Cuts encoded samples into shards and writes them.

    Cutting is the reference's: for each sample of ``size`` bytes (cost ``size + 4``), if
    ``size_limit < current_shard_bytes + cost`` the current shard is flushed first (even when it
    is empty, which writes a 0-sample shard), then the sample is added; a shard starts at
    ``8 + len(config)`` bytes, so the running size is the raw file size.

    Finished shards are compressed, hashed and written by up to ``options.max_workers``
    background threads; :meth:`finish` returns their index entries, in order.

    Args:
        output: where files go.
        options: compression, hashes, size limit and threads of the write.
        columns: the MDS columns and their encodings, in shard order (sorted by name).
        name_prefix: shard file names are ``f"{name_prefix}{n:05d}.mds"`` plus ``.<ext>`` when
            compressed, ``n`` counting this sink's shards from 0.
    """

    def __init__(self, output: FileSink, options: WriteOptions, columns: Sequence[tuple[str, Encoding]], *,
                 name_prefix: str = "shard.") -> None:
        self.output = output
        self.codec: Codec | None = options.codec
        self.hashes = list(options.hashes)
        self.size_limit = options.size_limit
        self.name_prefix = name_prefix
        self.config = shard_config([n for n, _ in columns], [e.text for _, e in columns], [e.size for _, e in columns],
                                   options.compression, self.hashes, self.size_limit)
        self.config_data = config_bytes(self.config)
        self._base = 8 + len(self.config_data)
        self._current = self._base
        self._sizes: list[np.ndarray] = []
        self._data: list[Any] = []
        self._count = 0
        workers = min(4, os.cpu_count() or 1) if options.max_workers is None else options.max_workers
        self._workers = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="mds-shard") if workers > 0 else None
        self._pending: list[Future | dict] = []  # every shard's entry (or its future), in order
        self._running: deque[Future] = deque()  # submitted writes not yet reaped, oldest first

    def add(self, sizes: np.ndarray, data: Any) -> None:
        """Adds encoded samples: their sizes (int64) and a buffer of their concatenated bytes."""
        sizes = np.asarray(sizes, np.int64)
        n = len(sizes)
        if n == 0:
            return
        view = memoryview(data).cast("B") if not isinstance(data, np.ndarray) else data.reshape(-1).view(np.uint8)
        ends = np.cumsum(sizes)  # byte end of each sample in `data`
        costs = np.cumsum(sizes + 4)  # cumulative cost
        limit = self.size_limit
        pos = 0
        while pos < n:
            base_cost = int(costs[pos - 1]) if pos else 0
            if limit is None:
                k = n
            else:  # samples pos..k-1 fit: current + (costs[j] - base_cost) <= limit
                k = int(np.searchsorted(costs, base_cost + limit - self._current, side="right"))
            if k > pos:
                self._append(sizes[pos:k], view, int(ends[pos - 1]) if pos else 0, int(ends[k - 1]))
                self._current += int(costs[k - 1]) - base_cost
                pos = k
                continue
            self.flush()  # the next sample does not fit: flush, even an empty shard (reference quirk)
            self._append(sizes[pos : pos + 1], view, int(ends[pos - 1]) if pos else 0, int(ends[pos]))
            self._current += int(sizes[pos]) + 4
            pos += 1

    def _append(self, sizes: np.ndarray, view: Any, start: int, end: int) -> None:
        self._sizes.append(sizes)
        self._data.append(view[start:end])

    def flush(self) -> None:
        """Writes the current shard (possibly with 0 samples) and starts a new one."""
        sizes = np.concatenate(self._sizes) if self._sizes else np.zeros(0, np.int64)
        raw = build_shard(self.config_data, sizes, self._data)
        raw_name = f"{self.name_prefix}{self._count:05d}.mds"
        self._count += 1
        self._sizes, self._data, self._current = [], [], self._base
        if self._pool is None:
            self._pending.append(self._write(raw, raw_name, len(sizes)))
            return
        self._reap(max_running=self._workers)
        future = self._pool.submit(self._write, raw, raw_name, len(sizes))
        self._pending.append(future)
        self._running.append(future)

    def _reap(self, max_running: int) -> None:
        """Raises the error of a failed background write, and waits for the oldest running
        writes until fewer than ``max_running`` run (bounding the shards held in memory). Looks
        at the unreaped writes only: a dataset of 100,000 shards costs no more per shard than
        one of 10."""
        running = self._running
        while running and (running[0].done() or len(running) >= max_running):
            running.popleft().result()

    def _write(self, raw: bytes, raw_name: str, samples: int) -> dict:
        raw_info = {"basename": raw_name, "bytes": len(raw), "hashes": {h: get_hash(h, raw) for h in self.hashes}}
        zip_info = None
        data, name = raw, raw_name
        if self.codec is not None:
            data = self.codec.compress(raw)
            name = f"{raw_name}.{self.codec.extension}"
            zip_info = {"basename": name, "bytes": len(data), "hashes": {h: get_hash(h, data) for h in self.hashes}}
        self.output.write_bytes(name, data)
        return {"samples": samples, "raw_data": raw_info, "zip_data": zip_info, **self.config}

    def finish(self, *, write_empty: bool = False) -> list[dict]:
        """Flushes the last shard if it has samples (or, with ``write_empty``, if no shard was
        written at all: one 0-sample shard then records the columns), waits for every write, and
        returns the shard entries in order."""
        try:
            if self._sizes or (write_empty and self._count == 0):
                self.flush()
            return [item.result() if isinstance(item, Future) else item for item in self._pending]
        finally:
            self.close()

    def close(self) -> None:
        """Stops the background threads (pending writes are waited for)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


# ---------------------------------------------------------------------------- MDSWriter


class MDSWriter:
    """Writes samples (dicts) into an MDS dataset, like ``streaming.MDSWriter``.

    Same arguments, defaults, validation and output: for the same samples and arguments the shard
    files and ``index.json`` are byte-identical to the reference's (``gz`` differs in the gzip
    header's mtime, which is 0 here; ``jpeg``/``png`` bytes depend on the Pillow version).

    Args:
        out: the dataset directory; a URL (``s3://bucket/path``, any fsspec URL); or a
            ``(local, remote)`` pair (uploaded to ``remote``, kept in ``local`` with
            ``keep_local``). Shard files are uploaded as they are written, ``index.json`` last
            (:func:`open_destination`).
        columns: column name -> encoding (``"int64"``, ``"str"``, ``"ndarray:float32:3,224,224"``...).
        compression: None (default), ``"zstd"``, ``"zstd:7"``, ``"gz"``, ``"bz2"``, ``"br"``,
            ``"snappy"``, or ``"lz4"`` (our extension: the reference cannot read it).
        hashes: hash algorithms recorded for each file, in sorted order (e.g. ``["sha1", "xxh64"]``).
        size_limit: maximum raw shard size in bytes (int or ``"64mb"``); None for one shard.
        keep_local: with a ``(local, remote)`` ``out``, keep a local copy of every file (default:
            the local directory is absent at the end).
        progress_bar: accepted for compatibility (no progress bar is shown).
        retry: total attempts per upload.
        max_workers: threads that compress, hash and write finished shards (default
            ``min(4, cpus)``; each holds one shard in memory).
        exist_ok: delete an existing local ``out`` directory first instead of failing; replace
            a remote dataset.
        storage_options: fsspec options of a remote ``out`` (credentials, endpoint, ...); an
            extension of ours (the reference takes them from the environment only).

    Raises:
        MDSEncodingError: an unknown encoding (a ``TypeError``, like the reference).
        MDSConfigError: invalid compression, hashes or size_limit.
        FileExistsError: ``out`` is not empty, or the remote holds a dataset, and ``exist_ok``
            is false.
    """

    def __init__(
        self,
        *,
        out: str | os.PathLike | tuple[str, str],
        columns: Mapping[str, str],
        compression: str | None = None,
        hashes: Sequence[str] | None = None,
        size_limit: int | str | None = 1 << 26,
        keep_local: bool = False,
        progress_bar: bool = False,
        max_workers: int | None = None,
        retry: int = 2,
        exist_ok: bool = False,
        storage_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:  # the reference raises ValueError for unknown arguments
            raise MDSConfigError(f"Invalid Writer argument(s): {sorted(kwargs)}")
        self.options = WriteOptions(
            compression=compression or None, hashes=check_hashes(hashes), size_limit=parse_size_limit(size_limit),
            max_workers=max_workers, exist_ok=exist_ok, keep_local=keep_local, retry=retry,
            storage_options=dict(storage_options or {}),
        )  # fmt: skip
        if not isinstance(columns, Mapping):
            raise MDSConfigError(f"columns must map column names to encodings, got {type(columns).__name__}")
        self.columns: list[tuple[str, Encoding]] = []
        for name in sorted(columns):
            text = columns[name]
            try:
                self.columns.append((name, parse_encoding(text)))
            except Exception as exc:
                raise type(exc)(f"MDSWriter column {name!r}: {exc}") from None
        self.keep_local = keep_local
        self.output = open_destination(out, self.options)
        self.local = self.output.local
        self.remote = self.output.remote
        self._sink = ShardSink(self.output, self.options, self.columns)
        self._num_var = sum(e.size is None for _, e in self.columns)
        self._head = struct.Struct(f"<{self._num_var}I")
        self._samples: list[bytes] = []
        self._entries: list[dict] = []
        self._finished = False

    @property
    def shards(self) -> list[dict]:
        """The shard entries of ``index.json`` (available after :meth:`finish`)."""
        return list(self._entries)

    def encode_sample(self, sample: Mapping[str, Any]) -> bytes:
        """Encodes one sample: the sizes of its variable-size columns, then every column.

        Raises:
            KeyError: a column is missing from ``sample`` (extra keys are ignored).
            MDSSchemaError: a value does not fit its column's encoding (naming the column).
        """
        sizes = []
        parts = []
        for name, enc in self.columns:
            try:
                value = sample[name]
            except KeyError:
                raise KeyError(f"sample has no column {name!r} (it has {sorted(sample)})") from None
            try:
                data = enc.encode(value)
            except MDSSchemaError as exc:
                raise MDSSchemaError(f"column {name!r}: {exc}") from None
            if enc.size is None:
                sizes.append(len(data))
            parts.append(data)
        try:
            head = self._head.pack(*sizes)
        except struct.error:
            raise MDSSchemaError("a value is 4 GiB or larger; MDS sizes are 32-bit") from None
        return head + b"".join(parts)

    def write(self, sample: Mapping[str, Any]) -> None:
        """Encodes and adds one sample."""
        if self._finished:
            raise MDSConfigError("write() after finish(); create a new MDSWriter")
        self._samples.append(self.encode_sample(sample))
        if len(self._samples) >= 256:
            self._drain()

    def _drain(self) -> None:
        if self._samples:
            sizes = np.fromiter(map(len, self._samples), np.int64, len(self._samples))
            self._sink.add(sizes, b"".join(self._samples))
            self._samples = []

    def finish(self) -> None:
        """Writes the last shard and ``index.json``."""
        if self._finished:
            return
        try:
            self._drain()
            self._entries = self._sink.finish()
            self.output.publish(dump_index(self._entries))
        except BaseException:
            self.output.discard()  # nothing was published: index.json goes last
            raise
        self._finished = True

    def __enter__(self) -> MDSWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        # Like the reference, the samples written so far become a dataset even on an exception.
        if exc_type is None:
            self.finish()
            return
        try:
            self.finish()
        except Exception:
            pass  # the exception being raised is the one to report


# ---------------------------------------------------------------------------- Arrow


class TableWriter:
    """Encodes Arrow record batches into MDS shards, vectorized. The core of :func:`write_table`
    and of the Spark Python fallback, which writes one TableWriter per task with its own
    ``name_prefix`` and collects the shard entries that :meth:`finish` returns (docs/format.md §6).

    Args:
        out: the directory or fsspec URL (or a :class:`FileSink`, e.g. a storage) to write shard
            files to. It is not checked or cleared; :meth:`finish` does not write ``index.json``.
        schema: the Arrow schema of the batches.
        options: the write's options (:class:`WriteOptions`: its ``encodings`` override the
            default encodings, docs/format.md §2; ``nulls`` decides the ``__nulls__`` column).
        name_prefix: shard files are ``f"{name_prefix}{n:05d}.mds[.ext]"``.

    Raises:
        MDSSchemaError: a type without storage, a disallowed override, a column named
            ``__nulls__``, an override for an unknown column.
    """

    def __init__(self, out: str | os.PathLike | FileSink, schema: pa.Schema, options: WriteOptions = WriteOptions(), *,
                 name_prefix: str = "shard.") -> None:
        overrides = dict(options.encodings)
        unknown = sorted(set(overrides) - set(schema.names))
        if unknown:
            raise MDSSchemaError(f"encoding overrides for unknown columns {unknown}; the table has {schema.names}")
        if len(set(schema.names)) != len(schema.names):
            raise MDSSchemaError(f"duplicate column names in {schema.names}")
        self.schema = schema
        self.nulls = options.nulls
        self.plans: list[FieldPlan] = []
        for f in schema:
            if f.name == NULL_MASK:
                raise MDSSchemaError(f"{NULL_MASK!r} is reserved for the null mask; rename the column")
            logical = logical_from_arrow(f.type, f.name)
            text = overrides.get(f.name) or default_encoding(logical, f.type)
            enc = check_encoding(f.name, logical, text, f.type)
            self.plans.append(FieldPlan(f.name, f.type, logical, f.nullable, enc))
        self.fields = [Field(p.name, p.logical, p.nullable, {}) for p in self.plans]
        self.has_mask = self.nulls == "mask" and any(p.nullable for p in self.plans)
        mds = {p.name: p.encoding for p in self.plans}
        if self.has_mask:
            mds[NULL_MASK] = parse_encoding(f"ndarray:uint8:{(len(self.plans) + 7) // 8}")
        self.column_names = sorted(mds)
        self.encodings = [mds[n] for n in self.column_names]
        self.output: FileSink = _open_storage(out) if isinstance(out, (str, os.PathLike)) else out
        self._sink = ShardSink(self.output, options, list(zip(self.column_names, self.encodings)), name_prefix=name_prefix)
        self.num_rows = 0

    @property
    def spark_mds(self) -> dict:
        """The ``spark_mds`` value of ``index.json`` for the written data."""
        return make_spark_mds(self.fields, self.has_mask)

    @property
    def mds_columns(self) -> dict[str, str]:
        """The MDS columns (sorted) and their encodings, including ``__nulls__`` if present."""
        return {n: e.text for n, e in zip(self.column_names, self.encodings)}

    def write_batch(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Encodes and adds the rows of a record batch (or table) with this writer's schema.

        Raises:
            MDSSchemaError: the batch's schema differs (naming the columns), or a value does not
                fit its encoding.
        """
        if not batch.schema.equals(self.schema):
            diff = [f"{f.name}: {f.type}" for f in batch.schema if f.name not in self.schema.names or self.schema.field(f.name).type != f.type]
            missing = [n for n in self.schema.names if n not in batch.schema.names]
            raise MDSSchemaError(f"batch schema differs from the writer's: changed {diff}, missing {missing}")
        n = batch.num_rows
        if n == 0:
            return
        encoded: dict[str, EncodedColumn] = {}
        valid = []
        for i, plan in enumerate(self.plans):
            arr = batch.column(i)
            if arr.null_count and not self.has_mask:
                raise MDSSchemaError(
                    f"column {plan.name!r} has nulls, but this dataset stores none (nulls='error' or no nullable field); "
                    f"fill or drop them, or write with nulls='mask'"
                )
            valid.append(_validity(arr) if self.has_mask else None)
            encoded[plan.name] = encode_column(arr, plan)
        if self.has_mask:
            encoded[NULL_MASK] = null_mask_column(valid, n)
        sizes, data = join_samples([encoded[name] for name in self.column_names], n)
        self._sink.add(sizes, data)
        self.num_rows += n

    def finish(self, *, write_empty: bool = False) -> list[dict]:
        """Writes the last shard; returns every shard entry (for ``index.json``), in order. With
        ``write_empty``, a writer that got no rows writes one 0-sample shard, so that the
        dataset's columns and encodings are recorded."""
        return self._sink.finish(write_empty=write_empty)

    def abort(self) -> None:
        """Stops the background threads without writing the last shard."""
        self._sink.close()


def _validity(arr: pa.Array | pa.ChunkedArray) -> np.ndarray | None:
    if arr.null_count == 0:
        return None
    if isinstance(arr, pa.ChunkedArray):
        return np.concatenate([np.asarray(c.is_valid()) for c in arr.chunks]) if arr.num_chunks else np.zeros(0, bool)
    return np.asarray(arr.is_valid())


def _batches(data: pa.Table | pa.RecordBatch | Iterable[pa.RecordBatch], batch_rows: int) -> tuple[pa.Schema, Iterable[pa.RecordBatch]]:
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    if isinstance(data, pa.Table):
        return data.schema, data.to_batches(max_chunksize=batch_rows)
    if isinstance(data, pa.RecordBatchReader):
        return data.schema, data
    it = iter(data)
    first = next(it, None)
    if first is None:
        raise MDSSchemaError("write_table got no batches; pass a table or at least one batch to define the schema")

    def chain() -> Iterable[pa.RecordBatch]:
        yield first
        yield from it

    return first.schema, chain()


def write_table(
    table: pa.Table | pa.RecordBatch | Iterable[pa.RecordBatch],
    path: str | os.PathLike,
    columns: Mapping[str, str] | None = None,
    compression: str | None = "zstd",
    hashes: Sequence[str] | None = None,
    size_limit: int | str | None = 1 << 26,
    exist_ok: bool = False,
    *,
    nulls: str = "auto",
    max_workers: int | None = None,
    batch_rows: int = 65536,
    keep_local: bool = False,
    retry: int = 2,
    storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Writes an Arrow table (or record batch, or iterable of batches) as an MDS dataset.

    Encodings come from the Arrow types (docs/format.md §2) unless overridden by ``columns``; the
    exact logical schema is stored in ``index.json`` under ``spark_mds``, so :func:`read_table`
    returns the same types. The reference reads the output as ordinary MDS (except ``lz4``).

    Args:
        table: the data.
        path: the dataset directory (must be empty or absent unless ``exist_ok``); or a URL
            (``s3://bucket/path``, any fsspec URL) or a ``(local, remote)`` pair, as the ``out``
            of :class:`MDSWriter`: shards are uploaded as they are written, ``index.json`` last.
        columns: encoding overrides, column name -> encoding.
        compression: default ``"zstd"``; None for raw shards.
        hashes: hash algorithms for each file, sorted.
        size_limit: maximum raw shard size in bytes.
        exist_ok: delete an existing directory first.
        nulls: ``"auto"`` (default): a ``__nulls__`` column is added only if the data has a null
            (for a table or batch; for an iterable of batches, whenever a field is nullable);
            ``"mask"``: whenever a field is nullable; ``"error"``: never, and nulls fail the write.
        max_workers: threads that compress and write shards.
        batch_rows: rows encoded at a time.
        keep_local, retry, storage_options: for a remote ``path``, as in :class:`MDSWriter`.
    """
    if nulls == "auto":
        if isinstance(table, (pa.Table, pa.RecordBatch)):
            nulls = "mask" if any(c.null_count for c in table.columns) else "error"
        else:
            nulls = "mask"
    elif nulls not in ("mask", "error"):
        raise MDSConfigError(f"nulls must be 'auto', 'mask' or 'error', got {nulls!r}")
    options = WriteOptions(
        compression=compression or None, hashes=check_hashes(hashes), size_limit=parse_size_limit(size_limit),
        nulls=nulls, encodings=dict(columns or {}), max_workers=max_workers, exist_ok=exist_ok, keep_local=keep_local,
        retry=retry, storage_options=dict(storage_options or {}),
    )  # fmt: skip
    schema, batches = _batches(table, batch_rows)
    output = open_destination(path, options)
    writer = None
    try:
        writer = TableWriter(output, schema, options)
        for batch in batches:
            writer.write_batch(batch)
        entries = writer.finish(write_empty=True)  # an empty table still records its encodings
        output.publish(dump_index(entries, writer.spark_mds))
    except BaseException:
        if writer is not None:
            writer.abort()
        output.discard()  # nothing was published: index.json goes last
        raise


def _open_storage(path: str | os.PathLike) -> Storage:
    from ..storage import open_storage  # (storage imports this package)

    return open_storage(path)

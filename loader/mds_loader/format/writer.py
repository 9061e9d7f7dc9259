"""Writing MDS datasets: :class:`MDSWriter` (the reference's per-sample API, byte-identical
output) and :func:`write_table` / :class:`TableWriter` (Arrow batches, vectorized).

Both feed encoded samples to one :class:`ShardSink`, which cuts them into shards exactly as the
reference does (greedy, by raw size, including its empty-shard quirk), builds each shard file,
and compresses, hashes and writes finished shards on background threads.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from ..errors import MDSConfigError, MDSSchemaError
from .columnar import EncodedColumn, FieldPlan, encode_column, join_samples, null_mask_column
from .compression import Codec, get_codec
from .encodings import Encoding, parse_encoding
from .hashing import check_hashes, get_hash
from .index import INDEX_BASENAME, check_basename, dump_index, write_index
from .schema import NULL_MASK, Field, check_encoding, default_encoding, logical_from_arrow, make_spark_mds
from .shard import MAX_SHARD_BYTES, build_shard, config_bytes, shard_config
from .sizes import SIZE_UNITS, parse_byte_size

__all__ = [
    "Output",
    "LocalOutput",
    "RemoteOutput",
    "prepare_output",
    "parse_size_limit",
    "ShardSink",
    "MDSWriter",
    "TableWriter",
    "write_table",
]

_URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]+:")  # s3://, gs://, dbfs:/ ... (not a drive letter)


def parse_size_limit(size_limit: int | float | str | None) -> int | None:
    """The reference's ``size_limit``: an int, or a string with a binary suffix (``"64mb"`` =
    64 MiB, ``"1.5kb"``, ``"100b"``, ``"100"``; :func:`~.sizes.parse_byte_size`); None or any
    false value means no limit.

    Raises:
        MDSConfigError: unparsable, negative, or 2**32 or more (shard offsets are u32).
    """
    if not size_limit:
        return None
    try:
        value = parse_byte_size(size_limit)
    except ValueError as exc:
        raise MDSConfigError(f"invalid size_limit {size_limit!r} ({exc}); use bytes or a suffix among b, "
                             f"{', '.join(SIZE_UNITS)}") from None
    if value < 0:
        raise MDSConfigError(f"size_limit must not be negative, got {value}")
    if value > MAX_SHARD_BYTES:
        raise MDSConfigError(f"size_limit must be less than 2**32, got {value}: sample offsets are 32-bit")
    return value or None


# ---------------------------------------------------------------------------- output


class Output(Protocol):
    """Where a writer puts files: :class:`LocalOutput` (a directory) or :class:`RemoteOutput`
    (a local directory whose files are uploaded through fsspec)."""

    root: str

    def write_file(self, basename: str, data: bytes) -> None:
        """Writes one shard file (``basename`` is relative, ``/``-separated)."""

    def write_index(self, text: str) -> None:
        """Publishes ``index.json`` atomically."""


class LocalOutput:
    """A local dataset directory."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = os.fspath(root)

    def write_file(self, basename: str, data: bytes) -> None:
        """Writes ``data`` to ``root/basename``, creating parent directories."""
        path = os.path.join(self.root, *check_basename(basename, "shard file").split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)

    def write_index(self, text: str) -> None:
        """Writes ``root/index.json`` atomically."""
        os.makedirs(self.root, exist_ok=True)
        write_index(self.root, text)

    def discard(self) -> None:
        """Nothing to undo for a local directory (a failed write leaves what it wrote)."""


class RemoteOutput(LocalOutput):
    """A dataset written to a local directory and uploaded to a remote one (any fsspec URL, or
    another directory), as the reference's ``MDSWriter(out=url | (local, remote))`` does.

    Each shard file is uploaded as soon as it is written (by the writer's background threads,
    so uploads run in parallel with encoding); ``index.json`` is uploaded last, after every
    shard, in one PUT: readers never see an index that names a file not uploaded yet.

    Args:
        local: the local directory (``root``).
        remote: the remote directory, e.g. ``s3://bucket/datasets/train``.
        keep_local: keep the local files after uploading them; otherwise each shard file is
            deleted once uploaded and the local directory when the index is published.
        retry: total attempts per upload.
        timeout: seconds one upload attempt may take (None: no limit).
        storage_options: fsspec options of the remote (credentials, endpoint, ...).
    """

    def __init__(self, local: str | os.PathLike, remote: str, *, keep_local: bool = False, retry: int = 2,
                 timeout: float | None = None, storage_options: Mapping[str, Any] | None = None) -> None:
        from ..storage import RemoteStore

        super().__init__(local)
        self.remote = remote
        self.keep_local = keep_local
        self.store = RemoteStore(remote, retry=retry, timeout=timeout, storage_options=dict(storage_options or {}))

    def __repr__(self) -> str:
        return f"RemoteOutput(local={self.root!r}, remote={self.remote!r})"

    def write_file(self, basename: str, data: bytes) -> None:
        """Writes the file locally, uploads it, and deletes the local copy unless ``keep_local``."""
        super().write_file(basename, data)
        path = os.path.join(self.root, *basename.split("/"))
        self.store.upload(path, basename)
        if not self.keep_local:
            os.remove(path)

    def write_index(self, text: str) -> None:
        """Writes ``index.json`` locally and uploads it (call it after every shard is written);
        then removes the local directory unless ``keep_local``."""
        super().write_index(text)
        self.store.write_bytes(INDEX_BASENAME, text.encode("ascii"))
        if not self.keep_local:
            shutil.rmtree(self.root, ignore_errors=True)

    def discard(self) -> None:
        """After a failed write: removes the local files unless ``keep_local`` (nothing was
        published remotely: the index is uploaded last)."""
        if not self.keep_local:
            shutil.rmtree(self.root, ignore_errors=True)


def _is_url(out: Any) -> bool:
    return isinstance(out, str) and bool(_URL_RE.match(out)) and "://" in out


def _prepare_local(root: str, exist_ok: bool) -> None:
    if os.path.exists(root):
        if exist_ok:
            shutil.rmtree(root)
        elif not os.path.isdir(root) or os.listdir(root):
            raise FileExistsError(f"Directory is not empty: {root}; pass exist_ok=True to replace it")
    os.makedirs(root, exist_ok=True)


def prepare_output(out: Any, *, exist_ok: bool, keep_local: bool = False, retry: int = 2,
                   storage_options: Mapping[str, Any] | None = None) -> LocalOutput:
    """The output of a new dataset, like the reference's ``out``:

    * a local directory: with ``exist_ok`` an existing directory is deleted first; otherwise it
      must be empty or absent;
    * a URL (``s3://bucket/path``, any fsspec URL): files are written to a new temporary
      directory and uploaded (:class:`RemoteOutput`);
    * a ``(local, remote)`` pair: files are written to ``local`` (same rules as above) and
      uploaded to ``remote`` (a URL or another directory).

    A remote that already holds a dataset (an ``index.json``) is refused unless ``exist_ok``;
    with ``exist_ok`` its files are replaced one by one and its index last (files of the old
    dataset that the new one does not name stay, unread). Unlike the reference, the remote is
    checked: mixing two datasets' shards silently is worse than an error.

    Raises:
        FileExistsError: the local directory is not empty, or the remote holds a dataset (and
            ``exist_ok`` is false).
        MDSConfigError: a malformed ``out``.
    """
    if isinstance(out, (tuple, list)):
        if len(out) != 2 or not all(isinstance(p, (str, os.PathLike)) for p in out):
            raise MDSConfigError(f"out must be a directory, a URL or a (local, remote) pair, got {out!r}")
        local, remote = os.fspath(out[0]), os.fspath(out[1])
        if _is_url(local):
            raise MDSConfigError(f"out=(local, remote): local must be a local directory, got {local!r}")
        root: str | None = os.path.expanduser(local)
    elif _is_url(out):
        remote, root = out, None
    else:
        root = os.path.expanduser(os.fspath(out))
        _prepare_local(root, exist_ok)
        return LocalOutput(root)
    from ..storage import RemoteStore

    if not exist_ok and RemoteStore(remote, retry=retry, storage_options=dict(storage_options or {})).exists(INDEX_BASENAME):
        raise FileExistsError(f"{remote} already holds a dataset ({INDEX_BASENAME}); pass exist_ok=True to replace it, "
                              f"or write elsewhere")
    if root is None:
        root = tempfile.mkdtemp(prefix="mds-upload-")
    else:
        _prepare_local(root, exist_ok)
    return RemoteOutput(root, remote, keep_local=keep_local, retry=retry, storage_options=storage_options)


# ---------------------------------------------------------------------------- shards


class ShardSink:
    """Cuts encoded samples into shards and writes them.

    Cutting is the reference's: for each sample of ``size`` bytes (cost ``size + 4``), if
    ``size_limit < current_shard_bytes + cost`` the current shard is flushed first (even when it
    is empty, which writes a 0-sample shard), then the sample is added; a shard starts at
    ``8 + len(config)`` bytes, so the running size is the raw file size.

    Finished shards are compressed, hashed and written by up to ``max_workers`` background
    threads; :meth:`finish` returns their index entries, in order.

    Args:
        output: where files go.
        column_names, column_encodings, column_sizes: the columns, in shard order (sorted).
        compression, hashes, size_limit: as in :class:`MDSWriter` (already validated).
        name_prefix: shard file names are ``f"{name_prefix}{n:05d}.mds"`` plus ``.<ext>`` when
            compressed, ``n`` counting this sink's shards from 0.
        max_workers: background threads (0: write synchronously).
    """

    def __init__(
        self,
        output: Output,
        *,
        column_names: Sequence[str],
        column_encodings: Sequence[str],
        column_sizes: Sequence[int | None],
        compression: str | None,
        hashes: Sequence[str],
        size_limit: int | None,
        name_prefix: str = "shard.",
        max_workers: int | None = None,
    ) -> None:
        self.output = output
        self.codec: Codec | None = get_codec(compression)
        self.hashes = list(hashes)
        self.size_limit = size_limit
        self.name_prefix = name_prefix
        self.config = shard_config(column_names, column_encodings, column_sizes, compression, self.hashes, size_limit)
        self.config_data = config_bytes(self.config)
        self._base = 8 + len(self.config_data)
        self._current = self._base
        self._sizes: list[np.ndarray] = []
        self._data: list[Any] = []
        self._count = 0
        workers = min(4, os.cpu_count() or 1) if max_workers is None else max_workers
        self._workers = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="mds-shard") if workers > 0 else None
        self._pending: list[Future | dict] = []

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
        self._pending.append(self._pool.submit(self._write, raw, raw_name, len(sizes)))

    def _reap(self, max_running: int) -> None:
        """Raises the error of a failed background write, and waits for the oldest running
        writes until fewer than ``max_running`` run (bounding the shards held in memory)."""
        futures = [f for f in self._pending if isinstance(f, Future)]
        for f in futures:
            if f.done():
                f.result()
        running = [f for f in futures if not f.done()]
        for f in running[: max(0, len(running) - max_running + 1)]:
            f.result()

    def _write(self, raw: bytes, raw_name: str, samples: int) -> dict:
        raw_info = {"basename": raw_name, "bytes": len(raw), "hashes": {h: get_hash(h, raw) for h in self.hashes}}
        zip_info = None
        data, name = raw, raw_name
        if self.codec is not None:
            data = self.codec.compress(raw)
            name = f"{raw_name}.{self.codec.extension}"
            zip_info = {"basename": name, "bytes": len(data), "hashes": {h: get_hash(h, data) for h in self.hashes}}
        self.output.write_file(name, data)
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
        out: the dataset directory; a URL (``s3://bucket/path``, any fsspec URL: written to a
            temporary directory and uploaded); or a ``(local, remote)`` pair (written to
            ``local`` and uploaded to ``remote``). Shard files are uploaded as they are written,
            ``index.json`` last.
        columns: column name -> encoding (``"int64"``, ``"str"``, ``"ndarray:float32:3,224,224"``...).
        compression: None (default), ``"zstd"``, ``"zstd:7"``, ``"gz"``, ``"bz2"``, ``"br"``,
            ``"snappy"``, or ``"lz4"`` (our extension: the reference cannot read it).
        hashes: hash algorithms recorded for each file, in sorted order (e.g. ``["sha1", "xxh64"]``).
        size_limit: maximum raw shard size in bytes (int or ``"64mb"``); None for one shard.
        keep_local: with a remote ``out``, keep the local files after uploading them (default:
            each file is deleted once uploaded, and the local directory at the end).
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
        compression = compression or None
        get_codec(compression)
        hash_names = check_hashes(hashes)
        limit = parse_size_limit(size_limit)
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
        self.output = prepare_output(out, exist_ok=exist_ok, keep_local=keep_local, retry=retry,
                                     storage_options=storage_options)
        self.local = self.output.root
        self.remote = getattr(self.output, "remote", None)
        self._sink = ShardSink(
            self.output,
            column_names=[n for n, _ in self.columns],
            column_encodings=[e.text for _, e in self.columns],
            column_sizes=[e.size for _, e in self.columns],
            compression=compression,
            hashes=hash_names,
            size_limit=limit,
            max_workers=max_workers,
        )
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
            self.output.write_index(dump_index(self._entries))
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
        out: the directory (or an :class:`Output`) to write shard files to. It is not checked or
            cleared; :meth:`finish` does not write ``index.json``.
        schema: the Arrow schema of the batches.
        columns: encoding overrides, column name -> encoding (docs/format.md §2).
        compression, hashes, size_limit, max_workers: as in :class:`MDSWriter`; compression
            defaults to ``"zstd"`` here.
        nulls: ``"mask"``: add the ``__nulls__`` column when some field is nullable; ``"error"``:
            no mask column, and a null fails the write naming its column.
        name_prefix: shard files are ``f"{name_prefix}{n:05d}.mds[.ext]"``.

    Raises:
        MDSSchemaError: a type without storage, a disallowed override, a column named
            ``__nulls__``, an override for an unknown column.
    """

    def __init__(
        self,
        out: str | os.PathLike | Output,
        schema: pa.Schema,
        *,
        columns: Mapping[str, str] | None = None,
        compression: str | None = "zstd",
        hashes: Sequence[str] | None = None,
        size_limit: int | str | None = 1 << 26,
        nulls: str = "mask",
        name_prefix: str = "shard.",
        max_workers: int | None = None,
    ) -> None:
        if nulls not in ("mask", "error"):
            raise MDSConfigError(f"nulls must be 'mask' or 'error', got {nulls!r}")
        overrides = dict(columns or {})
        unknown = sorted(set(overrides) - set(schema.names))
        if unknown:
            raise MDSSchemaError(f"encoding overrides for unknown columns {unknown}; the table has {schema.names}")
        if len(set(schema.names)) != len(schema.names):
            raise MDSSchemaError(f"duplicate column names in {schema.names}")
        self.schema = schema
        self.nulls = nulls
        self.plans: list[FieldPlan] = []
        for f in schema:
            if f.name == NULL_MASK:
                raise MDSSchemaError(f"{NULL_MASK!r} is reserved for the null mask; rename the column")
            logical = logical_from_arrow(f.type, f.name)
            text = overrides.get(f.name) or default_encoding(logical, f.type)
            enc = check_encoding(f.name, logical, text, f.type)
            self.plans.append(FieldPlan(f.name, f.type, logical, f.nullable, enc))
        self.fields = [Field(p.name, p.logical, p.nullable, {}) for p in self.plans]
        self.has_mask = nulls == "mask" and any(p.nullable for p in self.plans)
        mds = {p.name: p.encoding for p in self.plans}
        if self.has_mask:
            mds[NULL_MASK] = parse_encoding(f"ndarray:uint8:{(len(self.plans) + 7) // 8}")
        self.column_names = sorted(mds)
        self.encodings = [mds[n] for n in self.column_names]
        output = out if hasattr(out, "write_file") else LocalOutput(out)  # type: ignore[arg-type]
        self.output = output
        self._sink = ShardSink(
            output,  # type: ignore[arg-type]
            column_names=self.column_names,
            column_encodings=[e.text for e in self.encodings],
            column_sizes=[e.size for e in self.encodings],
            compression=compression or None,
            hashes=check_hashes(hashes),
            size_limit=parse_size_limit(size_limit),
            name_prefix=name_prefix,
            max_workers=max_workers,
        )
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
    if nulls not in ("auto", "mask", "error"):
        raise MDSConfigError(f"nulls must be 'auto', 'mask' or 'error', got {nulls!r}")
    if nulls == "auto":
        if isinstance(table, (pa.Table, pa.RecordBatch)):
            nulls = "mask" if any(c.null_count for c in table.columns) else "error"
        else:
            nulls = "mask"
    schema, batches = _batches(table, batch_rows)
    get_codec(compression or None)
    check_hashes(hashes)
    parse_size_limit(size_limit)
    output = prepare_output(path, exist_ok=exist_ok, keep_local=keep_local, retry=retry,
                            storage_options=storage_options)
    writer = None
    try:
        writer = TableWriter(
            output, schema, columns=columns, compression=compression, hashes=hashes, size_limit=size_limit,
            nulls=nulls, max_workers=max_workers,
        )  # fmt: skip
        for batch in batches:
            writer.write_batch(batch)
        entries = writer.finish(write_empty=True)  # an empty table still records its encodings
        output.write_index(dump_index(entries, writer.spark_mds))
    except BaseException:
        if writer is not None:
            writer.abort()
        output.discard()  # nothing was published: index.json goes last
        raise


"""What the ``mds`` command line tool knows about a dataset directory: its description
(``mds inspect``), a full check of its files (``mds validate``), its first rows (``mds head``) and
the shard files it no longer references (``mds vacuum``).

None of these functions writes into the dataset directory: a compressed shard whose raw form is not
there is decompressed in memory (:mod:`mds_loader.format.shard_files`), never next to its file (the
directory may be read-only, and ``validate`` must not double the disk usage of a dataset).

Every command turns its path argument into a local directory through :func:`resolve_dataset`, the
one place where remote URLs will be handled.
"""

from __future__ import annotations

import fnmatch
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from .errors import MDSError, MDSFormatError, MDSSchemaError
from .format.encodings import Encoding
from .format.hashing import get_hash, is_hash
from .format.index import INDEX_BASENAME, Index, ShardEntry, load_index
from .format.dataset import MDSDataset
from .format.reader import ReadColumn, ReadSchema, ShardReader
from .format.shard_files import inflate
from .format.schema import LogicalType, NdarrayInfo, natural_logical, type_string
from .format.shard import parse_shard_header
from .format.write_jobs import JOB_MARKER_PATTERN, TEMP_INDEX_PATTERN, job_of
from .storage import is_remote

__all__ = [
    "SHARD_FILE_PATTERN",
    "ValidationReport",
    "VacuumCandidate",
    "describe",
    "find_unreferenced",
    "head_rows",
    "resolve_dataset",
    "validate_dataset",
]

#: Names of the files that ``vacuum`` may remove (``shard.00000.mds``, ``shard.J.00003.7.00001.mds.zstd``).
SHARD_FILE_PATTERN = "shard.*.mds*"


# ---------------------------------------------------------------------------- paths


def resolve_dataset(path: str | os.PathLike, *, samples: int | None = 0,
                    storage_options: dict[str, Any] | None = None) -> str:
    """The local dataset directory that ``path`` names: a directory holding ``index.json``, or
    the ``index.json`` file itself (``file://`` URLs are local paths).

    This is the single function through which every ``mds`` command turns its path argument
    into a directory. A remote URL (``s3://``, ``gs://``, ``hf://``, ...) is mirrored into a local
    directory (see :func:`mirror_remote`): ``index.json`` always, and the stored files of the
    shards holding the first ``samples`` samples (``None``: every shard).

    Raises:
        FileNotFoundError: no such directory, or no ``index.json`` in it (naming the path).
    """
    text = os.fspath(path)
    if text.startswith("file://"):
        text = text[len("file://") :]
    if is_remote(text):
        return mirror_remote(text, samples=samples, storage_options=storage_options)
    local = os.path.abspath(os.path.expanduser(text))
    if os.path.basename(local) == INDEX_BASENAME and os.path.isfile(local):
        return os.path.dirname(local)
    if not os.path.exists(local):
        raise FileNotFoundError(f"{local}: no such file or directory")
    if not os.path.isdir(local):
        raise FileNotFoundError(f"{local}: not a directory; an MDS dataset is a directory holding {INDEX_BASENAME}")
    if not os.path.isfile(os.path.join(local, INDEX_BASENAME)):
        raise FileNotFoundError(f"{local}: no {INDEX_BASENAME} here, so this is not an MDS dataset directory")
    return local


def mirror_remote(url: str, *, samples: int | None = 0, storage_options: dict[str, Any] | None = None) -> str:
    """Copies a remote dataset's files *as stored* (compressed shards stay compressed, so their
    recorded hashes can be checked) into a per-URL directory under the system temp directory, and
    returns it. ``index.json`` is fetched every time; shard files already mirrored with the right
    size are kept. Only the shards holding the first ``samples`` samples are fetched (None: all;
    0: only the first non-empty shard, which schema inference may need).

    Raises:
        FileNotFoundError: the remote has no ``index.json``.
        MDSIndexError: the remote ``index.json`` is malformed.
        TimeoutError, OSError: transfers that failed every attempt.
    """
    import hashlib
    import tempfile

    from .locks import FileLock
    from .storage import RemoteStore, write_file_atomic
    from .stream import parse_index_bytes

    url = url.rstrip("/")
    store = RemoteStore(url, storage_options=storage_options)
    digest = hashlib.blake2s(url.encode("utf-8"), digest_size=16).hexdigest()
    root = os.path.join(tempfile.gettempdir(), "mds-loader", "mirror", digest)
    os.makedirs(root, exist_ok=True)
    with FileLock(os.path.join(root, ".mirror.lock")):
        try:
            data = store.read_bytes(INDEX_BASENAME)
        except FileNotFoundError:
            raise FileNotFoundError(f"{url}/{INDEX_BASENAME}: not found, so this is not an MDS dataset") from None
        index = parse_index_bytes(data, f"{url}/{INDEX_BASENAME}")
        write_file_atomic(os.path.join(root, INDEX_BASENAME), lambda f: f.write(data))
        wanted = []
        remaining = samples
        for shard in index.shards:
            if remaining is not None and remaining <= 0 and wanted:
                break
            if remaining is not None and remaining <= 0 and not shard.samples:
                continue
            wanted.append(shard)
            if remaining is not None:
                remaining -= shard.samples
        for shard in wanted:
            basename, size = _stored(shard)
            dest = _file_path(root, basename)
            if os.path.isfile(dest) and os.path.getsize(dest) == size:
                continue
            store.download(basename, dest)  # atomic; a wrong size is left for `validate` to report
    return root


def _file_path(root: str, basename: str) -> str:
    return os.path.join(root, *basename.split("/"))


def _stored(entry: ShardEntry) -> tuple[str, int]:
    """The file a shard is stored as (compressed if it has one) and its size."""
    info = entry.zip_data or entry.raw_data
    return info.basename, info.bytes


# ---------------------------------------------------------------------------- reading


# ---------------------------------------------------------------------------- inspect


def _column_info(c: ReadColumn, inferred: bool) -> dict[str, Any]:
    logical: LogicalType | None = c.logical
    if logical is None:
        logical = _natural_logical_of(c)
    return {
        "name": c.name,
        "spark_type": type_string(logical),
        "logical_type": logical,
        "mds_encoding": c.encoding.text,
        "arrow_type": str(c.arrow_type),
        "nullable": c.nullable,
        "size": c.encoding.size,
        "inferred": inferred,
    }


def _natural_logical_of(c: ReadColumn) -> LogicalType:
    """The §4 logical type of a column read without a schema, from the Arrow type the reader
    chose (which already holds a dynamic ndarray's depth and dtype from the first sample)."""
    enc: Encoding = c.encoding
    if enc.kind != "ndarray":
        return natural_logical(enc)
    t: pa.DataType = c.natural_type
    depth = 0
    while pa.types.is_list(t) or pa.types.is_fixed_size_list(t):
        t, depth = t.value_type, depth + 1
    return natural_logical(enc, NdarrayInfo(np.dtype(t.to_pandas_dtype()).name, depth))


def describe(path: str) -> dict[str, Any]:
    """Everything ``mds inspect`` shows about a dataset directory, as JSON-ready data: schema
    (Spark, MDS and Arrow types), shards (samples, raw and compressed files and sizes, hashes),
    totals, compression and hash algorithms.

    Only ``index.json`` is read, except for a dataset without a ``spark_mds`` schema that has
    dynamic ``ndarray`` columns: their depth and dtype come from the first sample (§4).

    Raises:
        MDSIndexError: a malformed ``index.json``.
    """
    warnings: list[str] = []
    with MDSDataset(path, max_open_shards=4) as ds:
        index: Index = ds.index
        shards = index.shards
        try:
            schema = ds.read_schema
        except (MDSError, OSError) as exc:
            warnings.append(f"types shown without the first sample's ndarray shapes: {exc}")
            schema = ReadSchema.build(shards[0].column_names, shards[0].encodings) if shards else ReadSchema([], None)
    inferred = index.fields is None
    columns = [_column_info(c, inferred) for c in schema.columns]
    null_mask = None
    if index.null_mask and shards:
        enc = dict(zip(shards[0].column_names, shards[0].column_encodings))[index.null_mask]
        null_mask = {"name": index.null_mask, "mds_encoding": enc}
    raw_total = sum(s.raw_data.bytes for s in shards)
    zipped = [s for s in shards if s.zip_data is not None]
    samples = [s.samples for s in shards]
    return {
        "path": path,
        "index": os.path.join(path, INDEX_BASENAME),
        "schema_source": "inferred" if inferred else "spark_mds",
        "format_version": None if index.spark_mds is None else index.spark_mds.get("format_version"),
        "samples": index.num_samples,
        "num_shards": len(shards),
        "samples_per_shard": {"min": min(samples), "max": max(samples)} if samples else None,
        "raw_bytes": raw_total,
        "compressed_bytes": sum(s.zip_data.bytes for s in zipped) if zipped else None,  # type: ignore[union-attr]
        "stored_bytes": sum(_stored(s)[1] for s in shards),
        "compression": sorted({s.compression for s in shards if s.compression}),
        "hashes": sorted({h for s in shards for h in s.hashes}),
        "size_limit": sorted({s.size_limit for s in shards if s.size_limit is not None}, key=str),
        "null_mask": null_mask,
        "columns": columns,
        "shards": [
            {
                "shard": k,
                "samples": s.samples,
                "compression": s.compression,
                "raw_data": s.raw_data.to_json(),
                "zip_data": s.zip_data.to_json() if s.zip_data else None,
            }
            for k, s in enumerate(shards)
        ],
        "warnings": warnings,
    }


# ---------------------------------------------------------------------------- validate


@dataclass
class ValidationReport:
    """The outcome of :func:`validate_dataset`.

    Attributes:
        path: the dataset directory.
        errors: one line per problem, each naming the file (the dataset is invalid if any).
        warnings: oddities that readers tolerate.
        shards, samples: counts from the index (0 if it could not be read).
        stored_bytes: bytes of the stored shard files that were read.
        hashes: algorithm -> number of files verified with it.
        decoded: samples decoded (``decode=True``).
    """

    path: str
    index_ok: bool = False
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    shards: int = 0
    samples: int = 0
    stored_bytes: int = 0
    hashes: Counter = field(default_factory=Counter)
    decoded: int = 0

    @property
    def valid(self) -> bool:
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path, "valid": self.valid, "errors": self.errors, "warnings": self.warnings,
            "shards": self.shards, "samples": self.samples, "stored_bytes": self.stored_bytes,
            "hashes_verified": dict(sorted(self.hashes.items())), "samples_decoded": self.decoded,
        }  # fmt: skip


def _check_hashes(report: ValidationReport, data: bytes, hashes: dict[str, str], where: str) -> bool:
    """Verifies every recorded hash of one file; returns whether all that could be checked match."""
    ok = True
    for algo, expected in sorted(hashes.items()):
        if not is_hash(algo):
            report.warnings.append(f"{where}: cannot verify the unknown hash algorithm {algo!r}")
            continue
        actual = get_hash(algo, data)
        if actual != expected:
            report.errors.append(
                f"{where}: {algo} checksum mismatch (expected {expected}, got {actual}); the file is corrupt or was replaced"
            )
            ok = False
        else:
            report.hashes[algo] += 1
    return ok


def _read_file(report: ValidationReport, path: str, size: int, k: int) -> bytes | None:
    """The content of a shard file, or None after recording why it is unusable."""
    if not os.path.isfile(path):
        report.errors.append(f"{path}: shard {k}'s file is missing")
        return None
    with open(path, "rb") as f:
        data = f.read()
    report.stored_bytes += len(data)
    if len(data) != size:
        report.errors.append(f"{path}: shard {k} has {len(data)} bytes, index.json says {size}; the file is truncated or was replaced")
        return None
    return data


def _shard_bytes(report: ValidationReport, root: str, k: int, entry: ShardEntry) -> tuple[bytes | None, str]:
    """Reads, hash-checks and (if compressed) decompresses shard ``k``: its raw bytes (None if
    unusable) and the name to use for it in messages."""
    raw, zip_info = entry.raw_data, entry.zip_data
    raw_path = _file_path(root, raw.basename)
    if set(entry.hashes) != set(raw.hashes) or (zip_info is not None and set(entry.hashes) != set(zip_info.hashes)):
        report.warnings.append(f"{report.path}/{INDEX_BASENAME}: shard {k} lists hashes {entry.hashes} but its files record {sorted(raw.hashes)}")
    if zip_info is None:
        data = _read_file(report, raw_path, raw.bytes, k)
        if data is None or not _check_hashes(report, data, raw.hashes, raw_path):
            return None, raw_path
        return data, raw_path
    zip_path = _file_path(root, zip_info.basename)
    label = f"{zip_path} (decompressed)"
    # A raw copy left by an earlier read is what readers use first, so it must be right too.
    raw_copy = None
    if os.path.isfile(raw_path):
        if os.path.getsize(raw_path) != raw.bytes:
            report.warnings.append(f"{raw_path}: a stale decompressed copy ({os.path.getsize(raw_path)} bytes, index.json says "
                                   f"{raw.bytes}); readers decompress {zip_info.basename} over it")
        else:
            with open(raw_path, "rb") as f:
                raw_copy = f.read()
            if not _check_hashes(report, raw_copy, raw.hashes, raw_path):
                raw_copy = None
    if not os.path.isfile(zip_path):
        if raw_copy is None:
            report.errors.append(f"{zip_path}: shard {k}'s file is missing")
            return None, label
        report.warnings.append(f"{zip_path}: missing; only its decompressed copy {raw.basename} is there (readable locally)")
        return raw_copy, raw_path
    data = _read_file(report, zip_path, zip_info.bytes, k)
    if data is None or not _check_hashes(report, data, zip_info.hashes, zip_path):
        return None, label
    try:
        out = inflate(entry, data, zip_path)
    except MDSFormatError as exc:
        report.errors.append(str(exc))
        return None, label
    if not _check_hashes(report, out, raw.hashes, label):
        return None, label
    return out, label


def _check_structure(report: ValidationReport, buf: np.ndarray, entry: ShardEntry, label: str) -> bool:
    """Checks a raw shard's header, the size header of every sample, and its embedded config."""
    try:
        offsets = parse_shard_header(buf, label, entry.samples)
    except MDSFormatError as exc:
        report.errors.append(str(exc))
        return False
    n = entry.samples
    head_end = 4 + 4 * (n + 1)
    try:
        embedded = json.loads(bytes(buf[head_end : int(offsets[0])]))
    except ValueError:
        report.warnings.append(f"{label}: the embedded config is not valid JSON (readers use index.json instead)")
    else:
        expected = {k: v for k, v in entry.to_json().items() if k not in ("raw_data", "zip_data", "samples")}
        if not isinstance(embedded, dict) or embedded != expected:
            keys = sorted(k for k in expected if not isinstance(embedded, dict) or embedded.get(k) != expected[k])
            report.warnings.append(f"{label}: the embedded config differs from index.json in {keys} (readers use index.json)")
    if not n:
        return True
    sizes = entry.column_sizes
    fixed = sum(s for s in sizes if s is not None)
    num_var = sum(s is None for s in sizes)
    lengths = np.diff(offsets)
    short = lengths < 4 * num_var + fixed
    if short.any():
        i = int(np.argmax(short))
        report.errors.append(f"{label}: sample {i} has {int(lengths[i])} bytes, less than its columns' size headers and fixed-size values need")
        return False
    total = np.full(n, 4 * num_var + fixed, np.int64)
    starts = offsets[:-1]
    for j in range(num_var):  # one u32 size per variable-size column, little-endian
        pos = starts + 4 * j
        total += (buf[pos].astype(np.int64) | buf[pos + 1].astype(np.int64) << 8
                  | buf[pos + 2].astype(np.int64) << 16 | buf[pos + 3].astype(np.int64) << 24)  # fmt: skip
    bad = total != lengths
    if bad.any():
        i = int(np.argmax(bad))
        report.errors.append(f"{label}: sample {i} has {int(lengths[i])} bytes, but its column sizes add up to {int(total[i])}; the shard is corrupt")
        return False
    return True


def _decode_shard(report: ValidationReport, raw: bytes, entry: ShardEntry, label: str, schema: ReadSchema | None,
                  strict_arrow: bool) -> None:
    """Decodes every sample of a shard per sample (the reference's values; ``pkl`` is never
    unpickled, only size-checked) and as one Arrow batch (errors only when the dataset has a
    logical schema, which promises that it reads as a table)."""
    columns = [n for n, e in zip(entry.column_names, entry.encodings) if e.kind != "pkl"]
    with ShardReader.from_bytes(raw, entry, source=label, schema=schema) as reader:
        try:
            for i in range(entry.samples):
                reader.get_sample(i, columns)
                report.decoded += 1
        except (MDSError, ValueError, OSError) as exc:
            report.errors.append(str(exc))
            return
        if entry.samples:
            try:
                reader.read_batch(np.arange(entry.samples))
            except (MDSError, ValueError, pa.ArrowException) as exc:
                if strict_arrow:
                    report.errors.append(str(exc))
                else:
                    report.warnings.append(f"readable per sample but not as one Arrow table: {exc}")


def validate_dataset(path: str, *, decode: bool = False, progress: Callable[[int], None] | None = None) -> ValidationReport:
    """Checks a dataset directory completely: ``index.json`` (structure, safe paths, the
    ``spark_mds`` schema against the columns), every shard file it lists (present, size, every
    recorded hash of the compressed and the raw form, decompression, the sample table, the size
    header of every sample), and with ``decode`` every sample's values.

    Problems are collected (one line each, naming the file), not raised.

    Args:
        path: the dataset directory (see :func:`resolve_dataset`).
        decode: decode every sample per sample (and as Arrow batches).
        progress: called with the stored bytes of each shard after it is checked.
    """
    report = ValidationReport(path)
    try:
        index = load_index(path)
    except (MDSError, OSError) as exc:
        report.errors.append(str(exc))
        return report
    shards = index.shards
    report.index_ok = True
    report.shards, report.samples = len(shards), index.num_samples
    if not shards:
        report.warnings.append(f"{index.source}: the dataset has no shards")
    schema: ReadSchema | None = None
    if shards:
        first = shards[0]
        try:
            if index.fields is not None:
                schema = ReadSchema.build(first.column_names, first.encodings, index.fields, index.null_mask, None, index.source)
        except MDSError as exc:
            report.errors.append(f"{exc} (shard 0)")
        message = index.column_mismatch()
        if message is not None:
            if index.fields is not None:
                report.errors.append(message + "; every shard must have the columns of the spark_mds schema")
            else:
                report.warnings.append(message + "; readable per sample, but not as one table")
    for k, entry in enumerate(shards):
        raw, label = _shard_bytes(report, path, k, entry)
        if raw is not None and _check_structure(report, np.frombuffer(raw, np.uint8), entry, label) and decode:
            shard_schema = schema if schema is not None and entry.column_names == shards[0].column_names else None
            _decode_shard(report, raw, entry, label, shard_schema, strict_arrow=index.fields is not None)
        if progress is not None:
            progress(_stored(entry)[1])
    return report


# ---------------------------------------------------------------------------- head


def head_rows(path: str, n: int, columns: Sequence[str] | None = None) -> tuple[pa.Table | None, list[dict[str, Any]] | None, str | None]:
    """The first ``n`` rows of a dataset.

    Returns ``(table, None, None)``: the rows as Arrow (logical types, real nulls), reading only
    the shards needed; or, when the columns do not fit one Arrow type (dynamic ``ndarray`` columns
    of mixed rank), ``(None, samples, reason)``: per-sample values as the reference returns them
    (``pkl`` columns are not unpickled and are left out).

    Raises:
        KeyError: an unknown column.
    """
    with MDSDataset(path, max_open_shards=4) as ds:
        selected = ds.read_schema.select(columns)
        names = [c.name for c in selected]
        batches = []
        remaining = n
        try:
            for k, entry in enumerate(ds.shards):
                if remaining <= 0:
                    break
                take = min(remaining, entry.samples)
                if take:
                    batches.append(ds.shard(k).read_batch(np.arange(take), names))
                    remaining -= take
        except MDSSchemaError as exc:
            safe = [c.name for c in selected if c.encoding.kind != "pkl"]
            samples = [ds.get_sample(i, safe) for i in range(min(n, ds.num_samples))]
            return None, samples, str(exc)
        schema = pa.schema([pa.field(c.name, c.arrow_type, c.nullable) for c in selected])
        return pa.Table.from_batches(batches, schema=schema), None, None


# ---------------------------------------------------------------------------- vacuum


@dataclass(frozen=True)
class VacuumCandidate:
    """A shard-like file that no index references."""

    path: str
    bytes: int
    age_seconds: float
    old_enough: bool
    #: The Spark write job whose marker, younger than ``older_than``, keeps this file (None: no such job).
    running_job: str | None = None


def _index_files(directory: str) -> set[str]:
    """Absolute paths of every file the ``index.json`` of ``directory`` references."""
    index = load_index(directory)
    files = set()
    for s in index.shards:
        for info in (s.raw_data, s.zip_data):
            if info is not None:
                files.add(os.path.normpath(_file_path(directory, info.basename)))
    return files


def find_unreferenced(path: str, older_than: float, now: float | None = None) -> tuple[list[VacuumCandidate], list[str]]:
    """The files that ``mds vacuum`` would remove: names matching ``shard.*.mds*`` that no index
    references, in the dataset directory and in the subdirectories its index names files in
    (merged datasets), and the temporary indexes (``.index.json.J.tmp``) and job markers
    (``.mds-write.J``) of Spark write jobs whose driver died (docs/format.md §6). A subdirectory
    with its own ``index.json`` keeps the files that index references too. Other subdirectories are
    never entered.

    The directories are listed *before* the index is read: a writer publishes its index only
    after its shard files exist, so any file listed here that a concurrently published index
    references is seen as referenced. ``older_than`` (seconds) protects the files of writers that
    have not published their index yet: a file is old enough when it and the marker of its job, if
    any, are at least that old (a running Spark job keeps its marker).

    Returns:
        The candidates (``old_enough`` says whether they are old enough to remove) and warnings.

    Raises:
        MDSIndexError: the dataset's ``index.json`` is malformed (nothing is removed then).
    """
    now = time.time() if now is None else now
    warnings: list[str] = []
    root_files = _index_files(path)  # fails early on a bad index
    dirs = {path} | {os.path.dirname(f) for f in root_files}
    listed: list[tuple[str, os.stat_result]] = []
    for d in sorted(dirs):
        try:
            entries = list(os.scandir(d))
        except FileNotFoundError:
            continue
        for e in entries:
            # Shard files, and what a Spark write job whose driver died leaves beside them.
            leftover = fnmatch.fnmatchcase(e.name, SHARD_FILE_PATTERN) or (d == path and (
                fnmatch.fnmatchcase(e.name, TEMP_INDEX_PATTERN) or fnmatch.fnmatchcase(e.name, JOB_MARKER_PATTERN)))
            if leftover and e.is_file(follow_symlinks=False):
                listed.append((os.path.normpath(e.path), e.stat(follow_symlinks=False)))
    referenced = _index_files(path)  # re-read after listing (see above)
    for d in sorted(dirs - {path}):
        if os.path.isfile(os.path.join(d, INDEX_BASENAME)):
            try:
                referenced |= _index_files(d)
            except (MDSError, OSError) as exc:
                warnings.append(f"{d}: skipped, its own {INDEX_BASENAME} is unreadable ({exc})")
                referenced |= {p for p, _ in listed if os.path.dirname(p) == d}
    running = {job_of(os.path.basename(p)) for p, st in listed
               if fnmatch.fnmatchcase(os.path.basename(p), JOB_MARKER_PATTERN) and now - st.st_mtime < older_than}
    candidates = []
    for p, st in listed:
        if p in referenced:
            continue
        age = now - st.st_mtime
        job = job_of(os.path.basename(p)) if os.path.dirname(p) == path else None
        keeper = job if job in running else None
        candidates.append(VacuumCandidate(p, st.st_size, age, age >= older_than and keeper is None, keeper))
    return candidates, warnings

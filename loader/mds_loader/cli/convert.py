"""``mds convert``: Parquet, Feather/IPC, CSV or TSV (or a directory of them) to MDS."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa

from ..errors import MDSConfigError, MDSSchemaError
from ..format.compression import get_codec
from ..format.index import INDEX_BASENAME, load_index
from ..format.schema import check_encoding, logical_from_arrow
from ..format.writer import write_table
from ..storage import is_remote
from .render import progress_bar, size_text
from .status import EXIT_OK, UsageError


# ---------------------------------------------------------------------------- convert

_FORMAT_SUFFIXES = {
    ".parquet": "parquet", ".pq": "parquet", ".parq": "parquet",
    ".feather": "feather", ".arrow": "ipc", ".ipc": "ipc",
    ".csv": "csv", ".tsv": "tsv",
}  # fmt: skip
_COMPRESSED_SUFFIXES = (".gz", ".bz2", ".zst", ".lz4")
FORMATS = ("parquet", "feather", "ipc", "arrow", "csv", "tsv")


def _format_of(name: str) -> str | None:
    lower = name.lower()
    for suffix in _COMPRESSED_SUFFIXES:  # data.csv.gz: pyarrow decompresses by extension
        if lower.endswith(suffix):
            lower = lower[: -len(suffix)]
    return _FORMAT_SUFFIXES.get(os.path.splitext(lower)[1])


def _detect_format(src: str) -> str:
    if os.path.isfile(src):
        fmt = _format_of(src)
        if fmt is None:
            raise UsageError(f"{src}: cannot tell the format from the file name; pass --format ({', '.join(FORMATS)})")
        return fmt
    found = set()
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = [d for d in dirnames if not d.startswith((".", "_"))]
        found |= {f for f in (_format_of(n) for n in filenames if not n.startswith((".", "_"))) if f}
    if len(found) != 1:
        what = f"files of several formats ({', '.join(sorted(found))})" if found else "no Parquet, Arrow or CSV files"
        raise UsageError(f"{src}: {what}; pass --format ({', '.join(FORMATS)})")
    return found.pop()


def _open_source(args: argparse.Namespace) -> tuple[Any, str]:
    """The pyarrow dataset of SRC and its format."""
    import pyarrow.dataset as pads

    src = os.path.expanduser(args.src)
    if not is_remote(src) and not os.path.exists(src):
        raise FileNotFoundError(f"{src}: no such file or directory")
    fmt = args.format or (_detect_format(src) if not is_remote(src) else None)
    if fmt is None:
        raise UsageError(f"{src}: pass --format ({', '.join(FORMATS)}) for a remote source")
    if fmt in ("csv", "tsv"):
        import pyarrow.csv as pacsv

        delimiter = args.delimiter or ("\t" if fmt == "tsv" else ",")
        file_format: Any = pads.CsvFileFormat(parse_options=pacsv.ParseOptions(delimiter=delimiter))
    elif fmt in ("feather", "ipc", "arrow"):
        file_format = "ipc"
    else:
        file_format = "parquet"
    dataset = pads.dataset(src, format=file_format, partitioning="hive" if args.hive else None)
    return dataset, fmt


def _may_have_nulls(dataset: Any, fmt: str, columns: Sequence[str]) -> bool:
    """Whether the source may hold a null in these columns: Parquet statistics answer without
    reading the data; any other format (or missing statistics) may."""
    if fmt != "parquet":
        return True
    wanted = set(columns)
    seen = set()
    for fragment in dataset.get_fragments():
        meta = fragment.metadata
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            for c in range(group.num_columns):
                col = group.column(c)
                top = col.path_in_schema.split(".")[0]
                if top not in wanted:
                    continue
                seen.add(top)
                stats = col.statistics
                if stats is None or not stats.has_null_count or stats.null_count:
                    return True
    return bool(wanted - seen)  # e.g. hive partition columns: not in the files, so unknown


def _check_overrides(schema: pa.Schema, overrides: dict[str, str]) -> None:
    for name, encoding in overrides.items():
        if name not in schema.names:
            raise UsageError(f"--columns {name}={encoding}: the source has no column {name!r} (it has {schema.names})")
        t = schema.field(name).type
        try:
            check_encoding(name, logical_from_arrow(t, name), encoding, t)
        except MDSSchemaError as exc:
            raise UsageError(f"--columns {name}={encoding}: {exc}") from None


def _prepare_destination(dst: str, overwrite: bool) -> str | None:
    """Checks that DST may be written; returns None when it is absent or empty, else the
    existing dataset directory that the new one will replace."""
    if not os.path.exists(dst):
        return None
    if not os.path.isdir(dst):
        raise MDSConfigError(f"{dst}: exists and is not a directory")
    if not os.listdir(dst):
        return None
    if not overwrite:
        raise MDSConfigError(f"{dst}: exists and is not empty; pass --overwrite to replace the dataset there")
    if not os.path.isfile(os.path.join(dst, INDEX_BASENAME)):
        raise MDSConfigError(f"{dst}: exists and is not an MDS dataset (no {INDEX_BASENAME}); refusing to delete it, even with --overwrite")
    return dst


def _write_local(reader: pa.RecordBatchReader, dst: str, overwrite: bool, **options: Any) -> None:
    """Writes a new dataset next to DST and moves it into place only once complete: a failed
    conversion leaves DST as it was, and readers never see a half-written dataset there."""
    dst = os.path.abspath(dst)
    existing = _prepare_destination(dst, overwrite)
    parent = os.path.dirname(dst)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(dst)}.convert-", dir=parent)
    try:
        write_table(reader, tmp, exist_ok=True, **options)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)  # mkdtemp made it private
        if existing is None:
            if os.path.isdir(dst):
                os.rmdir(dst)  # empty
            os.rename(tmp, dst)
            return
        old = os.path.join(parent, f".{os.path.basename(dst)}.old-{uuid.uuid4().hex[:8]}")
        os.rename(dst, old)
        os.rename(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _write_dataset(reader: pa.RecordBatchReader, dst: str, overwrite: bool, **options: Any) -> None:
    """The one place convert writes its output. A URL goes to the writer as is (remote outputs
    are the writer's job: today it refuses them with a clear error)."""
    if is_remote(dst):
        write_table(reader, dst, exist_ok=overwrite, **options)
    else:
        _write_local(reader, os.path.expanduser(dst), overwrite, **options)


def cmd_convert(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    overrides = dict(args.columns or [])
    dataset, fmt = _open_source(args)
    columns = args.select or dataset.schema.names
    missing = [c for c in columns if c not in dataset.schema.names]
    if missing:
        raise UsageError(f"--select: the source has no columns {missing} (it has {dataset.schema.names})")
    scanner = dataset.scanner(columns=columns)
    schema = scanner.projected_schema
    _check_overrides(schema, overrides)
    nulls = args.nulls
    if nulls == "auto":
        nulls = "mask" if _may_have_nulls(dataset, fmt, columns) else "error"
    if args.compression and get_codec(args.compression).family == "lz4":  # type: ignore[union-attr]
        print("warning: lz4 is an extension of mds-loader: mosaicml-streaming cannot read this dataset", file=sys.stderr)
    total = dataset.count_rows() if fmt != "csv" and fmt != "tsv" else None
    rows = 0
    bar = progress_bar(args, total=total, unit=" rows", unit_scale=True, desc="convert")

    def batches() -> Iterator[pa.RecordBatch]:
        nonlocal rows
        for batch in scanner.to_batches():  # streamed: one batch in memory at a time
            rows += batch.num_rows
            bar.update(batch.num_rows)
            yield batch

    try:
        _write_dataset(
            pa.RecordBatchReader.from_batches(schema, batches()), args.dst, args.overwrite,
            columns=overrides or None, compression=args.compression, hashes=args.hashes or None,
            size_limit=args.size_limit, nulls=nulls,
        )  # fmt: skip
    finally:
        bar.close()
    elapsed = time.perf_counter() - start
    if is_remote(args.dst):
        print(f"converted {rows:,} rows from {args.src} ({fmt}) to {args.dst} in {elapsed:.1f} s")
        return EXIT_OK
    index = load_index(os.path.expanduser(args.dst))
    stored = sum((s.zip_data or s.raw_data).bytes for s in index.shards)
    print(f"converted {rows:,} rows from {args.src} ({fmt}) to {os.path.abspath(os.path.expanduser(args.dst))}: "
          f"{len(index.shards)} shard(s), {size_text(stored)} ({args.compression or 'not compressed'}"
          f"{', null mask' if index.null_mask else ''}) in {elapsed:.1f} s")  # fmt: skip
    return EXIT_OK

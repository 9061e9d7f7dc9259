"""The ``mds`` command line tool: inspect, validate, show and convert MDS datasets.

::

    mds inspect PATH [--json] [--all-shards]
    mds validate PATH [--decode] [--json] [--progress | --no-progress]
    mds head PATH [-n 5] [--columns a,b] [--json]
    mds convert SRC DST [--format F] [--compression zstd] [--hashes sha1,xxh64] [--size-limit 64mb]
                        [--columns NAME=ENCODING ...] [--nulls auto|mask|error] [--overwrite]
    mds vacuum PATH [--dry-run] [--older-than 1h]

Exit status: 0 success, 1 invalid dataset or data error, 2 usage error. Errors are one line on
stderr (``--debug`` adds the traceback). Every dataset path goes through
:func:`mds_loader.inspection.resolve_dataset`.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import decimal
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from . import __version__
from .errors import MDSConfigError, MDSEncodingError, MDSError, MDSSchemaError
from .format.compression import get_codec
from .format.encodings import parse_encoding
from .format.hashing import hash_names, is_hash
from .format.index import INDEX_BASENAME, load_index
from .format.schema import check_encoding, logical_from_arrow
from .format.writer import parse_size_limit, write_table
from .inspection import SHARD_FILE_PATTERN, describe, find_unreferenced, head_rows, resolve_dataset, validate_dataset
from .storage import is_remote

__all__ = ["main", "build_parser", "UsageError", "EXIT_OK", "EXIT_INVALID", "EXIT_USAGE"]

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A bad command line argument (exit status 2)."""


# ---------------------------------------------------------------------------- formatting


def _size(n: int | None) -> str:
    """``1536`` -> ``1.5 KiB``."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    """Left-aligned text columns."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = [indent + "  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return lines


def _to_json(v: Any) -> Any:
    """A JSON-ready form of a value read from a dataset: bytes as base64 text, decimals and
    dates as text, NaN/infinities as the strings of docs/format.md §5, arrays as lists."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else ("NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity"))
    if isinstance(v, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(v)).decode("ascii")
    if isinstance(v, np.ndarray):
        return _to_json(v.tolist())
    if isinstance(v, np.generic):
        return _to_json(v.item())
    if isinstance(v, dict):
        return {str(k): _to_json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_to_json(x) for x in v]
    if isinstance(v, (datetime.date, datetime.datetime, datetime.time)):
        return v.isoformat()
    if isinstance(v, datetime.timedelta):
        return str(v)
    if isinstance(v, decimal.Decimal):
        return str(v)
    return _describe_object(v)


def _describe_object(v: Any) -> str:
    if type(v).__module__.startswith("PIL."):
        return f"<PIL image {getattr(v, 'format', None) or ''} {v.mode} {v.size[0]}x{v.size[1]}>".replace("  ", " ")
    return f"<{type(v).__name__}>"


def _to_text(v: Any, width: int) -> str:
    """A one-line, at most ``width`` characters, form of a value for ``mds head``."""
    if v is None:
        text = "null"
    elif isinstance(v, str):
        text = v
    elif isinstance(v, (bytes, bytearray)):
        text = repr(bytes(v))
    elif isinstance(v, np.ndarray):
        text = f"ndarray[{v.dtype}{list(v.shape)}] {json.dumps(_to_json(v))}"
    elif isinstance(v, np.generic):
        text = repr(v.item())
    elif isinstance(v, (list, tuple, dict)):
        text = json.dumps(_to_json(v), ensure_ascii=False)
    elif isinstance(v, float):
        text = repr(v)
    elif isinstance(v, (int, bool, decimal.Decimal, datetime.date, datetime.datetime, datetime.timedelta)):
        text = str(v)
    else:
        text = _describe_object(v)
    text = text.replace("\n", "\\n").replace("\t", "\\t")
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


# ---------------------------------------------------------------------------- argument types


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d*)?)\s*(s|sec|m|min|h|d|w)?\s*", re.IGNORECASE)
_DURATION_UNITS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``"90"`` / ``"90s"`` / ``"30m"`` / ``"1h"`` / ``"2d"`` / ``"1w"`` -> seconds."""
    m = _DURATION_RE.fullmatch(text)
    if not m:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}; use e.g. 90s, 30m, 1h, 2d")
    return float(m.group(1)) * _DURATION_UNITS[(m.group(2) or "").lower() or None]


def _compression(text: str) -> str | None:
    if text.lower() in ("none", "no", ""):
        return None
    try:
        get_codec(text)
    except MDSConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _hashes(text: str) -> list[str]:
    names = sorted({h.strip() for h in text.split(",") if h.strip()})  # the reference wants them sorted
    unknown = [h for h in names if not is_hash(h)]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown hash algorithm(s) {unknown}; use some of {', '.join(sorted(hash_names()))}")
    return names


def _size_limit(text: str) -> int | None:
    if text.lower() in ("none", "0"):
        return None
    try:
        return parse_size_limit(text)
    except MDSConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _override(text: str) -> tuple[str, str]:
    name, sep, encoding = text.partition("=")
    if not sep or not name or not encoding:
        raise argparse.ArgumentTypeError(f"expected NAME=ENCODING (e.g. image=jpeg, emb=ndarray:float32:16), got {text!r}")
    try:
        parse_encoding(encoding)
    except MDSEncodingError as exc:
        raise argparse.ArgumentTypeError(f"column {name!r}: {exc}") from None
    return name, encoding


def _column_list(text: str) -> list[str]:
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of column names")
    return names


# ---------------------------------------------------------------------------- progress


def _progress_enabled(args: argparse.Namespace) -> bool:
    """``--progress``/``--no-progress``, by default on when stderr is a terminal."""
    if args.progress is not None:
        return bool(args.progress)
    return sys.stderr.isatty()


def _bar(args: argparse.Namespace, **kwargs: Any) -> Any:
    from tqdm.auto import tqdm

    return tqdm(file=sys.stderr, disable=not _progress_enabled(args), dynamic_ncols=True, **kwargs)


# ---------------------------------------------------------------------------- inspect


def cmd_inspect(args: argparse.Namespace) -> int:
    info = describe(resolve_dataset(args.path))
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=False))
        return EXIT_OK
    out: list[str] = []
    if info["schema_source"] == "spark_mds":
        schema = f"spark_mds logical schema (format_version {info['format_version']})"
    else:
        schema = "inferred from the MDS encodings (no spark_mds key; docs/format.md §4)"
    per = info["samples_per_shard"]
    shards = f"{info['num_shards']}"
    if per:
        shards += f" ({per['min']} samples each)" if per["min"] == per["max"] else f" ({per['min']}..{per['max']} samples each)"
    if info["compressed_bytes"] is not None:
        ratio = info["raw_bytes"] / info["compressed_bytes"] if info["compressed_bytes"] else 0.0
        size = f"{_size(info['raw_bytes'])} raw, {_size(info['compressed_bytes'])} compressed ({ratio:.1f}x)"
    else:
        size = f"{_size(info['raw_bytes'])} raw (not compressed)"
    mask = info["null_mask"]
    rows = [
        ("dataset", info["path"]),
        ("schema", schema),
        ("samples", f"{info['samples']:,}"),
        ("shards", shards),
        ("size", size),
        ("compression", ", ".join(info["compression"]) or "none"),
        ("hashes", ", ".join(info["hashes"]) or "none"),
        ("size limit", ", ".join(_size(s) if isinstance(s, int) else str(s) for s in info["size_limit"]) or "none"),
        ("null mask", f"{mask['name']} ({mask['mds_encoding']})" if mask else "none"),
    ]
    out += [f"{k:<12} {v}" for k, v in rows]
    cols = info["columns"]
    out += ["", f"columns ({len(cols)})" + (" - Spark types inferred" if info["schema_source"] == "inferred" else "")]
    out += _table(
        ["name", "spark type", "mds encoding", "arrow type", "nullable"],
        [[c["name"], c["spark_type"], c["mds_encoding"], c["arrow_type"], "yes" if c["nullable"] else "no"] for c in cols],
    )
    shard_rows = []
    listed = info["shards"] if args.all_shards else info["shards"][:20]
    for s in listed:
        raw, z = s["raw_data"], s["zip_data"]
        shard_rows.append([str(s["shard"]), f"{s['samples']:,}", raw["basename"], f"{raw['bytes']:,}",
                           z["basename"] if z else "-", f"{z['bytes']:,}" if z else "-",
                           ", ".join(sorted((z or raw)["hashes"])) or "-"])  # fmt: skip
    out += ["", f"shards ({info['num_shards']})"]
    out += _table(["#", "samples", "raw file", "raw bytes", "compressed file", "compressed bytes", "hashes"], shard_rows)
    if len(listed) < info["num_shards"]:
        out.append(f"  ... {info['num_shards'] - len(listed)} more (--all-shards lists every shard)")
    print("\n".join(out))
    for w in info["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    return EXIT_OK


# ---------------------------------------------------------------------------- validate


def cmd_validate(args: argparse.Namespace) -> int:
    path = resolve_dataset(args.path, samples=None)
    total = None
    try:  # only to size the progress bar; validate_dataset reports a bad index itself
        total = sum((s.zip_data or s.raw_data).bytes for s in load_index(path).shards)
    except (MDSError, OSError):
        pass
    with _bar(args, total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="validate") as bar:
        report = validate_dataset(path, decode=args.decode, progress=bar.update)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
        return EXIT_OK if report.valid else EXIT_INVALID
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    for e in report.errors:
        print(f"error: {e}", file=sys.stderr)
    if report.hashes:
        hashes = "hashes verified: " + ", ".join(f"{a} ({n} files)" for a, n in sorted(report.hashes.items()))
    else:
        hashes = "no hashes recorded (sizes and structure checked)"
    decoded = f"{report.decoded:,} samples decoded" if args.decode else "samples not decoded (--decode decodes them)"
    summary = (f"{report.shards} shards, {report.samples:,} samples, {_size(report.stored_bytes)} read; {hashes}; {decoded}")
    if report.valid:
        print(f"valid: {path}: {summary}")
        return EXIT_OK
    details = f"; {summary}" if report.index_ok else ""
    print(f"INVALID: {path}: {len(report.errors)} problem(s) (listed above){details}", file=sys.stderr)
    return EXIT_INVALID


# ---------------------------------------------------------------------------- head


def cmd_head(args: argparse.Namespace) -> int:
    path = resolve_dataset(args.path, samples=args.n)
    try:
        table, samples, reason = head_rows(path, args.n, args.columns)
    except KeyError as exc:
        raise UsageError(exc.args[0] if exc.args else str(exc)) from None
    if table is not None:
        rows = table.to_pylist()
        names = table.column_names
    else:
        assert samples is not None
        print(f"note: {reason}; showing per-sample values as mosaicml-streaming returns them (pkl columns left out)",
              file=sys.stderr)  # fmt: skip
        rows = samples
        names = list(samples[0]) if samples else []
    if args.json:
        for row in rows:
            print(json.dumps({k: _to_json(v) for k, v in row.items()}, ensure_ascii=False))
        return EXIT_OK
    print("\n".join(_table(["#", *names], [[str(i), *(_to_text(r.get(n), args.width) for n in names)] for i, r in enumerate(rows)], indent="")))
    return EXIT_OK


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
    bar = _bar(args, total=total, unit=" rows", unit_scale=True, desc="convert")

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
          f"{len(index.shards)} shard(s), {_size(stored)} ({args.compression or 'not compressed'}"
          f"{', null mask' if index.null_mask else ''}) in {elapsed:.1f} s")  # fmt: skip
    return EXIT_OK


# ---------------------------------------------------------------------------- vacuum


def cmd_vacuum(args: argparse.Namespace) -> int:
    text = os.fspath(args.path)
    if is_remote(text):
        raise UsageError(f"{text}: vacuum works on local dataset directories only")
    path = resolve_dataset(text)
    candidates, warnings = find_unreferenced(path, args.older_than)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    removed = kept = 0
    removed_bytes = 0
    for c in sorted(candidates, key=lambda c: c.path):
        rel = os.path.relpath(c.path, path)
        if not c.old_enough:
            kept += 1
            why = (f"write job {c.running_job} is running: its marker is newer than --older-than" if c.running_job
                   else f"modified {_duration(c.age_seconds)} ago")
            print(f"kept ({why})  {rel}")
            continue
        if not args.dry_run:
            try:
                os.remove(c.path)
            except FileNotFoundError:  # removed concurrently
                continue
        removed += 1
        removed_bytes += c.bytes
        print(f"{'would remove' if args.dry_run else 'removed'}  {rel}  ({_size(c.bytes)}, {_duration(c.age_seconds)} old)")
    verb = "would be removed" if args.dry_run else "removed"
    summary = f"vacuum {path}: {removed} unreferenced file(s) {verb} ({_size(removed_bytes)})"
    if kept:
        summary += f"; {kept} newer than --older-than {args.older_than_text} kept (a writer may still publish them)"
    print(summary)
    return EXIT_OK


# ---------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mds``."""
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: `mds --debug cmd` and `mds cmd --debug` both work, neither resets the other.
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="print tracebacks of errors")
    progress = argparse.ArgumentParser(add_help=False)
    progress.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                          help="show a progress bar on stderr (default: when stderr is a terminal)")  # fmt: skip

    parser = argparse.ArgumentParser(
        prog="mds",
        description="Inspect, validate, show and convert Mosaic Data Shard (MDS) datasets.",
        epilog="Exit status: 0 success, 1 invalid dataset or data error, 2 usage error. "
        "PATH is a dataset directory (holding index.json) or its index.json.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"mds (mds-loader) {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("inspect", parents=[common], help="schema, shards, sizes, compression and hashes of a dataset",
                       description="Show a dataset's schema (Spark, MDS and Arrow types; logical types from the spark_mds "
                                   "key of index.json, or inferred from the encodings), its shards (samples, raw and "
                                   "compressed files and sizes), totals, compression and hash algorithms. Reads "
                                   "index.json only (and the first sample for untyped dynamic ndarray columns).")  # fmt: skip
    p.add_argument("path", metavar="PATH")
    p.add_argument("--json", action="store_true", help="machine-readable output (every shard, with its hash digests)")
    p.add_argument("--all-shards", action="store_true", help="list every shard (default: the first 20)")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("validate", parents=[common, progress], help="check index.json, every shard file and every hash",
                       description="Check a dataset completely: index.json (structure, safe paths, schema), every shard "
                                   "file it lists (present, size, every recorded hash of the compressed and raw forms, "
                                   "decompression, sample table, sample size headers), and with --decode every sample. "
                                   "Exit status 0 when valid; 1 with one line per problem (naming the file) otherwise. "
                                   "Nothing is written into the dataset directory.")  # fmt: skip
    p.add_argument("path", metavar="PATH")
    p.add_argument("--decode", action="store_true",
                   help="also decode every sample (per sample as mosaicml-streaming does, and as Arrow batches); "
                        "pkl columns are size-checked but never unpickled")  # fmt: skip
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("head", parents=[common], help="the first rows of a dataset",
                       description="Print the first rows of a dataset as a table (or JSON lines), with logical types "
                                   "and nulls. Only the shards needed are read.")  # fmt: skip
    p.add_argument("path", metavar="PATH")
    p.add_argument("-n", type=_non_negative_int, default=5, metavar="N", help="number of rows (default 5)")
    p.add_argument("--columns", type=_column_list, metavar="A,B", help="only these columns, in this order")
    p.add_argument("--json", action="store_true", help="one JSON object per row (binary as base64)")
    p.add_argument("--width", type=_non_negative_int, default=40, help="maximum width of a table cell (default 40)")
    p.set_defaults(func=cmd_head)

    p = sub.add_parser("convert", parents=[common, progress], help="Parquet, Arrow/Feather or CSV to MDS",
                       description="Convert Parquet, Arrow IPC/Feather or CSV (a file or a directory, read with "
                                   "pyarrow.dataset) into an MDS dataset, batch by batch. Types map as in "
                                   "docs/format.md; the logical schema is stored so that read_table returns the same "
                                   "types. DST is written beside its final place and moved there when complete.")  # fmt: skip
    p.add_argument("src", metavar="SRC", help="source file or directory")
    p.add_argument("dst", metavar="DST", help="dataset directory to create")
    p.add_argument("--format", choices=FORMATS, help="source format (default: from the file extensions)")
    p.add_argument("--select", type=_column_list, metavar="A,B", help="convert only these source columns")
    p.add_argument("--compression", type=_compression, default="zstd",
                   help="zstd (default), zstd:LEVEL, gz, bz2, br, snappy, lz4 (not readable by mosaicml-streaming) or none")  # fmt: skip
    p.add_argument("--hashes", type=_hashes, default=[], metavar="A,B", help="hash algorithms recorded per file, e.g. sha1,xxh64")
    p.add_argument("--size-limit", type=_size_limit, default=1 << 26, metavar="BYTES",
                   help="maximum raw shard size, e.g. 64mb (default), 16777216, none")  # fmt: skip
    p.add_argument("--columns", type=_override, action="append", metavar="NAME=ENCODING",
                   help="encoding override for one column, e.g. --columns image=jpeg --columns emb=ndarray:float32:16 "
                        "(repeat the option for several columns)")  # fmt: skip
    p.add_argument("--nulls", choices=("auto", "mask", "error"), default="auto",
                   help="mask: add the __nulls__ column when a field is nullable; error: no mask, a null fails; "
                        "auto (default): mask unless Parquet statistics show no nulls")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace an existing MDS dataset at DST")
    p.add_argument("--delimiter", help="CSV field delimiter (default ',' for csv, tab for tsv)")
    p.add_argument("--hive", action="store_true", help="read hive-style partition directories (key=value) as columns")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("vacuum", parents=[common], help="remove shard files that index.json does not reference",
                       description=f"Remove files named {SHARD_FILE_PATTERN} in a dataset directory (and in the "
                                   "subdirectories its index names files in) that no index.json references: leftovers "
                                   "of failed or replaced writes; and the temporary index (.index.json.*.tmp) of a "
                                   "Spark writer whose driver died. Files newer than --older-than are kept, so that "
                                   "writers that have not published their index.json yet are safe.")  # fmt: skip
    p.add_argument("path", metavar="PATH")
    p.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    p.add_argument("--older-than", default="1h", metavar="AGE",
                   help="only remove files last modified at least this long ago: 90s, 30m, 1h (default), 2d, 0")  # fmt: skip
    p.set_defaults(func=cmd_vacuum)
    return parser


def _message(exc: BaseException) -> str:
    """One line for an error."""
    if isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    elif isinstance(exc, OSError) and exc.strerror and exc.filename:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc) or type(exc).__name__
    if not isinstance(exc, (MDSError, OSError, ValueError, KeyError, pa.ArrowException, UsageError)):
        text = f"internal error ({type(exc).__name__}: {text}); run with --debug for the traceback"
    return " ".join(text.split("\n"))


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``mds`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (argparse printed it)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    debug = getattr(args, "debug", False)
    if args.command == "vacuum":
        args.older_than_text = args.older_than
        try:
            args.older_than = parse_duration(args.older_than)
        except argparse.ArgumentTypeError as exc:
            print(f"mds vacuum: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UsageError as exc:
        if debug:
            traceback.print_exc()
        print(f"mds {args.command}: error: {_message(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"mds {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `mds head ... | head -1`: the reader left, nothing to report
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - every error becomes one line and exit status 1
        if debug:
            traceback.print_exc()
        print(f"mds {args.command}: error: {_message(exc)}", file=sys.stderr)
        return EXIT_INVALID


if __name__ == "__main__":
    sys.exit(main())

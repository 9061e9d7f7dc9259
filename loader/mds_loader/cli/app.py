"""The ``mds`` parser and entry point: exit statuses, one-line errors."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence

import pyarrow as pa

from .. import __version__
from ..errors import MDSError
from ..inspection import SHARD_FILE_PATTERN
from .args import column_list, compression, hashes, non_negative_int, override, parse_duration, size_limit
from .commands import cmd_head, cmd_inspect, cmd_vacuum, cmd_validate
from .convert import FORMATS, cmd_convert
from .status import EXIT_INVALID, EXIT_OK, EXIT_USAGE, UsageError

__all__ = ["main", "build_parser"]


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
    p.add_argument("-n", type=non_negative_int, default=5, metavar="N", help="number of rows (default 5)")
    p.add_argument("--columns", type=column_list, metavar="A,B", help="only these columns, in this order")
    p.add_argument("--json", action="store_true", help="one JSON object per row (binary as base64)")
    p.add_argument("--width", type=non_negative_int, default=40, help="maximum width of a table cell (default 40)")
    p.set_defaults(func=cmd_head)

    p = sub.add_parser("convert", parents=[common, progress], help="Parquet, Arrow/Feather or CSV to MDS",
                       description="Convert Parquet, Arrow IPC/Feather or CSV (a file or a directory, read with "
                                   "pyarrow.dataset) into an MDS dataset, batch by batch. Types map as in "
                                   "docs/format.md; the logical schema is stored so that read_table returns the same "
                                   "types. DST is written beside its final place and moved there when complete.")  # fmt: skip
    p.add_argument("src", metavar="SRC", help="source file or directory")
    p.add_argument("dst", metavar="DST", help="dataset directory to create")
    p.add_argument("--format", choices=FORMATS, help="source format (default: from the file extensions)")
    p.add_argument("--select", type=column_list, metavar="A,B", help="convert only these source columns")
    p.add_argument("--compression", type=compression, default="zstd",
                   help="zstd (default), zstd:LEVEL, gz, bz2, br, snappy, lz4 (not readable by mosaicml-streaming) or none")  # fmt: skip
    p.add_argument("--hashes", type=hashes, default=[], metavar="A,B", help="hash algorithms recorded per file, e.g. sha1,xxh64")
    p.add_argument("--size-limit", type=size_limit, default=1 << 26, metavar="BYTES",
                   help="maximum raw shard size, e.g. 64mb (default), 16777216, none")  # fmt: skip
    p.add_argument("--columns", type=override, action="append", metavar="NAME=ENCODING",
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

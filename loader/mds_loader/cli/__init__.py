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

from .app import build_parser, main
from .status import EXIT_INVALID, EXIT_OK, EXIT_USAGE, UsageError

__all__ = ["main", "build_parser", "UsageError", "EXIT_OK", "EXIT_INVALID", "EXIT_USAGE"]

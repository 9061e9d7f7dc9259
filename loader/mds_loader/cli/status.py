"""Exit statuses of the ``mds`` command line, and its usage error."""

from __future__ import annotations

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A bad command line argument (exit status 2)."""

"""The names of a Spark write job's files (docs/format.md §6).

A write job draws an id ``J`` and, in the dataset directory, writes shards ``shard.J.<partition>.
<attempt>.<seq>.mds[.ext]``, a marker ``.mds-write.J`` that exists while the job runs, and, on local
file systems, a temporary index ``.index.json.J.tmp`` while it publishes. The Python Spark source
writes them and ``mds vacuum`` recognizes them; the JVM source (``MdsWriteJob.scala``,
``MdsFiles.scala``) uses the same names.
"""

from __future__ import annotations

import fnmatch
import re
import secrets

from .index import INDEX_BASENAME

__all__ = [
    "JOB_MARKER_PATTERN",
    "TEMP_INDEX_PATTERN",
    "job_marker",
    "job_of",
    "job_prefix",
    "new_job_id",
    "temp_index",
]

#: Names of job markers and of temporary indexes, as ``fnmatch`` patterns.
JOB_MARKER_PATTERN = ".mds-write.*"
TEMP_INDEX_PATTERN = f".{INDEX_BASENAME}.*.tmp"

_SHARD_RE = re.compile(r"^shard\.([0-9a-f]{12})\.")


def new_job_id() -> str:
    """A random write job id: 12 lowercase hex digits."""
    return secrets.token_hex(6)


def job_prefix(job_id: str) -> str:
    """The prefix of every shard file of a job."""
    return f"shard.{job_id}."


def job_marker(job_id: str) -> str:
    """The marker of a running job: it exists from before the job's first task starts until its
    commit or abort, which delete it before they list the job's files. Tasks check it before and
    after each file they write."""
    return f".mds-write.{job_id}"


def temp_index(job_id: str) -> str:
    """The temporary index a job renames over ``index.json`` (local file systems)."""
    return f".{INDEX_BASENAME}.{job_id}.tmp"


def job_of(name: str) -> str | None:
    """The id of the job that wrote the file ``name`` (a shard, marker or temporary index), or None
    for other files (the reference's ``shard.00000.mds``, ``index.json``, ...)."""
    m = _SHARD_RE.match(name)
    if m:
        return m.group(1)
    if fnmatch.fnmatchcase(name, JOB_MARKER_PATTERN):
        return name[len(".mds-write."):]
    if fnmatch.fnmatchcase(name, TEMP_INDEX_PATTERN):
        return name[len(INDEX_BASENAME) + 2:-len(".tmp")]
    return None

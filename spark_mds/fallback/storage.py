"""Where a dataset lives, as the fallback's writer, committer and reader see it.

Only local directories (plain paths and ``file:`` URLs) exist today. Remote storage plugs in by
implementing :class:`DatasetStore` (e.g. on top of ``mds_loader.storage.RemoteStore``) and
returning it from :func:`open_store`; nothing else in the fallback touches the file system.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from typing import Protocol

from mds_loader.errors import MDSConfigError
from mds_loader.format.index import INDEX_BASENAME, check_basename, publish_index_if_unchanged

__all__ = ["DatasetStore", "LocalStore", "open_store", "is_local_path"]

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")


class DatasetStore(Protocol):
    """The operations of the write protocol (docs/format.md §6) and of reading, on one dataset
    directory. Names are relative, ``/``-separated paths (already validated where they come
    from an index)."""

    #: The dataset's location, as shown in messages (an absolute path or a URL).
    location: str

    def read_bytes(self, name: str) -> bytes | None:
        """The content of a file, or None when it does not exist."""

    def exists(self, name: str) -> bool:
        """Whether a file exists."""

    def write_bytes(self, name: str, data: bytes | memoryview) -> None:
        """Writes a file (creating parent directories)."""

    def publish_index(self, data: bytes, job_id: str) -> None:
        """Replaces ``index.json`` atomically: readers see the old or the new file, never a partial one."""

    def publish_index_if_unchanged(self, data: bytes, job_id: str, expected: bytes | None,
                                   before_publish: Callable[[], None] | None = None) -> bool:
        """Replaces ``index.json`` atomically if it still holds ``expected`` (None: no index), as one
        step against every other writer (docs/format.md §6); False, writing nothing, if it changed."""

    def list_names(self, prefix: str) -> list[str]:
        """Names of the files directly in the directory that start with ``prefix``."""

    def delete(self, names: Iterable[str]) -> None:
        """Deletes files, best effort (missing files are fine)."""

    def ensure_dir(self) -> None:
        """Creates the dataset directory if needed."""

    def local_file(self, name: str) -> str | None:
        """A local path of the file to memory-map, or None when the file is not local."""


def is_local_path(path: str) -> bool:
    """Whether ``path`` is a local path or a ``file:`` URL (not ``s3://``, ``dbfs:/``, ...)."""
    m = _SCHEME_RE.match(path)
    if m is None:
        return True
    if len(m.group(1)) == 1:  # a Windows drive letter
        return True
    return m.group(1).lower() == "file"


def _local(path: str) -> str:
    if path.lower().startswith("file:"):
        rest = path[5:]
        # file:///x, file:/x and file://localhost/x (Hadoop's qualified local paths)
        if rest.startswith("//"):
            rest = rest[2:]
            if not rest.startswith("/"):
                host, _, tail = rest.partition("/")
                if host not in ("", "localhost"):
                    raise MDSConfigError(f"file URL {path!r} names host {host!r}; use a local path")
                rest = "/" + tail
        path = rest
    return os.path.abspath(os.path.expanduser(path))


class LocalStore:
    """A dataset directory on the local file system (or a mount shared by driver and executors)."""

    def __init__(self, path: str) -> None:
        self.root = _local(path)
        self.location = self.root

    def __repr__(self) -> str:
        return f"LocalStore({self.root!r})"

    def _path(self, name: str) -> str:
        return os.path.join(self.root, *check_basename(name, self.location).split("/"))

    def read_bytes(self, name: str) -> bytes | None:
        try:
            with open(self._path(name), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def exists(self, name: str) -> bool:
        return os.path.isfile(self._path(name))

    def write_bytes(self, name: str, data: bytes | memoryview) -> None:
        path = self._path(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)

    def publish_index(self, data: bytes, job_id: str) -> None:
        # The temporary name carries the job id, so that the job's cleanup finds a leftover.
        tmp = self._path(f".{INDEX_BASENAME}.{job_id}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, self._path(INDEX_BASENAME))  # POSIX rename(2) replaces atomically
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def publish_index_if_unchanged(self, data: bytes, job_id: str, expected: bytes | None,
                                   before_publish: Callable[[], None] | None = None) -> bool:
        # Under an fcntl lock on the current index.json, shared with the JVM source's writers.
        return publish_index_if_unchanged(self.root, data, expected, f".{INDEX_BASENAME}.{job_id}.tmp", before_publish)

    def list_names(self, prefix: str) -> list[str]:
        try:
            with os.scandir(self.root) as it:
                return sorted(e.name for e in it if e.name.startswith(prefix) and e.is_file())
        except FileNotFoundError:
            return []

    def delete(self, names: Iterable[str]) -> None:
        for name in names:
            try:
                os.unlink(self._path(name))
            except FileNotFoundError:
                pass

    def ensure_dir(self) -> None:
        os.makedirs(self.root, exist_ok=True)

    def local_file(self, name: str) -> str | None:
        return self._path(name)


def open_store(path: str) -> DatasetStore:
    """The store of a dataset path.

    Raises:
        MDSConfigError: a remote URL (``s3://``, ``gs://``, ``dbfs:/``, ...): the Python fallback
            writes and reads local directories only for now.
    """
    if not is_local_path(path):
        raise MDSConfigError(
            f"the Python fallback of the mds source cannot use {path!r} yet: it supports local paths only "
            "(a directory that the driver and every executor see, e.g. a shared mount). Use the JVM source "
            "(spark_mds.configure(SparkSession.builder)) for Hadoop file systems"
        )
    return LocalStore(path)

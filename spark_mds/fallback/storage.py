"""Where a dataset lives, as the fallback's writer, committer and reader see it.

Two kinds of stores, chosen by :func:`open_store` from the path:

* :class:`LocalStore`: a local directory (a plain path or a ``file:`` URL), or a mount that the
  driver and every executor share. ``index.json`` is published with the fcntl-locked
  compare-and-replace that the JVM source and ``mds_loader`` share (docs/format.md §6).
* :class:`FsspecStore`: any other ``scheme://`` URL that fsspec can open (``s3://``, ``s3a://``,
  ``gs://``, ``abfs://``, ``az://``, ...), through ``mds_loader.storage.RemoteStore`` (retries,
  timeouts, fsspec storage options). Its compare-and-replace of ``index.json`` is not atomic: see
  :meth:`FsspecStore.publish_index_if_unchanged`.

Nothing else in the fallback touches the file system.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from mds_loader.errors import MDSConfigError
from mds_loader.format.index import INDEX_BASENAME, check_basename, publish_index_if_unchanged
from mds_loader.format.write_jobs import temp_index
from mds_loader.storage import RemoteStore

__all__ = ["DatasetStore", "LocalStore", "FsspecStore", "open_store", "is_local_path"]

#: Attempts per remote request (one retry) and seconds one attempt may take: long enough for a
#: 64 MiB shard on a slow link, short enough that a server that stops answering fails the task.
REMOTE_RETRY = 2
REMOTE_TIMEOUT = 300.0
#: Concurrent requests when deleting remote files (object stores delete one object per request).
_DELETE_THREADS = 8

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
        tmp = self._path(temp_index(job_id))
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
        return publish_index_if_unchanged(self.root, data, expected, temp_index(job_id), before_publish)

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


class FsspecStore:
    """A dataset directory reached through fsspec (``s3://bucket/ds``, ``gs://...``, ``abfs://...``),
    on top of :class:`mds_loader.storage.RemoteStore`: every request is retried
    (:data:`REMOTE_RETRY` attempts) and bounded by :data:`REMOTE_TIMEOUT` seconds per attempt;
    a missing file raises at once, and access denied says to check the credentials.

    Shard files are written from memory, one PUT each (object stores make an object visible
    only once complete). ``index.json`` is replaced by one PUT as well: readers see the old or the
    new index, never a partial one.

    Args:
        url: the dataset's URL.
        storage_options: fsspec options of the file system (credentials, endpoint, region, ...).

    Raises:
        MDSConfigError: fsspec cannot open ``url`` with these options (see :func:`open_store`).
    """

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        check_remote_url(url)
        options = dict(storage_options or {})
        try:
            self.remote = RemoteStore(url, retry=REMOTE_RETRY, timeout=REMOTE_TIMEOUT, storage_options=options)
        except (TypeError, ValueError, ImportError, OSError) as exc:  # e.g. an option the file system does not take
            raise MDSConfigError(
                f"cannot open {url!r} with the storage options {sorted(options)}: {type(exc).__name__}: {exc}; check the "
                "URL and the storage.<name> and storage_options options (fsspec options of its file system)"
            ) from None
        self.location = self.remote.url

    def __repr__(self) -> str:  # never shows the storage options: they may hold credentials
        return f"FsspecStore({self.location!r})"

    def _name(self, name: str) -> str:
        return check_basename(name, self.location)

    def read_bytes(self, name: str) -> bytes | None:
        try:
            return self.remote.read_bytes(self._name(name))
        except FileNotFoundError:
            return None

    def exists(self, name: str) -> bool:
        return self.remote.exists(self._name(name))

    def write_bytes(self, name: str, data: bytes | memoryview) -> None:
        self.remote.write_bytes(self._name(name), bytes(data) if isinstance(data, memoryview) else data)

    def publish_index(self, data: bytes, job_id: str) -> None:
        """Replaces ``index.json`` by one PUT (object stores replace an object atomically); no
        temporary file, so ``job_id`` names nothing."""
        self.remote.write_bytes(INDEX_BASENAME, data)

    def publish_index_if_unchanged(self, data: bytes, job_id: str, expected: bytes | None,
                                   before_publish: Callable[[], None] | None = None) -> bool:
        """Replaces ``index.json`` if it still holds ``expected`` (None: no index): reads the current
        index, compares its bytes, calls ``before_publish`` and PUTs the new index.

        Unlike a local path's, this check and the replacement are two requests, not one step:
        fsspec offers no portable compare-and-swap on object stores. A concurrent writer that
        publishes between them is overwritten, and its shards are lost from the index (they stay
        as unreferenced files). So concurrent write jobs to one remote path are not protected
        against lost updates (docs/format.md §6): serialize them. A change made before the check
        is detected, and this job then fails without writing.

        Returns:
            True when published; False when ``index.json`` had changed (nothing was written).
        """
        if self.read_bytes(INDEX_BASENAME) != expected:
            return False
        if before_publish is not None:
            before_publish()
        self.publish_index(data, job_id)
        return True

    def list_names(self, prefix: str) -> list[str]:
        """Names of the files directly under the dataset's URL that start with ``prefix``."""
        return sorted(n for n in self.remote.list() if n.startswith(prefix) and "/" not in n)

    def delete(self, names: Iterable[str]) -> None:
        """Deletes files, several requests at a time; missing files are fine.

        Raises:
            OSError: a deletion failed after its retries (the first such error).
        """
        checked = [self._name(n) for n in names]
        if not checked:
            return
        with ThreadPoolExecutor(min(_DELETE_THREADS, len(checked)), thread_name_prefix="mds-delete") as pool:
            list(pool.map(self.remote.remove, checked))

    def ensure_dir(self) -> None:
        """Nothing to create: object stores have no directories (a bucket is never created here),
        and fsspec file systems create parent directories when writing."""

    def local_file(self, name: str) -> str | None:
        """None: the files are not local; readers read their bytes (:meth:`read_bytes`)."""
        return None


def _scheme(path: str) -> str | None:
    m = _SCHEME_RE.match(path)
    return None if m is None else m.group(1).lower()


def check_remote_url(url: str) -> None:
    """Checks that fsspec can open ``url`` here: a ``scheme://`` URL whose file system fsspec
    knows and whose package is installed.

    Raises:
        MDSConfigError: naming the path and what to do: a Hadoop-style ``dbfs:/`` (or other
            ``scheme:/``) path, a scheme that fsspec does not know, or a missing package (e.g.
            s3fs for ``s3://``).
    """
    import fsspec
    from fsspec.registry import known_implementations

    scheme = _scheme(url)
    if scheme is None:
        raise MDSConfigError(f"{url!r} is not a URL; open_store() takes local paths as LocalStore")
    if not url[len(scheme) + 1:].startswith("//"):
        if scheme == "dbfs":
            raise MDSConfigError(
                f"the Python fallback of the mds source cannot open {url!r}: dbfs:/ paths are reached through Spark's "
                "Hadoop file systems, which Python code does not have. On Databricks, use the same data through its "
                "local mount (/dbfs/... or a Unity Catalog volume /Volumes/<catalog>/<schema>/<volume>/...), or its "
                "cloud storage URL (s3://, abfss://, gs://) with storage.<name> options for the credentials"
            )
        raise MDSConfigError(
            f"the Python fallback of the mds source cannot open {url!r}: give a local path or a URL of the form "
            f"{scheme}://<bucket or host>/<path> that fsspec can open"
        )
    try:
        fsspec.get_filesystem_class(scheme)
    except ImportError as exc:
        package = known_implementations.get(scheme, {}).get("class", "").split(".")[0]
        install = f"pip install {package}" if package and package != "fsspec" else "install the package it names"
        raise MDSConfigError(
            f"the Python fallback of the mds source cannot open {url!r}: fsspec needs another package for "
            f"{scheme}:// ({exc}); {install} in the Python environment of the driver and of every executor"
        ) from None
    except ValueError:
        raise MDSConfigError(
            f"the Python fallback of the mds source cannot open {url!r}: fsspec knows no file system for {scheme}://. "
            "Use a URL that fsspec can open (s3://, gs://, abfs://, az://, ... with its package installed: s3fs, gcsfs, "
            "adlfs) or a local path; the JVM source (spark_mds.configure(SparkSession.builder)) reads and writes any "
            "Hadoop file system"
        ) from None


def open_store(path: str, storage_options: Mapping[str, Any] | None = None) -> DatasetStore:
    """The store of a dataset path: a :class:`LocalStore` for a local path or ``file:`` URL (where
    ``storage_options`` are not used), else an :class:`FsspecStore`.

    Args:
        path: the dataset's path or URL.
        storage_options: fsspec options of a remote path (credentials, endpoint, ...), as
            :func:`spark_mds.fallback.options.parse_storage_options` parses them.

    Raises:
        MDSConfigError: a path that fsspec cannot open (see :func:`check_remote_url`), or options
            that its file system refuses.
    """
    if is_local_path(path):
        return LocalStore(path)
    return FsspecStore(path, storage_options)

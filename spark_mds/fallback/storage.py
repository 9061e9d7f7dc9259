"""Where a dataset lives, as the Python source's writer, committer and reader see it: the one
storage abstraction of ``mds_loader.storage`` (:class:`~mds_loader.storage.LocalStorage` for a
local path or a mount that the driver and every executor share, :class:`~mds_loader.storage.RemoteStore`
for any ``scheme://`` URL that fsspec can open), opened by :func:`open_store` with what Spark users
need on top: Spark's ``scheme:/`` paths explained, and the retry and timeout of Spark tasks.

Nothing else in the fallback touches the file system.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mds_loader.errors import MDSConfigError
from mds_loader.storage import LocalStorage, RemoteStore, Storage, is_local_path, url_scheme

__all__ = ["open_store", "check_remote_url", "REMOTE_RETRY", "REMOTE_TIMEOUT"]

#: Attempts per remote request (one retry) and seconds one attempt may take: long enough for a
#: 64 MiB shard on a slow link, short enough that a server that stops answering fails the task.
REMOTE_RETRY = 2
REMOTE_TIMEOUT = 300.0


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

    scheme = url_scheme(url)
    if scheme is None:
        raise MDSConfigError(f"{url!r} is not a URL; open_store() opens local paths as LocalStorage")
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


def open_store(path: str, storage_options: Mapping[str, Any] | None = None) -> Storage:
    """The storage of a dataset path: a :class:`~mds_loader.storage.LocalStorage` for a local path
    or ``file:`` URL (where ``storage_options`` are not used), else a
    :class:`~mds_loader.storage.RemoteStore` whose requests are retried (:data:`REMOTE_RETRY`
    attempts) and bounded by :data:`REMOTE_TIMEOUT` seconds per attempt.

    Args:
        path: the dataset's path or URL.
        storage_options: fsspec options of a remote path (credentials, endpoint, ...), as
            :func:`spark_mds.fallback.options.parse_storage_options` parses them.

    Raises:
        MDSConfigError: a path that fsspec cannot open (see :func:`check_remote_url`), or options
            that its file system refuses.
    """
    if is_local_path(path):
        return LocalStorage(path)
    check_remote_url(path)
    options = dict(storage_options or {})
    try:
        return RemoteStore(path, retry=REMOTE_RETRY, timeout=REMOTE_TIMEOUT, storage_options=options)
    except (TypeError, ValueError, ImportError, OSError) as exc:  # e.g. an option the file system does not take
        raise MDSConfigError(
            f"cannot open {path!r} with the storage options {sorted(options)}: {type(exc).__name__}: {exc}; check the "
            "URL and the storage.<name> and storage_options options (fsspec options of its file system)"
        ) from None

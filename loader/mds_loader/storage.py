"""Where a dataset lives: one storage abstraction for local paths and fsspec URLs, used by the
writers, the shard-access layer, ``StreamingDataset``'s cache and the Python Spark source.

* :class:`LocalStorage`: a directory of the local file system (a plain path or a ``file:`` URL),
  or a mount that every process shares. ``index.json`` is replaced with the fcntl-locked
  compare-and-replace that the JVM source shares (docs/format.md §6).
* :class:`RemoteStore`: any other URL, through fsspec, every request retried and bounded in time.

:func:`open_storage` picks one from a path. :func:`is_local_path` and :func:`local_path` are the
one rule for what a local path is.

Any fsspec URL works (`s3://`, `gs://`, `az://`, `abfs://`, `hf://`, `memory://`, `file://`, ...),
and so does a plain local directory; the protocol's package (s3fs, gcsfs, adlfs, huggingface_hub)
must be installed.

Failures are sorted into three kinds:

* the remote file does not exist (``FileNotFoundError``) or access is denied
  (``PermissionError``): raised at once, retrying cannot help;
* the local side cannot be written (full disk, quota, read-only cache directory):
  :class:`LocalDiskError`, raised at once with its ``errno`` (``ENOSPC``...);
* anything else (connection errors, server errors, an attempt that exceeds the timeout): retried
  up to ``retry`` attempts in total, then ``TimeoutError`` (every attempt timed out, or the last
  one did) or ``OSError``.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from .errors import MDSConfigError
from .format.fileio import write_file_atomic  # re-exported: the one implementation
from .format.index import INDEX_BASENAME, check_basename, publish_index_if_unchanged
from .format.write_jobs import temp_index

__all__ = ["LocalDiskError", "LocalStorage", "RemoteStore", "Storage", "is_local_path", "is_remote", "join_url",
           "local_path", "open_storage", "url_scheme", "write_file_atomic"]

T = TypeVar("T")

_CHUNK = 8 << 20
#: Concurrent requests when deleting remote files.
_DELETE_THREADS = 8


class LocalDiskError(OSError):
    """Writing the local copy of a remote file failed (``errno`` is the original one: ``ENOSPC``
    for a full disk, ``EDQUOT``, ``EROFS``, ``EACCES``...). Never retried."""


class _Abandoned(Exception):
    """Raised inside an attempt that its caller gave up on (it timed out)."""


_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")


def url_scheme(path: str | os.PathLike) -> str | None:
    """The lower-cased scheme of a URL (``s3`` of ``s3://b/x``, ``dbfs`` of ``dbfs:/x``), None for
    a path (a one-letter scheme is a Windows drive)."""
    m = _SCHEME_RE.match(os.fspath(path))
    return None if m is None or len(m.group(1)) == 1 else m.group(1).lower()


def is_local_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a local path or a ``file:`` URL (not ``s3://``, ``dbfs:/``, ...)."""
    return url_scheme(path) in (None, "file")


def is_remote(path: str | os.PathLike | None) -> bool:
    """Whether ``path`` is a URL other than a local ``file:`` one (None: not remote)."""
    return path is not None and not is_local_path(path)


def local_path(path: str | os.PathLike) -> str:
    """A local path given as a path or a ``file:`` URL (``file:///x``, ``file:/x``,
    ``file://localhost/x``: Hadoop's qualified local paths), as an absolute path.

    Raises:
        MDSConfigError: a ``file:`` URL naming another host.
    """
    text = os.fspath(path)
    if text.lower().startswith("file:"):
        rest = text[5:]
        if rest.startswith("//"):
            rest = rest[2:]
            if not rest.startswith("/"):
                host, _, tail = rest.partition("/")
                if host not in ("", "localhost"):
                    raise MDSConfigError(f"file URL {text!r} names host {host!r}; use a local path")
                rest = "/" + tail
        text = rest
    return os.path.abspath(os.path.expanduser(text))


def join_url(base: str, *parts: str | None) -> str:
    """Joins path parts with `/`, for URLs and local paths alike (None parts are skipped)."""
    out = base
    for part in parts:
        if part:
            out = out.rstrip("/") + "/" + part.strip("/")
    return out


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _local_error(e: OSError, path: str, source: str) -> LocalDiskError:
    reason = e.strerror or str(e)
    return LocalDiskError(e.errno, f"cannot write {path} (copy of {source}): {reason}")


class Storage(Protocol):
    """A dataset directory, local or remote. Names are relative, ``/``-separated paths (checked by
    :func:`~.format.index.check_basename`: none escapes the directory)."""

    #: The directory's location as messages show it (an absolute path or a URL).
    location: str

    def read_bytes(self, name: str) -> bytes:
        """The content of a file. Raises FileNotFoundError, naming it, when it does not exist."""

    def exists(self, name: str = "") -> bool:
        """Whether a file exists (the directory itself for ``""``)."""

    def write_bytes(self, name: str, data: bytes) -> None:
        """Writes a file (creating parent directories): readers see the old or the new content."""

    def list_names(self, prefix: str) -> list[str]:
        """Names of the files directly in the directory that start with ``prefix``, sorted."""

    def delete(self, names: Iterable[str]) -> None:
        """Deletes files; missing ones are fine."""

    def ensure_dir(self) -> None:
        """Creates the directory if the storage has directories."""

    def local_file(self, name: str) -> str | None:
        """The local path of a file (to memory-map), or None when the storage is not local."""

    def publish_index(self, data: bytes, job_id: str) -> None:
        """Replaces ``index.json`` atomically (``job_id`` names a temporary file, if any)."""

    def publish_index_if_unchanged(self, data: bytes, job_id: str, expected: bytes | None,
                                   before_publish: Callable[[], None] | None = None) -> bool:
        """Replaces ``index.json`` if it still holds ``expected`` (None: no index), calling
        ``before_publish`` just before; False, writing nothing, if it changed."""


class LocalStorage:
    """A directory of the local file system (or a mount every process shares).

    Args:
        path: the directory, as a path or a ``file:`` URL.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.root = local_path(path)
        self.location = self.root

    def __repr__(self) -> str:
        return f"LocalStorage({self.root!r})"

    def __reduce__(self) -> tuple:
        return LocalStorage, (self.root,)

    def local_file(self, name: str) -> str:
        return os.path.join(self.root, *check_basename(name, self.location).split("/"))

    def read_bytes(self, name: str) -> bytes:
        path = self.local_file(name)
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise FileNotFoundError(f"{path} does not exist") from None

    def exists(self, name: str = "") -> bool:
        return os.path.isfile(self.local_file(name)) if name else os.path.isdir(self.root)

    def write_bytes(self, name: str, data: bytes) -> None:
        """Writes a file in place (shards are written once under unique names; ``index.json`` goes
        through :meth:`publish_index`)."""
        path = self.local_file(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)

    def list_names(self, prefix: str) -> list[str]:
        try:
            with os.scandir(self.root) as it:
                return sorted(e.name for e in it if e.name.startswith(prefix) and e.is_file())
        except FileNotFoundError:
            return []

    def delete(self, names: Iterable[str]) -> None:
        for name in names:
            _unlink(self.local_file(name))

    def ensure_dir(self) -> None:
        os.makedirs(self.root, exist_ok=True)

    def publish_index(self, data: bytes, job_id: str) -> None:
        # The temporary name carries the job id, so that the job's cleanup finds a leftover.
        tmp = self.local_file(temp_index(job_id))
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.local_file(INDEX_BASENAME))  # POSIX rename(2) replaces atomically
        finally:
            _unlink(tmp)

    def publish_index_if_unchanged(self, data: bytes, job_id: str, expected: bytes | None,
                                   before_publish: Callable[[], None] | None = None) -> bool:
        # Under an fcntl lock on the current index.json, shared with the JVM source's writers.
        return publish_index_if_unchanged(self.root, data, expected, temp_index(job_id), before_publish)


class RemoteStore:
    """A remote directory reached through fsspec.

    Args:
        url: the directory, e.g. ``s3://bucket/datasets/train`` (or a local directory).
        retry: total attempts per transfer (the reference's ``download_retry``: 2 means one
            retry; values below 1 count as 1).
        timeout: seconds one attempt may take before it counts as failed (`download_timeout`);
            None waits as long as the filesystem does.
        storage_options: passed to the fsspec filesystem (credentials, endpoint, ...).
        filesystem: an fsspec filesystem to use instead of the one `url` and `storage_options`
            name (as pyarrow's ``filesystem=``); `url` is then a path in it.
    """

    def __init__(self, url: str, *, retry: int = 2, timeout: float | None = 60.0,
                 storage_options: dict[str, Any] | None = None, filesystem: Any = None) -> None:
        import fsspec

        self.url = url.rstrip("/") or url
        self.retry = max(1, int(retry))
        self.timeout = timeout
        self.storage_options = dict(storage_options or {})
        self._given_fs = filesystem
        if filesystem is None:
            self.fs, self.root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        else:
            self.fs, self.root = filesystem, filesystem._strip_protocol(self.url)

    def __repr__(self) -> str:
        return f"RemoteStore({self.url!r})"

    def __getstate__(self) -> dict[str, Any]:
        # fsspec filesystems pickle, but rebuilding them in the receiving process is cheaper and
        # safe after fork.
        return {"url": self.url, "retry": self.retry, "timeout": self.timeout,
                "storage_options": self.storage_options, "filesystem": self._given_fs}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], retry=state["retry"], timeout=state["timeout"],
                      storage_options=state["storage_options"], filesystem=state.get("filesystem"))

    @property
    def is_local_fs(self) -> bool:
        """Whether the remote is a directory of the local filesystem."""
        from fsspec.implementations.local import LocalFileSystem

        return isinstance(self.fs, LocalFileSystem)

    def _path(self, relpath: str) -> str:
        return join_url(self.root, check_basename(relpath, self.url))

    def _attempts(self, what: str, fn: Callable[[threading.Event], T],
                  cleanup: Callable[[T], None] | None = None) -> T:
        """Runs `fn(cancel)` up to `retry` times, each attempt bounded by `timeout`. An attempt
        that times out is abandoned: `cancel` is set so that it stops at its next step, and
        `cleanup(result)` is called if it completes anyway."""
        last: BaseException | None = None
        for attempt in range(self.retry):
            if attempt:
                time.sleep(min(0.25 * 2 ** (attempt - 1), 5.0))
            try:
                return _with_timeout(fn, self.timeout, what, cleanup)
            except (FileNotFoundError, LocalDiskError):
                raise
            except PermissionError as e:
                raise PermissionError(e.errno, f"{what}: access denied ({e}); check the credentials "
                                               f"(storage_options or the environment)") from e
            except Exception as e:  # noqa: BLE001 - every transport error is retried
                last = e
        assert last is not None
        advice = ("raise download_timeout, or check that the server answers" if isinstance(last, TimeoutError)
                  else "check the URL, the endpoint and the network, or raise download_retry")
        message = f"{what} failed after {self.retry} attempt(s); last error: {type(last).__name__}: {last}; {advice}"
        if isinstance(last, TimeoutError):
            raise TimeoutError(message) from last
        raise OSError(message) from last

    def _not_found(self, relpath: str, e: BaseException) -> FileNotFoundError:
        return FileNotFoundError(f"{join_url(self.url, relpath)} does not exist ({e})")

    def read_bytes(self, relpath: str) -> bytes:
        """The whole content of the remote file `relpath` (one GET).

        Raises:
            FileNotFoundError: the remote file does not exist.
            TimeoutError, OSError: every attempt failed.
        """
        path = self._path(relpath)
        try:
            return self._attempts(f"reading {join_url(self.url, relpath)}", lambda cancel: self.fs.cat_file(path))
        except FileNotFoundError as e:
            raise self._not_found(relpath, e) from None

    def download(self, relpath: str, dest: str) -> int:
        """Copies the remote file `relpath` to the local file `dest` and returns its size.

        Each attempt writes its own temporary file next to `dest`; only a complete copy is
        renamed to `dest`, by the calling thread, so that an abandoned (timed out) attempt can
        never overwrite anything.

        Raises:
            FileNotFoundError: the remote file does not exist.
            LocalDiskError: `dest` cannot be written (e.g. ``ENOSPC``, a full disk).
            TimeoutError: the last attempt timed out.
            OSError: every attempt failed.
        """
        src = self._path(relpath)
        source = join_url(self.url, relpath)
        directory = os.path.dirname(dest) or "."

        def attempt(cancel: threading.Event) -> tuple[str, int]:
            try:
                os.makedirs(directory, exist_ok=True)
                name = os.path.basename(dest)
                prefix = (name if name.startswith(".") else "." + name) + "."  # hidden, named after dest
                fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".part", dir=directory)
            except OSError as e:
                raise _local_error(e, dest, source) from e
            size = 0
            try:
                self.fs.invalidate_cache(src)  # a cached listing would give the size of an older version
                with open(fd, "wb", buffering=0) as out, self.fs.open(src, "rb") as f:
                    while True:
                        if cancel.is_set():
                            raise _Abandoned(source)
                        chunk = f.read(_CHUNK)
                        if not chunk:
                            break
                        try:
                            view = memoryview(chunk)
                            while view:  # unbuffered writes may be partial
                                view = view[out.write(view):]
                        except OSError as e:
                            raise _local_error(e, dest, source) from e
                        size += len(chunk)
                return tmp, size
            except BaseException:
                _unlink(tmp)
                raise

        try:
            tmp, size = self._attempts(f"downloading {source}", attempt, cleanup=lambda done: _unlink(done[0]))
        except FileNotFoundError as e:
            raise self._not_found(relpath, e) from None
        try:
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
        except OSError as e:
            _unlink(tmp)
            raise _local_error(e, dest, source) from e
        return size

    def write_bytes(self, relpath: str, data: bytes) -> None:
        """Writes the remote file `relpath` so that readers see the old content or the new one,
        never a partial file: one PUT on object stores, a temporary file and a rename in a local
        directory."""
        path = self._path(relpath)
        what = f"writing {join_url(self.url, relpath)}"
        data = bytes(data) if isinstance(data, memoryview) else data
        if self.is_local_fs:
            self._attempts(what, lambda cancel: write_file_atomic(path, lambda out: out.write(data)))
            return
        self._attempts(what, lambda cancel: self.fs.pipe_file(path, data))

    def exists(self, relpath: str = "") -> bool:
        path = self._path(relpath) if relpath else self.root
        self.fs.invalidate_cache(path)
        return bool(self._attempts(f"checking {join_url(self.url, relpath)}", lambda cancel: self.fs.exists(path)))

    def remove(self, relpath: str) -> None:
        path = self._path(relpath)
        try:
            self._attempts(f"removing {join_url(self.url, relpath)}", lambda cancel: self.fs.rm_file(path))
        except FileNotFoundError:
            pass

    @property
    def location(self) -> str:
        """The URL, as messages show it."""
        return self.url

    def local_file(self, name: str) -> None:
        """None: the files are reached through fsspec (read them with :meth:`read_bytes`)."""
        return None

    def ensure_dir(self) -> None:
        """Nothing to create: object stores have no directories (a bucket is never created here),
        and fsspec file systems create parent directories when writing."""

    def list_names(self, prefix: str) -> list[str]:
        """Names of the files directly under the URL that start with ``prefix``, sorted."""
        return sorted(n for n in self.list() if n.startswith(prefix) and "/" not in n)

    def delete(self, names: Iterable[str]) -> None:
        """Deletes files, several requests at a time (object stores delete one object per
        request); missing files are fine.

        Raises:
            OSError: a deletion failed after its retries (the first such error).
        """
        checked = [check_basename(n, self.url) for n in names]
        if checked:
            with ThreadPoolExecutor(min(_DELETE_THREADS, len(checked)), thread_name_prefix="mds-delete") as pool:
                list(pool.map(self.remove, checked))

    def publish_index(self, data: bytes, job_id: str) -> None:
        """Replaces ``index.json`` by one PUT (object stores replace an object atomically); no
        temporary file, so ``job_id`` names nothing."""
        self.write_bytes(INDEX_BASENAME, data)

    def publish_index_if_unchanged(self, data: bytes, job_id: str, expected: bytes | None,
                                   before_publish: Callable[[], None] | None = None) -> bool:
        """Replaces ``index.json`` if it still holds ``expected`` (None: no index): reads the current
        index, compares its bytes, calls ``before_publish`` and PUTs the new index.

        Unlike a local directory's, this check and the replacement are two requests, not one step:
        fsspec offers no portable compare-and-swap on object stores. A concurrent writer that
        publishes between them is overwritten, and its shards are lost from the index (they stay
        as unreferenced files). So concurrent write jobs to one remote path are not protected
        against lost updates (docs/format.md §6): serialize them. A change made before the check
        is detected, and this job then fails without writing.
        """
        try:
            current: bytes | None = self.read_bytes(INDEX_BASENAME)
        except FileNotFoundError:
            current = None
        if current != expected:
            return False
        if before_publish is not None:
            before_publish()
        self.publish_index(data, job_id)
        return True

    def list(self, relpath: str = "") -> list[str]:
        """Relative names of the files under `relpath` (recursively; none if it does not exist)."""
        base = self._path(relpath) if relpath else self.root
        self.fs.invalidate_cache(base)  # listings are cached by some filesystems (s3fs)
        try:
            found = self._attempts(f"listing {join_url(self.url, relpath)}", lambda cancel: self.fs.find(base))
        except FileNotFoundError:
            return []
        prefix = self.root.rstrip("/") + "/"
        return [p[len(prefix):] if p.startswith(prefix) else p for p in found]


def open_storage(path: str | os.PathLike, storage_options: Mapping[str, Any] | None = None, *, retry: int = 2,
                 timeout: float | None = 60.0) -> LocalStorage | RemoteStore:
    """The storage of a dataset path: :class:`LocalStorage` for a local path or ``file:`` URL
    (``storage_options`` unused), else a :class:`RemoteStore` with these fsspec options, attempts
    per request and seconds per attempt."""
    if is_local_path(path):
        return LocalStorage(path)
    return RemoteStore(os.fspath(path), retry=retry, timeout=timeout, storage_options=dict(storage_options or {}))


def _with_timeout(fn: Callable[[threading.Event], T], timeout: float | None, what: str,
                  cleanup: Callable[[T], None] | None = None) -> T:
    """Runs `fn(cancel)` on a daemon thread and waits at most `timeout` seconds: a server that
    stops answering gives a TimeoutError instead of a hang. The stuck thread is abandoned: `cancel`
    tells it to stop, and if it completes anyway its result is passed to `cleanup`."""
    cancel = threading.Event()
    if timeout is None:
        return fn(cancel)
    state: dict[str, Any] = {}
    guard = threading.Lock()

    def run() -> None:
        try:
            value = fn(cancel)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            with guard:
                state["error"] = e
            return
        with guard:
            if not cancel.is_set():
                state["value"] = value
                return
        if cleanup is not None:  # the caller gave up on this attempt: undo what it made
            cleanup(value)

    thread = threading.Thread(target=run, name="mds-transfer", daemon=True)
    thread.start()
    thread.join(timeout)
    with guard:
        if "value" in state:
            return state["value"]
        if "error" in state:
            raise state["error"]
        cancel.set()
    raise TimeoutError(f"{what} timed out after {timeout:g} s")

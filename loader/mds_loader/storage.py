"""Remote storage through fsspec: downloads and uploads with retries and timeouts, written
atomically on the local side.

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
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .format.fileio import write_file_atomic  # re-exported: the one implementation

__all__ = ["LocalDiskError", "RemoteStore", "is_remote", "join_url", "write_file_atomic"]

T = TypeVar("T")

_CHUNK = 8 << 20


class LocalDiskError(OSError):
    """Writing the local copy of a remote file failed (``errno`` is the original one: ``ENOSPC``
    for a full disk, ``EDQUOT``, ``EROFS``, ``EACCES``...). Never retried."""


class _Abandoned(Exception):
    """Raised inside an attempt that its caller gave up on (it timed out)."""


def is_remote(path: str | os.PathLike | None) -> bool:
    """Whether `path` is a URL (`scheme://...`) other than a plain local `file://` path."""
    if path is None:
        return False
    text = os.fspath(path)
    return "://" in text and not text.startswith("file://")


def local_path(path: str | os.PathLike) -> str:
    """A local directory given as a path or a ``file://`` URL, as a path."""
    text = os.fspath(path)
    if text.startswith("file://"):
        text = text[len("file://"):]
    return os.path.expanduser(text)


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


class RemoteStore:
    """A remote directory reached through fsspec.

    Args:
        url: the directory, e.g. ``s3://bucket/datasets/train`` (or a local directory).
        retry: total attempts per transfer (the reference's ``download_retry``: 2 means one
            retry; values below 1 count as 1).
        timeout: seconds one attempt may take before it counts as failed (`download_timeout`);
            None waits as long as the filesystem does.
        storage_options: passed to the fsspec filesystem (credentials, endpoint, ...).
    """

    def __init__(self, url: str, *, retry: int = 2, timeout: float | None = 60.0,
                 storage_options: dict[str, Any] | None = None) -> None:
        import fsspec

        self.url = url.rstrip("/") or url
        self.retry = max(1, int(retry))
        self.timeout = timeout
        self.storage_options = dict(storage_options or {})
        self.fs, self.root = fsspec.core.url_to_fs(self.url, **self.storage_options)

    def __repr__(self) -> str:
        return f"RemoteStore({self.url!r})"

    def __getstate__(self) -> dict[str, Any]:
        # fsspec filesystems pickle, but rebuilding them in the receiving process is cheaper and
        # safe after fork.
        return {"url": self.url, "retry": self.retry, "timeout": self.timeout,
                "storage_options": self.storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], retry=state["retry"], timeout=state["timeout"],
                      storage_options=state["storage_options"])

    @property
    def is_local_fs(self) -> bool:
        """Whether the remote is a directory of the local filesystem."""
        from fsspec.implementations.local import LocalFileSystem

        return isinstance(self.fs, LocalFileSystem)

    def _path(self, relpath: str) -> str:
        return join_url(self.root, relpath)

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

    def upload(self, local_file: str, relpath: str) -> None:
        """Copies a local file to the remote file `relpath` (one PUT, or a multipart upload that
        becomes visible at once, on object stores)."""
        path = self._path(relpath)
        if self.is_local_fs:  # a directory: copy through a temporary name, as for downloads
            self._attempts(f"copying {local_file} to {join_url(self.url, relpath)}",
                           lambda cancel: write_file_atomic(path, lambda out: _copy_into(local_file, out)))
            return
        self._attempts(f"uploading {local_file} to {join_url(self.url, relpath)}",
                       lambda cancel: self.fs.put_file(local_file, path))

    def write_bytes(self, relpath: str, data: bytes) -> None:
        """Writes the remote file `relpath` so that readers see the old content or the new one,
        never a partial file: one PUT on object stores, a temporary file and a rename in a local
        directory."""
        path = self._path(relpath)
        what = f"writing {join_url(self.url, relpath)}"
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


def _copy_into(local_file: str, out: Any) -> None:
    with open(local_file, "rb") as f:
        shutil.copyfileobj(f, out, _CHUNK)


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

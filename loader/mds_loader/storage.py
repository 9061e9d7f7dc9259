"""Remote storage through fsspec: downloads and uploads with retries and timeouts, written
atomically on the local side.

Any fsspec URL works (`s3://`, `gs://`, `az://`, `abfs://`, `hf://`, `memory://`, `file://`, ...);
the protocol's package (s3fs, gcsfs, adlfs, huggingface_hub) must be installed.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["RemoteStore", "is_remote", "join_url", "write_file_atomic"]

T = TypeVar("T")

_CHUNK = 8 << 20


def is_remote(path: str | os.PathLike | None) -> bool:
    """Whether `path` is a URL (`scheme://...`) other than a plain local `file://` path."""
    if path is None:
        return False
    text = os.fspath(path)
    return "://" in text and not text.startswith("file://")


def join_url(base: str, *parts: str | None) -> str:
    """Joins path parts with `/`, for URLs and local paths alike (None parts are skipped)."""
    out = base
    for part in parts:
        if part:
            out = out.rstrip("/") + "/" + part.strip("/")
    return out


def write_file_atomic(path: str, write: Callable[[Any], None]) -> None:
    """Creates `path` through a temporary file in the same directory and a rename, so that a
    crash never leaves a partial file under the final name. `write(f)` fills the file."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class RemoteStore:
    """A remote directory reached through fsspec.

    Args:
        url: the directory, e.g. ``s3://bucket/datasets/train``.
        retry: total attempts per transfer (the reference's ``download_retry``: 2 means one
            retry; values below 1 count as 1).
        timeout: seconds one attempt may take before it counts as failed (`download_timeout`).
        storage_options: passed to the fsspec filesystem (credentials, endpoint, ...).
    """

    def __init__(self, url: str, *, retry: int = 2, timeout: float | None = 60.0,
                 storage_options: dict[str, Any] | None = None) -> None:
        import fsspec

        self.url = url.rstrip("/")
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

    def _path(self, relpath: str) -> str:
        return join_url(self.root, relpath)

    def _attempts(self, what: str, fn: Callable[[], T]) -> T:
        """Runs `fn` up to `retry` times, each attempt bounded by `timeout`."""
        last: BaseException | None = None
        for attempt in range(self.retry):
            if attempt:
                time.sleep(min(0.25 * 2 ** (attempt - 1), 5.0))
            try:
                return _with_timeout(fn, self.timeout, what)
            except FileNotFoundError:
                raise
            except Exception as e:  # noqa: BLE001 - every transport error is retried
                last = e
        assert last is not None
        if isinstance(last, TimeoutError):
            raise TimeoutError(f"{last} ({self.retry} attempt(s)); raise download_timeout or check the server") from last
        raise OSError(f"{what} failed after {self.retry} attempt(s): {type(last).__name__}: {last}") from last

    def read_bytes(self, relpath: str) -> bytes:
        """The whole content of the remote file `relpath`."""
        path = self._path(relpath)
        return self._attempts(f"reading {self.url}/{relpath}", lambda: self.fs.cat_file(path))

    def download(self, relpath: str, local_path: str) -> int:
        """Copies the remote file `relpath` to `local_path` atomically; returns its size.

        Raises:
            FileNotFoundError: the remote file does not exist.
            TimeoutError: every attempt timed out.
            OSError: every attempt failed.
        """
        path = self._path(relpath)

        def copy() -> int:
            size = 0

            def fill(out: Any) -> None:
                nonlocal size
                with self.fs.open(path, "rb") as src:
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
                        size += len(chunk)

            write_file_atomic(local_path, fill)
            return size

        return self._attempts(f"downloading {self.url}/{relpath}", copy)

    def upload(self, local_path: str, relpath: str) -> None:
        """Copies a local file to the remote file `relpath` (one PUT on object stores)."""
        path = self._path(relpath)
        self._attempts(f"uploading {local_path} to {self.url}/{relpath}",
                       lambda: self.fs.put_file(local_path, path))

    def write_bytes(self, relpath: str, data: bytes) -> None:
        """Writes the remote file `relpath` in one PUT."""
        path = self._path(relpath)
        self._attempts(f"writing {self.url}/{relpath}", lambda: self.fs.pipe_file(path, data))

    def exists(self, relpath: str) -> bool:
        path = self._path(relpath)
        return bool(self._attempts(f"checking {self.url}/{relpath}", lambda: self.fs.exists(path)))

    def remove(self, relpath: str) -> None:
        path = self._path(relpath)
        try:
            self._attempts(f"removing {self.url}/{relpath}", lambda: self.fs.rm_file(path))
        except FileNotFoundError:
            pass

    def list(self, relpath: str = "") -> list[str]:
        """Relative names of the files under `relpath` (recursively)."""
        base = self._path(relpath) if relpath else self.root
        found = self._attempts(f"listing {self.url}", lambda: self.fs.find(base))
        prefix = self.root.rstrip("/") + "/"
        return [p[len(prefix):] if p.startswith(prefix) else p for p in found]


def _with_timeout(fn: Callable[[], T], timeout: float | None, what: str) -> T:
    """Runs `fn` on a daemon thread and waits at most `timeout` seconds: a server that stops
    answering gives a TimeoutError instead of a hang (the stuck thread is abandoned)."""
    if timeout is None:
        return fn()
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            result["error"] = e

    thread = threading.Thread(target=run, name="mds-transfer", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"{what} timed out after {timeout:g} s")
    if "error" in result:
        raise result["error"]
    return result["value"]

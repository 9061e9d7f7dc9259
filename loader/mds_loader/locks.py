"""Advisory file locks (``flock``) shared by processes on one host.

``flock`` locks belong to an open file and vanish when the process holding them dies, so a crashed
job never leaves a lock behind (unlike lock files that are created and deleted, or the shared
memory segments of the reference). Each lock object opens its own file descriptor, so two lock
objects on one file conflict even inside one process.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from typing import Any

__all__ = ["FileLock"]


class FileLock:
    """An exclusive (default) or shared lock on `path` (created with its parent directories).

    Args:
        path: the lock file.
        shared: take a shared lock (many holders) instead of an exclusive one.
        timeout: seconds to wait in :meth:`acquire` (None waits forever).
    """

    def __init__(self, path: str, *, shared: bool = False, timeout: float | None = None) -> None:
        self.path = path
        self.shared = shared
        self.timeout = timeout
        self._fd: int | None = None
        self._pid = 0  # the process that took the lock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _open(self) -> int:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)

    def fileno(self) -> int:
        """The descriptor of the held lock's file.

        Raises:
            RuntimeError: the lock is not held.
        """
        if self._fd is None:
            raise RuntimeError(f"the lock {self.path} is not held")
        return self._fd

    def try_acquire(self) -> bool:
        """Takes the lock if nobody holds a conflicting one; never waits."""
        if self._fd is not None:
            return True
        fd = self._open()
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise
        self._fd, self._pid = fd, os.getpid()
        return True

    def acquire(self) -> None:
        """Takes the lock, waiting up to `timeout` seconds.

        Raises:
            TimeoutError: the lock was not free in time.
        """
        if self._fd is not None:
            return
        if self.timeout is None:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
            self._fd, self._pid = fd, os.getpid()
            return
        deadline = time.monotonic() + self.timeout
        delay = 0.001
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                raise TimeoutError(f"timed out after {self.timeout:g} s waiting for the lock {self.path}")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                # A forked child shares the parent's lock: it only closes its copy of the
                # descriptor, which leaves the parent's lock in place.
                if self._pid == os.getpid():
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def __getstate__(self) -> dict[str, Any]:
        # A held lock is not inherited by another process.
        return {"path": self.path, "shared": self.shared, "timeout": self.timeout, "_fd": None, "_pid": 0}

"""An epoch's sample order, computed once per node and shared by every process of the node.

The order is a pure function of its inputs (the dataset's shard sizes and weights, the epoch and
resume point, the world, the seeds and algorithms), so processes need not talk to agree on it: the
first process of a node that needs an order computes this node's part of it, under a file lock,
writes it to a file and publishes it by an atomic rename; every other process of the node waits for
the lock, then memory-maps the file read-only and touches only its own slice. Nothing is named in
``/dev/shm``; the page cache holds one copy per node, however many processes read it (as compact
as the order is given: ``StreamingDataset`` asks for int32 ids where they fit, 4 bytes per sample).

Files live in ``<tmp>/mds-loader/orders/<job>/``, one per (order key, epoch). ``<job>`` names the
training job as its launcher does (``torchrun``'s run id and master address, or another launcher's
``MASTER_ADDR``/``MASTER_PORT``; for a single process and its DataLoader workers, the dataset
object's run id), so two jobs on one host never meet. Every process that uses a job's directory
holds a shared ``flock`` on its ``.alive`` file; whoever can take that lock exclusively knows that
no process of the job is left and removes the directory (the dataset's owner when it is garbage
collected or at exit, or any later job for the leftovers of a killed one). ``flock`` locks vanish
with their process, so SIGKILL at any point leaves no stale lock, and a half-written order is only
ever a temporary file that the next writer removes. Publishing epoch ``e`` removes the job's orders
of epochs before ``e - 1``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .locks import FileLock

__all__ = ["NodeOrders", "job_name", "orders_dir"]

log = logging.getLogger(__name__)

_ALIVE = ".alive"
_SUFFIX = ".npy"

#: A test hook: called with the temporary file's path once the order is written, before it is
#: published (tests stop or kill the writer there).
_before_publish: Callable[[str], None] | None = None


def orders_dir() -> str:
    """The directory of every job's order files on this host."""
    return os.path.join(tempfile.gettempdir(), "mds-loader", "orders")


def job_name(run_id: str, environ: Mapping[str, str] = os.environ) -> str:
    """The name of this training job, the same in every process of it on this node: from the
    launcher's environment (torchrun's ``TORCHELASTIC_RUN_ID``, ``MASTER_ADDR``, ``MASTER_PORT``),
    else ``run_id`` (the dataset object's, which its DataLoader workers share)."""
    parts = [environ.get(k, "") for k in ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT")]
    if not any(parts):
        return "run-" + run_id
    return "job-" + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


def _digest(key: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _sweep(directory: str, alive: FileLock | None = None) -> bool:
    """Removes a job's directory if no process of the job holds its ``.alive`` lock (``alive``:
    this process's own lock, released first). Returns whether it was removed."""
    if alive is not None:
        alive.release()
    probe = FileLock(os.path.join(directory, _ALIVE))
    if not os.path.isdir(directory) or not probe.try_acquire():
        return False
    try:
        for name in os.listdir(directory):
            if name != _ALIVE:
                _unlink(os.path.join(directory, name))
        _unlink(os.path.join(directory, _ALIVE))  # last: a process that opened it sees it gone
        try:
            os.rmdir(directory)
        except OSError:
            pass
    finally:
        probe.release()
    return True


def _sweep_dead_jobs(root: str, keep: str) -> None:
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return
    for name in names:
        if name != keep:
            try:
                _sweep(os.path.join(root, name))
            except OSError as exc:  # another user's directory, a race with its owner: not ours to fix
                log.debug("could not sweep %s: %s", name, exc)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class NodeOrders:
    """The order files of one job on this node (see the module docstring).

    Args:
        job: the job's name (:func:`job_name`).
        root: the directory of all jobs' order files (default :func:`orders_dir`).
    """

    def __init__(self, job: str, root: str | None = None) -> None:
        self.root = root or orders_dir()
        self.job = job
        self.directory = os.path.join(self.root, job)
        self._alive: FileLock | None = None
        self._alive_pid = 0
        _sweep_dead_jobs(self.root, keep=job)
        self._hold()
        self._finalizer = weakref.finalize(self, _finalize, self.directory, self._alive, os.getpid())

    def __getstate__(self) -> dict[str, Any]:
        return {"root": self.root, "job": self.job, "directory": self.directory}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._alive, self._alive_pid = None, 0  # a copy in another process takes its own lock

    def _hold(self) -> None:
        """Holds a shared lock on the job's ``.alive`` file in this process, so that nobody
        removes the directory while it is used."""
        if self._alive is not None and self._alive_pid == os.getpid():
            return
        path = os.path.join(self.directory, _ALIVE)
        for _ in range(100):
            lock = FileLock(path, shared=True, timeout=60.0)
            lock.acquire()
            # A sweeper may have removed the file between our open and our lock: lock the new one.
            try:
                same = os.path.samestat(os.fstat(lock.fileno()), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                self._alive, self._alive_pid = lock, os.getpid()
                return
            lock.release()
        raise RuntimeError(f"could not hold {path}: it keeps being removed")

    def _name(self, key: Mapping[str, Any], epoch: int) -> tuple[str, str]:
        name = f"{int(epoch):010d}.{_digest(dict(key, epoch=epoch))}"
        return name, os.path.join(self.directory, name + _SUFFIX)

    def prepare(self, key: Mapping[str, Any], epoch: int, compute: Callable[[], np.ndarray]) -> bool:
        """Computes and publishes the order for ``key`` and ``epoch`` ahead of its use, unless it
        exists or another process of the node is making it (then returns False at once). For a
        background thread: nothing waits for it, and if its process dies first, whoever needs
        the order computes it."""
        self._hold()
        name, path = self._name(key, epoch)
        lock = FileLock(os.path.join(self.directory, name + ".lock"))
        try:
            if os.path.exists(path) or not lock.try_acquire():
                return False
            if os.path.exists(path):
                return False
            self._publish(path, name, compute())
            return True
        except Exception as exc:  # noqa: BLE001 - e.g. the process exits (its directory swept, its
            # thread pools shut down): nothing depends on this order, whoever needs it makes it
            log.debug("the sample order of epoch %d was not prepared ahead (%s): it is made when needed", epoch, exc)
            return False
        finally:
            lock.release()

    def get(self, key: Mapping[str, Any], epoch: int, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """The order for ``key`` (every input it depends on, JSON-serializable) and ``epoch``:
        mapped read-only from this node's file, computed by ``compute`` and published first if
        no process of the node has done it yet. Where the file cannot be written (a full disk),
        the computed array itself."""
        self._hold()
        name, path = self._name(key, epoch)
        mapped = _map(path)
        if mapped is not None:
            return mapped
        with FileLock(os.path.join(self.directory, name + ".lock")):
            mapped = _map(path)
            if mapped is not None:
                return mapped
            order = compute()
            try:
                self._publish(path, name, order)
            except OSError as exc:
                log.warning("could not share the epoch's sample order through %s (%s): this process keeps its "
                            "own copy", path, exc)
                return order
            del order  # the mapped file replaces this process's copy
            self._forget_old_epochs(int(epoch))
            mapped = _map(path)
        assert mapped is not None, path
        return mapped

    def _publish(self, path: str, name: str, order: np.ndarray) -> None:
        tmp = os.path.join(self.directory, f".{name}.{os.getpid()}.tmp")
        for stale in os.listdir(self.directory):  # left by a writer that died holding this lock
            if stale.startswith(f".{name}.") and stale.endswith(".tmp"):
                _unlink(os.path.join(self.directory, stale))
        try:
            with open(tmp, "wb") as f:
                np.save(f, np.ascontiguousarray(order), allow_pickle=False)
            if _before_publish is not None:
                _before_publish(tmp)
            os.replace(tmp, path)
        finally:
            _unlink(tmp)

    def _forget_old_epochs(self, epoch: int) -> None:
        for entry in os.listdir(self.directory):
            head = entry.split(".", 1)[0]
            if head.isdigit() and int(head) < epoch - 1:
                _unlink(os.path.join(self.directory, entry))

    def close(self) -> None:
        """Stops using the job's directory in this process (and removes it if no other process of
        the job uses it)."""
        self._finalizer()


def _map(path: str) -> np.ndarray | None:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        return None


def _finalize(directory: str, alive: FileLock | None, pid: int) -> None:
    if os.getpid() != pid:  # a forked child must not remove what its parent uses
        return
    try:
        _sweep(directory, alive)
    except OSError:
        pass

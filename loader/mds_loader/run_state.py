"""Epoch counting and resumption state shared by the copies of one `StreamingDataset`.

The main process and its DataLoader workers each hold a copy of the dataset. The reference keeps
the next epoch and the resume state in named shared-memory segments, with a node-wide barrier
that every worker of every rank must enter together; that design is the source of its stale
segments, name collisions between jobs and hangs at epoch boundaries.

Here the copies of *one* dataset object share a small JSON file named after a random id drawn
when the dataset is created (so two datasets or two jobs never meet), updated under an ``flock``
lock (released by the kernel if a process dies). No process ever waits for another one.

Which epoch an iteration is: every DataLoader iteration has its own random base seed, which all of
its workers see (``worker_info.seed - worker_info.id``). The first worker of an iteration to
start decides the epoch (the resume state if it is not stale, else the next epoch) and records it
under that key; its siblings read it. A persistent worker that starts again under the same key
begins the next epoch. Iterating in the main process counts the same way under its own key.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any

from .locks import FileLock
from .storage import write_file_atomic

__all__ = ["RunState"]

_KEEP_ITERATIONS = 32
_STALE_SECONDS = 7 * 24 * 3600


def _runs_dir() -> str:
    return os.path.join(tempfile.gettempdir(), "mds-loader", "runs")


def _cleanup(path: str, lock_path: str, pid: int) -> None:
    if os.getpid() != pid:  # forked children must not remove their parent's state
        return
    for p in (path, lock_path):
        try:
            os.remove(p)
        except OSError:
            pass


class RunState:
    """The epoch ledger of one dataset object (see the module docstring)."""

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex
        directory = _runs_dir()
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, self.id + ".json")
        self.lock_path = self.path + ".lock"
        _sweep_stale(directory)
        self._write({"next_epoch": 0, "resume": None, "resolved": None, "iterations": {}})
        self._finalizer = weakref.finalize(self, _cleanup, self.path, self.lock_path, os.getpid())

    def __getstate__(self) -> dict[str, Any]:
        return {"id": self.id, "path": self.path, "lock_path": self.lock_path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)  # a copy in another process: it never removes the files

    def _read(self) -> dict[str, Any]:
        try:
            with open(self.path, encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            # Removed from under us (e.g. a temp-dir cleaner): start over rather than fail.
            return {"next_epoch": 0, "resume": None, "resolved": None, "iterations": {}}

    def _write(self, state: dict[str, Any]) -> None:
        data = json.dumps(state, sort_keys=True).encode("utf-8")
        write_file_atomic(self.path, lambda f: f.write(data))

    def _locked(self) -> FileLock:
        return FileLock(self.lock_path, timeout=60.0)

    # ------------------------------------------------------------------ API

    def snapshot(self) -> dict[str, Any]:
        """The whole state: ``next_epoch``, ``resume`` (the loaded state dict or None) and
        ``resolved`` (settings fixed by the first epoch: NCN, seed, block size, initial nodes)."""
        with self._locked():
            return self._read()

    def set_resume(self, obj: dict[str, Any]) -> None:
        """Records a loaded state dict; it takes effect at the next iteration."""
        with self._locked():
            state = self._read()
            state["resume"] = obj
            self._write(state)

    def begin(self, key: str, worker: int,
              decide: Callable[[int, dict[str, Any] | None, dict[str, Any] | None], tuple[int, int, dict[str, Any]]]
              ) -> tuple[int, int, dict[str, Any]]:
        """The epoch and first sample of the iteration `key`, as seen by `worker`.

        `decide(next_epoch, resume, resolved) -> (epoch, sample_in_epoch, resolved)` is called by
        the first worker of an iteration; the others get its answer.
        """
        with self._locked():
            state = self._read()
            iterations: dict[str, Any] = state["iterations"]
            entry = iterations.get(key)
            if entry is None or worker in entry["workers"]:
                epoch, sample_in_epoch, resolved = decide(state["next_epoch"], state["resume"], state["resolved"])
                entry = {"epoch": epoch, "sample_in_epoch": sample_in_epoch, "resolved": resolved, "workers": [],
                         "time": time.time()}
                iterations.pop(key, None)
                iterations[key] = entry
                state["next_epoch"] = epoch + 1
                state["resolved"] = resolved
                while len(iterations) > _KEEP_ITERATIONS:
                    iterations.pop(next(iter(iterations)))
            entry["workers"].append(worker)
            self._write(state)
            return entry["epoch"], entry["sample_in_epoch"], entry["resolved"]


def _sweep_stale(directory: str) -> None:
    """Removes ledgers of runs that ended without cleaning up (killed processes), after a week."""
    now = time.time()
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        path = os.path.join(directory, name)
        try:
            if now - os.path.getmtime(path) > _STALE_SECONDS:
                os.remove(path)
        except OSError:
            pass

"""Faults of a training job reading MDS (mds_loader), each in real processes with real
DataLoader workers (loader_jobs.py):

* the whole training process is killed with SIGKILL mid-epoch and resumed, in a fresh process,
  from its last saved ``state_dict()``: the batches before the checkpoint plus the resumed ones
  are exactly the uninterrupted epoch (no sample lost, none repeated);
* one DataLoader worker is killed: the loader raises a clear error at once (no hang), and
  resuming from the last state dict again completes the epoch exactly;
* shard files are deleted from under the running job, while in use (the decompressed copies of a
  local compressed dataset; every file of a cached remote dataset): the epoch completes with the
  same batches;
* several jobs at once on one host, sharing a cache directory or not, each get the exact epoch.

A full disk during a download is covered by tests/remote/test_remote_faults.py::test_full_disk.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from rel_support import CHILD_ENV, HERE, ROOT, kill_group, wait_for  # noqa: I001

from mds_loader import write_table

# Large enough that a worker still has decoded chunks (~8192 samples) to send when one is killed.
ROWS = 200_000
BATCH = 1000


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("loader-faults") / "ds"
    ids = np.arange(ROWS, dtype=np.int64)
    write_table(pa.table({"id": ids, "x": ids / 7.0, "tokens": list(np.stack([ids, ids * 2], axis=1))}), path,
                size_limit=1 << 16, compression="zstd", hashes=["xxh64"])  # fmt: skip
    return path


def _args(tmp_path: Path, name: str, **kw) -> dict:
    return {"local": None, "batch_size": BATCH, "workers": 2, "log": str(tmp_path / f"{name}.log"),
            "ckpt": str(tmp_path / "ckpt.json"), "ready": str(tmp_path / f"{name}.ready"),
            "pids": str(tmp_path / f"{name}.pids"), **kw}  # fmt: skip


def _spawn(args: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(HERE / "loader_jobs.py"), json.dumps(args)], cwd=str(ROOT),
                            env=CHILD_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip


def _finish(proc: subprocess.Popen, timeout: float = 900) -> tuple[int, dict]:
    out, err = proc.communicate(timeout=timeout)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return proc.returncode, (lines[-1] if lines else {"stderr": err[-4000:]})


def _wait_ready(proc: subprocess.Popen, args: dict) -> None:
    """Waits (a generous bound, not a pace) until the job holds at batch ``signal_after``."""
    wait_for(lambda: os.path.exists(args["ready"]) or proc.poll() is not None, 600, "the training job")
    assert proc.poll() is None, _finish(proc)


def _batches(log: str) -> list[list[int]]:
    with open(log) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def epoch(dataset, tmp_path_factory) -> list[list[int]]:
    """The uninterrupted epoch (2 workers), as batches of sample ids."""
    tmp = tmp_path_factory.mktemp("epoch")
    args = _args(tmp, "full", local=str(dataset))
    code, res = _finish(_spawn(args))
    assert code == 0, res
    batches = _batches(args["log"])
    assert sorted(i for b in batches for i in b) == list(range(ROWS))
    return batches


def _resume_and_check(tmp_path: Path, dataset: Path, epoch: list[list[int]], consumed_log: str) -> dict:
    with open(tmp_path / "ckpt.json") as f:
        saved = json.load(f)["batches"]
    before = _batches(consumed_log)
    assert len(before) >= saved  # the job went on after its last checkpoint; those batches are redone
    code, res = _finish(_spawn(_args(tmp_path, "resumed", local=str(dataset), resume=True)))
    assert code == 0, res
    after = _batches(str(tmp_path / "resumed.log"))
    stream = [i for b in before[:saved] + after for i in b]
    assert len(stream) == len(set(stream)), "a sample was repeated"
    assert sorted(stream) == list(range(ROWS)), "a sample was lost"
    assert before[:saved] + after == epoch  # and in the uninterrupted epoch's order
    return {"checkpoint": saved, "killed_after": len(before), "resumed": len(after)}


def test_process_killed_with_sigkill_and_resumed(dataset, epoch, tmp_path):
    # The job holds after batch 23, two batches after its last checkpoint (21), its workers
    # prefetching meanwhile: it is killed there.
    args = _args(tmp_path, "train", local=str(dataset), every=7, signal_after=23)
    proc = _spawn(args)
    try:
        _wait_ready(proc, args)
        os.killpg(proc.pid, signal.SIGKILL)  # the main process and its workers
        proc.wait(120)
    finally:
        kill_group(proc)
    assert proc.returncode == -signal.SIGKILL
    print(_resume_and_check(tmp_path, dataset, epoch, args["log"]))


def test_dataloader_worker_killed(dataset, epoch, tmp_path):
    # The job holds after batch 17 (of 200) while worker 0 is killed, then goes on: the rest of
    # the epoch needs worker 0's batches, so it cannot end before the loss is seen.
    args = _args(tmp_path, "train", local=str(dataset), every=5, signal_after=17)
    proc = _spawn(args)
    try:
        _wait_ready(proc, args)
        pids = [int(p) for p in Path(args["pids"]).read_text().split()]
        assert len(pids) == 2
        os.kill(pids[0], signal.SIGKILL)
        os.unlink(args["ready"])  # go on
        code, res = _finish(proc, timeout=300)  # a clear error, not a hang (a hang never ends)
    finally:
        kill_group(proc)
    assert code == 3, res
    # torch names the worker either from its SIGCHLD handler or when its queue breaks first
    message = res.get("message", "")
    assert res["error"] == "RuntimeError", res
    assert (f"DataLoader worker (pid {pids[0]}) is killed by signal" in message
            or f"DataLoader worker (pid(s) {pids[0]}) exited unexpectedly" in message), res  # fmt: skip
    print(_resume_and_check(tmp_path, dataset, epoch, args["log"]))


class _Deleter:
    """Deletes matching files under ``root`` every few milliseconds while active (a repeated
    action: how often it runs decides nothing; the test waits for its count)."""

    def __init__(self, root: Path, suffixes: tuple[str, ...]) -> None:
        self.root, self.suffixes, self.count, self._stop = root, suffixes, 0, threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                names = os.listdir(self.root)
            except FileNotFoundError:
                names = []
            for n in names:
                if n.startswith("shard.") and n.endswith(self.suffixes):
                    try:
                        os.unlink(self.root / n)
                        self.count += 1
                    except FileNotFoundError:
                        pass
            time.sleep(0.02)

    def __enter__(self) -> _Deleter:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.parametrize("kind", ["local_compressed", "cached_remote"])
def test_shard_files_deleted_while_in_use(dataset, epoch, tmp_path, kind):
    """local_compressed: the job reads the dataset directory itself; its decompressed copies
    (``shard.*.mds`` next to ``*.mds.zstd``) are deleted as soon as they appear. cached_remote:
    the dataset is a remote (another directory) cached in ``local``; every cached shard file,
    compressed or not, is deleted as soon as it appears. The job holds half way through the epoch
    (its workers holding shards open) until more than 10 files were deleted, then finishes with
    the deleter still running."""
    import shutil

    if kind == "local_compressed":
        local = tmp_path / "ds"
        shutil.copytree(dataset, local)
        args, watch, suffixes = _args(tmp_path, "run", local=str(local)), local, (".mds",)
    else:
        local = tmp_path / "cache"
        args, watch, suffixes = _args(tmp_path, "run", remote=str(dataset), local=str(local)), local, (".mds", ".zstd")
    args["signal_after"] = len(epoch) // 2
    with _Deleter(watch, suffixes) as deleter:
        proc = _spawn(args)
        try:
            _wait_ready(proc, args)
            # 100,000 samples were read by then, from at least 64 of the 129 shards (~1,550 rows
            # each): each left a file (decompressed or cached) that the deleter removes, sooner or later
            wait_for(lambda: deleter.count > 10 or proc.poll() is not None, 600, "files to be deleted mid-epoch")
            mid_epoch = deleter.count
            os.unlink(args["ready"])  # go on
            code, res = _finish(proc)
        finally:
            kill_group(proc)
    assert code == 0, res
    assert _batches(args["log"]) == epoch
    assert deleter.count > 10, deleter.count  # files were deleted while the epoch ran
    print({"deleted": deleter.count, "mid_epoch": mid_epoch})


def test_several_jobs_at_once_sharing_a_cache_or_not(dataset, epoch, tmp_path):
    """Four training jobs (2 DataLoader workers each) on one host at once: two share one cache
    directory of the dataset used as a remote (with a cache_limit of half of it, so they evict
    each other's shards), one has a cache of its own, one reads the dataset directly. Each gets
    exactly the uninterrupted epoch."""
    size = sum(f.stat().st_size for f in dataset.iterdir() if f.name.startswith("shard."))
    shared = str(tmp_path / "shared-cache")
    jobs = {
        "shared-1": dict(remote=str(dataset), local=shared, cache_limit=size // 2),
        "shared-2": dict(remote=str(dataset), local=shared, cache_limit=size // 2),
        "own-cache": dict(remote=str(dataset), local=str(tmp_path / "own-cache")),
        "direct": dict(local=str(dataset)),
    }
    args = {name: _args(tmp_path, name, **kw) for name, kw in jobs.items()}
    procs = {name: _spawn(a) for name, a in args.items()}
    try:
        results = {name: _finish(p) for name, p in procs.items()}
    finally:
        for p in procs.values():
            kill_group(p)
    for name, (code, res) in results.items():
        assert code == 0, (name, res)
        assert _batches(args[name]["log"]) == epoch, name


def test_workers_exit_when_the_training_process_is_killed(dataset, tmp_path):
    """SIGKILL to the training process alone (the OOM killer's way): its DataLoader workers exit
    by themselves, instead of living on as orphans blocked on a pipe nobody reads."""
    # The job holds after batch 3: its workers fill their queues and block writing to it.
    args = _args(tmp_path, "train", local=str(dataset), signal_after=3)
    proc = _spawn(args)
    try:
        _wait_ready(proc, args)
        pids = [int(p) for p in Path(args["pids"]).read_text().split()]
        assert len(pids) == 2
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(120)

        def gone(pid: int) -> bool:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    return f.read().split(")")[-1].split()[0] == "Z"  # a zombie has exited
            except FileNotFoundError:
                return True

        # they notice within a second (mds_loader's parent watch); the bound only has to be finite
        wait_for(lambda: all(gone(p) for p in pids), 300, "the orphaned DataLoader workers to exit")
    finally:
        kill_group(proc)

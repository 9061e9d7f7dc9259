"""Faults during Spark writes, for the JVM source and the Python fallback (docs/format.md §6).

* a task fails on its first attempt: it is retried; index.json lists only the committed shards,
  the failed attempt's files are gone, the data is read back exactly once;
* a task fails on every attempt while the other task is held in its write until the driver has
  aborted the job, then writes on: the job fails; the previous index.json and its shards are
  untouched byte for byte and no file of the job remains, or appears afterwards;
* the driver is killed (SIGKILL, the whole process group) between the tasks' commits and the
  index write: the old dataset stays readable and unchanged, and ``mds vacuum PATH --older-than 0``
  removes exactly the job's files (shards, marker, temporary index) and nothing else.

Each Spark driver is its own process (spark_jobs.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from mds_loader.format.write_jobs import job_marker, job_of
from rel_support import CHILD_ENV, HERE, ROOT, kill_group, run_child, tree, wait_for  # noqa: I001
from support import require_jar

pytestmark = [pytest.mark.spark, pytest.mark.slow]

FORMATS = ("mds", "mds_py")  # the JVM source, the Python fallback


def test_task_failures(tmp_path):
    require_jar()
    (tmp_path / "hooks").mkdir()
    args = {"jvm": str(tmp_path / "jvm"), "py": str(tmp_path / "py"), "hooks": str(tmp_path / "hooks")}
    lines, _ = run_child([str(HERE / "spark_jobs.py"), "task_failures", json.dumps(args)], timeout=600)
    results = [r for r in lines if "fmt" in r]
    assert [r["fmt"] for r in results] == list(FORMATS)
    for r in results:
        fmt = r["fmt"]
        # retried first attempt
        assert r["retry_error"] is None, (fmt, r["retry_error"])
        assert r["files"] == r["referenced"], (fmt, sorted(set(r["files"]) ^ set(r["referenced"])))  # no orphans
        assert r["ids"] == list(range(600)) + list(range(1000, 1600)), fmt  # every row once
        assert not set(r["failed_attempt_files"]) & set(r["files"]), fmt  # the failed attempt's files are gone
        attempts = {n.split(".")[3] for n in r["new_shards"] if n.split(".")[2] == "00001"}
        assert len(attempts) == 1, (fmt, attempts)  # partition 1 comes from one attempt only
        assert r["failed_attempt_files"], fmt  # the failed attempt had written a shard (seen while it was held)
        # failing job, whose other task writes on after the driver's abort
        for mode in ("append", "overwrite"):
            assert "injected failure of attempt 1.1" in (r[mode]["error"] or ""), (fmt, mode, r[mode]["error"])
            assert r[mode]["unchanged"], (fmt, mode, r[mode]["diff"])
        assert r["ids_after"] == r["ids"], fmt


def _start_driver(args: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(HERE / "spark_jobs.py"), "write", json.dumps(args)], cwd=str(ROOT),
                            env=CHILD_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip


def _initial_dataset(path) -> None:
    """The dataset the killed driver appends to (written with mds_loader: the same format)."""
    import numpy as np
    import pyarrow as pa

    from mds_loader import write_table

    ids = np.arange(0, 300, dtype=np.int64)
    write_table(pa.table({"id": ids, "text": [f"row {i} " + "x" * 40 for i in ids],
                          "tokens": [[int(i), int(2 * i), int(3 * i)] for i in ids]}),
                path, size_limit=2048, compression="zstd", hashes=["xxh64"])  # fmt: skip


@pytest.mark.parametrize(("fmt", "point"), [("mds", "beforePublish"), ("mds_py", "beforeCommit")])
def test_driver_killed_between_task_commits_and_index_write(tmp_path, fmt, point):
    """The driver pauses at the hook (every task committed; for the JVM, inside the index lock
    after the optimistic check) and is killed with SIGKILL with its JVM and Python workers."""
    require_jar()
    from mds_loader import read_table

    path = tmp_path / "ds"
    _initial_dataset(path)
    expected = read_table(path)
    before = tree(path)
    marker = tmp_path / "paused"
    proc = _start_driver({"fmt": fmt, "path": str(path), "lo": 1000, "hi": 1600, "size_limit": "1kb",
                          "hooks": {point: str(marker)}})  # fmt: skip
    try:
        wait_for(lambda: marker.exists() or proc.poll() is not None, 300, "the driver to reach the hook")
        assert proc.poll() is None, proc.communicate()[1][-4000:]
        during = tree(path)
        kill_group(proc)
    finally:
        if proc.poll() is None:
            kill_group(proc)
    after = tree(path)
    new = sorted(set(after) - set(before))
    # The job had written its shards (and its marker), and nothing of the old dataset changed.
    assert {job_of(n) for n in new} == {job_of(new[-1])}, new  # one job's files only
    assert any(n.startswith("shard.") for n in new) and job_marker(job_of(new[-1])) in new, new
    assert set(during) - set(before) <= set(new)
    assert {k: after[k] for k in before} == before
    assert read_table(path).equals(expected)  # the old dataset stays readable

    # vacuum removes exactly the job's files, nothing else
    for n in new:
        os.utime(path / n, (time.time() - 5, time.time() - 5))
    proc = subprocess.run([sys.executable, "-m", "mds_loader.cli", "vacuum", str(path), "--older-than", "0"],
                          capture_output=True, text=True, cwd=str(ROOT), timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    removed = sorted(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("removed "))
    assert removed == new, (removed, new)
    assert tree(path) == before
    assert read_table(path).equals(expected)

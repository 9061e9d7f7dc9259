"""Helpers of the reliability tests (a plain module: the test files import it as ``rel_support``)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
for p in (str(HERE), str(ROOT / "tests"), str(ROOT / "tests" / "spark"), str(ROOT / "tests" / "remote")):
    if p not in sys.path:
        sys.path.insert(0, p)

#: Environment of child processes: our Python for the Spark workers, the test helpers importable.
CHILD_ENV = {
    **os.environ,
    "PYSPARK_PYTHON": sys.executable,
    "PYSPARK_DRIVER_PYTHON": sys.executable,
    "PYTHONHASHSEED": "0",
    "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE), str(ROOT / "tests" / "spark"), str(ROOT / "tests" / "remote"),
                                   os.environ.get("PYTHONPATH", "")]),
}


def run_child(args: list[str], timeout: float = 600, env: dict[str, str] | None = None) -> tuple[list[dict], str]:
    """Runs ``python args...`` and returns the JSON lines it printed, and its stderr. Fails the test,
    naming the signal, if the child crashed (a segfault is a failure of the reader under test)."""
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=str(ROOT),
                          env={**CHILD_ENV, **(env or {})})  # fmt: skip
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode < 0:
        last = next((r.get("start") for r in reversed(lines) if "start" in r), None)
        raise AssertionError(f"the child process was killed by signal {signal.Signals(-proc.returncode).name} while "
                             f"reading case {last!r}\n{proc.stderr[-4000:]}")
    if proc.returncode != 0:
        raise AssertionError(f"the child process failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
    return lines, proc.stderr


def tree(root: str | Path) -> dict[str, str]:
    """Every file under ``root`` (relative path -> sha256 of its content)."""
    out = {}
    for base, _, names in os.walk(root):
        for n in names:
            p = os.path.join(base, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def referenced(path: str | Path) -> set[str]:
    """index.json and every file its shard entries name."""
    with open(os.path.join(path, "index.json")) as f:
        index = json.load(f)
    names = {"index.json"}
    for s in index["shards"]:
        names.add(s["raw_data"]["basename"])
        if s["zip_data"]:
            names.add(s["zip_data"]["basename"])
    return names


def stored(path: str | Path) -> set[str]:
    """index.json and the stored file (compressed, else raw) of every shard."""
    with open(os.path.join(path, "index.json")) as f:
        index = json.load(f)
    return {"index.json"} | {(s["zip_data"] or s["raw_data"])["basename"] for s in index["shards"]}


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def kill_group(proc: subprocess.Popen, timeout: float = 60) -> None:
    """SIGKILL to the process group of `proc` (started with ``start_new_session=True``: the
    process and its children, e.g. DataLoader workers or Spark's), then reaps `proc`."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout)

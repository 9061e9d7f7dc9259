"""Runs every Python reader of mds_loader (and the ``mds`` CLI) on damaged datasets, in a child
process of the test, with an address-space limit: a reader that crashes the interpreter kills
only this process (the test sees the signal), and one that tries a huge allocation gets a
MemoryError instead of exhausting the machine.

Usage: ``python probe_readers.py CASES_DIR CACHE_DIR NAME...``; prints one JSON line per case:
``{"case": name, "results": {reader: {"ok": rows} | {"error": type, "mro": [...], "message": ...}}}``,
each outcome with the process's peak resident memory so far (``peak_rss_mib``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import shutil
import sys
import traceback

LIMIT = 6 << 30


def _peak_rss_mib() -> int:
    """This process's peak resident memory so far, in MiB (a bomb must not raise it): the memory
    map's high-water mark (VmHWM), not ``ru_maxrss``, which execve keeps from the forking process
    (the test runner, hundreds of MiB after a long run)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) >> 10
    raise AssertionError("no VmHWM in /proc/self/status")


def _outcome(fn) -> dict:
    try:
        return {"ok": fn()}
    except BaseException as exc:  # noqa: BLE001 - recorded for the parent to judge
        return {
            "error": type(exc).__name__,
            "mro": [c.__name__ for c in type(exc).__mro__],
            "message": str(exc)[:6000],
            "trace": traceback.format_exc()[-1500:],
        }


def _readers(path: str, cache: str) -> dict:
    import numpy as np

    from mds_loader import StreamingDataset, read_table
    from mds_loader.cli import main as cli
    from mds_loader.format import MDSDataset

    def table() -> int:
        return read_table(path).num_rows

    def table_hash() -> int:
        return read_table(path, validate_hash="xxh64").num_rows

    def samples() -> int:
        with MDSDataset(path) as ds:
            return len([ds.get_sample(i) for i in range(len(ds))])

    def streaming_samples() -> int:
        return len(list(StreamingDataset(local=path, shuffle=True, shuffle_seed=1, batch_size=4)))

    def streaming_batches(fmt: str):
        def run() -> int:
            ds = StreamingDataset(local=path, batch_size=5)
            rows = 0
            for batch in ds.iter_batches(fmt):
                rows += batch.num_rows if fmt == "arrow" else len(next(iter(batch.values())))
            return rows

        return run

    def cached_samples() -> int:
        local = os.path.join(cache, "c")
        shutil.rmtree(local, ignore_errors=True)
        ds = StreamingDataset(remote=path, local=local, validate_hash="sha1", download_retry=1, batch_size=4)
        n = len(list(ds))
        return n

    def cached_batches() -> int:
        local = os.path.join(cache, "b")
        shutil.rmtree(local, ignore_errors=True)
        ds = StreamingDataset(remote=path, local=local, batch_size=4, download_retry=1)
        return sum(b.num_rows for b in ds.iter_batches("arrow"))

    def command(*args: str):
        def run() -> int:
            err = io.StringIO()
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                status = cli([*args])
            if status != 0:
                raise _CliError(status, err.getvalue())
            return status

        return run

    _ = np
    return {
        "read_table": table,
        "read_table_hash": table_hash,
        "get_sample": samples,
        "streaming_samples": streaming_samples,
        "streaming_arrow": streaming_batches("arrow"),
        "streaming_numpy": streaming_batches("numpy"),
        "cached_samples": cached_samples,
        "cached_batches": cached_batches,
        "cli_validate": command("validate", path),
        "cli_validate_decode": command("validate", "--decode", path),
        "cli_head": command("head", path, "-n", "50"),
        "cli_inspect": command("inspect", path),
    }


class _CliError(Exception):
    def __init__(self, status: int, stderr: str) -> None:
        super().__init__(f"exit {status}: {stderr.strip()}")
        self.status = status
        self.stderr = stderr


def main() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))
    sys.setrecursionlimit(3000)
    cases_dir, cache, names = sys.argv[1], sys.argv[2], sys.argv[3:]
    for name in names:
        path = os.path.join(cases_dir, name)
        print(json.dumps({"start": name}), flush=True)
        results = {}
        for reader, fn in _readers(path, os.path.join(cache, name)).items():
            results[reader] = _outcome(fn)
            results[reader]["peak_rss_mib"] = _peak_rss_mib()
        print(json.dumps({"case": name, "results": results}), flush=True)


if __name__ == "__main__":
    main()

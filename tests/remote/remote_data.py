"""Data, fault injection and iteration helpers shared by the remote tests."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
from fsspec.spec import AbstractFileSystem

# Small shards, so that a dataset of a few thousand rows has ~20 of them and a cache_limit of a
# third of the dataset forces evictions.
SIZE_LIMIT = 1 << 15
HASHES = ["sha1", "xxh64"]


def make_table(rows: int, seed: int = 0) -> pa.Table:
    """Mixed columns: ints, floats, strings, a fixed-shape ndarray (collatable to tensors)."""
    rng = np.random.default_rng(seed)
    return pa.table({
        "id": pa.array(np.arange(rows, dtype=np.int64)),
        "score": pa.array(rng.random(rows)),
        "label": pa.array(rng.integers(0, 10, rows, dtype=np.int32)),
        "text": pa.array([f"row {i} " + "x" * int(rng.integers(0, 40)) for i in range(rows)]),
        "tokens": pa.array(list(rng.integers(0, 50_000, (rows, 16), dtype=np.int32))),
    })  # fmt: skip


def dataset_bytes(local_dir: Path) -> int:
    """Bytes of the shard files (raw + compressed) that index.json lists."""
    index = json.loads((local_dir / "index.json").read_text())
    return sum(s["raw_data"]["bytes"] + (s["zip_data"]["bytes"] if s["zip_data"] else 0) for s in index["shards"])


def batch_digest(batch: dict[str, Any]) -> list[Any]:
    """A batch as plain, comparable values: each column's values (tensors as lists)."""
    out = []
    for name in sorted(batch):
        value = batch[name]
        if hasattr(value, "tolist"):
            value = value.tolist()
        out.append([name, value])
    return out


def run_epochs(loader: Iterable[dict[str, Any]], epochs: int) -> list[list[list[Any]]]:
    return [[batch_digest(b) for b in loader] for _ in range(epochs)]


def fingerprint(epochs: list[Any]) -> str:
    return hashlib.sha256(json.dumps(epochs, sort_keys=True).encode()).hexdigest()


def tree(root: Path) -> dict[str, bytes]:
    """Every file under `root` (relative name -> content)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------- fault injection


class FlakyFileSystem(AbstractFileSystem):
    """``flaky://bucket/path``: S3 through s3fs, with injected failures, counting every call.

    Args:
        target_options: s3fs options (endpoint, credentials).
        fail_opens: the first `fail_opens` opens of each shard file raise ConnectionResetError
            (the connection dropped: a transient error that a retry fixes).
        hold: a marker file: shard files are read 1 KiB at a time, and once `hold_after` KiB of
            a file were read, the reader creates `hold` and waits while it exists (a download
            paused half way, at a known point, for the test to kill: a latch, not a pace).
        hold_after: KiB read before holding.
    """

    protocol = "flaky"
    calls: Counter = Counter()  # (method, path) -> calls, over all instances of this process
    _lock = threading.Lock()

    def __init__(self, target_options: dict[str, Any] | None = None, fail_opens: int = 0, hold: str | None = None,
                 hold_after: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        import s3fs

        self.target = s3fs.S3FileSystem(**(target_options or {}))
        self.fail_opens = fail_opens
        self.hold, self.hold_after = hold, hold_after

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        path = path[len("flaky://"):] if path.startswith("flaky://") else path
        return path.rstrip("/")

    def _count(self, method: str, path: str) -> int:
        with self._lock:
            self.calls[(method, path)] += 1
            return self.calls[(method, path)]

    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:  # noqa: A003
        path = self._strip_protocol(path)
        n = self._count("open", path)
        if "r" in mode and ".mds" in path and n <= self.fail_opens:
            raise ConnectionResetError(errno.ECONNRESET, f"injected failure {n} opening {path}")
        f = self.target.open(path, mode, **kwargs)
        return _Held(f, self.hold, self.hold_after) if self.hold and ".mds" in path else f

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        path = self._strip_protocol(path)
        self._count("cat_file", path)
        return self.target.cat_file(path, start=start, end=end, **kwargs)

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        return self.target.info(self._strip_protocol(path), **kwargs)

    def exists(self, path: str, **kwargs: Any) -> bool:
        return self.target.exists(self._strip_protocol(path))

    def put_file(self, lpath: str, rpath: str, **kwargs: Any) -> None:
        self.target.put_file(lpath, self._strip_protocol(rpath), **kwargs)

    def pipe_file(self, path: str, value: bytes, **kwargs: Any) -> None:
        self.target.pipe_file(self._strip_protocol(path), value, **kwargs)


class _Held:
    """A file read 1 KiB at a time that, after `after` pieces, creates the file `marker` and
    waits while it exists (at most 10 minutes): a download stopped half way, until it is killed."""

    def __init__(self, f: Any, marker: str, after: int) -> None:
        self._f = f
        self._marker = marker
        self._left = after

    def read(self, n: int = -1) -> bytes:
        if self._left == 0:
            with open(self._marker, "w"):
                pass
            deadline = time.monotonic() + 600
            while os.path.exists(self._marker) and time.monotonic() < deadline:
                time.sleep(0.01)
        self._left -= 1
        return self._f.read(1024)

    def __enter__(self) -> _Held:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._f.close()


fsspec.register_implementation("flaky", FlakyFileSystem, clobber=True)


class _FullDisk:
    """A local file whose writes fail with ENOSPC after `budget` bytes (a disk that fills up)."""

    def __init__(self, f: Any, budget: int) -> None:
        self._f = f
        self._budget = budget

    def write(self, data: Any) -> int:
        if len(data) > self._budget:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._budget -= len(data)
        return self._f.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._f.close()


def full_disk_open(budget: int = 100):
    """A replacement of ``open`` for mds_loader.storage whose files fill the disk after
    `budget` bytes."""
    import builtins

    def fake_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        f = builtins.open(file, mode, *args, **kwargs)
        return _FullDisk(f, budget) if "w" in mode else f

    return fake_open

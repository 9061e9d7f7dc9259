"""The local copies of a dataset's shards: download, verification, decompression, eviction.

Coordination between processes (ranks of a node, DataLoader workers, jobs sharing a cache
directory) uses only files:

* a shard file appears under its final name only when it is complete and verified (temporary
  name + size and hash checks + rename), so a crash never leaves a half shard that looks
  complete; the next downloader of the shard removes a dead process's temporary files;
* one lock file per shard in ``<local>/.mds-locks/`` (named after the shard's entry in
  index.json, so the old and new versions of a rewritten dataset never share a lock): held
  *exclusively* while the shard is being downloaded or evicted, and *shared* by every process
  that has the shard open. Nobody ever blocks on a shard's exclusive lock: a downloader polls
  until it gets the lock or sees the shard present, eviction only takes locks it gets at once,
  so a shard in use is never evicted and workers never deadlock on each other. A shard file
  deleted from under its shared holders (by hand, a tmp cleaner) is remade under the shared
  lock and a per-shard ``.repair`` lock;
* ``cache_limit`` is enforced under one cache-wide lock, least recently used shards first (the
  access time is the mtime of the shard's lock file, touched on download and on open). A
  download in progress reserves its bytes by writing them into its lock file, so concurrent
  downloads do not all fit themselves into the same free space; background prefetching stays
  within a share of the limit, so that prefetched shards are not evicted before they are read.
  Shards of local streams (``remote`` None, or equal to ``local``) are the dataset itself and
  are never evicted.

Locks are ``flock`` locks, released by the kernel when their process dies.
"""

from __future__ import annotations

import bisect
import errno
import hashlib
import os
import tempfile
import threading
import time
import warnings
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .errors import MDSChecksumError, MDSFormatError, MDSSchemaError
from .format.hashing import get_hash, verify_hash
from .format.index import ShardEntry
from .format.reader import ReadSchema, ShardReader, first_sample_ndarray_infos
from .format.shard_files import inflate, read_local
from .locks import FileLock
from .node import loading_processes
from .storage import join_url, write_file_atomic
from .stream import LOCK_DIR, Stream

__all__ = ["ShardCache"]

_LOCK_DIR = LOCK_DIR


@dataclass(frozen=True)
class _Shard:
    stream: int  # index of the stream
    index: int  # index of the shard in its stream's index.json
    entry: ShardEntry


class _Shards(Sequence[_Shard]):
    """The shards of several streams, numbered globally (streams concatenated in order), made
    on first access: a stream's index may hold 100,000 entries that this process never reads."""

    def __init__(self, streams: Sequence[Stream]) -> None:
        self._streams = list(streams)
        self._ends = np.cumsum([len(st.index.shards) for st in self._streams], dtype=np.int64).tolist()
        self._made: dict[int, _Shard] = {}

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def __getitem__(self, g: int) -> _Shard:  # type: ignore[override]
        shard = self._made.get(g)
        if shard is None:
            if not 0 <= g < len(self):
                raise IndexError(f"shard {g} out of range ({len(self)} shards)")
            s = bisect.bisect_right(self._ends, g)
            k = g - (self._ends[s - 1] if s else 0)
            shard = self._made[g] = _Shard(s, k, self._streams[s].index.shards[k])
        return shard


def _has(path: str, size: int) -> bool:
    try:
        return os.path.getsize(path) == size
    except OSError:
        return False


def _lock_unless(lock: FileLock, ready: Callable[[], bool], limit: float | None = None) -> tuple[FileLock, ...]:
    """Takes the locks needed to (re)make a shard, unless `ready()` becomes true first (then
    returns no locks).

    Normally that is `lock`, exclusively. A blocking wait would deadlock: once another process
    has downloaded the shard it holds the lock *shared* for as long as it keeps the shard open,
    and it may be waiting for the DataLoader's main process, which waits for this worker's next
    batch. When only shared holders remain and the file is still missing, it was deleted from
    under them (their open maps stay valid); nobody is making it, so it is remade under a shared
    lock plus the shard's repair lock, which lets one process at a time do so.

    Raises:
        TimeoutError: neither happened within `limit` seconds (None: no limit).
    """
    deadline = None if limit is None else time.monotonic() + limit
    delay = 0.001
    while True:
        if ready():
            return ()
        if lock.try_acquire():
            if ready():  # prepared between the check and the lock
                lock.release()
                return ()
            return (lock,)
        shared = FileLock(lock.path, shared=True)
        if shared.try_acquire():  # no exclusive holder: nobody is downloading or evicting it
            repair = FileLock(lock.path + ".repair")
            if repair.try_acquire():
                if not ready():
                    return (shared, repair)
                repair.release()
            shared.release()
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"waited {limit:g} s for {lock.path}: another process holds this shard's lock without "
                               f"finishing its download; if no such process is alive, report this bug")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _lock_name(entry: ShardEntry) -> str:
    """The name of a shard's lock file. It includes the shard's identity in index.json (sizes
    and hashes), so that after a dataset is rewritten, a process still reading the old version
    (holding the old lock shared) never blocks the download of the new one."""
    identity = repr([(info.basename, info.bytes, sorted(info.hashes.items()))
                     for info in (entry.raw_data, entry.zip_data) if info is not None])
    tag = hashlib.blake2s(identity.encode(), digest_size=6).hexdigest()
    return f"{entry.raw_data.basename.replace('/', '%')}.{tag}.lock"


def _touch(path: str) -> None:
    try:
        os.utime(path)
    except OSError:
        pass


def _remove_temporaries(path: str) -> None:
    """Deletes the temporary files of `path` (``.<name>.*``: downloads and decompressions that a
    dead process left). Only called by the holder of the shard's exclusive lock, so none of them
    belongs to a live download."""
    directory, name = os.path.split(path)
    prefix = "." + name + "."
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for other in names:
        if other.startswith(prefix):
            _remove(os.path.join(directory, other))


def _remove(path: str) -> int:
    try:
        size = os.path.getsize(path)
        os.remove(path)
        return size
    except FileNotFoundError:
        return 0


class ShardCache:
    """Makes shards of several streams available locally and opens them.

    Args:
        streams: the dataset's streams, with their indexes loaded; shards are numbered globally,
            streams concatenated in order.
        cache_limit: maximum bytes of cached shard files (raw and compressed) over all cached
            streams, or None.
        allow_unsafe_types: passed to the shard readers (``pkl`` columns).
        max_open: shards kept open (memory-mapped) at once by this process.
        download_threads: parallel downloads/decompressions ahead of use.
    """

    def __init__(self, streams: Sequence[Stream], *, cache_limit: int | None = None, allow_unsafe_types: bool = False,
                 max_open: int = 16, download_threads: int = 8) -> None:
        self.streams = list(streams)
        self.cache_limit = cache_limit
        self.allow_unsafe_types = allow_unsafe_types
        self.max_open = max(1, max_open)
        self.download_threads = max(1, download_threads)
        self.shards = _Shards(self.streams)
        self._lock_names: dict[int, str] = {}
        cached_dirs = sorted({st.local_dir for st in self.streams if not st.is_local})
        self._cache_lock_path = (
            os.path.join(cached_dirs[0], _LOCK_DIR,
                         "cache-" + hashlib.blake2s("\0".join(cached_dirs).encode(), digest_size=8).hexdigest() + ".lock")
            if cached_dirs else None
        )
        self._init_runtime()

    def _init_runtime(self) -> None:
        self._stores = [st.store() for st in self.streams]
        self._open: OrderedDict[int, tuple[ShardReader, FileLock | None]] = OrderedDict()
        self._mutex = threading.RLock()
        self._executor: ThreadPoolExecutor | None = None
        self._pending: dict[int, Future[str]] = {}
        self._schemas: dict[tuple[int, bool], ReadSchema] = {}
        self._warned_full = False
        self._open_limit: int | None = None  # see _max_open (known once in the worker)
        # What this process did (statistics for benchmarks and tests).
        self.stats = {"downloads": 0, "downloaded_bytes": 0, "evictions": 0}

    # Caches are pickled into DataLoader workers (spawn) without their open files and threads.
    def __getstate__(self) -> dict[str, Any]:
        keep = ("streams", "cache_limit", "allow_unsafe_types", "max_open", "download_threads", "shards",
                "_cache_lock_path", "_lock_names")
        return {k: self.__dict__[k] for k in keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    def after_fork(self) -> None:
        """Drops what a forked process inherited (open maps, locks, threads) without touching
        the parent's: the child reopens what it needs."""
        for reader, lock in self._open.values():
            if lock is not None:
                lock.release()  # only closes the child's descriptor (see FileLock.release)
        self._init_runtime()

    # ------------------------------------------------------------------ paths

    def _stream(self, g: int) -> Stream:
        return self.streams[self.shards[g].stream]

    def _path(self, g: int, basename: str) -> str:
        return os.path.join(self._stream(g).local_dir, *basename.split("/"))

    def raw_path(self, g: int) -> str:
        """Where shard ``g``'s raw (decompressed) file is, or will be, on local disk."""
        return self._path(g, self.shards[g].entry.raw_data.basename)

    def _lock_name(self, g: int) -> str:
        name = self._lock_names.get(g)
        if name is None:
            name = self._lock_names[g] = _lock_name(self.shards[g].entry)
        return name

    def _lock_path(self, g: int) -> str:
        return os.path.join(self._stream(g).local_dir, _LOCK_DIR, self._lock_name(g))

    # ------------------------------------------------------------------ preparing

    def prepare(self, g: int) -> str:
        """Makes shard ``g``'s raw file present locally and returns its path: downloads it (or
        its compressed form) for a cached stream, verifies its hash when the stream asks for it,
        and decompresses it.

        Raises:
            FileNotFoundError: a local stream's shard file is missing, or the remote one is.
            MDSChecksumError: a downloaded file does not match its hash.
            MDSFormatError: a file of the wrong size, or one that does not decompress.
            TimeoutError, OSError: downloads that failed every attempt; a full disk.
        """
        shard = self.shards[g]
        raw = shard.entry.raw_data
        raw_path = self.raw_path(g)
        if _has(raw_path, raw.bytes):
            return raw_path
        stream = self._stream(g)
        if stream.is_local:
            return self._decompress_local(g, raw_path)
        lock_path = self._lock_path(g)
        lock = FileLock(lock_path)
        # Another process's download takes at most download_retry attempts of download_timeout.
        limit = None
        if stream.download_timeout is not None:
            limit = 2 * (stream.download_retry or 1) * (stream.download_timeout + 5) + 60
        held = _lock_unless(lock, lambda: _has(raw_path, raw.bytes), limit)
        if not held:
            return raw_path  # another process or thread prepared it meanwhile
        try:
            self._fetch(g, raw_path, exclusive=held[0] is lock)
        finally:
            for h in reversed(held):
                h.release()
        _touch(lock_path)  # just prepared: the most recently used shard, not the least
        return raw_path

    def _fetch(self, g: int, raw_path: str, *, exclusive: bool) -> None:
        """Downloads (and decompresses) shard ``g`` under its locks. With its exclusive lock,
        debris of dead downloads is removed first and room is made under ``cache_limit``; a
        repair (see _lock_unless) only puts back files that were counted before."""
        shard = self.shards[g]
        raw = shard.entry.raw_data
        zip_info = shard.entry.zip_data
        stream = self._stream(g)

        def make_room(needed: int) -> None:
            if exclusive:
                self._make_room(needed, g)

        if exclusive:
            for info in (raw, zip_info):
                if info is not None:
                    _remove_temporaries(self._path(g, info.basename))
        try:
            if zip_info is None:
                make_room(raw.bytes)
                self._download(g, raw.basename, raw.bytes, raw.hashes, raw_path)
            else:
                zip_path = self._path(g, zip_info.basename)
                for attempt in range(3):
                    if _has(zip_path, zip_info.bytes):
                        make_room(raw.bytes)
                    else:
                        make_room(zip_info.bytes + raw.bytes)
                        self._download(g, zip_info.basename, zip_info.bytes, zip_info.hashes, zip_path)
                    try:
                        self._decompress(g, raw_path, verify=False, remove_zip=not stream.keep_zip)
                        break
                    except FileNotFoundError:
                        if attempt == 2:  # the downloaded copy was deleted before it was decompressed
                            raise
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise OSError(e.errno, f"no space left on device while caching shard {raw.basename} of "
                                       f"{stream.remote_url} in {stream.local_dir} ({e}); free disk space or "
                                       f"set a smaller cache_limit") from e
            raise
        finally:
            if exclusive and self.cache_limit is not None:
                self._reserve(g, 0)  # the files are on disk now (or the download failed)

    def _download(self, g: int, basename: str, size: int, hashes: dict[str, str], dest: str) -> None:
        """Downloads one file of shard ``g`` to `dest` under the shard's exclusive lock: to a
        temporary name, then size and hash checks, then the rename that makes it visible."""
        stream = self._stream(g)
        store = self._stores[self.shards[g].stream]
        assert store is not None
        url = join_url(store.url, basename)
        part = os.path.join(os.path.dirname(dest), "." + os.path.basename(dest) + ".download")
        try:
            got = store.download(basename, part)
            with self._mutex:
                self.stats["downloads"] += 1
                self.stats["downloaded_bytes"] += got
            if got != size:
                raise MDSFormatError(f"{url}: downloaded {got} bytes, index.json says {size}; the remote file is "
                                     f"truncated or was replaced after index.json was written")
            if stream.validate_hash:
                self._verify_download(stream.validate_hash, part, hashes, url)
            os.replace(part, dest)
        finally:
            _remove(part)

    @staticmethod
    def _verify_download(name: str, part: str, hashes: dict[str, str], url: str) -> None:
        with open(part, "rb") as f:
            data = f.read()
        if name not in hashes:
            verify_hash(name, data, hashes, url)  # raises: index.json has no such hash for the file
        actual = get_hash(name, data)
        if actual != hashes[name]:
            raise MDSChecksumError(f"{url}: {name} checksum mismatch (validate_hash={name!r}): index.json says "
                                   f"{hashes[name]}, the downloaded file has {actual}. The download was discarded, "
                                   f"not cached; the remote file is corrupt or was replaced after index.json was "
                                   f"written: rewrite the dataset")

    def _decompress_local(self, g: int, raw_path: str) -> str:
        """Decompresses a local stream's shard once for all processes (DataLoader workers, ranks):
        under the shard's lock, which the others wait for instead of decompressing it too."""
        raw = self.shards[g].entry.raw_data
        if self.shards[g].entry.zip_data is None:
            return self._decompress(g, raw_path)  # raises: the raw file is missing or wrong
        # The lock lives in the temp directory: a local dataset gets no bookkeeping files.
        local_dir = os.path.realpath(self._stream(g).local_dir)
        lock_path = os.path.join(tempfile.gettempdir(), "mds-loader", "locks",
                                 hashlib.blake2s(local_dir.encode(), digest_size=8).hexdigest(), self._lock_name(g))
        try:
            held = _lock_unless(FileLock(lock_path), lambda: _has(raw_path, raw.bytes))
        except OSError:  # no usable temp directory: every process decompresses for itself
            return self._decompress(g, raw_path)
        try:
            if held:
                self._decompress(g, raw_path)
        finally:
            for h in reversed(held):
                h.release()
        return raw_path

    def _decompress(self, g: int, raw_path: str, *, verify: bool = True, remove_zip: bool = False) -> str:
        """Writes the raw file from the compressed one (atomically). A local stream's
        compressed file is verified here, as the reference does before decompressing."""
        entry = self.shards[g].entry
        zip_info = entry.zip_data
        if zip_info is None:
            try:
                size = os.path.getsize(raw_path)
            except OSError:
                raise FileNotFoundError(f"{raw_path}: shard file is missing") from None
            raise MDSFormatError(f"{raw_path}: {size} bytes, index.json says {entry.raw_data.bytes}; the file is "
                                 f"truncated or was replaced")
        zip_path = self._path(g, zip_info.basename)
        validate = self._stream(g).validate_hash if verify else None
        try:
            data = read_local(zip_path, zip_info, validate)
        except FileNotFoundError:
            raise FileNotFoundError(f"{zip_path}: shard file is missing (and so is its raw form {raw_path})") from None
        out = inflate(entry, data, zip_path)
        write_file_atomic(raw_path, lambda f: f.write(out))
        if remove_zip:
            _remove(zip_path)
        return raw_path

    # ------------------------------------------------------------------ eviction

    def _files(self, g: int) -> list[str]:
        entry = self.shards[g].entry
        return [self._path(g, info.basename) for info in (entry.raw_data, entry.zip_data) if info is not None]

    def usage(self) -> int:
        """Bytes of shard files present in the cached streams' directories."""
        total = 0
        for g in range(len(self.shards)):
            if not self._stream(g).is_local:
                for path in self._files(g):
                    try:
                        total += os.path.getsize(path)
                    except OSError:
                        pass
        return total

    def _reserved(self, preparing: int) -> int:
        """Bytes that other downloads in progress (in any process) have reserved: they are not
        on disk yet, but will be. A reservation is the byte count written into the shard's lock
        file by its downloader; one whose lock nobody holds was left by a dead process."""
        total = 0
        for g in range(len(self.shards)):
            if g == preparing or self._stream(g).is_local:
                continue
            path = self._lock_path(g)
            try:
                if os.path.getsize(path) == 0:
                    continue
                with open(path, "rb") as f:
                    text = f.read(32)
            except OSError:
                continue
            lock = FileLock(path)
            if lock.try_acquire():  # nobody is downloading it: a stale reservation
                try:
                    os.truncate(path, 0)
                finally:
                    lock.release()
                continue
            try:
                reserved = int(text)
            except ValueError:
                continue
            present = 0  # what the download already wrote is counted by usage()
            for file in self._files(g):
                try:
                    present += os.path.getsize(file)
                except OSError:
                    pass
            total += max(0, reserved - present)
        return total

    def _make_room(self, needed: int, preparing: int) -> None:
        """Reserves `needed` bytes for shard `preparing` (whose exclusive lock the caller holds),
        first evicting least recently used shards of cached streams that nobody has open, until
        the files present plus the downloads in progress plus `needed` fit under ``cache_limit``.

        Shards in use are never evicted: if they alone exceed the limit, the limit is exceeded
        (with a warning) rather than deadlocking or thrashing.
        """
        if self.cache_limit is None or self._cache_lock_path is None:
            return
        with FileLock(self._cache_lock_path):
            usage = self.usage() + self._reserved(preparing)
            if usage + needed > self.cache_limit:
                candidates = []
                for g in range(len(self.shards)):
                    if g == preparing or self._stream(g).is_local:
                        continue
                    if any(os.path.exists(p) for p in self._files(g)):
                        try:
                            atime = os.path.getmtime(self._lock_path(g))
                        except OSError:
                            atime = 0.0
                        candidates.append((atime, g))
                for _, g in sorted(candidates):
                    if usage + needed <= self.cache_limit:
                        break
                    lock = FileLock(self._lock_path(g))
                    if not lock.try_acquire():  # open somewhere, or being downloaded
                        continue
                    try:
                        for path in self._files(g):
                            usage -= _remove(path)
                        self.stats["evictions"] += 1
                    finally:
                        lock.release()
                if usage + needed > self.cache_limit and not self._warned_full:
                    self._warned_full = True
                    warnings.warn(f"cache_limit={self.cache_limit} bytes is exceeded ({usage + needed} bytes) because "
                                  f"the shards in the cache are in use or being downloaded; raise cache_limit to at "
                                  f"least a few shards per DataLoader worker", RuntimeWarning, stacklevel=3)
            self._reserve(preparing, needed)

    def _reserve(self, g: int, nbytes: int) -> None:
        """Records (or with 0 clears) shard `g`'s reservation in its lock file; the caller holds
        the shard's exclusive lock."""
        path = self._lock_path(g)
        if nbytes:
            with open(path, "r+b") as f:
                f.write(str(nbytes).encode())
                f.truncate()
        elif os.path.exists(path) and os.path.getsize(path):
            os.truncate(path, 0)

    # ------------------------------------------------------------------ opening

    def reader(self, g: int) -> ShardReader:
        """An open reader of shard ``g`` (downloaded first if needed). While open, the shard is
        protected from eviction by any process."""
        with self._mutex:
            item = self._open.get(g)
            if item is not None:
                self._open.move_to_end(g)
                return item[0]
        stream = self._stream(g)
        entry = self.shards[g].entry
        # Cached files and a local compressed shard's raw copy are disposable: whoever frees
        # disk may delete them at any time, so one that vanishes before it is open is remade.
        remakable = not stream.is_local or entry.zip_data is not None
        pending = self._pending.pop(g, None)
        if pending is not None:
            try:
                pending.result()  # re-raises the download's error
            except FileNotFoundError:
                if not remakable:
                    raise
        for attempt in range(3):
            path, lock = self._prepare_locked(g)
            try:
                reader = ShardReader(path, entry, schema=self.schema(self.shards[g].stream),
                                     allow_unsafe_types=self.allow_unsafe_types)
                break
            except FileNotFoundError:
                if lock is not None:
                    lock.release()
                if not remakable or attempt == 2:
                    raise
            except BaseException:
                if lock is not None:
                    lock.release()
                raise
        with self._mutex:
            self._open[g] = (reader, lock)
            while len(self._open) > self._max_open():
                _, (old, old_lock) = self._open.popitem(last=False)
                old.close()
                if old_lock is not None:
                    old_lock.release()
        return reader

    def _prepare_locked(self, g: int) -> tuple[str, FileLock | None]:
        """Prepares shard ``g`` and, for a cached stream, takes its shared lock (which keeps
        other processes from evicting it) once the file is known to be there."""
        entry = self.shards[g].entry
        while True:
            path = self.prepare(g)
            if self._stream(g).is_local:
                return path, None
            lock = FileLock(self._lock_path(g), shared=True)
            lock.acquire()
            if _has(path, entry.raw_data.bytes):
                _touch(self._lock_path(g))
                return path, lock
            lock.release()  # evicted between prepare and lock

    def _footprint(self, g: int) -> int:
        entry = self.shards[g].entry
        return entry.raw_data.bytes + (entry.zip_data.bytes if entry.zip_data is not None else 0)

    def _prefetch_budget(self) -> int | None:
        """Bytes this process may have downloaded ahead of use: with a ``cache_limit``, half of
        it shared by the processes that use the cache at once; the other half holds the shards
        in use. Prefetching more than the cache holds would evict prefetched shards before they
        are read (thrashing)."""
        if self.cache_limit is None:
            return None
        return self.cache_limit // (2 * loading_processes())

    def _max_open(self) -> int:
        """Shards this process keeps open: ``max_open``, but with a ``cache_limit`` no more than
        this process's share of the half of the cache that holds shards in use (open shards
        cannot be evicted, so more would push the cache over its limit)."""
        if self._open_limit is None:
            limit = self.max_open
            cached = [self._footprint(g) for g in range(len(self.shards)) if not self._stream(g).is_local]
            if self.cache_limit is not None and cached:
                limit = max(1, min(limit, self.cache_limit // (2 * loading_processes() * max(cached))))
            self._open_limit = limit
        return self._open_limit

    def prefetch(self, shard_ids: Sequence[int]) -> None:
        """Starts preparing these shards in the background (downloads, decompression), in the
        order given (the order of use), as far as the prefetch budget allows."""
        budget = self._prefetch_budget()
        held = sum(self._footprint(g) for g in self._pending) if budget is not None else 0
        for g in shard_ids:
            if g in self._pending or g in self._open or _has(self.raw_path(g), self.shards[g].entry.raw_data.bytes):
                continue
            if budget is not None:
                cost = self._footprint(g)
                if held and held + cost > budget:
                    break
                held += cost
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.download_threads, thread_name_prefix="mds-prefetch")
            self._pending[g] = self._executor.submit(self.prepare, g)

    def cancel_prefetch(self) -> None:
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()

    def close(self) -> None:
        """Closes every open shard and stops background work."""
        self.cancel_prefetch()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        with self._mutex:
            for reader, lock in self._open.values():
                reader.close()
                if lock is not None:
                    lock.release()
            self._open.clear()

    # ------------------------------------------------------------------ schemas

    def schema(self, s: int, natural: bool = False) -> ReadSchema:
        """How stream ``s``'s columns are read into Arrow: with their logical types and nulls, or
        (``natural``) with the types of their encodings (what the reference's values collate to)."""
        key = (s, natural)
        cached = self._schemas.get(key)
        if cached is not None:
            return cached
        stream = self.streams[s]
        index = stream.index
        if not index.shards:
            raise MDSSchemaError(f"{stream.local_dir}: the dataset has no shards")
        first = index.shards[0]
        infos = {}
        dynamic = any(e.dynamic_ndarray for e in first.encodings)
        if dynamic and (natural or index.fields is None):
            offset = sum(len(st.index.shards) for st in self.streams[:s])
            nonempty = np.flatnonzero(index.samples_per_shard)
            if nonempty.size:
                g = offset + int(nonempty[0])
                for attempt in range(3):
                    try:
                        reader = ShardReader(self.prepare(g), self.shards[g].entry, allow_unsafe_types=False)
                        break
                    except FileNotFoundError:  # deleted between prepare and open (see reader())
                        if attempt == 2 or (stream.is_local and self.shards[g].entry.zip_data is None):
                            raise
                try:
                    infos = first_sample_ndarray_infos(reader)
                finally:
                    reader.close()
        if natural:
            schema = ReadSchema.build(first.column_names, first.encodings, None, None, infos, index.source)
        else:
            schema = ReadSchema.build(first.column_names, first.encodings, index.fields, index.null_mask, infos,
                                      index.source)
        self._schemas[key] = schema
        return schema

"""`Stream`: one dataset of a `StreamingDataset`, where it lives and how much of it an epoch takes.

A stream is either *local* (``remote`` is None or the same directory as ``local``: the files are
the dataset itself and are never deleted) or *cached* (``remote`` is a URL or another directory:
``local`` is a cache that shards are downloaded into and may be evicted from).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from typing import Any

from .errors import MDSConfigError
from .format.index import INDEX_BASENAME, Index, load_index, parse_index
from .index_cache import load_index_shared
from .locks import FileLock
from .storage import RemoteStore, is_remote, join_url, local_path, write_file_atomic

__all__ = ["LOCK_DIR", "Stream", "default_cache_dir", "remote_identity"]

# How long a freshly downloaded index.json is reused by other processes of the same node (ranks
# constructing their datasets together) instead of being downloaded again.
INDEX_REUSE_SECONDS = 60.0

# Lock files and other bookkeeping of a cache directory (shared with cache.py).
LOCK_DIR = ".mds-locks"


def _stamp(stamp: str) -> tuple[str | None, float]:
    """Where the cached index was fetched from (None if unknown), and when (the stamp file
    records the remote's identity; its mtime is the time of the download)."""
    try:
        with open(stamp, "rb") as f:
            return f.read().decode("utf-8", "replace"), os.path.getmtime(stamp)
    except OSError:
        return None, 0.0


def _endpoint(storage_options: dict[str, Any] | None) -> str:
    """The endpoint that `storage_options` point at, if they name one (S3-compatible servers)."""
    options = storage_options or {}
    client = options.get("client_kwargs") or {}
    return str(client.get("endpoint_url") or options.get("endpoint_url") or "")


def remote_identity(remote: str, storage_options: dict[str, Any] | None = None) -> str:
    """What identifies a remote dataset across processes: the URL (a local directory as its real
    path) and the endpoint, e.g. two S3-compatible servers with the same bucket names."""
    if is_remote(remote):
        return remote.rstrip("/") + "\0" + (_endpoint(storage_options) or os.environ.get("AWS_ENDPOINT_URL", ""))
    return os.path.realpath(local_path(remote))


def default_cache_dir(remote: str, storage_options: dict[str, Any] | None = None) -> str:
    """The local cache of `remote` when none is given: one directory per remote (and endpoint)
    under the system temporary directory. Several jobs may share it safely: downloads are locked
    and atomic, and eviction never takes a shard that a process has open."""
    digest = hashlib.blake2s(remote_identity(remote, storage_options).encode("utf-8"), digest_size=16).hexdigest()
    return os.path.join(tempfile.gettempdir(), "mds-loader", "cache", digest)


def _same_dir(a: str, b: str) -> bool:
    if is_remote(a) or is_remote(b):
        return a.rstrip("/") == b.rstrip("/")
    return os.path.realpath(local_path(a)) == os.path.realpath(local_path(b))


class Stream:
    """One MDS dataset in a `StreamingDataset`, with the reference's arguments.

    Args:
        remote: where the dataset lives: an fsspec URL (``s3://bucket/path``, ``gs://``, ``hf://``,
            ...) or a directory. None for a dataset that is only local.
        local: the local directory: the dataset itself when ``remote`` is None, otherwise the
            cache that shards are downloaded to (default: a per-remote directory under the
            system temporary directory).
        split: a subdirectory of both.
        proportion: relative weight of this stream in an epoch (all streams or none use it).
        repeat: how many times each sample is seen per epoch (may be fractional).
        choose: how many samples of this stream an epoch takes.
        download_retry: total attempts per download (default: the dataset's).
        download_timeout: seconds one download attempt may take (default: the dataset's).
        validate_hash: hash algorithm to check downloaded shards with (default: the dataset's).
        keep_zip: keep compressed shards after decompressing them (default: the dataset's).
        storage_options: fsspec options of the remote filesystem (credentials, endpoint, ...).

    At most one of ``proportion``, ``repeat`` and ``choose`` may be given.
    """

    def __init__(
        self,
        *,
        remote: str | os.PathLike | None = None,
        local: str | os.PathLike | None = None,
        split: str | None = None,
        proportion: float | None = None,
        repeat: float | None = None,
        choose: int | None = None,
        download_retry: int | None = None,
        download_timeout: float | None = None,
        validate_hash: str | None = None,
        keep_zip: bool | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        if remote is None and local is None:
            raise MDSConfigError("a Stream needs `remote`, `local` or both")
        if sum(x is not None for x in (proportion, repeat, choose)) > 1:
            raise MDSConfigError("At most one of `proportion`, `repeat`, and `choose` may be specified; the others are derived")
        for name, value in (("proportion", proportion), ("repeat", repeat), ("choose", choose)):
            if value is not None and value < 0:
                raise MDSConfigError(f"`{name}` must be non-negative, got {value}")
        if choose is not None and int(choose) != choose:
            raise MDSConfigError(f"`choose` must be an integer, got {choose}")
        self.remote = None if remote is None else os.fspath(remote)
        self.local = None if local is None else os.fspath(local)
        self.split = split
        self.proportion = proportion
        self.repeat = repeat
        self.choose = choose
        self.download_retry = download_retry
        self.download_timeout = download_timeout
        self.validate_hash = validate_hash
        self.keep_zip = keep_zip
        self.storage_options = storage_options
        self._index: Index | None = None

    def __repr__(self) -> str:
        return f"Stream(remote={self.remote!r}, local={self.local!r}, split={self.split!r})"

    # ------------------------------------------------------------------ resolved locations

    @property
    def is_local(self) -> bool:
        """Whether the local directory is the dataset itself (never evicted) rather than a cache."""
        return self.remote is None or (self.local is not None and _same_dir(self.remote, self.local))

    @property
    def local_dir(self) -> str:
        """The local directory holding (or caching) this stream's files."""
        if self.local is not None:
            base = local_path(self.local)
        else:
            assert self.remote is not None
            base = default_cache_dir(self.remote, self.storage_options)
        return os.path.join(base, self.split) if self.split else base

    @property
    def remote_url(self) -> str | None:
        """The remote directory (with the split), or None for a local stream."""
        if self.is_local:
            return None
        assert self.remote is not None
        return join_url(self.remote, self.split)

    def apply_defaults(self, *, download_retry: int, download_timeout: float | None, validate_hash: str | None,
                       keep_zip: bool) -> None:
        """Takes the dataset's values for the per-download settings left unset."""
        if self.download_retry is None:
            self.download_retry = download_retry
        if self.download_timeout is None:
            self.download_timeout = download_timeout
        if self.validate_hash is None:
            self.validate_hash = validate_hash
        if self.keep_zip is None:
            self.keep_zip = keep_zip

    def store(self) -> RemoteStore | None:
        """The remote directory as a store, or None for a local stream."""
        url = self.remote_url
        if url is None:
            return None
        return RemoteStore(url, retry=self.download_retry if self.download_retry is not None else 2,
                           timeout=self.download_timeout, storage_options=self.storage_options)

    # ------------------------------------------------------------------ index

    @property
    def index(self) -> Index:
        """The stream's parsed ``index.json`` (fetched by :meth:`load_index`)."""
        if self._index is None:
            self._index = self.load_index()
        return self._index

    def load_index(self) -> Index:
        """Reads ``index.json``; for a cached stream, first downloads it into the cache.

        Several processes of one node share one download: the copy is taken under a lock, and a
        copy that was fetched from the same remote less than a minute ago is reused (the ranks and
        jobs that start together download it once). When the remote index changed, cached shards
        whose entries changed are deleted, so a rewritten dataset is never read from stale files.

        Raises:
            FileNotFoundError: no dataset there (no ``index.json``).
            MDSIndexError: ``index.json`` is malformed.
            TimeoutError, OSError: the download failed every attempt.
        """
        local_dir = self.local_dir
        store = self.store()
        if store is None:
            if not os.path.isdir(local_dir):
                raise FileNotFoundError(f"{local_dir}: the dataset directory does not exist")
            if not os.path.isfile(os.path.join(local_dir, INDEX_BASENAME)):
                raise FileNotFoundError(f"{local_dir}: no {INDEX_BASENAME} there; it is not an MDS dataset")
            self._index = load_index_shared(local_dir)
            return self._index
        path = os.path.join(local_dir, INDEX_BASENAME)
        stamp = os.path.join(local_dir, LOCK_DIR, "index.source")
        identity = remote_identity(store.url, self.storage_options)
        os.makedirs(local_dir, exist_ok=True)
        with FileLock(os.path.join(local_dir, LOCK_DIR, "index.lock")):
            source, fetched = _stamp(stamp)
            have = os.path.isfile(path)
            if not (have and source == identity and time.time() - fetched < INDEX_REUSE_SECONDS):
                try:
                    data = store.read_bytes(INDEX_BASENAME)
                except FileNotFoundError as e:
                    raise FileNotFoundError(f"{e}; is {store.url} an MDS dataset (check remote and split)?") from None
                new = parse_index_bytes(data, join_url(store.url, INDEX_BASENAME))
                if have:
                    old = None
                    if source in (None, identity):  # files cached from another remote are all dropped
                        try:
                            old = load_index(local_dir)
                        except Exception:  # noqa: BLE001 - a corrupt local copy is simply replaced
                            pass
                    _drop_changed_shards(local_dir, old, new)
                write_file_atomic(path, lambda f: f.write(data))
                write_file_atomic(stamp, lambda f: f.write(identity.encode("utf-8")))
        self._index = load_index_shared(local_dir)
        return self._index

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)


def parse_index_bytes(data: bytes, source: str) -> Index:
    """Parses the bytes of an ``index.json`` (validating it) before it replaces a cached copy."""
    import json

    from .errors import MDSIndexError

    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise MDSIndexError(f"{source}: not valid JSON ({e}); the file is corrupt or incomplete") from None
    return parse_index(obj, source)


def _drop_changed_shards(local_dir: str, old: Index | None, new: Index) -> None:
    """Deletes cached files whose index entry differs between two versions of a dataset (every
    file the new index names, when the old index is unreadable)."""
    fresh = {}
    for shard in new.shards:
        for info in (shard.raw_data, shard.zip_data):
            if info is not None:
                fresh[info.basename] = (info.bytes, tuple(sorted(info.hashes.items())))
    if old is None:
        stale = list(fresh)
    else:
        stale = [info.basename for shard in old.shards for info in (shard.raw_data, shard.zip_data)
                 if info is not None and fresh.get(info.basename) != (info.bytes, tuple(sorted(info.hashes.items())))]
    for basename in stale:
        try:
            os.remove(os.path.join(local_dir, *basename.split("/")))
        except FileNotFoundError:
            pass

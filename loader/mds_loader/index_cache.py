"""A parsed ``index.json`` shared by the processes of a node, in compact form.

Parsing and validating a large index is slow in Python (100,000 shards: about 3 s, mostly
``json`` and per-entry checks), and every rank and DataLoader worker of a node would pay it. The
first process to load an index stores its validated entries as a :class:`ShardTable` (arrays, no
pickle) in ``<tmp>/mds-loader/indexes/<digest of the file's bytes>.npz``, published by atomic
rename; the others read the file's bytes, hash them and load the table instead of parsing. The
name is the content's digest, so an index that changes gets a new file and a stale one is never
read. Only files owned by this user are trusted (they hold file names that are not checked
again); files unused for a week are removed when a new one is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
import zipfile

import numpy as np

from .format.index import INDEX_BASENAME, Index, decode_index_json, index_with_schema, parse_index
from .format.shard_table import ShardTable

__all__ = ["cache_dir", "load_index_shared"]

log = logging.getLogger(__name__)

#: Indexes smaller than this parse in milliseconds: they are not cached.
_MIN_BYTES = 256 << 10
#: Bumped whenever the table's arrays change meaning.
_FORMAT = 1
_UNUSED_SECONDS = 7 * 24 * 3600


def cache_dir() -> str:
    """The directory of this host's cached indexes."""
    return os.path.join(tempfile.gettempdir(), "mds-loader", "indexes")


def load_index_shared(directory: str) -> Index:
    """``load_index(directory)``, through this node's cache of large indexes.

    Raises:
        FileNotFoundError: no index file.
        MDSIndexError: not JSON, or malformed.
    """
    path = os.path.join(directory, INDEX_BASENAME)
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < _MIN_BYTES:
        return parse_index(decode_index_json(data, path), path)
    digest = hashlib.blake2b(data, digest_size=20, person=b"mds-index%d" % _FORMAT).hexdigest()
    cached = os.path.join(cache_dir(), digest + ".npz")
    loaded = _load(cached)
    if loaded is not None:
        table, spark_mds = loaded
        return index_with_schema(table, spark_mds, path)
    index = parse_index(decode_index_json(data, path), path)
    try:
        _store(cached, index)
    except OSError as exc:  # a full or read-only temporary directory: every process parses
        log.debug("could not cache the parsed %s in %s: %s", path, cached, exc)
    return index


def _load(path: str) -> tuple[ShardTable, dict | None] | None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    if info.st_uid != os.geteuid() or info.st_mode & 0o022:
        log.debug("ignoring %s: not owned by this user, or writable by others", path)
        return None
    try:
        with np.load(path, allow_pickle=False) as arrays:
            loaded = {name: arrays[name] for name in arrays.files}
        spark_mds = json.loads(loaded.pop("spark_mds").tobytes().decode("utf-8"))
        table = ShardTable.from_arrays(loaded)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:  # damaged: parse instead
        log.debug("ignoring the unreadable cached index %s: %s", path, exc)
        return None
    try:
        os.utime(path)  # in use: not swept
    except OSError:
        pass
    return table, spark_mds


def _store(path: str, index: Index) -> None:
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    table = ShardTable.of(index.shards)  # (a parsed index: its entries are a list)
    arrays = table.to_arrays()
    arrays["spark_mds"] = np.frombuffer(json.dumps(index.spark_mds).encode("utf-8"), np.uint8)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    _sweep_unused(directory)


def _sweep_unused(directory: str) -> None:
    now = time.time()
    for name in os.listdir(directory):
        entry = os.path.join(directory, name)
        try:
            if now - os.stat(entry).st_mtime > _UNUSED_SECONDS:
                os.unlink(entry)
        except OSError:
            pass

"""The shard entries of a validated ``index.json`` in columnar form.

An index of 100,000 shards is 100,000 entries that nearly all share their columns, compression
and hash names; only the counts, sizes, file names and digests differ. :class:`ShardTable` keeps
those as arrays and string blobs, and the shared part once per distinct value (a *group*). It is
a read-only sequence of :class:`~.index.ShardEntry`, built on access, and it saves to and loads
from plain arrays (no pickle), which is how :mod:`mds_loader.index_cache` shares a parsed index
between the processes of a node. Only validated entries go in: nothing here checks them again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

import numpy as np
from numpy.typing import NDArray

from .index import FileInfo, ShardEntry

__all__ = ["ShardTable"]

#: The entry keys shared by most shards of a dataset: stored once per distinct combination.
_GROUP_KEYS = ("column_encodings", "column_names", "column_sizes", "compression", "format", "hashes",
               "size_limit", "version")


class _Strings:
    """Strings as one UTF-8 blob and their end offsets."""

    def __init__(self, blob: NDArray[np.uint8], ends: NDArray[np.int64]) -> None:
        self.blob, self.ends = blob, ends

    @classmethod
    def of(cls, texts: Iterable[str]) -> _Strings:
        encoded = [t.encode("utf-8") for t in texts]
        ends = np.cumsum([len(b) for b in encoded], dtype=np.int64)
        return cls(np.frombuffer(b"".join(encoded), np.uint8).copy(), ends)

    def __getitem__(self, i: int) -> str:
        start = int(self.ends[i - 1]) if i else 0
        return self.blob[start:int(self.ends[i])].tobytes().decode("utf-8")


def _hashes_text(hashes: dict[str, str]) -> str:
    # Algorithm names and hex digests hold neither "=" nor "\n" in practice, but any string may:
    # JSON keeps them exact.
    return json.dumps(hashes, separators=(",", ":")) if hashes else ""


class ShardTable(Sequence[ShardEntry]):
    """A read-only sequence of validated shard entries, stored column by column.

    Use :meth:`of` to build one from entries, :meth:`to_arrays` / :meth:`from_arrays` to save and
    load it. :attr:`samples`, :attr:`raw_bytes` and :attr:`zip_bytes` (-1 where a shard has no
    compressed file) are per-shard arrays.
    """

    def __init__(self, groups: list[dict[str, Any]], group_of: NDArray[np.int32], samples: NDArray[np.int64],
                 raw_bytes: NDArray[np.int64], zip_bytes: NDArray[np.int64], names: _Strings,
                 hashes: _Strings) -> None:
        self._groups = groups
        self._group_of = group_of
        self.samples = samples
        self.raw_bytes = raw_bytes
        self.zip_bytes = zip_bytes  # -1: no zip_data
        self._names = names  # raw basename of shard i at 2i, zip basename (or "") at 2i + 1
        self._hashes = hashes  # the same, for the files' hashes
        self._built: dict[int, ShardEntry] = {}

    @classmethod
    def of(cls, entries: Sequence[ShardEntry]) -> ShardTable:
        """The table of `entries` (already validated)."""
        groups: list[dict[str, Any]] = []
        known: dict[tuple[Any, ...], int] = {}
        group_of = np.empty(len(entries), np.int32)
        names: list[str] = []
        hashes: list[str] = []
        for i, e in enumerate(entries):
            key = (tuple(e.column_encodings), tuple(e.column_names), tuple(e.column_sizes), e.compression, e.format,
                   tuple(e.hashes), e.size_limit, e.version)
            group_of[i] = known.setdefault(key, len(groups))
            if group_of[i] == len(groups):
                groups.append({k: getattr(e, k) for k in _GROUP_KEYS})
            names += [e.raw_data.basename, e.zip_data.basename if e.zip_data else ""]
            hashes += [_hashes_text(e.raw_data.hashes), _hashes_text(e.zip_data.hashes) if e.zip_data else ""]
        return cls(groups, group_of,
                   np.array([e.samples for e in entries], np.int64),
                   np.array([e.raw_data.bytes for e in entries], np.int64),
                   np.array([e.zip_data.bytes if e.zip_data else -1 for e in entries], np.int64),
                   _Strings.of(names), _Strings.of(hashes))

    def to_arrays(self) -> dict[str, NDArray[Any]]:
        """The table as named plain arrays (for ``np.savez``; :meth:`from_arrays` reverses it)."""
        groups = json.dumps(self._groups).encode("utf-8")
        return {"groups": np.frombuffer(groups, np.uint8), "group_of": self._group_of, "samples": self.samples,
                "raw_bytes": self.raw_bytes, "zip_bytes": self.zip_bytes, "names": self._names.blob,
                "name_ends": self._names.ends, "hashes": self._hashes.blob, "hash_ends": self._hashes.ends}

    @classmethod
    def from_arrays(cls, arrays: Any) -> ShardTable:
        """The table that :meth:`to_arrays` gave (a mapping of names to arrays, e.g. ``np.load``'s)."""
        groups = json.loads(np.asarray(arrays["groups"], np.uint8).tobytes().decode("utf-8"))
        return cls(groups, arrays["group_of"], arrays["samples"], arrays["raw_bytes"], arrays["zip_bytes"],
                   _Strings(arrays["names"], arrays["name_ends"]), _Strings(arrays["hashes"], arrays["hash_ends"]))

    @property
    def num_groups(self) -> int:
        """How many distinct combinations of columns, compression and hash names the shards have."""
        return len(self._groups)

    def __len__(self) -> int:
        return len(self.samples)

    @overload
    def __getitem__(self, i: int) -> ShardEntry: ...

    @overload
    def __getitem__(self, i: slice) -> list[ShardEntry]: ...

    def __getitem__(self, i: int | slice) -> ShardEntry | list[ShardEntry]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"shard {i} out of range ({n} shards)")
        i %= n
        entry = self._built.get(i)
        if entry is None:
            entry = self._built[i] = self._build(i)
        return entry

    def __iter__(self) -> Iterator[ShardEntry]:
        return (self[i] for i in range(len(self)))

    def _build(self, i: int) -> ShardEntry:
        group = self._groups[int(self._group_of[i])]
        raw = FileInfo(self._names[2 * i], int(self.raw_bytes[i]), self._file_hashes(2 * i))
        zipped = None
        if self.zip_bytes[i] >= 0:
            zipped = FileInfo(self._names[2 * i + 1], int(self.zip_bytes[i]), self._file_hashes(2 * i + 1))
        return ShardEntry(list(group["column_encodings"]), list(group["column_names"]), list(group["column_sizes"]),
                          group["compression"], list(group["hashes"]), raw, int(self.samples[i]),
                          group["size_limit"], zipped, group["format"], group["version"])

    def _file_hashes(self, k: int) -> dict[str, str]:
        text = self._hashes[k]
        return json.loads(text) if text else {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_built": {}}

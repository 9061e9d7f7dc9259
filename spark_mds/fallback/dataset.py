"""Reading an MDS dataset's index and shard files through a :class:`~.storage.Storage`: the
index as the write protocol needs it (its bytes for the optimistic check), and the shards through
``mds_loader``'s shard-access layer (:class:`mds_loader.format.ShardFiles`), which writes nothing
into the dataset directory (it may be read-only, shared or remote)."""

from __future__ import annotations

from dataclasses import dataclass

from mds_loader.format import Index, ShardFiles, parse_index
from mds_loader.format.dataset import ndarray_infos as dataset_ndarray_infos
from mds_loader.format.index import INDEX_BASENAME, decode_index_json
from mds_loader.format.schema import NdarrayInfo
from mds_loader.storage import Storage

__all__ = ["IndexSnapshot", "read_index", "index_where", "check_same_columns", "ndarray_infos", "shard_files"]


@dataclass(frozen=True)
class IndexSnapshot:
    """``index.json`` as read at one moment: its bytes (for the optimistic check of docs/format.md
    §6), its JSON object (whose unknown top-level keys a write keeps) and the parsed index."""

    data: bytes | None
    obj: dict | None
    index: Index | None

    @property
    def exists(self) -> bool:
        """Whether the path holds a dataset (an ``index.json``)."""
        return self.data is not None


def read_index(store: Storage) -> IndexSnapshot:
    """Reads and validates the dataset's ``index.json`` (absent: an empty snapshot).

    Raises:
        MDSIndexError: the file is not JSON or not a valid index, naming it.
    """
    try:
        data = store.read_bytes(INDEX_BASENAME)
    except FileNotFoundError:
        return IndexSnapshot(None, None, None)
    where = f"{store.location}/{INDEX_BASENAME}"
    obj = decode_index_json(data, where)
    return IndexSnapshot(data, obj, parse_index(obj, where))


def shard_files(store: Storage, validate_hash: str | None = None) -> ShardFiles:
    """The dataset's shard files, read through ``mds_loader``'s one shard-access layer (size and
    hash checks, bounded decompression, nothing written)."""
    return ShardFiles(store, validate_hash=validate_hash)


def check_same_columns(index: Index) -> None:
    """Every shard of a dataset must have the same columns and encodings (docs/format.md §1).

    Raises:
        MDSSchemaError: naming the first differing shard.
    """
    index.require_same_columns("every shard of a dataset must have the same columns")


def ndarray_infos(store: Storage, index: Index) -> dict[str, NdarrayInfo]:
    """Dtype and depth of each dynamic ``ndarray`` column (see ``mds_loader.format.dataset.ndarray_infos``)."""
    return dataset_ndarray_infos(shard_files(store), index)


def index_where(store: Storage) -> str:
    """The index file's location, for messages."""
    return f"{store.location}/{INDEX_BASENAME}"

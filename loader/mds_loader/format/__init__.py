"""The MDS format core: encodings, compression, hashes, index.json, shard files, and the
readers and writers built on them (docs/format.md)."""

from .compression import Codec, compressions, get_codec
from .encodings import Encoding, encoding_names, is_encoding, parse_encoding
from .hashing import get_hash, hash_names, is_hash
from .index import FileInfo, Index, ShardEntry, load_index, parse_index
from .dataset import MDSDataset, open_dataset, read_table
from .reader import ReadColumn, ReadSchema, ShardReader
from .shard_files import ShardFiles
from .schema import NULL_MASK, Field
from .writer import Destination, MDSWriter, ShardSink, TableWriter, open_destination, write_table
from .write_options import WriteOptions

__all__ = [
    "Codec",
    "Encoding",
    "Field",
    "FileInfo",
    "Index",
    "Destination",
    "MDSDataset",
    "MDSWriter",
    "NULL_MASK",
    "ReadColumn",
    "ReadSchema",
    "ShardEntry",
    "ShardFiles",
    "ShardReader",
    "ShardSink",
    "TableWriter",
    "WriteOptions",
    "compressions",
    "encoding_names",
    "get_codec",
    "get_hash",
    "hash_names",
    "is_encoding",
    "is_hash",
    "load_index",
    "open_dataset",
    "open_destination",
    "parse_encoding",
    "parse_index",
    "read_table",
    "write_table",
]

"""mds-loader: read and write Mosaic Data Shard (MDS) datasets through Arrow, and stream them into
PyTorch training with the deterministic, resumable sample order of mosaicml-streaming."""

from .errors import (
    MDSChecksumError,
    MDSConfigError,
    MDSEncodingError,
    MDSError,
    MDSFormatError,
    MDSIndexError,
    MDSPathError,
    MDSSchemaError,
    MDSUnsafeError,
)
from .format import MDSDataset, MDSWriter, open_dataset, read_table, write_table
from .stream import Stream
from .dataset import StreamingDataset
from .dataloader import StreamingDataLoader

__version__ = "0.1.0"

__all__ = [
    "MDSChecksumError",
    "MDSConfigError",
    "MDSDataset",
    "MDSEncodingError",
    "MDSError",
    "MDSFormatError",
    "MDSIndexError",
    "MDSPathError",
    "MDSSchemaError",
    "MDSUnsafeError",
    "MDSWriter",
    "Stream",
    "StreamingDataLoader",
    "StreamingDataset",
    "open_dataset",
    "read_table",
    "write_table",
]

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

# The training classes import torch (~1 s): loaded on first use, so that the `mds` CLI and the
# format API start fast.
_LAZY = {"Stream": ".stream", "StreamingDataset": ".dataset", "StreamingDataLoader": ".dataloader",
         "ImageDecode": ".images"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

__version__ = "0.1.0"

__all__ = [
    "ImageDecode",
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

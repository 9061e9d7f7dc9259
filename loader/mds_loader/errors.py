"""Errors raised by mds_loader.

Every error is an :class:`MDSError`. Each one also derives from the built-in exception that
mosaicml-streaming raises in the same situation (``ValueError`` for bad data and bad arguments,
``TypeError`` for an unsupported column encoding), so code written against the reference keeps
catching what it caught before.

Messages name the file, the shard, the column or the value concerned and, where there is one,
say what to do about it.

::

    MDSError
    ├── MDSFormatError        corrupt or malformed data (shard file, sample payload)
    │   ├── MDSIndexError     malformed index.json (bad keys, types, counts, version)
    │   │   └── MDSPathError  a path in index.json that would leave the dataset directory
    │   └── MDSChecksumError  a file whose hash differs from the one in index.json
    ├── MDSSchemaError        unsupported type or encoding, schema mismatch, value that does not fit
    │   └── MDSEncodingError  unknown or malformed encoding string (also a TypeError)
    ├── MDSUnsafeError        pickle (``pkl``) data without ``allow_unsafe_types=True``
    └── MDSConfigError        invalid argument (compression, hashes, size_limit, ...)
"""

from __future__ import annotations

__all__ = [
    "MDSError",
    "MDSFormatError",
    "MDSIndexError",
    "MDSPathError",
    "MDSChecksumError",
    "MDSSchemaError",
    "MDSEncodingError",
    "MDSUnsafeError",
    "MDSConfigError",
]


class MDSError(Exception):
    """Base class of every error raised by mds_loader."""


class MDSFormatError(MDSError, ValueError):
    """The data on disk is corrupt or malformed: a truncated shard, offsets past the end of the
    file, a sample whose column sizes do not add up, a payload that does not decode."""


class MDSIndexError(MDSFormatError):
    """``index.json`` is malformed: not JSON, unknown version, missing or extra keys in a shard
    entry, wrong types, impossible counts or sizes."""


class MDSPathError(MDSIndexError):
    """A file name in ``index.json`` is not a safe relative path inside the dataset directory
    (``..`` components, absolute paths, backslashes, drive letters, URLs)."""


class MDSChecksumError(MDSFormatError):
    """A file's hash differs from the one recorded in ``index.json``."""


class MDSSchemaError(MDSError, ValueError):
    """A type or encoding is not supported, schemas do not match, or a value does not fit its
    column's encoding."""


class MDSEncodingError(MDSSchemaError, TypeError):
    """An encoding string is unknown or malformed (mosaicml-streaming raises ``TypeError``)."""


class MDSUnsafeError(MDSError, ValueError):
    """A ``pkl`` column would be unpickled without ``allow_unsafe_types=True``."""


class MDSConfigError(MDSError, ValueError):
    """An argument is invalid: compression name or level, hash names, ``size_limit``, ..."""

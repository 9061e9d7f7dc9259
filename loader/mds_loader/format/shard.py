"""The binary layout of a raw MDS shard file (docs/reference-format.md §1.3).

::

    u32 N                          number of samples
    u32 offsets[N + 1]             absolute byte offsets of the samples; offsets[N] == file size
    config JSON                    json.dumps(config, sort_keys=True); never read back
    samples                        sample i is bytes offsets[i] .. offsets[i+1]

and each sample is ``[u32 size of each variable-size column][column payloads in column order]``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import MDSConfigError, MDSFormatError

__all__ = ["shard_config", "config_bytes", "build_shard", "parse_shard_header", "MAX_SHARD_BYTES"]

#: Sample offsets are u32, so a raw shard file cannot reach 4 GiB.
MAX_SHARD_BYTES = (1 << 32) - 1


def shard_config(
    column_names: Sequence[str],
    column_encodings: Sequence[str],
    column_sizes: Sequence[int | None],
    compression: str | None,
    hashes: Sequence[str],
    size_limit: int | None,
) -> dict[str, Any]:
    """The configuration part of a shard entry, which is also the shard's embedded config."""
    return {
        "column_encodings": list(column_encodings),
        "column_names": list(column_names),
        "column_sizes": list(column_sizes),
        "compression": compression,
        "format": "mds",
        "hashes": list(hashes),
        "size_limit": size_limit,
        "version": 2,
    }


def config_bytes(config: dict[str, Any]) -> bytes:
    """The config JSON embedded in every shard, exactly as the reference writes it."""
    return json.dumps(config, sort_keys=True).encode("utf-8")


def build_shard(config: bytes, sample_sizes: np.ndarray, data: Sequence[Any]) -> bytes:
    """Builds a raw shard file.

    Args:
        config: the embedded config JSON (:func:`config_bytes`).
        sample_sizes: byte size of each sample (int64 array).
        data: buffers whose concatenation is the samples' bytes, in order.

    Raises:
        MDSConfigError: the shard would reach 4 GiB (its offsets are u32).
    """
    n = len(sample_sizes)
    head = 4 + 4 * (n + 1) + len(config)
    offsets = np.empty(n + 1, np.int64)
    offsets[0] = head
    np.cumsum(sample_sizes, out=offsets[1:])
    offsets[1:] += head
    if offsets[-1] > MAX_SHARD_BYTES:
        raise MDSConfigError(
            f"a shard would be {int(offsets[-1])} bytes, but shard offsets are 32-bit: set size_limit below 4 GiB"
        )
    parts = [np.array([n], "<u4").tobytes(), offsets.astype("<u4").tobytes(), config, *data]
    return b"".join(parts)


def parse_shard_header(buf: np.ndarray, path: str, expected_samples: int | None = None) -> np.ndarray:
    """Validates the header of a raw shard and returns its N+1 sample offsets (int64).

    Args:
        buf: the whole file as a uint8 array.
        path: the file name, for messages.
        expected_samples: the sample count from index.json, if known.

    Raises:
        MDSFormatError: the header is inconsistent with the file: too short, a sample count that
            does not fit the file, offsets that decrease, point into the header or past the end, or
            a last offset that is not the file size.
    """
    size = len(buf)
    if size < 8:
        raise MDSFormatError(f"{path}: {size} bytes is too short for a shard header; the file is truncated")
    n = int(buf[:4].view("<u4")[0])
    if expected_samples is not None and n != expected_samples:
        raise MDSFormatError(f"{path}: the shard header says {n} samples, index.json says {expected_samples}")
    end = 4 + 4 * (n + 1)
    if end > size:
        raise MDSFormatError(f"{path}: a header of {n} samples needs {end} bytes, the file has {size}; the file is truncated or corrupt")
    offsets = buf[4:end].view("<u4").astype(np.int64)
    if offsets[0] < end:
        raise MDSFormatError(f"{path}: the first sample offset {int(offsets[0])} points into the header")
    if n and np.any(offsets[1:] < offsets[:-1]):
        bad = int(np.argmax(offsets[1:] < offsets[:-1]))
        raise MDSFormatError(f"{path}: sample offsets decrease at sample {bad}; the file is corrupt")
    if offsets[-1] != size:
        raise MDSFormatError(
            f"{path}: the last sample offset is {int(offsets[-1])} but the file has {size} bytes; the file "
            f"is truncated or corrupt"
        )
    return offsets

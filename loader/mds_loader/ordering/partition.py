"""Partitioning an epoch's sample positions over nodes, ranks, DataLoader workers and batches.

Reproduces `get_partitions` of mosaicml-streaming 0.13.0 (docs/ordering.md §4.7) exactly, for the `orig` and
`relaxed` algorithms. The output is an int64 array shaped
``(physical nodes, ranks per node, workers per rank, batches per worker, batch size)`` holding
positions ``0..num_samples-1`` (the "big" ids of the epoch, before shuffling) and ``-1`` padding.

Why it is elastically deterministic (§4.7): every global batch is a contiguous slice of one
canonical sequence ``seq`` that only depends on ``num_samples`` and ``num_canonical_nodes`` (plus
padding when canonical < physical nodes), so resuming is "drop the first ``drop_first`` entries".
"""

from __future__ import annotations

import logging
import warnings
from typing import Optional

import numpy as np
from numpy.typing import NDArray

from .shuffle import index_dtype

__all__ = [
    "PARTITION_ALGOS",
    "get_partitions",
    "get_partitions_orig",
    "get_partitions_relaxed",
]

logger = logging.getLogger(__name__)

PARTITION_ALGOS = ("orig", "relaxed")


def _require_positive(**values: int) -> None:
    for name, value in values.items():
        if int(value) != value or value < 1:
            raise ValueError(f"`{name}` must be a positive integer, but got: {value!r}.")


def _canonical_matrix(num_samples: int, num_canonical_nodes: int,
                      num_physical_nodes: int, dtype: type = np.int64) -> NDArray[np.int64]:
    """The (canonical nodes, padded samples per canonical node) id matrix of §4.7 step 3-4."""
    n, c, p = num_samples, num_canonical_nodes, num_physical_nodes
    per_node = -(-n // c)  # ceil(n / c)
    ratio = p // c if c < p else 0
    # When canonical nodes are fewer than physical ones, each canonical row is split over `ratio`
    # physical nodes, so its length must be a multiple of `ratio`.
    pad = (-per_node) % ratio if ratio else 0
    padded = per_node + pad

    if n > c or (n == c and c >= p):
        rows = np.arange(c, dtype=np.int64)[:, None]
        starts = rows * n // c
        stops = (rows + 1) * n // c
        ids = np.empty((c, padded), dtype)
        ids[...] = np.arange(padded, dtype=dtype)[None, :]
        ids += starts.astype(dtype)
        if per_node > 0:
            # A short row repeats its last real sample to reach `per_node` entries.
            ids[:, per_node - 1] -= (stops[:, 0] - starts[:, 0] < per_node)
        if pad:
            # The reference copies the window [padded-2*pad-ratio+1, padded-pad-ratio+1) into the
            # pad columns using negative indices; when that window starts before column 0 its
            # slice is too short and numpy refuses the assignment, so the reference raises.
            begin = padded - 2 * pad - ratio + 1
            if begin < 0:
                raise ValueError(
                    f"Cannot pad {n} samples over {c} canonical nodes for {p} physical nodes: each "
                    f"canonical node holds {per_node} samples, too few to fill {pad} padding "
                    f"samples per node (the reference implementation fails here too). Use more "
                    f"samples or set num_canonical_nodes to a multiple of the physical nodes.")
            ids[:, per_node:] = ids[:, begin:begin + pad]
        return ids

    # Tiny case (§4.7 step 4): fewer samples than canonical nodes; fill row-major with repeats.
    if n <= 0:
        raise ValueError(f"Cannot partition {n} samples: there must be at least one sample.")
    warnings.warn(f"Trying to partition {n} samples over {c} canonical nodes. This will result in "
                  f"many samples being repeated, and depending on your batching method, batches "
                  f"being completely dropped. Check if your dataset has the expected number of "
                  f"samples, and consider decreasing the number of canonical nodes.")
    return (np.arange(c * padded, dtype=np.int64) % n).astype(dtype).reshape(c, padded)


def get_partitions_orig(num_samples: int,
                        num_canonical_nodes: int,
                        num_physical_nodes: int,
                        ranks_per_node: int,
                        workers_per_rank: int,
                        batch_size: int,
                        drop_first: int = 0,
                        initial_physical_nodes: Optional[int] = None,
                        dtype: type = np.int64) -> NDArray[np.int64]:
    """The `orig` partition (docs/ordering.md §4.7). `initial_physical_nodes` is accepted and ignored.

    Requires canonical and physical node counts to divide one another. `drop_first` is rounded
    down to a multiple of `num_physical_nodes` (with a warning), as the reference does.
    """
    del initial_physical_nodes
    _require_positive(num_canonical_nodes=num_canonical_nodes,
                      num_physical_nodes=num_physical_nodes, ranks_per_node=ranks_per_node,
                      workers_per_rank=workers_per_rank, batch_size=batch_size)
    c, p, r, w, b = (int(num_canonical_nodes), int(num_physical_nodes), int(ranks_per_node),
                     int(workers_per_rank), int(batch_size))
    n, drop = int(num_samples), int(drop_first)
    if n < 0 or drop < 0:
        raise ValueError(f"`num_samples` ({n}) and `drop_first` ({drop}) must be non-negative.")
    if (c < p and p % c) or (p < c and c % p):
        raise ValueError(
            f"Either canonical or physical nodes must be evenly divisible by the other, otherwise "
            f"striping slices of shards over nodes may lead to each node downloading all shards "
            f"(got num_canonical_nodes={c}, num_physical_nodes={p}).")
    if drop % p:
        logger.warning("`drop_first` (%d) was not divisible by `num_physical_nodes` (%d). Rounding "
                       "it down to make it divisible.", drop, p)
        drop -= drop % p

    # Interleave canonical nodes (column-major read), drop what was already seen, then deal the
    # sequence to physical nodes round-robin: node q gets seq[m*p + q].
    seq = _canonical_matrix(n, c, p, dtype).T.ravel()[drop:]
    nodes = seq.reshape(-1, p).T  # (p, L), a strided view
    per_node = nodes.shape[1]

    # Every rank of a node needs the same count: repeat a few samples near the node's end.
    overflow = per_node % r
    if overflow:
        under = r - overflow
        if r + under - 1 <= per_node:
            extra = nodes[:, per_node - r - under + 1:per_node - r + 1]
        else:
            warnings.warn(f"Attempting to partition {per_node} samples per physical node over "
                          f"{r} gpus. This will result in many samples being repeated, and "
                          f"depending on your batching method, batches being completely dropped. "
                          f"Check if your dataset has the expected number of samples.")
            extra = np.concatenate([np.tile(nodes, under // per_node),
                                    nodes[:, :under % per_node]], axis=1)
        nodes = np.concatenate([nodes, extra], axis=1)
    per_rank = nodes.shape[1] // r

    # Rank j of a node takes every r-th sample; each rank's list is padded with -1 to whole
    # rounds of (workers x batch) and dealt to workers in batch-size chunks, round-robin (the
    # way a DataLoader pulls batches from its workers). One copy into the padded output; the
    # result is a strided view of it, as in the reference.
    chunk = w * b
    rounds = -(-per_rank // chunk)
    out = np.empty((p, r, rounds * chunk), dtype)
    out[:, :, :per_rank] = nodes.reshape(p, per_rank, r).transpose(0, 2, 1)
    out[:, :, per_rank:] = -1
    return out.reshape(p, r, rounds, w, b).transpose(0, 1, 3, 2, 4)


def get_partitions_relaxed(num_samples: int,
                           num_canonical_nodes: int,
                           num_physical_nodes: int,
                           ranks_per_node: int,
                           workers_per_rank: int,
                           batch_size: int,
                           drop_first: int = 0,
                           initial_physical_nodes: Optional[int] = None,
                           dtype: type = np.int64) -> NDArray[np.int64]:
    """The `relaxed` partition (docs/ordering.md §4.7): `orig` whenever the node counts divide, otherwise the
    partition of the initial run (`initial_physical_nodes`, same global batch) re-dealt to the
    current nodes. Assumes `ranks_per_node` is unchanged since the initial run."""
    _require_positive(num_canonical_nodes=num_canonical_nodes,
                      num_physical_nodes=num_physical_nodes, ranks_per_node=ranks_per_node,
                      workers_per_rank=workers_per_rank, batch_size=batch_size)
    c, p = int(num_canonical_nodes), int(num_physical_nodes)
    if initial_physical_nodes is None or (p <= c and c % p == 0) or (p > c and p % c == 0):
        return get_partitions_orig(num_samples, c, p, ranks_per_node, workers_per_rank,
                                   batch_size, drop_first, dtype=dtype)
    _require_positive(initial_physical_nodes=initial_physical_nodes)
    r, w, b = int(ranks_per_node), int(workers_per_rank), int(batch_size)
    global_batch = p * r * b
    initial_devices = int(initial_physical_nodes) * r
    if global_batch % initial_devices:
        raise ValueError(
            f"A global batch size of {global_batch} is not evenly divisible by the initial total "
            f"number of devices of {initial_devices}. Make sure that when using the `relaxed` "
            f"partitioning algorithm, the global batch size does not change during resumption of "
            f"training.")
    initial = get_partitions_orig(num_samples, c, int(initial_physical_nodes), r, w,
                                  global_batch // initial_devices, drop_first, dtype=dtype)
    # Traversal order of the initial run: (batch, worker, node, rank, sample) ...
    steps = initial.transpose(3, 2, 0, 1, 4).ravel()
    # ... re-read as the current world's traversal order.
    return steps.reshape(-1, w, p, r, b).transpose(2, 3, 1, 0, 4)


def get_partitions(algo: str,
                   num_samples: int,
                   num_canonical_nodes: int,
                   num_physical_nodes: int,
                   ranks_per_node: int,
                   workers_per_rank: int,
                   batch_size: int,
                   drop_first: int = 0,
                   initial_physical_nodes: Optional[int] = None,
                   *,
                   compact: bool = False) -> NDArray[np.int64]:
    """Partition `num_samples` epoch positions over nodes, ranks, workers and batches.

    Args:
        algo: ``'orig'`` or ``'relaxed'`` (the reference's default).
        num_samples: Epoch size (number of positions to partition).
        num_canonical_nodes: NCN; fixes the global order independently of the physical world.
        num_physical_nodes, ranks_per_node, workers_per_rank: The (parallel) world.
        batch_size: Per-device batch size.
        drop_first: Positions already consumed this epoch (``sample_in_epoch`` of a resume).
        initial_physical_nodes: Node count of the initial run (from a state dict), for `relaxed`.
        compact: int32 positions when they fit (half the memory), else int64.

    Returns:
        int64 (or, ``compact``, int32) array ``(nodes, ranks, workers, batches per worker, batch size)``, ``-1`` = padding
        (a strided view of a fresh buffer, like the reference's; use ``np.ascontiguousarray``
        if a contiguous copy is needed).

    Raises:
        ValueError: unknown algorithm, non-dividing node counts, resuming past the epoch's end
            (``drop_first > num_samples + repeated samples``), or a world the reference cannot
            partition either.
    """
    if algo not in PARTITION_ALGOS:
        raise ValueError(f"Unknown partition algorithm {algo!r}; expected one of "
                         f"{', '.join(PARTITION_ALGOS)}.")
    world_size = int(ranks_per_node) * int(num_physical_nodes)
    if world_size < 1:
        raise ValueError(f"The world must have at least one device, got {num_physical_nodes} "
                         f"nodes x {ranks_per_node} ranks.")
    repeated = world_size - (int(num_samples) % world_size)
    if int(num_samples) + repeated < int(drop_first):
        raise ValueError(f"Resuming further into the dataset ({drop_first}) than it has samples "
                         f"({num_samples}).")
    fn = get_partitions_orig if algo == "orig" else get_partitions_relaxed
    return fn(num_samples, num_canonical_nodes, num_physical_nodes, ranks_per_node,
              workers_per_rank, batch_size, drop_first, initial_physical_nodes,
              dtype=index_dtype(int(num_samples) + world_size, compact))

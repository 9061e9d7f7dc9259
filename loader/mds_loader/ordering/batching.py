"""An epoch's full sample arrangement for the four batching methods of mosaicml-streaming 0.13.0
(`generate_work`, docs/ordering.md §4.6 and §4.10), from plain inputs.

The result is the int64 array ``(nodes, ranks per node, workers per rank, batches per worker,
batch size)`` of GLOBAL sample ids (indices into the concatenation of all streams' shards), with
``-1`` padding, exactly as the reference's local leader builds it. A DataLoader worker iterates
``epoch[node, rank_of_node, worker_of_rank].ravel()`` skipping ``-1`` (see :mod:`.world`).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Optional, Sequence, Union

import numpy as np
from numpy.typing import NDArray

from .partition import get_partitions
from .sampling import WeightedStream, resample_streams
from .shuffle import get_shuffle

__all__ = ["BATCHING_METHODS", "generate_work"]

logger = logging.getLogger(__name__)

BATCHING_METHODS = ("random", "stratified", "per_stream", "device_per_stream")

# ``(num_nodes, ranks_per_node, workers_per_rank)`` or an object with those attributes.
WorldLike = Union[tuple[int, int, int], Any]


def _world_shape(world: WorldLike) -> tuple[int, int, int]:
    if isinstance(world, tuple):
        nodes, ranks, workers = world
    else:
        nodes, ranks, workers = (world.num_nodes, world.ranks_per_node,  # type: ignore
                                 world.workers_per_rank)  # type: ignore
    for name, value in (("num_nodes", nodes), ("ranks_per_node", ranks),
                        ("workers_per_rank", workers)):
        if int(value) != value or value < 1:
            raise ValueError(f"`{name}` must be a positive integer, but got: {value!r}.")
    return int(nodes), int(ranks), int(workers)


def _to_sample_ids(positions: NDArray[np.int64],
                   lookup: Optional[NDArray[np.int64]]) -> NDArray[np.int64]:
    """``lookup[x]`` for every position ``x >= 0``, keeping ``-1`` (``lookup=None``: identity),
    in place in `positions` (a fresh array from the partition), a chunk at a time, to keep the
    peak memory at two ids per sample. The result is C-contiguous."""
    out = np.ascontiguousarray(positions)
    if lookup is None or not lookup.size:
        return out
    flat = out.reshape(-1)
    step = 1 << 22
    for start in range(0, flat.size, step):
        part = flat[start:start + step]
        padding = part < 0
        np.maximum(part, 0, out=part)
        part[...] = lookup[part]
        part[padding] = -1
    return out


def _lookup(units: NDArray[np.int64], small_per_big: Optional[NDArray[np.int64]], a: dict,
            block: Optional[int]) -> Optional[NDArray[np.int64]]:
    """Epoch position -> global sample id: the shuffle (when on) composed with the resampling
    (None: no stream was resampled); None when that is the identity."""
    if not a["shuffle"]:
        return small_per_big
    perm = get_shuffle(a["shuffle_algo"], units, a["ncn"], a["seed"], a["epoch"], block,
                       compact=a["compact"])
    return perm if small_per_big is None else small_per_big[perm]


def _is_identity(ids: NDArray[np.int64]) -> bool:
    """Whether ``ids`` is ``arange(len(ids))`` (checked in chunks to bound the temporaries)."""
    if not ids.size or ids[0] != 0 or ids[-1] != ids.size - 1:
        return False
    step = 1 << 20
    for start in range(0, ids.size, step):
        part = ids[start:start + step]
        if not np.array_equal(part, np.arange(start, start + part.size)):
            return False
    return True


def _inorder(partition: NDArray[np.int64]) -> NDArray[np.int64]:
    """A partition flattened in traversal (step) order: batch, worker, node, rank, sample."""
    return partition.transpose(3, 2, 0, 1, 4).ravel()


def _full_rows(rows: NDArray[np.int64]) -> int:
    return int(np.count_nonzero(rows.min(axis=1) >= 0)) if rows.shape[0] else 0


def _finish(global_batches: NDArray[np.int64], sample_in_epoch: int, nodes: int, ranks: int,
            workers: int, batch_size: int, method: str) -> NDArray[np.int64]:
    """Drop whole global batches already seen, pad with -1 batches to whole worker rounds, and
    reshape from step order to (nodes, ranks, workers, batches, batch)."""
    global_batch = batch_size * ranks * nodes
    if sample_in_epoch % global_batch:
        warnings.warn(f"Because of the `{method}` batching method, resumption may only occur on a "
                      f"sample that is a multiple of the current global batch size of "
                      f"{global_batch}. Resuming training after the most recently finished "
                      f"global batch.")
    global_batches = global_batches[sample_in_epoch // global_batch:]
    needed = nodes * ranks * workers * batch_size
    if global_batches.size % needed:
        pad_rows = (needed - global_batches.size % needed) // global_batch
        global_batches = np.concatenate(
            [global_batches, np.full((pad_rows, global_batch), -1, global_batches.dtype)])
    return np.ascontiguousarray(
        global_batches.reshape(-1, workers, nodes, ranks, batch_size).transpose(2, 3, 1, 0, 4))


def generate_work(batching_method: str,
                  streams: Sequence[WeightedStream],
                  *,
                  epoch: int,
                  sample_in_epoch: int,
                  world: WorldLike,
                  batch_size: int,
                  num_canonical_nodes: int,
                  seed: int = 9176,
                  shuffle: bool = False,
                  shuffle_algo: str = "py1e",
                  shuffle_block_size: Optional[int] = None,
                  partition_algo: str = "relaxed",
                  sampling_method: str = "balanced",
                  sampling_granularity: int = 1,
                  initial_physical_nodes: Optional[int] = None,
                  compact: bool = False) -> NDArray[np.int64]:
    """The epoch's sample ids for every node/rank/worker (``generate_work`` of the reference).

    Args:
        batching_method: ``random`` (default of the reference), ``stratified``, ``per_stream`` or
            ``device_per_stream``.
        streams: All streams with resolved weights (:func:`.sampling.apply_weights`), in order.
        epoch: The epoch being generated.
        sample_in_epoch: Samples already consumed this epoch (from a state dict; 0 otherwise).
            ``random`` drops at sample granularity; the others drop whole global batches.
        world: ``(num_nodes, ranks_per_node, workers_per_rank)`` of the PARALLEL (replicated)
            world, or an object with those attributes (e.g. :class:`.world.World`).
            ``workers_per_rank`` is the DataLoader's ``num_workers``, or 1 when it is 0.
        batch_size: Per-device batch size.
        num_canonical_nodes: Resolved NCN (:func:`.world.resolve_num_canonical_nodes`).
        seed: ``shuffle_seed``.
        shuffle: Whether to shuffle.
        shuffle_algo: ``naive``, ``py1s``, ``py2s``, ``py1br`` or ``py1e``.
        shuffle_block_size: Resolved block size (required when `shuffle`).
        partition_algo: ``relaxed`` or ``orig``.
        sampling_method: ``balanced`` or ``fixed``.
        sampling_granularity: Picks' size when sampling partial streams.
        initial_physical_nodes: From a loaded state dict (sticky for the rest of the run).
        compact: int32 ids, and int32 temporaries, where every id and position fits (half the
            memory), else int64.

    Returns:
        int64 (or, ``compact``, int32) array ``(nodes, ranks, workers, batches per worker, batch
        size)``; ``-1`` = padding.
    """
    if batching_method not in BATCHING_METHODS:
        raise ValueError(f"Invalid batching method: {batching_method}. Must be one of `random`, "
                         f"`stratified`, `per_stream`, or `device_per_stream`.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or \
            batch_size < 1:
        raise ValueError(f"Please pass `batch_size` to StreamingDataset: the per-device batch "
                         f"size, a positive integer (got {batch_size!r}). It is necessary for "
                         f"deterministic resumption.")
    if num_canonical_nodes is None:
        raise ValueError("`num_canonical_nodes` can never be None; resolve it first "
                         "(resolve_num_canonical_nodes).")
    if shuffle and (isinstance(shuffle_block_size, bool) or
                    not isinstance(shuffle_block_size, (int, np.integer))):
        raise TypeError(f"`shuffle_block_size` must be an integer when shuffling; got "
                        f"{shuffle_block_size!r} (resolve it with resolve_shuffle_block_size).")
    if not streams:
        raise ValueError("At least one stream is required.")
    if sample_in_epoch < 0:
        raise ValueError(f"`sample_in_epoch` must be non-negative, got {sample_in_epoch}.")
    nodes, ranks, workers = _world_shape(world)
    args = dict(epoch=int(epoch), sample_in_epoch=int(sample_in_epoch), nodes=nodes, ranks=ranks,
                workers=workers, batch_size=int(batch_size), ncn=int(num_canonical_nodes),
                seed=int(seed), shuffle=bool(shuffle), shuffle_algo=shuffle_algo,
                block=None if shuffle_block_size is None else int(shuffle_block_size),
                partition_algo=partition_algo, sampling_method=sampling_method,
                granularity=int(sampling_granularity), initial_nodes=initial_physical_nodes,
                compact=bool(compact) and sum(s.num_samples for s in streams) < 1 << 31)
    fn = {"random": _random, "stratified": _stratified, "per_stream": _per_stream,
          "device_per_stream": _device_per_stream}[batching_method]
    return fn(list(streams), **args)


def _resample(streams, stream_id, a) -> tuple[NDArray[np.int64], Optional[NDArray[np.int64]], int]:
    """``(units, small_per_big, epoch size)`` of :func:`.sampling.resample_streams`, with None for
    a ``small_per_big`` that is the identity (no epoch-sized array of ids then)."""
    if stream_id is None and all(s.choose == s.num_samples for s in streams):
        # Nothing resampled (resample_streams draws nothing then): one unit per non-empty shard,
        # and the epoch's positions are the global sample ids.
        units = np.concatenate([s.samples_per_shard[s.samples_per_shard > 0] for s in streams])
        return units, None, int(units.sum())
    units, small_per_big = resample_streams(streams, a["seed"], a["epoch"], shuffle=a["shuffle"],
                                            sampling_method=a["sampling_method"],
                                            sampling_granularity=a["granularity"],
                                            stream_id=stream_id)
    return units, None if _is_identity(small_per_big) else small_per_big, small_per_big.size


def _random(streams, **a) -> NDArray[np.int64]:
    # §4.6: resample all streams together, partition the epoch's positions, shuffle the
    # positions (node- and shard-aware), map to global sample ids.
    # The lookup is built before the partition so that fewer epoch-sized arrays coexist.
    units, small_per_big, size = _resample(streams, None, a)
    lookup = _lookup(units, small_per_big, a, a["block"])
    del small_per_big
    positions = get_partitions(a["partition_algo"], size, a["ncn"], a["nodes"], a["ranks"],
                               a["workers"], a["batch_size"], a["sample_in_epoch"],
                               a["initial_nodes"], compact=a["compact"])
    return _to_sample_ids(positions, lookup)


def _stream_partition(streams, stream_id, a, nodes, batch_size, zero_block_error=False
                      ) -> NDArray[np.int64]:
    """One stream's own partition (drop_first=0), shuffled with a block proportional to the
    stream's share, mapped to global sample ids."""
    units, small_per_big, size = _resample(streams, stream_id, a)
    positions = get_partitions(a["partition_algo"], size, a["ncn"], nodes,
                               a["ranks"], a["workers"], batch_size, 0, a["initial_nodes"],
                               compact=a["compact"])
    block = None
    if a["shuffle"]:
        block = int(a["block"] * streams[stream_id].proportion)
        if zero_block_error and block == 0:
            raise ValueError(f"Samples from stream {stream_id} are not being used. Please either "
                             f"increase the `shuffle_block_size` from {a['block']}, or increase "
                             f"the stream proportion from {streams[stream_id].proportion}.")
    return _to_sample_ids(positions, _lookup(units, small_per_big, a, block))


def _stratified(streams, **a) -> NDArray[np.int64]:
    # §4.10: every global batch holds the same number of samples of each stream.
    global_batch = a["batch_size"] * a["ranks"] * a["nodes"]
    proportions = [s.proportion for s in streams]
    portions = np.array([int(p * global_batch) for p in proportions], np.int64)
    # Each stream is partitioned over ONE node with batch 1, so its traversal order does not
    # depend on the physical world.
    partitions = [_stream_partition(streams, i, a, 1, 1) for i in range(len(streams))]
    missing = global_batch - int(portions.sum())
    if missing:
        # Leftover slots go to the streams closest to earning one more (same argsort as the
        # reference, so ties resolve identically).
        leftover = global_batch * np.array(proportions) - portions
        portions[np.flip(np.argsort(leftover))[:missing]] += 1
    for index, portion in enumerate(portions.tolist()):
        if portion <= 0:
            raise ValueError(f"Number of samples for stream {index} is {portion} because the "
                             f"portion of this stream in the global batch, which is of size "
                             f"{global_batch}, is too low. Please increase the global batch size "
                             f"or increase the proportion of total samples that come from stream "
                             f"{index}.")
    parts, fewest = [], None
    for index, (partition, portion) in enumerate(zip(partitions, portions.tolist())):
        flat = _inorder(partition)
        if flat.size % portion:
            flat = np.concatenate([flat, np.full(portion - flat.size % portion, -1, flat.dtype)])
        rows = flat.reshape(-1, portion)
        full = _full_rows(rows)
        if full != rows.shape[0]:
            logger.warning("Because of the `stratified` batching method, some batches with an "
                           "inadequate number of samples from stream with index %d are being "
                           "dropped.", index)
        fewest = full if fewest is None else min(fewest, full)
        parts.append(rows)
    global_batches = np.concatenate([rows[:fewest] for rows in parts], axis=1)
    return _finish(global_batches, a["sample_in_epoch"], a["nodes"], a["ranks"], a["workers"],
                   a["batch_size"], "stratified")


def _shuffled_origins(counts: Sequence[int], rng: np.random.Generator) -> NDArray[np.int64]:
    """Indices that interleave per-stream batch lists in a shuffled order of stream labels, each
    stream's batches keeping their own order."""
    origins = np.repeat(np.arange(len(counts)), counts)
    rng.shuffle(origins)
    index = np.empty(origins.size, np.int64)
    offset = 0
    for stream, count in enumerate(counts):
        index[origins == stream] = offset + np.arange(count)
        offset += count
    return index


def _origin_rng(a) -> np.random.Generator:
    changes = a["shuffle"] and a["sampling_method"] == "balanced"
    return np.random.default_rng(a["seed"] + a["epoch"] if changes else a["seed"])


def _per_stream(streams, **a) -> NDArray[np.int64]:
    # §4.10: each global batch comes from a single stream; partial global batches are dropped.
    global_batch = a["batch_size"] * a["ranks"] * a["nodes"]
    kept, counts = [], []
    for index in range(len(streams)):
        partition = _stream_partition(streams, index, a, a["nodes"], a["batch_size"])
        rows = _inorder(partition).reshape(-1, global_batch)
        full = _full_rows(rows)
        if full != rows.shape[0]:
            logger.warning("Because of the `per_stream` batching method, some batches with an "
                           "inadequate number of samples from stream with index %d will be "
                           "dropped.", index)
        if full <= 0:
            raise ValueError(f"Stream with index {index} does not have an adequate number of "
                             f"samples to construct a complete global batch. Training will occur "
                             f"without any samples from this stream.")
        kept.append(rows[:full])
        counts.append(full)
    global_batches = np.concatenate(kept)[_shuffled_origins(counts, _origin_rng(a))]
    return _finish(global_batches, a["sample_in_epoch"], a["nodes"], a["ranks"], a["workers"],
                   a["batch_size"], "per_stream")


def _device_per_stream(streams, **a) -> NDArray[np.int64]:
    # §4.10: each device batch comes from a single stream; streams are partitioned over the
    # canonical nodes, and each physical node takes its canonical nodes' device batches.
    ncn, nodes, ranks, batch_size = a["ncn"], a["nodes"], a["ranks"], a["batch_size"]
    if ncn % nodes:
        raise ValueError(f"For `device_per_stream` batching, num_canonical_nodes must be "
                         f"divisible by physical nodes. Got {ncn} canonical nodes and {nodes} "
                         f"physical nodes.")
    partitions = [_stream_partition(streams, i, a, ncn, 1, zero_block_error=True)
                  for i in range(len(streams))]
    per_node = ncn // nodes
    node_rows, node_counts = [], []
    for node in range(nodes):
        rows_per_stream, counts = [], []
        for index, partition in enumerate(partitions):
            flat = _inorder(partition[node * per_node:(node + 1) * per_node])
            # The reference always pads (a whole -1 batch when already divisible).
            flat = np.concatenate([flat, np.full(batch_size - flat.size % batch_size, -1,
                                                 flat.dtype)])
            rows = flat.reshape(-1, batch_size)
            full = _full_rows(rows)
            if full != rows.shape[0]:
                logger.warning("Because of the `device_per_stream` batching method, some batches "
                               "with an inadequate number of samples from stream with index %d "
                               "will be dropped.", index)
            if full <= 0:
                raise ValueError(f"Stream with index {index} does not have an adequate number of "
                                 f"samples to construct even a single device batch of size "
                                 f"{batch_size}. Training will occur without any samples from "
                                 f"this stream!")
            rows_per_stream.append(rows[:full])
            counts.append(full)
        node_rows.append(np.concatenate(rows_per_stream))
        node_counts.append(counts)

    devices = nodes * ranks
    most = max(rows.shape[0] for rows in node_rows)
    most += devices - most % devices  # always adds, even when divisible (reference behaviour)
    rng = _origin_rng(a)
    for node in range(nodes):
        rows = node_rows[node][_shuffled_origins(node_counts[node], rng)]
        node_rows[node] = np.concatenate(
            [rows, np.full((most - rows.shape[0], batch_size), -1, rows.dtype)])
    # Device batches of all nodes interleaved (node-minor), then cut into global batches.
    global_batches = np.stack(node_rows, axis=1).reshape(-1, batch_size * nodes * ranks)
    return _finish(global_batches, a["sample_in_epoch"], nodes, ranks, a["workers"], batch_size,
                   "device_per_stream")

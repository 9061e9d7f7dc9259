"""The world, defaults, resumption arithmetic and DataLoader batch order, as pure functions with the
semantics of mosaicml-streaming 0.13.0 (docs/ordering.md §4.2, §4.4, §5).

A StreamingDataset built on these:

1. at each ``__iter__`` (in every worker) calls :func:`resolve_resume` with the loaded state dict
   (if any) and ``presumed_epoch = next_epoch``, and keeps the returned NCN, seed, block size and
   ``initial_physical_nodes`` (they are sticky for the rest of the run);
2. builds the epoch with :func:`.batching.generate_work` using ``sample_in_epoch`` of that result
   as the number of samples to drop, with the parallel world whose ``workers_per_rank`` is the
   DataLoader's ``num_workers`` (1 when it is 0);
3. yields :func:`worker_sample_ids` of its own ``(node, rank_of_node, worker_of_rank)``.

The batches a rank's torch DataLoader then produces are :func:`rank_batches`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "ResumePoint",
    "World",
    "build_state_dict",
    "dataloader_batch_order",
    "epoch_length",
    "loader_num_samples",
    "rank_batches",
    "resolve_num_canonical_nodes",
    "resolve_resume",
    "replicate",
    "resolve_shuffle_block_size",
    "worker_sample_ids",
]


@dataclass(frozen=True)
class World:
    """Where a process sits: the counts are global, `worker` is the global worker id
    (``rank * workers_per_rank + worker_of_rank``). Same fields as the reference's ``World``."""

    num_nodes: int
    ranks_per_node: int
    workers_per_rank: int = 1
    worker: int = 0

    def __post_init__(self) -> None:
        for name in ("num_nodes", "ranks_per_node", "workers_per_rank"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, but got: {value!r}.")
        if not 0 <= self.worker < self.num_workers:
            raise ValueError(f"`worker` must be in [0, {self.num_workers}), got {self.worker}.")

    @classmethod
    def from_rank(cls, num_nodes: int, ranks_per_node: int, rank: int = 0,
                  workers_per_rank: int = 1, worker_of_rank: int = 0) -> "World":
        """From torch.distributed values (``WORLD_SIZE // LOCAL_WORLD_SIZE``, ``LOCAL_WORLD_SIZE``,
        ``RANK``) and the DataLoader worker info (``num_workers`` or 1, worker id)."""
        return cls(num_nodes, ranks_per_node, workers_per_rank,
                   rank * workers_per_rank + worker_of_rank)

    @property
    def node(self) -> int:
        return self.worker // (self.ranks_per_node * self.workers_per_rank)

    @property
    def rank(self) -> int:
        return self.worker // self.workers_per_rank

    @property
    def num_ranks(self) -> int:
        return self.num_nodes * self.ranks_per_node

    @property
    def rank_of_node(self) -> int:
        return self.rank % self.ranks_per_node

    @property
    def num_workers(self) -> int:
        return self.num_nodes * self.ranks_per_node * self.workers_per_rank

    @property
    def workers_per_node(self) -> int:
        return self.ranks_per_node * self.workers_per_rank

    @property
    def worker_of_node(self) -> int:
        return self.worker % self.workers_per_node

    @property
    def worker_of_rank(self) -> int:
        return self.worker % self.workers_per_rank

    @property
    def is_local_leader(self) -> bool:
        return self.worker_of_node == 0

    def with_workers(self, workers_per_rank: int, worker_of_rank: int) -> "World":
        """This rank's world seen from one DataLoader worker (the reference's
        ``detect_workers``)."""
        return World(self.num_nodes, self.ranks_per_node, workers_per_rank,
                     self.rank * workers_per_rank + worker_of_rank)

    def replicate(self, replication: int) -> "World":
        """The parallel world for `replication` consecutive ranks that see identical samples
        (docs/ordering.md §4.2): ranks and rank count are divided by `replication`; the node count becomes
        ``num_ranks // ranks_per_node`` when that divides, else 1 node holding every rank."""
        if replication <= 0:
            raise ValueError("Replication factor must be positive.")
        if self.num_ranks % replication:
            raise ValueError("World size must be divisible by your replication factor.")
        rank = self.rank // replication
        num_ranks = self.num_ranks // replication
        num_nodes = (num_ranks // self.ranks_per_node
                     if num_ranks % self.ranks_per_node == 0 else 1)
        return World(num_nodes, num_ranks // num_nodes, self.workers_per_rank,
                     rank * self.workers_per_rank + self.worker_of_rank)


def replicate(world: World, replication: int) -> World:
    """Module-level form of :meth:`World.replicate`."""
    return world.replicate(replication)


def resolve_num_canonical_nodes(num_canonical_nodes: Optional[int], shuffle_algo: str,
                                num_nodes: int) -> int:
    """NCN default (§4.4): the given value if set (0 counts as unset), else ``64 * num_nodes`` for
    ``py1s``/``py2s`` and ``num_nodes`` otherwise (parallel world's node count)."""
    if num_canonical_nodes:
        return int(num_canonical_nodes)
    return 64 * num_nodes if shuffle_algo in ("py1s", "py2s") else num_nodes


def resolve_shuffle_block_size(shuffle_block_size: Optional[int],
                               num_canonical_nodes: Optional[int]) -> int:
    """Block-size default (§4.4): ``max(4_000_000 // NCN, 1 << 18)``; ``1 << 18`` without NCN."""
    if shuffle_block_size is not None:
        return shuffle_block_size
    if num_canonical_nodes is None:
        return 1 << 18
    return max(4_000_000 // num_canonical_nodes, 1 << 18)


@dataclass(frozen=True)
class ResumePoint:
    """Outcome of the reference's ``_resume`` (§5.3): where this ``__iter__`` (or ``state_dict``)
    starts, and the settings the dataset must keep from now on."""

    epoch: int
    sample_in_epoch: int
    num_canonical_nodes: int
    shuffle_seed: int
    shuffle_block_size: int
    initial_physical_nodes: Optional[int]
    resumed: bool  # True when the state dict was applied (not missing, not stale)


def resolve_resume(state: Optional[Mapping[str, Any]],
                   presumed_epoch: int,
                   *,
                   num_canonical_nodes: Optional[int],
                   shuffle_seed: int,
                   shuffle_algo: str,
                   shuffle_block_size: Optional[int],
                   num_nodes: int,
                   initial_physical_nodes: Optional[int] = None) -> ResumePoint:
    """Resume from `state` (a loaded state dict) or start `presumed_epoch` from its beginning.

    Args:
        state: The loaded state dict, or None.
        presumed_epoch: The epoch the dataset believes comes next (its ``next_epoch``; for
            :func:`build_state_dict`, ``next_epoch - 1``).
        num_canonical_nodes, shuffle_seed, shuffle_block_size, initial_physical_nodes: The
            dataset's current values (None = unresolved).
        shuffle_algo: For the NCN default.
        num_nodes: Node count of the parallel (replicated) world.

    A state whose ``epoch`` is below `presumed_epoch` is stale and ignored. When applied, the
    state's NCN and seed replace the dataset's and its ``initial_physical_nodes`` is taken (it
    stays for later epochs). The block size resolves with the final NCN, only if still None.
    """
    if state is None or state["epoch"] < presumed_epoch:
        ncn = resolve_num_canonical_nodes(num_canonical_nodes, shuffle_algo, num_nodes)
        return ResumePoint(presumed_epoch, 0, ncn, shuffle_seed,
                           resolve_shuffle_block_size(shuffle_block_size, ncn),
                           initial_physical_nodes, False)
    ncn = state["num_canonical_nodes"]
    return ResumePoint(int(state["epoch"]), int(state["sample_in_epoch"]), ncn,
                       int(state["shuffle_seed"]),
                       resolve_shuffle_block_size(shuffle_block_size, ncn),
                       state.get("initial_physical_nodes"), True)


def build_state_dict(point: ResumePoint, num_samples: int, from_beginning: bool,
                     num_nodes: int) -> dict[str, Any]:
    """The dataset's ``state_dict(num_samples, from_beginning)`` (§5.1), given
    ``point = resolve_resume(loaded_state, next_epoch - 1, ...)`` (``next_epoch`` is 0 before
    any iteration, so a fresh dataset reports epoch -1) and the parallel world's node count."""
    return {
        "epoch": point.epoch,
        "sample_in_epoch": num_samples if from_beginning else point.sample_in_epoch + num_samples,
        "num_canonical_nodes": point.num_canonical_nodes,
        "shuffle_seed": point.shuffle_seed,
        "initial_physical_nodes": (num_nodes if point.initial_physical_nodes is None
                                   else point.initial_physical_nodes),
    }


def loader_num_samples(num_samples_yielded: int, num_ranks: int,
                       replication: Optional[int] = None) -> int:
    """``StreamingDataLoader.state_dict``'s sample count (§5.4): samples this rank's loader
    yielded this run times the (unreplicated) rank count, divided by `replication` if set."""
    num_samples = num_samples_yielded * num_ranks
    if replication is not None:
        num_samples //= replication
    return num_samples


def epoch_length(epoch_size: int, num_ranks: int) -> int:
    """``len(dataset)`` = ``ceil(epoch_size / num_ranks)`` over the parallel (replicated) ranks."""
    return math.ceil(epoch_size / num_ranks)


def worker_sample_ids(epoch_ids: NDArray[np.int64], node: int, rank_of_node: int,
                      worker_of_rank: int, *, drop_padding: bool = True) -> NDArray[np.int64]:
    """The sample ids one DataLoader worker yields, in order (the reference flattens its slice of
    the epoch and skips ``-1``). With ``drop_padding=False`` the raw slice, -1 included.

    A view of `epoch_ids` (e.g. of a node's memory-mapped order) when the padding is all at the
    end, as the partitions leave it; else a copy."""
    flat = epoch_ids[node, rank_of_node, worker_of_rank].reshape(-1)
    if not drop_padding:
        return flat
    valid = flat >= 0
    count = int(np.count_nonzero(valid))
    return flat[:count] if valid[:count].all() else flat[valid]


def dataloader_batch_order(batches_per_worker: Sequence[int]) -> list[tuple[int, int]]:
    """``(worker, batch index within that worker)`` in the order a torch DataLoader over an
    IterableDataset yields them: round-robin over workers, skipping exhausted ones."""
    order = []
    for index in range(max(batches_per_worker, default=0)):
        for worker, count in enumerate(batches_per_worker):
            if index < count:
                order.append((worker, index))
    return order


def rank_batches(epoch_ids: NDArray[np.int64], node: int, rank_of_node: int, batch_size: int,
                 *, drop_last: bool = False) -> list[NDArray[np.int64]]:
    """The sample-id batches one rank's torch DataLoader yields this epoch.

    Each worker's yielded ids (``-1`` skipped) are cut into `batch_size` batches (the last one
    partial unless `drop_last`), and the workers' batches are dealt round-robin. The epoch must
    have been generated with ``workers_per_rank = max(num_workers, 1)``; with ``num_workers=0``
    the single in-process "worker" is worker 0.
    """
    per_worker = []
    for worker in range(epoch_ids.shape[2]):
        ids = worker_sample_ids(epoch_ids, node, rank_of_node, worker)
        stop = len(ids) - len(ids) % batch_size if drop_last else len(ids)
        per_worker.append([ids[i:i + batch_size] for i in range(0, stop, batch_size)])
    return [per_worker[w][k] for w, k in dataloader_batch_order([len(b) for b in per_worker])]

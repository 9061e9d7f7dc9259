"""This process's share of its node: the ranks the launcher put on the node, the processes of the
job that load data at once, and the CPUs this process may use. Budgets that the node's loading
processes divide among themselves (decoding threads, cache prefetch) all start here."""

from __future__ import annotations

import os

__all__ = ["ranks_per_node", "loading_processes", "usable_cpus"]


def ranks_per_node() -> int:
    """The ranks on this node: the launcher's ``LOCAL_WORLD_SIZE`` (torchrun, TorchDistributor),
    1 when it is not set."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", 1) or 1))


def loading_processes() -> int:
    """The processes of this node that load data at once: this DataLoader's workers (1 outside a
    worker) times the node's ranks."""
    try:
        from torch.utils.data import get_worker_info

        info = get_worker_info()
    except ImportError:
        info = None
    return (info.num_workers if info is not None else 1) * ranks_per_node()


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity, which containers and launchers narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1

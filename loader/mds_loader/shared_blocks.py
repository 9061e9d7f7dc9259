"""Shared-memory blocks that carry decoded chunks from DataLoader workers to the training process,
reused once the training process has dropped every batch cut from them.

A worker decodes each ``"torch"`` chunk straight into a block of shared memory
(:mod:`mds_loader.format.gather`) and sends the block's handle and layout: one file descriptor
per chunk and no copy, where torch would copy every tensor into a new segment. Fresh shared
memory costs a page fault per 4 KiB page on both sides (about 27,000 per 100,000 samples of
1.1 KB), so blocks are reused:

* the worker keeps a few blocks (:class:`BlockPool`); byte 0 of a block says whether the training
  process still uses it;
* the training process keeps its mapping of each of the worker's blocks, so torch maps a block it
  receives again to the same pages (torch looks storages up by inode), and turns a block into
  tensors whose memory keeps a guard object alive: when the last tensor, list or view of the chunk
  is gone, the guard's finalizer marks the block free. Batches a training loop keeps stay valid:
  their block is simply not reused.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from .format.gather import Layout

__all__ = ["HEADER", "BlockPool", "SharedBlock"]

HEADER = 64  # bytes before a block's payload; byte 0: 1 while the training process uses the block
_POOL = 5  # blocks per worker: prefetch_factor (2) in the queue, one being split, one or two held by the loop
_GRANULE = 1 << 20


def _new_shared(nbytes: int) -> Any:
    """A uint8 tensor of ``nbytes`` in shared memory (allocated there: nothing to copy later)."""
    import torch

    return torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(nbytes))


class BlockPool:
    """A DataLoader worker's shared-memory blocks."""

    def __init__(self, size: int = _POOL) -> None:
        self._blocks: list[Any] = [None] * size  # uint8 tensors; slot k is block k

    def take(self, nbytes: int) -> tuple[int, Any]:
        """A free block with room for ``nbytes`` after the header, marked in use: ``(slot, block)``.
        A new block replaces a free one that is too small, else the smallest one in use (the
        training process keeps that one as long as it needs it)."""
        need = HEADER + nbytes
        free_small, busy = [], []
        for slot, block in enumerate(self._blocks):
            if block is None:
                free_small.append((0, slot))
                continue
            state = block.numpy()[:1]
            if state[0] == 0 and len(block) >= need:
                state[0] = 1
                return slot, block
            (free_small if state[0] == 0 else busy).append((len(block), slot))
        _, slot = min(free_small) if free_small else min(busy)
        # Some room to spare: chunks vary in size (the first ones are small; strings vary).
        block = _new_shared(-(-(need + need // 4) // _GRANULE) * _GRANULE)
        block.numpy()[0] = 1
        self._blocks[slot] = block
        return slot, block

    def adopt(self, slot: int, block: Any) -> None:
        """Puts this process's mapping of a worker's block in ``slot`` (in the training process)."""
        self._blocks[slot] = block

    def __getstate__(self) -> dict[str, Any]:  # a worker started by spawn gets an empty pool
        return {"_blocks": [None] * len(self._blocks)}


def _release(state: np.ndarray) -> None:
    state[0] = 0


class SharedBlock:
    """A ``"torch"`` chunk in a shared-memory block (``slot`` of its worker's pool), as a worker
    sends it: pickled as the block's handle, the slot and the layout."""

    __slots__ = ("block", "layout", "slot")

    def __init__(self, block: Any, slot: int, layout: Layout) -> None:
        self.block, self.slot, self.layout = block, slot, layout

    def __reduce__(self) -> tuple:
        return SharedBlock, (self.block, self.slot, self.layout)

    def columns(self) -> dict[str, Any]:
        """The chunk's columns (in the training process): views of the block that mark it free
        when the last of them is gone."""
        from .batches import packed_torch

        # Every view of `payload` keeps the memoryview it was made from alive (numpy's base
        # chain): its finalizer runs when the last tensor of the chunk is gone.
        payload = np.frombuffer(memoryview(self.block.numpy()), np.uint8, self.layout.nbytes, HEADER)
        weakref.finalize(payload.base, _release, self.block.numpy()[:1])
        return packed_torch(payload, self.layout)

"""Shared-memory blocks that carry what DataLoader workers make to the training process, reused
once the training process has dropped every tensor cut from them.

torch sends each tensor of a worker's batch in a new shared-memory segment: one copy, a page
fault per 4 KiB on both sides, and a file-descriptor handshake (an authenticated connection to
the worker) per tensor. Here a worker puts a whole chunk (:class:`SharedBlock`: decoded straight
into the block by :mod:`mds_loader.format.gather`) or a whole collated batch
(:class:`SharedBatch`) into one block of its pool, and blocks are reused:

* the worker keeps a few blocks (:class:`BlockPool`); byte 0 of a block says whether the training
  process still uses it;
* the training process keeps its mapping of every block it received (:class:`WorkerBlocks`), so a
  block sent again is named by its slot alone: no handshake, no new mapping, no page faults.
  Workers forked for the next epoch inherit these mappings. This is safe even when the DataLoader
  drops messages (an epoch cut short with persistent workers): a worker reuses a block only once
  the training process has freed it, and it frees only blocks it has received and adopted;
* the training process turns a block into tensors whose memory keeps one guard object alive:
  when the last tensor or view is gone, the guard's finalizer marks the block free. Batches a
  training loop keeps stay valid: their block is simply not reused.
"""

from __future__ import annotations

import functools
import weakref
from typing import Any

import numpy as np

from .format.gather import Layout

__all__ = ["HEADER", "BlockPool", "SharedBatch", "SharedBlock", "WorkerBlocks"]

HEADER = 64  # bytes before a block's payload; byte 0: 1 while the training process uses the block
_POOL = 5  # blocks per worker: prefetch_factor (2) in the queue, one being split, one or two held by the loop
_GRANULE = 1 << 20


def _new_shared(nbytes: int) -> Any:
    """A uint8 tensor of ``nbytes`` in shared memory (allocated there: nothing to copy later)."""
    import torch

    return torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(nbytes))


class BlockPool:
    """One DataLoader worker's blocks, and which of them the training process maps already
    (inherited from it, or sent once)."""

    def __init__(self, size: int = _POOL) -> None:
        self._blocks: list[Any] = [None] * size  # uint8 tensors; slot k is block k
        self._known = [False] * size

    def take(self, nbytes: int) -> tuple[int, Any, bool]:
        """A free block with room for ``nbytes`` after the header, marked in use:
        ``(slot, block, known)``, ``known`` telling whether the training process maps it already
        (it will from now on). A new block replaces a free one that is too small, else the
        smallest one in use (the training process keeps that one as long as it needs it)."""
        need = HEADER + nbytes
        free_small, busy = [], []
        for slot, block in enumerate(self._blocks):
            if block is None:
                free_small.append((0, slot))
                continue
            state = block.numpy()[:1]
            if state[0] == 0 and len(block) >= need:
                state[0] = 1
                known, self._known[slot] = self._known[slot], True
                return slot, block, known
            (free_small if state[0] == 0 else busy).append((len(block), slot))
        _, slot = min(free_small) if free_small else min(busy)
        # Some room to spare: chunks and batches vary in size (the first chunks are small).
        block = _new_shared(-(-(need + need // 4) // _GRANULE) * _GRANULE)
        block.numpy()[0] = 1
        self._blocks[slot], self._known[slot] = block, True
        return slot, block, False

    def put_back(self, slot: int) -> None:
        """Frees a block taken but not sent (it will be sent with its handle next time)."""
        self._known[slot] = False
        self.block(slot).numpy()[0] = 0

    def adopt(self, slot: int, block: Any) -> None:
        """Keeps this process's mapping of a worker's block (in the training process)."""
        self._blocks[slot], self._known[slot] = block, True

    def block(self, slot: int) -> Any:
        block = self._blocks[slot]
        if block is None:
            raise RuntimeError(f"a DataLoader worker named shared block {slot}, which this process never received")
        return block

    def __getstate__(self) -> dict[str, Any]:  # a worker started by spawn gets an empty pool
        return {"_blocks": [None] * len(self._blocks), "_known": [False] * len(self._blocks)}


class WorkerBlocks:
    """The pools of every DataLoader worker of one loader, by worker id. Lives in the training
    process, which adopts each block it receives; workers forked for the next epoch inherit them
    (a worker started by spawn starts empty). With ``resend``, workers send a block's handle every
    time (the pin-memory thread opens what arrives before the loader sees it)."""

    def __init__(self, resend: bool = False) -> None:
        self.pools: dict[int, BlockPool] = {}
        self.resend = resend

    def pool(self, worker: int) -> BlockPool:
        return self.pools.setdefault(worker, BlockPool())

    def take(self, worker: int, nbytes: int) -> tuple[int, Any, Any]:
        """A block of ``worker``'s pool: ``(slot, block, handle)``, ``handle`` the block to send
        or None when the training process maps it already."""
        slot, block, known = self.pool(worker).take(nbytes)
        return slot, block, None if known and not self.resend else block

    def put_back(self, worker: int, slot: int) -> None:
        """Frees a block of ``worker``'s pool taken but not sent."""
        self.pool(worker).put_back(slot)

    def resolve(self, worker: int, slot: int, handle: Any) -> Any:
        """The block a message names (in the training process, in the order the worker sent)."""
        pool = self.pool(worker)
        if handle is None:
            return pool.block(slot)
        pool.adopt(slot, handle)
        return handle


def _release(state: np.ndarray) -> None:
    state[0] = 0


def _guarded_payload(block: Any, nbytes: int) -> np.ndarray:
    """The block's payload as a uint8 array whose views all keep one memoryview alive (numpy's
    base chain); when the last of them is gone, the block is marked free."""
    payload = np.frombuffer(memoryview(block.numpy()), np.uint8, nbytes, HEADER)
    weakref.finalize(payload.base, _release, block.numpy()[:1]).atexit = False
    return payload


class SharedBlock:
    """A ``"torch"`` chunk decoded into slot ``slot`` of its worker's pool, as the worker sends
    it: the block's handle (None when the training process maps it already) and the layout."""

    __slots__ = ("handle", "slot", "layout")

    def __init__(self, handle: Any, slot: int, layout: Layout) -> None:
        self.handle, self.slot, self.layout = handle, slot, layout

    def __reduce__(self) -> tuple:
        return SharedBlock, (self.handle, self.slot, self.layout)

    def columns(self, block: Any) -> dict[str, Any]:
        """The chunk's columns (in the training process), views of ``block``."""
        from .batches import packed_torch

        return packed_torch(_guarded_payload(block, self.layout.nbytes), self.layout)


class _Packed:
    """Where a tensor was in a packed batch: ``specs[index]``."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self) -> tuple:
        return _Packed, (self.index,)


def _packable(t: Any) -> bool:
    import torch

    return (type(t) is torch.Tensor and t.device.type == "cpu" and t.layout == torch.strided and t.is_contiguous()
            and not t.requires_grad)


_SCALARS = (str, bytes, int, float, bool, type(None))


def _map_tensors(obj: Any, fn: Any) -> Any:
    """``obj`` with each tensor (or :class:`_Packed`) ``x`` inside dicts, lists, tuples and
    named tuples replaced by ``fn(x)`` (containers of other types are left as they are, and so
    are lists and tuples that start with a string or number: a collated column of strings)."""
    import torch

    if isinstance(obj, (torch.Tensor, _Packed)):
        return fn(obj)
    kind = type(obj)
    if kind is dict:
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    if (kind is list or kind is tuple) and obj and type(obj[0]) in _SCALARS:
        return obj
    if kind is list:
        return [_map_tensors(v, fn) for v in obj]
    if kind is tuple:
        return tuple(_map_tensors(v, fn) for v in obj)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return kind(*(_map_tensors(v, fn) for v in obj))
    return obj


@functools.lru_cache(maxsize=None)
def _numpy_dtype(dtype: Any) -> np.dtype | None:
    import torch

    try:
        return torch.empty(0, dtype=dtype).numpy().dtype
    except (TypeError, RuntimeError):
        return None


class SharedBatch:
    """A batch made in DataLoader worker ``worker``, its contiguous CPU tensors copied into slot
    ``slot`` of the worker's pool, as the worker sends it: the block's handle (None when the
    training process maps it already), the batch with :class:`_Packed` in place of those tensors,
    and where each tensor lies (offset, bytes, dtype, shape)."""

    __slots__ = ("handle", "slot", "worker", "skeleton", "specs")

    def __init__(self, handle: Any, slot: int, worker: int, skeleton: Any, specs: list[tuple[int, int, Any, tuple]]) -> None:
        self.handle, self.slot, self.worker, self.skeleton, self.specs = handle, slot, worker, skeleton, specs

    def __reduce__(self) -> tuple:
        return SharedBatch, (self.handle, self.slot, self.worker, self.skeleton, self.specs)

    @classmethod
    def pack(cls, batch: Any, blocks: WorkerBlocks, worker: int) -> Any:
        """``batch`` with its tensors packed into a block of ``worker``'s pool (``batch`` itself
        when it holds no tensor that can be)."""
        tensors: list[Any] = []

        def strip(t: Any) -> Any:
            if not _packable(t):
                return t
            tensors.append(t)
            return _Packed(len(tensors) - 1)

        skeleton = _map_tensors(batch, strip)
        if not tensors:
            return batch
        specs, offset = [], 0
        for t in tensors:
            nbytes = t.numel() * t.element_size()
            specs.append((offset, nbytes, t.dtype, tuple(t.shape)))
            offset += -(-nbytes // 64) * 64
        slot, block, handle = blocks.take(worker, offset)
        payload = block[HEADER : HEADER + offset]
        for t, (start, nbytes, dtype, shape) in zip(tensors, specs):
            if nbytes:
                payload[start : start + nbytes].view(dtype).view(shape).copy_(t)
        return cls(handle, slot, worker, skeleton, specs)

    def unpack(self, block: Any) -> Any:
        """The batch (in the training process): its tensors are views of ``block``."""
        import torch

        payload = _guarded_payload(block, self.specs[-1][0] + self.specs[-1][1])

        def tensor(packed: Any) -> Any:
            if not isinstance(packed, _Packed):
                return packed
            start, nbytes, dtype, shape = self.specs[packed.index]
            as_numpy = _numpy_dtype(dtype)
            if as_numpy is None:  # (bfloat16 and other dtypes numpy lacks)
                return torch.from_numpy(payload[start : start + nbytes]).view(dtype).view(shape)
            return torch.from_numpy(payload[start : start + nbytes].view(as_numpy).reshape(shape))

        return _map_tensors(self.skeleton, tensor)

    def pin_memory(self, device: Any = None) -> Any:  # the DataLoader's pin-memory thread (resend mode)
        from torch.utils.data._utils.pin_memory import pin_memory

        return pin_memory(self.unpack(self.handle), device)

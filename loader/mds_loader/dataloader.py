"""`StreamingDataLoader`: a torch DataLoader that counts what it yielded, for mid-epoch
resumption, and decodes whole batches when it can.

When the dataset is a :class:`~mds_loader.StreamingDataset` used as is (no ``collate_fn``, no
sampler, the dataset's own ``batch_size``, and columns that collate to tensors or lists), the
loader asks the dataset for whole batches (:meth:`StreamingDataset.iter_batches`) instead of
collating one sample dict at a time. The batches are the same (same samples, same order, same
dtypes); only faster. Pass ``batch_format="arrow"`` / ``"numpy"`` / ``"polars"`` to get other
batch types.

With workers, what a worker makes (a decoded chunk of several batches, or a collated batch)
reaches the training process in one reused shared-memory block (:mod:`mds_loader.shared_blocks`)
rather than in a new segment per tensor.
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torch.utils.data._utils.collate import default_collate, default_convert
from torch.utils.data._utils.pin_memory import pin_memory

from .batches import BATCH_FORMATS, slice_batch
from .dataset import StreamingDataset
from .images import ImageDecode
from .ordering import World, loader_num_samples
from .shared_blocks import SharedBatch, SharedBlock, WorkerBlocks

__all__ = ["StreamingDataLoader"]

_DATALOADER_PARAMS = inspect.signature(DataLoader.__init__)


class _Chunk:
    """What a DataLoader worker sends in place of ``rows // batch_size`` batches: one decoded
    chunk (a :class:`SharedBlock`, or tensors that torch moves to shared memory once per chunk
    instead of once per batch), or the end of the worker's stream (``whole`` None, ``end`` True).
    After pinning, ``pinned_from`` is the shared block the pinned copy was made from."""

    __slots__ = ("worker", "whole", "rows", "end", "pinned_from")

    def __init__(self, worker: int, whole: Any, rows: int, end: bool = False, pinned_from: SharedBlock | None = None) -> None:
        self.worker, self.whole, self.rows, self.end, self.pinned_from = worker, whole, rows, end, pinned_from

    def pin_memory(self, device: Any = None) -> _Chunk:  # the DataLoader's pin-memory thread (blocks are resent)
        whole, source = self.whole, None
        if isinstance(whole, SharedBlock):
            whole, source = whole.columns(whole.handle), whole
        return _Chunk(self.worker, None if whole is None else pin_memory(whole, device), self.rows, self.end, source)


class _Batches(IterableDataset):
    """The dataset seen as an iterable of whole batches (what the DataLoader iterates in the fast
    path), or, in DataLoader workers, of :class:`_Chunk` s that the loader splits into the same
    batches in the same order. Attribute access falls through to the dataset."""

    def __init__(self, dataset: StreamingDataset, batch_format: str, batch_size: int, chunks: bool = False,
                 blocks: WorkerBlocks | None = None, decode: Mapping[str, ImageDecode] | None = None) -> None:  # fmt: skip
        self.dataset = dataset
        self.batch_format = batch_format
        self.batch_size = batch_size
        self.chunks = chunks
        self.blocks = blocks or WorkerBlocks()
        self.decode = decode

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        if not self.chunks or info is None:
            return self.dataset.iter_batches(self.batch_format, self.batch_size, decode=self.decode)
        return self._chunks(info.id)

    def _chunks(self, worker: int) -> Iterator[_Chunk]:
        size = self.batch_size
        for chunk in self.dataset.iter_chunks(self.batch_format, size, (self.blocks, worker), decode=self.decode):
            # Batches before the one holding a null go out; then the error, raised in the worker
            # as in per-batch mode (so the DataLoader reports it the same way).
            whole_rows = chunk.whole_batch_rows(size)
            if whole_rows:
                yield _Chunk(worker, chunk.whole, whole_rows)
            if chunk.error is not None:
                raise chunk.error
        yield _Chunk(worker, None, 0, end=True)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


class _SharedCollate:
    """The collate function as DataLoader workers run it: each batch's tensors leave the worker in
    one reused shared-memory block (:class:`SharedBatch`) instead of one new segment per tensor."""

    def __init__(self, collate_fn: Any, blocks: WorkerBlocks) -> None:
        self.collate_fn, self.blocks = collate_fn, blocks

    def __call__(self, data: Any) -> Any:
        batch = self.collate_fn(data)
        info = get_worker_info()
        if info is None:
            return batch
        return SharedBatch.pack(batch, self.blocks, info.id)


def _as_is(batch: Any) -> Any:
    """The collate function of whole ``"torch"`` batches: they hold tensors and lists of
    ``str``/``bytes`` already, which ``default_convert`` (DataLoader's default without a batch
    size) would return unchanged after visiting every string (half the time of an epoch)."""
    return batch


def _uses_batches(dataset: Any, args: dict[str, Any]) -> bool:
    """Whether whole-batch decoding gives exactly what per-sample loading would."""
    if not isinstance(dataset, StreamingDataset) or dataset._overridden():
        return False
    if type(dataset).__iter__ is not StreamingDataset.__iter__:
        return False
    if any(args.get(k) for k in ("collate_fn", "sampler", "batch_sampler", "shuffle", "drop_last")):
        return False
    if args.get("batch_size") is None or args["batch_size"] != dataset.batch_size:
        return False
    return "torch" in dataset.batch_formats_supported()


class StreamingDataLoader(DataLoader):
    """A ``torch.utils.data.DataLoader`` for resumable streaming (the reference's
    ``StreamingDataLoader``), with whole-batch decoding.

    Takes the arguments of ``DataLoader``, plus:

    Args:
        batch_format: ``None`` (default): per-sample dicts collated as usual, decoded in whole
            batches when that gives the same result. ``"torch"``, ``"numpy"``, ``"arrow"`` or
            ``"polars"``: always whole batches of that type (see
            :meth:`StreamingDataset.iter_batches`).
        decode: image columns to decode into one uint8 tensor per batch, each with its
            :class:`~mds_loader.ImageDecode`, for example
            ``{"image": ImageDecode(size=224, resize="random_crop", flip=True)}``. Implies whole
            batches (``"torch"`` unless `batch_format` says ``"numpy"``); the other columns are
            what ``default_collate`` makes of them.
    """

    def __init__(self, dataset: Any, *args: Any, batch_format: str | None = None,
                 decode: Mapping[str, ImageDecode] | None = None, **kwargs: Any) -> None:  # fmt: skip
        bound = _DATALOADER_PARAMS.bind(self, dataset, *args, **kwargs)
        params = dict(bound.arguments)
        params.pop("self")
        params.update(params.pop("kwargs", {}))
        if batch_format is not None and batch_format not in BATCH_FORMATS:
            raise ValueError(f"batch_format must be one of {BATCH_FORMATS}, got {batch_format!r}")
        self._streaming = dataset if isinstance(dataset, StreamingDataset) else None
        # The shared-memory blocks that carry workers' chunks or batches (see mds_loader.shared_blocks).
        self._blocks = WorkerBlocks(resend=bool(params.get("pin_memory")))
        workers = bool(params.get("num_workers"))
        batch_size = params.get("batch_size", 1)
        fast = batch_format is not None or bool(decode) or _uses_batches(dataset, params)
        chunks = False
        if fast:
            if not isinstance(dataset, StreamingDataset):
                raise TypeError(f"{'decode' if decode else 'batch_format'} needs a mds_loader.StreamingDataset")
            if decode and dataset._overridden():
                raise TypeError(f"decode= reads whole batches, which would skip {type(dataset).__name__}'s per-sample "
                                f"access (__getitem__/get_item): decode images there, or apply the transforms to "
                                f"the decoded batches")
            fmt = batch_format or "torch"
            dataset._engine.columns_for(fmt, decode)  # (a bad format, column or decode fails here)
            # With workers, each sends whole chunks (one transfer per ~8192 samples instead of one
            # per batch); __iter__ splits them into the batches, in the DataLoader's order.
            chunks = workers and params.get("in_order", True) is not False and params.get("collate_fn") is None
            params["dataset"] = _Batches(dataset, fmt, batch_size or dataset.batch_size, chunks, self._blocks, decode)
            params["batch_size"] = None
            # The collate function of each batch (DataLoader's default without a batch size is
            # default_convert); with chunks it is applied to the batches here, not to the chunks.
            convert = params.get("collate_fn") or (_as_is if fmt == "torch" else default_convert)
            if chunks or (fmt == "torch" and params.get("collate_fn") is None):
                params["collate_fn"] = _as_is
            else:
                params["collate_fn"] = convert
        elif params.get("collate_fn") is None:  # DataLoader's default
            auto = params.get("batch_sampler") is not None or batch_size is not None
            params["collate_fn"] = default_collate if auto else default_convert
        if workers and not chunks:
            params["collate_fn"] = _SharedCollate(params["collate_fn"], self._blocks)
        super().__init__(**params)
        if fast:
            # len(loader) counts batches of the real batch size; DataLoader forbids setting this
            # attribute after __init__, but it only feeds __len__ for iterable datasets.
            object.__setattr__(self, "batch_size", batch_size)
        self.batch_format = batch_format or ("torch" if fast else None)
        self.uses_batch_decoding = fast
        self._chunks = fast and chunks
        self._convert = convert if fast else None
        self.num_samples_yielded = 0

    @staticmethod
    def _get_batch_size(batch: Any) -> int:
        if isinstance(batch, dict) or hasattr(batch, "keys") and hasattr(batch, "values") and not hasattr(batch, "num_rows"):
            for value in batch.values():
                return len(value)
            raise ValueError("Batch is empty")
        if hasattr(batch, "num_rows"):  # pyarrow.RecordBatch
            return int(batch.num_rows)
        if hasattr(batch, "height"):  # polars.DataFrame
            return int(batch.height)
        if isinstance(batch, Tensor):
            return len(batch)
        return len(batch[0])

    def __iter__(self) -> Iterator[Any]:
        self.num_samples_yielded = 0
        batches = super().__iter__()
        if self._chunks:
            batches = self._unchunk(batches)
        for batch in batches:
            if isinstance(batch, SharedBatch):
                batch = batch.unpack(self._blocks.resolve(batch.worker, batch.slot, batch.handle))
            self.num_samples_yielded += self._get_batch_size(batch)
            yield batch

    def _unchunk(self, items: Iterator[Any]) -> Iterator[Any]:
        """The batches of the workers' chunks, in the order the DataLoader would have yielded them
        one by one: a batch from each worker in turn, skipping workers whose stream has ended."""
        workers: int = self.num_workers
        size = self.batch_size
        fmt, convert = self.batch_format, self._convert
        pending: list[deque] = [deque() for _ in range(workers)]  # each worker's received batches
        ended = [False] * workers
        active = list(range(workers))
        turn = 0
        while active:
            w = active[turn % len(active)]
            while not pending[w] and not ended[w]:  # receive until worker w has a batch or has ended
                chunk = next(items, None)
                if chunk is None:  # the DataLoader stopped (every worker's stream ended)
                    ended = [True] * workers
                    break
                if chunk.end:
                    ended[chunk.worker] = True
                else:
                    whole = chunk.whole
                    if isinstance(whole, SharedBlock):
                        whole = whole.columns(self._blocks.resolve(chunk.worker, whole.slot, whole.handle))
                    elif chunk.pinned_from is not None:  # (kept: the next epoch's workers inherit it)
                        self._blocks.resolve(chunk.worker, chunk.pinned_from.slot, chunk.pinned_from.handle)
                    pending[chunk.worker].extend(
                        (whole, offset, min(size, chunk.rows - offset)) for offset in range(0, chunk.rows, size))
            if pending[w]:
                whole, offset, n = pending[w].popleft()
                yield convert(slice_batch(whole, fmt, offset, n))  # type: ignore[misc]
                turn = (active.index(w) + 1) % len(active)
            else:  # worker w has no more batches: the others continue in their order
                k = active.index(w)
                active.pop(k)
                turn = k

    def state_dict(self) -> dict[str, Any] | None:
        """The dataset's resumption state after the samples this loader yielded (all ranks are
        assumed to have yielded as many), or None for other datasets."""
        if self._streaming is None:
            return None
        world: World = self._streaming._rank_world
        num_samples = loader_num_samples(self.num_samples_yielded, world.num_ranks, self._streaming.replication)
        return self._streaming.state_dict(num_samples, False)

    def load_state_dict(self, obj: dict[str, Any]) -> None:
        """Resumes the dataset from `obj` at the next iteration."""
        if self._streaming is not None:
            self._streaming.load_state_dict(obj)

    def __del__(self) -> None:
        iterator = self.__dict__.get("_iterator")
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            try:
                iterator._shutdown_workers()
            except Exception:  # noqa: BLE001 - interpreter shutdown
                pass

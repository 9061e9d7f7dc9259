"""`StreamingDataLoader`: a torch DataLoader that counts what it yielded, for mid-epoch
resumption, and decodes whole batches when it can.

When the dataset is a :class:`~mds_loader.StreamingDataset` used as is (no ``collate_fn``, no
sampler, the dataset's own ``batch_size``, and columns that collate to tensors or lists), the
loader asks the dataset for whole batches (:meth:`StreamingDataset.iter_batches`) instead of
collating one sample dict at a time. The batches are the same (same samples, same order, same
dtypes); only faster. Pass ``batch_format="arrow"`` / ``"numpy"`` / ``"polars"`` to get other
batch types.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset

from .batches import BATCH_FORMATS
from .dataset import StreamingDataset
from .ordering import World, loader_num_samples

__all__ = ["StreamingDataLoader"]

_DATALOADER_PARAMS = inspect.signature(DataLoader.__init__)


class _Batches(IterableDataset):
    """The dataset seen as an iterable of whole batches (what the DataLoader iterates in the fast
    path). Attribute access falls through to the dataset."""

    def __init__(self, dataset: StreamingDataset, batch_format: str, batch_size: int) -> None:
        self.dataset = dataset
        self.batch_format = batch_format
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[Any]:
        return self.dataset.iter_batches(self.batch_format, self.batch_size)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


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
    """

    def __init__(self, dataset: Any, *args: Any, batch_format: str | None = None, **kwargs: Any) -> None:
        bound = _DATALOADER_PARAMS.bind(self, dataset, *args, **kwargs)
        params = dict(bound.arguments)
        params.pop("self")
        params.update(params.pop("kwargs", {}))
        if batch_format is not None and batch_format not in BATCH_FORMATS:
            raise ValueError(f"batch_format must be one of {BATCH_FORMATS}, got {batch_format!r}")
        self._streaming = dataset if isinstance(dataset, StreamingDataset) else None
        batch_size = params.get("batch_size", 1)
        fast = batch_format is not None or _uses_batches(dataset, params)
        if fast:
            if not isinstance(dataset, StreamingDataset):
                raise TypeError("batch_format needs a mds_loader.StreamingDataset")
            params["dataset"] = _Batches(dataset, batch_format or "torch", batch_size or dataset.batch_size)
            params["batch_size"] = None
            if (batch_format or "torch") == "torch" and params.get("collate_fn") is None:
                params["collate_fn"] = _as_is
            super().__init__(**params)
            # len(loader) counts batches of the real batch size; DataLoader forbids setting this
            # attribute after __init__, but it only feeds __len__ for iterable datasets.
            object.__setattr__(self, "batch_size", batch_size)
        else:
            super().__init__(**params)
        self.batch_format = batch_format or ("torch" if fast else None)
        self.uses_batch_decoding = fast
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
        for batch in super().__iter__():
            self.num_samples_yielded += self._get_batch_size(batch)
            yield batch

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

"""Whole-batch decoding of a :class:`~mds_loader.StreamingDataset`'s samples.

Given a worker's sample ids (in the reference's order), the engine reads them in chunks of several
batches: grouped by shard (parts), copied straight from the shards into one block of tensors or
arrays where the columns allow (:mod:`mds_loader.format.gather`), else decoded through Arrow
(rows). ``StreamingDataset.iter_batches`` and ``StreamingDataLoader``'s workers both consume its
:class:`Chunk` s.

A chunk carries its own error: a null that ``default_collate`` could not collate is found when
the chunk is read, and the chunk says at which row the batches must stop and what to raise there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from .batches import (
    BATCH_FORMATS,
    collatable,
    interleave,
    mask_bits,
    null_rows,
    packed_numpy,
    packed_torch,
    slice_batch,
    to_numpy,
    to_torch,
)
from .cache import ShardCache
from .errors import MDSConfigError, MDSSchemaError
from .format.gather import Decoder, Payloads, Stop, decode_rows, earliest, plan_rows
from .format.reader import ReadColumn, ReadSchema, ShardRows
from .images import ImageDecode, check_decode
from .shared_blocks import HEADER, SharedBlock, WorkerBlocks
from .stream import Stream

__all__ = ["BatchEngine", "Chunk"]

# Samples decoded per call in batch iteration: large enough to amortize per-call costs, small
# enough to stay in cache-friendly memory (a few MB for typical rows). Large rows (images) are
# chunked by bytes instead: a DataLoader worker keeps a few chunk-sized shared-memory blocks.
CHUNK_SAMPLES = 8192
CHUNK_BYTES = 32 << 20


@dataclass
class Chunk:
    """Several batches' rows decoded at once.

    Attributes:
        whole: the rows in the batch format (``"polars"``: Arrow), or a :class:`SharedBlock`.
        rows: how many rows it holds.
        first_null: the first row that cannot be delivered (a null ``default_collate`` could not
            collate, an image that does not decode), or None.
        error: what to raise when the batch holding ``first_null`` is reached.
    """

    whole: Any
    rows: int
    first_null: int | None = None
    error: Exception | None = None

    def whole_batch_rows(self, size: int) -> int:
        """The rows of the whole batches before the one holding the first null (all rows if none)."""
        return self.rows if self.first_null is None else self.first_null // size * size

    def batches(self, batch_format: str, size: int) -> Iterator[Any]:
        """Its batches of ``size`` rows (zero-copy slices); raises :attr:`error` at the batch
        that holds the first null."""
        for offset in range(0, self.rows, size):
            if self.first_null is not None and self.first_null < offset + size:
                assert self.error is not None
                raise self.error
            yield slice_batch(self.whole, batch_format, offset, size)


class BatchEngine:
    """Reads sample ids of a dataset's streams as whole batches.

    Args:
        cache: the dataset's shard cache (readers, schemas, prefetching).
        streams: the dataset's streams.
        columns: the columns batches hold (None: all of the first stream's).
        locate: global sample ids -> (shard ids, rows in their shards).
    """

    def __init__(self, cache: ShardCache, streams: Sequence[Stream], columns: list[str] | None,
                 locate: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]) -> None:
        self._cache = cache
        self._streams = list(streams)
        self._columns = columns
        self._locate = locate

    # ------------------------------------------------------------------ schema

    def schema(self, natural: bool) -> tuple[list[ReadColumn], ReadSchema]:
        """The columns batches read and the streams' common read schema.

        Raises:
            MDSSchemaError: shards or streams whose columns differ (batches need one schema).
        """
        for stream in self._streams:  # one schema per stream: every shard must have its columns
            stream.index.require_same_columns("batches need the same columns in every shard: use per-sample iteration")
        schemas = [self._cache.schema(s, natural) for s in range(len(self._streams))]
        first = schemas[0]
        for s, other in enumerate(schemas[1:], 1):
            if other.arrow_schema != first.arrow_schema:
                raise MDSSchemaError(f"streams 0 and {s} have different columns or types ({first.arrow_schema} vs "
                                     f"{other.arrow_schema}); batches need one schema: use per-sample iteration")
        names = self._columns
        if names is None:
            names = [c.name for c in self._cache.schema(0).columns]
        return first.select(names), first

    def formats_supported(self, decoded: Sequence[str] = ()) -> tuple[str, ...]:
        """The batch formats the columns allow (``"torch"`` needs every column to collate like the
        reference's values do, or to be `decoded` images)."""
        columns, _ = self.schema(natural=True)
        if all(collatable(c.encoding) or c.name in decoded for c in columns):
            return BATCH_FORMATS
        return tuple(f for f in BATCH_FORMATS if f != "torch")

    def columns_for(self, batch_format: str, decode: Mapping[str, ImageDecode] | None = None
                    ) -> tuple[list[ReadColumn], bool, dict[str, ImageDecode]]:  # fmt: skip
        """The columns a batch format reads, whether with their natural (reference) types, and the
        image columns to decode (`decode`, checked).

        Raises:
            MDSSchemaError: ``"torch"`` asked of columns that do not collate to tensors, or
                `decode` asked of a column that holds no images.
            MDSConfigError: `decode` with a format other than ``"torch"`` or ``"numpy"``, or naming
                a column the batches do not hold.
        """
        natural = batch_format in ("torch", "numpy")
        if decode and not natural:
            raise MDSConfigError(f"decode= makes uint8 tensors or arrays: use batch_format='torch' or 'numpy', "
                                 f"not {batch_format!r}")
        columns, _ = self.schema(natural)
        decode = check_decode(decode, {c.name: c.encoding for c in columns})
        if batch_format == "torch" and "torch" not in self.formats_supported(list(decode)):
            bad = [c.name for c in columns if not collatable(c.encoding) and c.name not in decode]
            hint = ", decode image columns with decode={column: ImageDecode(...)}" if any(
                c.encoding.family.images for c in columns if c.name in bad) else ""
            raise MDSSchemaError(f"columns {bad} do not collate to tensors; use batch_format='arrow', select other "
                                 f"columns{hint}, or iterate samples")
        return columns, natural, decode

    # ------------------------------------------------------------------ reading

    def _parts(self, ids: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray | None]]:
        """The samples `ids` by shard: (shard, its rows ascending, their positions in `ids`, or
        None when one shard holds them all in order)."""
        shards, local = self._locate(ids)
        if len(ids) and np.all(shards == shards[0]) and np.all(local[1:] >= local[:-1]):
            return [(int(shards[0]), local, None)]
        # By shard, then by position in the shard: each shard reads ascending rows (no sort and no
        # reordering inside the reader); the positions put the rows back in the order of `ids`.
        order = np.lexsort((local, shards))
        cuts = np.flatnonzero(np.diff(shards[order])) + 1
        return [(int(shards[group[0]]), local[group], group) for group in np.split(order, cuts)]

    def _null_mask(self, columns: list[ReadColumn], natural: bool) -> str | None:
        """The null-mask column to read with `columns` in a natural format (whose values cannot be
        None: a null must be found and reported), else None."""
        if natural:
            logical = self._cache.schema(0)
            if logical.null_mask is not None and any(c.null_bit is not None for c in logical.select([c.name for c in columns])):
                return logical.null_mask
        return None

    def _first_null(self, ids: np.ndarray, bits: np.ndarray, columns: list[ReadColumn]) -> Stop | None:
        """The first row of `ids` holding a null (from the rows' null-mask bytes) and the error to
        raise there, or None."""
        nulls = null_rows(bits, self._cache.schema(0).select([c.name for c in columns]))
        if not nulls:
            return None
        name, rows = min(nulls.items(), key=lambda item: item[1][0])
        first = int(rows[0])
        return first, TypeError(
            f"column {name!r} is null in sample {int(ids[first])}; default_collate cannot collate None. "
            f"Select other columns, fill the nulls when writing, or use batch_format='arrow'")

    def read_rows(self, ids: np.ndarray, columns: list[ReadColumn], natural: bool) -> tuple[pa.RecordBatch, Stop | None]:
        """The rows of global sample ids `ids`, in that order, decoded shard by shard into Arrow,
        and (for natural types) the first row holding a null, which default_collate could not
        collate, with its error."""
        names = [c.name for c in columns]
        mask_name = self._null_mask(columns, natural)
        if mask_name is not None:
            names = [*names, mask_name]
        parts = []
        for g, rows, _ in (groups := self._parts(ids)):
            schema = self._cache.schema(self._cache.shards[g].stream, natural)
            parts.append(self._cache.reader(g).read_batch(rows, names, schema=schema))
        batch = parts[0] if groups[0][2] is None else interleave(parts, [pos for _, _, pos in groups])
        stop = None
        if mask_name is not None:
            stop = self._first_null(ids, mask_bits(batch.column(mask_name)), columns)
            batch = batch.drop_columns([mask_name])
        return batch, stop

    def read_packed(self, ids: np.ndarray, columns: list[ReadColumn], batch_format: str,
                    blocks: tuple[WorkerBlocks, int] | None = None, decoders: Mapping[str, Decoder] | None = None
                    ) -> Chunk | None:  # fmt: skip
        """The rows of `ids` as a ``"torch"`` or ``"numpy"`` chunk copied straight from the shards
        into one block; None when the columns need Arrow (see :mod:`mds_loader.format.gather`). In
        a DataLoader worker (`blocks`: the loader's blocks and the worker's id), a ``"torch"`` chunk
        is built in one of the worker's shared-memory blocks and holds a :class:`SharedBlock`."""
        groups = self._parts(ids)
        mask_name = self._null_mask(columns, True)
        # (ShardRows keeps each shard mapped: opening the next reader may close this one)
        plan = plan_rows([(ShardRows(self._cache.reader(g), rows), pos) for g, rows, pos in groups], columns, mask_name,
                         decoders)
        if plan is None:
            return None
        nbytes = plan.layout.nbytes
        if batch_format == "torch" and blocks is not None:
            owner, worker = blocks
            slot, block, handle = owner.take(worker, nbytes)
            if not plan.fill(block.numpy()[HEADER : HEADER + nbytes]):
                owner.put_back(worker, slot)
                return None
            whole: Any = SharedBlock(handle, slot, plan.layout)
        else:
            array = np.empty(nbytes, np.uint8)
            if not plan.fill(array):
                return None
            whole = packed_torch(array, plan.layout) if batch_format == "torch" else packed_numpy(array, plan.layout)
        nulls = None if plan.null_bits is None else self._first_null(ids, plan.null_bits, columns)
        return Chunk(whole, len(ids), *(earliest(nulls, plan.stop) or (None, None)))

    def decode_arrow(self, batch: pa.RecordBatch, decoders: Mapping[str, Decoder]) -> tuple[dict[str, np.ndarray], Stop | None]:
        """The `decoders`' columns of Arrow rows (the path of rows that cannot be copied straight
        from the shards), decoded into arrays, and the first row that cannot be delivered."""
        out, stop = {}, None
        for name, decoder in decoders.items():
            payloads = Payloads.from_arrow(batch.column(name))
            shape, stopped = decoder.plan(payloads)
            out[name] = np.zeros((len(payloads), *shape), decoder.dtype)
            stop = decode_rows(decoder, out[name], payloads, earliest(stop, stopped))
        return out, stop

    def image_decoders(self, decode: Mapping[str, ImageDecode], columns: list[ReadColumn], seed: int, epoch: int
                       ) -> Callable[[np.ndarray], dict[str, Decoder]]:  # fmt: skip
        """For a chunk's sample ids, the image columns' decoders (errors name each row's shard)."""
        encodings = {c.name: c.encoding for c in columns}

        def bind(ids: np.ndarray) -> dict[str, Decoder]:
            def where(row: int) -> str:
                shards, local = self._locate(ids[row : row + 1])
                return f"{self._cache.raw_path(int(shards[0]))}: sample {int(local[0])}"

            return {name: spec.bind(name, encodings[name], seed, epoch, ids, where) for name, spec in decode.items()}

        return bind

    def chunks(self, ids: np.ndarray, batch_format: str, size: int, columns: list[ReadColumn], natural: bool,
               prefetch: Callable[[int, int], None], blocks: tuple[WorkerBlocks, int] | None = None,
               decoders: Callable[[np.ndarray], dict[str, Decoder]] | None = None,
               decoded_bytes: int = 0) -> Iterator[Chunk]:  # fmt: skip
        """The samples `ids` decoded in chunks of whole batches of `size`, growing from one batch
        to about :data:`CHUNK_SAMPLES` samples (fewer for rows over 4 KB), with `columns` and
        `natural` as :meth:`columns_for` gives them. ``prefetch(position, samples)`` is called
        before each chunk is read. With `blocks` (in a DataLoader worker), ``"torch"`` chunks are
        built in shared memory where they can be. ``decoders(chunk ids)`` gives the columns to
        decode (images: :meth:`image_decoders`), which take `decoded_bytes` per sample more."""
        per_sample = self.raw_bytes_per_sample() + decoded_bytes
        largest = size * max(1, min(CHUNK_SAMPLES, CHUNK_BYTES // per_sample) // size)
        packed = batch_format in ("torch", "numpy")
        # The first chunk is one batch (the first batch comes out at once, even when its samples
        # span many small shards); chunks then double up to the largest.
        start, step = 0, size
        while start < len(ids):
            prefetch(start, step)
            part = ids[start : start + step]
            bound = decoders(part) if decoders is not None else {}
            chunk = self.read_packed(part, columns, batch_format, blocks, bound) if packed else None
            if chunk is None:
                packed = False  # (the columns or rows need Arrow; they will for the whole epoch)
                batch, nulls = self.read_rows(part, columns, natural)
                decoded, stop = self.decode_arrow(batch, bound) if bound else ({}, None)
                plain = [c for c in columns if c.name not in decoded]
                if batch_format == "torch":
                    import torch

                    whole: Any = to_torch(batch, plain) | {k: torch.from_numpy(v) for k, v in decoded.items()}
                elif batch_format == "numpy":
                    whole = to_numpy(batch, plain) | decoded
                else:
                    whole = batch
                whole = {c.name: whole[c.name] for c in columns} if decoded else whole  # (the columns' order)
                chunk = Chunk(whole, len(part), *(earliest(nulls, stop) or (None, None)))
            yield chunk
            start, step = start + step, min(largest, 2 * step)

    def raw_bytes_per_sample(self) -> int:
        """The streams' average stored (uncompressed) bytes per sample, at least 1."""
        samples = sum(int(st.index.samples_per_shard.sum()) for st in self._streams)
        stored = sum(int(st.index.raw_bytes_per_shard.sum()) for st in self._streams)
        return max(1, stored // max(1, samples))


"""Rows of several shards copied straight into one block of memory, in the order asked for.

The hot path of ``"torch"`` and ``"numpy"`` batches. Columns whose natural values are numbers,
arrays of one shape, strings or bytes are copied from the memory-mapped shard files straight into
column buffers carved out of one block that the caller allocates: private memory, or shared
memory in a DataLoader worker, so that handing the chunk to the training process copies nothing
and passes one handle. (Through Arrow, a chunk spanning several shards went through memory three
to four times: per shard, back into the requested order, then into shared memory, tensor by
tensor.)

* Fixed-width values (numbers, ``ndarray`` rows of one shape) are gathered by numpy from a
  sliding-window view of each shard file, a few hundred KB at a time (the temporary stays in the
  CPU cache), and scattered to their rows.
* Strings and bytes are cut out of each shard by Arrow's ``take`` and put in order by one more
  ``take``; large values (images) are copied one slice each, straight from the shard files.

:func:`plan_rows` returns None for anything else (other encodings, ragged arrays, ndarray rows of
another dtype) and :meth:`RowsPlan.fill` returns False for strings that are not UTF-8: the caller
then decodes the rows through Arrow (``ShardReader.read_batch``), which gives the exact values or
the exact error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pyarrow as pa

from .columnar import NDARRAY_DTYPE_CODES, parse_ndarray_heads
from .reader import ReadColumn, ShardRows, byte_rows
from .schema import list_leaf

__all__ = ["ColumnSlot", "Decoder", "Layout", "Payloads", "RowsPlan", "Slot", "Stop", "decode_rows", "earliest", "plan_rows"]

_I64 = np.int64
_ALIGN = 64  # every buffer starts on a cache line
_LARGE_VALUE = 8192  # strings/bytes this long on average are copied one slice each
_PIECE = 256 << 10  # bytes gathered per numpy call


@dataclass(frozen=True)
class Slot:
    """An array in the block: ``shape`` values of ``dtype`` starting ``offset`` bytes in."""

    offset: int
    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=_I64)) * self.dtype.itemsize

    def view(self, block: np.ndarray) -> np.ndarray:
        return block[self.offset : self.offset + self.nbytes].view(self.dtype).reshape(self.shape)


@dataclass(frozen=True)
class ColumnSlot:
    """Where one column of the rows lies in the block: numbers and arrays as ``values``
    (rows first); strings and bytes as ``values`` (their bytes, uint8) and ``offsets`` (n + 1
    int64, Arrow's layout), with ``text`` telling which."""

    name: str
    values: Slot
    offsets: Slot | None = None
    text: bool = False


@dataclass(frozen=True)
class Layout:
    """The block's size and its columns (picklable: a DataLoader worker sends it with the block)."""

    nbytes: int
    rows: int
    columns: tuple[ColumnSlot, ...]


@dataclass(frozen=True)
class Payloads:
    """Where each of n rows' payload of one column lies: in ``buffers[which[r]]``, ``lengths[r]``
    bytes from ``starts[r]`` (shard files, or an Arrow binary column's data)."""

    buffers: Sequence[np.ndarray]
    which: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)

    def head(self, rows: int) -> Payloads:
        """The first ``rows`` rows."""
        if rows == len(self):
            return self
        return Payloads(self.buffers, self.which[:rows], self.starts[:rows], self.lengths[:rows])

    def view(self, row: int) -> np.ndarray:
        """Row ``row``'s payload (uint8, a view: nothing is copied)."""
        start = int(self.starts[row])
        return self.buffers[int(self.which[row])][start : start + int(self.lengths[row])]

    @classmethod
    def from_arrow(cls, arr: pa.Array) -> Payloads:
        """The payloads of a binary Arrow array without nulls."""
        arr = arr.cast(pa.large_binary())
        _, offsets, data = arr.buffers()
        offsets = np.frombuffer(offsets, np.int64, len(arr) + 1, arr.offset * 8)
        values = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
        return cls([values], np.zeros(len(arr), np.intp), offsets[:-1], np.diff(offsets))


#: Where the rows must stop, and why: (the first row that cannot be delivered, its error).
Stop = tuple[int, Exception]


def earliest(*stops: Stop | None) -> Stop | None:
    """The first of several places where the rows must stop (the earlier argument on a tie)."""
    found = [stop for stop in stops if stop is not None]
    return min(found, key=lambda stop: stop[0]) if found else None


class Decoder(Protocol):
    """A column decoded by the caller into fixed-size rows of ``dtype`` (images: see
    :mod:`mds_loader.images`) instead of copied."""

    dtype: np.dtype

    def plan(self, payloads: Payloads) -> tuple[tuple[int, ...], Stop | None]:
        """The shape of each row's value, and where the rows must stop (a value of another shape)."""

    def fill(self, out: np.ndarray, payloads: Payloads) -> Stop | None:
        """Decodes ``payloads`` into ``out`` (one row each); the first row that failed, if any."""


def decode_rows(decoder: Decoder, out: np.ndarray, payloads: Payloads, stop: Stop | None) -> Stop | None:
    """Decodes the rows of `payloads` before `stop` into `out`; the earlier of `stop` and the
    first row that failed."""
    rows = len(payloads) if stop is None else stop[0]
    return earliest(stop, decoder.fill(out[:rows], payloads.head(rows)))


@dataclass
class _Part:
    """The rows of one shard: where their columns lie in the shard file, and their positions in
    the request (None: all of it, in order)."""

    rows: ShardRows
    positions: np.ndarray | None

    def scatter(self, out: np.ndarray, values: np.ndarray) -> None:
        """Puts this part's ``values`` (in its rows' order) at their rows of ``out``."""
        if self.positions is None:
            out[...] = values
        else:
            out[self.positions] = values


@dataclass
class _Source:
    """How one column is filled: per part, the start of each row's bytes in its shard file."""

    slot: ColumnSlot
    starts: list[np.ndarray]
    width: int | None  # bytes per row (fixed-width values), None for strings and bytes
    lengths: np.ndarray | None = None  # strings and bytes: each row's length, in request order
    columns: list[int] | None = None  # strings and bytes: the column's number in each part's shard
    decoder: tuple[Decoder, Payloads] | None = None  # decoded columns: by whom, from where


class RowsPlan:
    """The layout of some rows' columns in one block, and how to copy them there."""

    def __init__(self, parts: list[_Part], sources: list[_Source], layout: Layout, null_bits: np.ndarray | None,
                 stop: Stop | None = None) -> None:  # fmt: skip
        self._parts, self._sources = parts, sources
        self.layout = layout
        #: the rows' null-mask bytes, (rows, mask width) uint8, when asked for
        self.null_bits = null_bits
        #: the first row that cannot be delivered (a decoder's failure), and its error
        self.stop = stop

    def fill(self, block: np.ndarray) -> bool:
        """Copies the rows into ``block`` (``layout.nbytes`` uint8); False when a ``str`` column
        holds bytes that are not UTF-8 (decode through Arrow for the exact error). Decoded
        columns are decoded last, up to :attr:`stop`, which their failures may move up."""
        for source in self._sources:
            if source.decoder is not None:
                continue
            if source.width is not None:
                self._fill_fixed(block, source)
            elif not self._fill_binary(block, source):
                return False
        for source in self._sources:
            if source.decoder is not None:
                decoder, payloads = source.decoder
                self.stop = decode_rows(decoder, source.slot.values.view(block), payloads, self.stop)
        return True

    def _fill_fixed(self, block: np.ndarray, source: _Source) -> None:
        width = source.width
        assert width is not None
        out = block[source.slot.values.offset :][: self.layout.rows * width].reshape(self.layout.rows, width)
        if width == 0:
            return
        # numpy gathers into a temporary, then scatters: a few hundred KB at a time, so that the
        # temporary stays in the CPU cache and malloc reuses it (a large one is unmapped when freed
        # and page-faults in anew every time).
        step = max(16, _PIECE // width)
        for part, starts in zip(self._parts, source.starts):
            rows = byte_rows(part.rows.buf, width)
            positions = part.positions
            for lo in range(0, len(starts), step):
                if positions is None:
                    out[lo : lo + step] = rows[starts[lo : lo + step]]
                else:
                    out[positions[lo : lo + step]] = rows[starts[lo : lo + step]]

    def _fill_binary(self, block: np.ndarray, source: _Source) -> bool:
        slot, lengths = source.slot, source.lengths
        assert slot.offsets is not None and lengths is not None
        offsets = slot.offsets.view(block)
        offsets[0] = 0
        np.cumsum(lengths, out=offsets[1:])
        data = slot.values.view(block)
        n = self.layout.rows
        if n and offsets[-1] >= _LARGE_VALUE * n:
            # Large values: one slice copy each, straight from the shard files.
            for part, starts in zip(self._parts, source.starts):
                positions = np.arange(n) if part.positions is None else part.positions
                buf = part.rows.buf
                for dst, src, size in zip(offsets[positions].tolist(), starts.tolist(), lengths[positions].tolist()):
                    data[dst : dst + size] = buf[src : src + size]
            if slot.text:
                try:
                    pa.Array.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)]).cast(pa.large_string())
                except pa.ArrowInvalid:
                    return False
            return True
        # Each shard's values cut out in its rows' order by one take (ShardRows), then put in the
        # requested order by another.
        pieces = [part.rows.take(part.rows.col_starts[:, j], part.rows.sizes[:, j]) for part, j in zip(self._parts, source.columns)]
        if len(pieces) == 1:
            values = pieces[0]
        else:
            order = np.concatenate([p.positions for p in self._parts])  # type: ignore[misc]
            inverse = np.empty(n, _I64)
            inverse[order] = np.arange(n, dtype=_I64)
            values = pa.concat_arrays(pieces).take(pa.array(inverse))
        if slot.text:
            try:
                values.cast(pa.large_string())
            except pa.ArrowInvalid:
                return False
        if len(data):
            first = int(np.frombuffer(values.buffers()[1], _I64, 1, values.offset * 8)[0])
            data[:] = np.frombuffer(values.buffers()[2], np.uint8, len(data), first)
        return True


def plan_rows(
    parts: Sequence[tuple[ShardRows, np.ndarray | None]],
    columns: Sequence[ReadColumn],
    null_mask: str | None = None,
    decoders: Mapping[str, Decoder] | None = None,
) -> RowsPlan | None:
    """Plans copying the rows of ``parts`` into one block, or None when a column cannot be
    copied that way.

    Args:
        parts: per shard, its rows to read (ascending) and their positions in the result (None
            for a single part whose rows are the result in order).
        columns: the columns, read with their natural types.
        null_mask: the null-mask column to gather too (into :attr:`RowsPlan.null_bits`).
        decoders: columns to decode from their payloads rather than copy, by name.

    Raises:
        MDSFormatError, MDSSchemaError: a requested sample is malformed (as ``read_batch``).
    """
    chosen = [_Part(rows, positions) for rows, positions in parts]
    n = sum(len(p.rows.idx) for p in chosen)
    sources: list[_Source] = []
    offset = 0
    stop: Stop | None = None

    def place(dtype: np.dtype, shape: tuple[int, ...]) -> Slot:
        nonlocal offset
        slot = Slot(offset, np.dtype(dtype), shape)
        offset += -(-slot.nbytes // _ALIGN) * _ALIGN
        return slot

    for c in columns:
        enc = c.encoding
        js = [p.rows.reader._col[c.name] for p in chosen]
        packing = enc.family.packing(enc)
        decoder = (decoders or {}).get(c.name)
        if decoder is not None:
            which, starts_, lengths_ = np.empty(n, np.intp), np.empty(n, _I64), np.empty(n, _I64)
            for k, (p, j) in enumerate(zip(chosen, js)):
                p.scatter(which, k)
                p.scatter(starts_, p.rows.order(p.rows.col_starts[:, j]))
                p.scatter(lengths_, p.rows.order(p.rows.sizes[:, j]))
            payloads = Payloads([p.rows.buf for p in chosen], which, starts_, lengths_)
            shape, stopped = decoder.plan(payloads)
            stop = earliest(stop, stopped)
            slot = ColumnSlot(c.name, place(np.dtype(decoder.dtype), (n, *shape)))
            sources.append(_Source(slot, [], None, decoder=(decoder, payloads)))
        elif packing == "fixed":
            width = chosen[0].rows.reader._sizes[js[0]]  # (every shard has the same columns)
            if width is None:
                return None
            dtype = enc.dtype.newbyteorder("=")  # type: ignore[union-attr]
            shape = tuple(enc.shape) if enc.shape is not None else ()
            starts = [p.rows.order(p.rows.col_starts[:, j]) for p, j in zip(chosen, js)]
            sources.append(_Source(ColumnSlot(c.name, place(dtype, (n, *shape))), starts, width))
        elif packing == "ndarray":
            source = _plan_ndarray(chosen, js, c, n, place)
            if source is None:
                return None
            sources.append(source)
        elif packing in ("text", "bytes"):
            lengths = np.empty(n, _I64)
            starts = []
            for p, j in zip(chosen, js):
                p.scatter(lengths, p.rows.order(p.rows.sizes[:, j]))
                starts.append(p.rows.order(p.rows.col_starts[:, j]))
            data = place(np.dtype(np.uint8), (int(lengths.sum()),))
            slot = ColumnSlot(c.name, data, place(np.dtype(_I64), (n + 1,)), packing == "text")
            sources.append(_Source(slot, starts, None, lengths, js))
        else:
            return None
    null_bits = None
    if null_mask is not None:
        reader = chosen[0].rows.reader
        null_bits = np.empty((n, reader._sizes[reader._col[null_mask]]), np.uint8)  # type: ignore[arg-type]
        for p in chosen:
            p.scatter(null_bits, p.rows.fixed(p.rows.reader._col[null_mask]))
    return RowsPlan(chosen, sources, Layout(offset, n, tuple(s.slot for s in sources)), null_bits, stop)


def _plan_ndarray(parts: list[_Part], js: list[int], column: ReadColumn, n: int, place) -> _Source | None:
    """A dynamic-shape (or dynamic-dtype) ``ndarray`` column whose rows all have one shape and
    the column's dtype: fixed-width values after each row's header; else None."""
    leaf, ndim = list_leaf(column.natural_type)
    dtype = np.dtype(leaf.to_pandas_dtype())
    code = NDARRAY_DTYPE_CODES.get(dtype.name)
    shape: tuple[int, ...] | None = None
    starts = []
    for p, j in zip(parts, js):
        rows = p.rows
        heads = parse_ndarray_heads(rows.buf, rows.col_starts[:, j], rows.sizes[:, j], column.encoding, ndim,
                                    column.name, rows.row_name)
        if heads.codes is not None and (code is None or np.any(heads.codes != code)):
            return None
        if len(heads.shapes):
            first = tuple(int(d) for d in heads.shapes[0])
            if shape is None:
                shape = first
            if first != shape or np.any(heads.shapes != heads.shapes[0]):
                return None
        starts.append(rows.order(rows.col_starts[:, j] + heads.prefix))
    if shape is None:
        shape = (0,) * ndim
    width = int(np.prod(shape, dtype=_I64)) * dtype.itemsize
    return _Source(ColumnSlot(column.name, place(dtype.newbyteorder("="), (n, *shape))), starts, width)

"""The five shuffle algorithms of mosaicml-streaming 0.13.0 (docs/ordering.md §4.8), bit-identical.

``get_shuffle(algo, shard_sizes, num_canonical_nodes, seed, epoch, block_size)`` returns ``perm``,
an int64 permutation of ``0..N-1`` (``N = sum(shard_sizes)``): ``perm[position]`` is the id placed
at that position of the epoch. "Shards" here are shuffle units: consecutive id spans.

Exactness rests on issuing the same numpy ``default_rng`` calls in the same order as the reference
(``shuffle`` of equal-length sequences, ``integers``, ``uniform``, ``permutation``); everything
else (building id arrays, splitting at canonical-node boundaries, sorting) is vectorized. Shuffling
an int64 index array draws exactly like shuffling a Python list of the same length (§4.5), which
lets us permute span/shard indices instead of lists of objects. Loops run over spans, never over
samples.
"""

from __future__ import annotations

import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Optional, Sequence, Union

import numpy as np
from numpy.typing import NDArray

__all__ = ["SHUFFLE_ALGOS", "divide_spans", "get_shuffle"]

ShardSizes = Union[Sequence[int], NDArray[np.integer]]


def _sizes(shard_sizes: ShardSizes) -> NDArray[np.int64]:
    sizes = np.asarray(shard_sizes, dtype=np.int64).reshape(-1)
    if sizes.size and sizes.min() < 0:
        raise ValueError("Shard sizes must be non-negative.")
    return sizes


def _check_ncn(num_canonical_nodes: int) -> int:
    if int(num_canonical_nodes) != num_canonical_nodes or num_canonical_nodes < 1:
        raise ValueError(f"`num_canonical_nodes` must be a positive integer, but got: "
                         f"{num_canonical_nodes!r}.")
    return int(num_canonical_nodes)


def _concat_ranges(begins: NDArray[np.int64], sizes: NDArray[np.int64],
                   dtype: type = np.int64) -> NDArray[np.int64]:
    """``concatenate([arange(b, b + z) for b, z in zip(begins, sizes)])`` (of `dtype`, which must
    hold every value) without a Python loop over ranges, and with no temporary as large as the
    result."""
    total = int(sizes.sum())
    offsets = np.cumsum(sizes) - sizes
    out = np.repeat((begins - offsets).astype(dtype, copy=False), sizes)
    step = 1 << 22
    for start in range(0, total, step):
        stop = min(start + step, total)
        out[start:stop] += np.arange(start, stop, dtype=out.dtype)
    return out


def _shuffle_segments(rng: np.random.Generator, ids: NDArray[np.int64],
                      sizes: NDArray[np.int64]) -> None:
    """In place, ``rng.shuffle`` each consecutive segment of `ids`, in order (one call per
    segment, as the reference does; segments of length < 2 draw nothing, so they are skipped)."""
    shuffle = rng.shuffle
    offset = 0
    for size in sizes.tolist():
        if size > 1:
            shuffle(ids[offset:offset + size])
        offset += size


def divide_spans(span_sizes: NDArray[np.int64], num_samples: int,
                 num_parts: int) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Cut spans (taken in the given order) at the canonical-node boundaries ``N*(c+1)//C``.

    Same rule as the reference (docs/ordering.md §4.8 ``divide_spans``): a span that straddles a boundary is
    split there and its remainder starts the next part; a zero-length span sitting exactly on a
    boundary stays with the earlier part. Loops over spans only.

    Returns:
        ``(src, head, bounds)``: piece ``i`` is the part of input span ``src[i]`` starting
        ``head[i]`` samples into it (it ends where the next piece of the same span starts, or at
        the span's end); part ``c`` holds pieces ``bounds[c]:bounds[c+1]``.
    """
    sizes = span_sizes.tolist()
    src: list[int] = []
    head: list[int] = []
    bounds = [0]
    index, used, so_far = 0, 0, 0  # current span, samples of it already placed, samples placed
    count = len(sizes)
    for part in range(num_parts):
        part_end = num_samples * (part + 1) // num_parts
        while index < count:
            left = sizes[index] - used
            if part_end < so_far + left:
                if so_far < part_end:
                    split = part_end - so_far
                    src.append(index)
                    head.append(used)
                    used += split
                    so_far += split
                break
            src.append(index)
            head.append(used)
            so_far += left
            index += 1
            used = 0
        bounds.append(len(src))
    return (np.asarray(src, np.int64), np.asarray(head, np.int64), np.asarray(bounds, np.int64))


def _pieces(span_starts: NDArray[np.int64], span_sizes: NDArray[np.int64], num_parts: int
            ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Spans (in the given order) cut at canonical-node boundaries:
    ``(piece starts, piece sizes, part bounds)``; span ``i`` covers
    ``[span_starts[i], span_starts[i] + span_sizes[i])``."""
    src, head, bounds = divide_spans(span_sizes, int(span_sizes.sum()), num_parts)
    # A piece ends where the next piece of the same span starts, or at its span's end.
    ends = span_sizes[src].copy()
    if src.size > 1:
        same = src[1:] == src[:-1]
        ends[:-1][same] = head[1:][same]
    return span_starts[src] + head, ends - head, bounds


def _part_sizes(lengths: NDArray[np.int64], bounds: NDArray[np.int64]) -> list[int]:
    csum = np.concatenate([[0], np.cumsum(lengths)])
    return (csum[bounds[1:]] - csum[bounds[:-1]]).tolist()


def _shuffled_pieces(sizes: NDArray[np.int64], num_canonical_nodes: int, seed: int,
                     epoch: int) -> tuple[NDArray[np.int64], NDArray[np.int64],
                                          NDArray[np.int64], np.random.Generator]:
    """Steps 1-3 of py1s (shared by py1s, py1br, py1e): a run-wide shuffle of the spans, the cut
    at canonical-node boundaries, and a per-epoch shuffle of each node's pieces."""
    run_order = np.arange(sizes.size, dtype=np.int64)
    np.random.default_rng(seed).shuffle(run_order)
    offsets = np.cumsum(sizes) - sizes
    begins, lengths, bounds = _pieces(offsets[run_order], sizes[run_order], num_canonical_nodes)
    epoch_rng = np.random.default_rng(seed + epoch)
    piece_order = np.arange(begins.size, dtype=np.int64)
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        if hi - lo > 1:
            epoch_rng.shuffle(piece_order[lo:hi])
    return begins[piece_order], lengths[piece_order], bounds, epoch_rng


def _naive(sizes: NDArray[np.int64], num_canonical_nodes: int, seed: int, epoch: int,
           block_size: int, dtype: type = np.int64) -> NDArray[np.int64]:
    return np.random.default_rng(seed + epoch).permutation(int(sizes.sum())).astype(dtype, copy=False)


def _py1s(sizes: NDArray[np.int64], num_canonical_nodes: int, seed: int, epoch: int,
          block_size: int, dtype: type = np.int64) -> NDArray[np.int64]:
    begins, lengths, _, epoch_rng = _shuffled_pieces(sizes, num_canonical_nodes, seed, epoch)
    ids = _concat_ranges(begins, lengths, dtype)
    _shuffle_segments(epoch_rng, ids, lengths)
    return ids


def _py2s(sizes: NDArray[np.int64], num_canonical_nodes: int, seed: int, epoch: int,
          block_size: int, dtype: type = np.int64) -> NDArray[np.int64]:
    offsets = np.cumsum(sizes) - sizes
    # Run-wide: shuffle the shard order, then each shard's samples in that order.
    fixed_rng = np.random.default_rng(seed)
    order = np.arange(sizes.size, dtype=np.int64)
    fixed_rng.shuffle(order)
    ordered = sizes[order]
    fixed = _concat_ranges(offsets[order], ordered, dtype)
    _shuffle_segments(fixed_rng, fixed, ordered)
    # Cut at canonical-node boundaries; pieces are slices of `fixed` (a split shard keeps its
    # first samples in the earlier node).
    starts, lengths, bounds = _pieces(np.cumsum(ordered) - ordered, ordered, num_canonical_nodes)
    # Per epoch and per node, in this order: shuffle the node's pieces, then each piece's samples.
    epoch_rng = np.random.default_rng(seed + epoch)
    out = np.empty(int(sizes.sum()), dtype)
    offset = 0
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        piece_order = np.arange(lo, hi, dtype=np.int64)
        if hi - lo > 1:
            epoch_rng.shuffle(piece_order)
        part = fixed[_concat_ranges(starts[piece_order], lengths[piece_order])]
        _shuffle_segments(epoch_rng, part, lengths[piece_order])
        out[offset:offset + part.size] = part
        offset += part.size
    return out


def _check_block(block_size: int, need_stagger: bool) -> tuple[int, int]:
    low, high = int(0.75 * block_size), int(1.25 * block_size)
    if low >= high or (need_stagger and low < 1):
        raise ValueError(f"`shuffle_block_size` {block_size} is too small: the random block "
                         f"size is drawn from [int(0.75*b), int(1.25*b)) = [{low}, {high})"
                         + (" and the stagger from [0, int(0.75*b))" if need_stagger else "")
                         + ", which must be non-empty.")
    return low, high


def _py1br(sizes: NDArray[np.int64], num_canonical_nodes: int, seed: int, epoch: int,
           block_size: int, dtype: type = np.int64) -> NDArray[np.int64]:
    low, high = _check_block(block_size, need_stagger=True)
    begins, lengths, bounds, epoch_rng = _shuffled_pieces(sizes, num_canonical_nodes, seed,
                                                          epoch)
    ids = _concat_ranges(begins, lengths, dtype)
    stagger = epoch_rng.integers(0, low, (num_canonical_nodes,))
    node_sizes = _part_sizes(lengths, bounds)
    integers, shuffle = epoch_rng.integers, epoch_rng.shuffle
    node_stop = 0
    for node in range(num_canonical_nodes):
        node_start = node_stop
        node_stop += node_sizes[node]
        shift = int(stagger[node])
        # All of a node's block sizes are drawn before any block is shuffled (reference order).
        blocks = []
        end = node_start
        while end < node_stop:
            size = int(integers(low, high))
            start, stop = max(end - shift, node_start), min(end + size - shift, node_stop)
            blocks.append((start, stop))
            end += stop - start
        for start, stop in blocks:
            if stop - start > 1:
                shuffle(ids[start:stop])
    return ids


def _py1e(sizes: NDArray[np.int64], num_canonical_nodes: int, seed: int, epoch: int,
          block_size: int, dtype: type = np.int64) -> NDArray[np.int64]:
    low, high = _check_block(block_size, need_stagger=False)
    begins, lengths, bounds, epoch_rng = _shuffled_pieces(sizes, num_canonical_nodes, seed,
                                                          epoch)
    total = int(sizes.sum())
    if total >= 1 << 53:
        raise ValueError("py1e supports fewer than 2**53 samples per epoch (the reference keeps "
                         "ids in float64).")
    ids = _concat_ranges(begins, lengths, dtype)
    warn = False
    offset = 0
    for node in range(num_canonical_nodes):
        lo, hi = int(bounds[node]), int(bounds[node + 1])
        node_lengths = lengths[lo:hi]
        count = int(node_lengths.sum())
        if count == 0:
            raise ValueError(
                f"The number of samples assigned to a canonical node is 0. This very likely "
                f"indicates that the number of samples in this stream is less than the number of "
                f"canonical nodes, which is {num_canonical_nodes}. Please check your index.json "
                f"file and ensure that your dataset has been written out correctly. If this was "
                f"intended, reduce num_canonical_nodes.")
        node_ids = ids[offset:offset + count]
        # First every piece's samples are shuffled, in order ...
        _shuffle_segments(epoch_rng, node_ids, node_lengths)
        # ... then each piece's samples get a uniform jitter of about +-block/2 positions; the
        # node's order is the argsort of the jittered positions, sorted here window by window.
        warn |= _jitter_sort(node_ids, node_lengths, epoch_rng, low, high)
        offset += count
    if warn:
        warnings.warn("Shuffle block size was smaller than shard size for some shards. This will "
                      "result in these shards not being shuffled with other shards. Set "
                      "shuffle_block_size to a larger value for a higher quality shuffle.")
    return ids


#: Positions generated between two partial sorts of :func:`_jitter_sort` (at least).
_SORT_WINDOW = 1 << 20
#: Explicit bits of a float64's significand: integers below 2**52 are spaced exactly 1 apart above it.
_MANTISSA_BITS = 52


class _Argsort:
    """``np.argsort`` of non-negative float64 arrays of up to `capacity` values, about four times
    faster on large ones, in buffers allocated once (so each call faults in no new pages).

    numpy sorts plain integers with SIMD kernels but argsorts with a scalar one, so each value
    becomes one int64 key: its offset from the minimum in fixed point (bits kept: what the index
    leaves), above its index. The fixed-point cut is monotone, so the keys sort the values
    exactly, except where two values share a cut; those few runs are re-sorted by their exact
    values. Ties of equal values may order differently, as they may between numpy's kernels."""

    def __init__(self, capacity: int) -> None:
        self._keys = np.empty(capacity, np.int64)
        self._index = np.arange(capacity, dtype=np.int64)

    def __call__(self, values: NDArray[np.float64],
                 out: NDArray[np.int64] | None = None) -> NDArray[np.int64]:
        """The order of `values`, in a new array or (large arrays) a view of the int64 `out`."""
        count = values.size
        if count < 1 << 16:
            return np.argsort(values)
        base = float(values.min())
        index_bits = (count - 1).bit_length()
        range_bits = int(float(values.max()) - base).bit_length()
        fraction_bits = min(63 - index_bits, _MANTISSA_BITS - 1) - range_bits  # sums < 2**53
        if fraction_bits < 8:  # too wide a range to cut finely: collisions would not be few
            return np.argsort(values)
        keys = self._keys[:count]
        order = np.empty(count, np.int64) if out is None else out[:count]
        # The cut: the offset scaled (exactly) to below 2**51, then rounded to an integer by
        # adding 2**52 (floating-point rounding is monotone), whose low 52 bits are then that
        # integer. Far faster than numpy's float-to-int conversion.
        cuts = keys.view(np.float64)
        np.subtract(values, base, out=cuts)
        cuts *= float(1 << fraction_bits)
        cuts += float(1 << _MANTISSA_BITS)
        keys &= (1 << _MANTISSA_BITS) - 1
        keys <<= index_bits
        keys |= self._index[:count]
        keys.sort()
        np.bitwise_and(keys, (1 << index_bits) - 1, out=order)
        keys >>= index_bits  # the cuts, ascending
        same = np.flatnonzero(keys[1:] == keys[:-1])
        if same.size:
            runs = np.union1d(same, same + 1)
            members = order[runs]
            order[runs] = members[np.lexsort((values[members], keys[runs]))]
        return order


class _WindowSorter:
    """The sorting half of :func:`_jitter_sort`. Each window of positions (the carry of the last
    window, then the fresh ones) is sorted on one thread, while the ids of the window before are
    placed by another: the final ones into ``node_ids``, the rest carried into the next window.

    Buffers alternate between consecutive windows: two for positions (a carry region, right-
    aligned, then a fresh region, so that the caller draws the next window into one while the
    other is sorted), two for the orders, two for ids."""

    def __init__(self, node_ids: NDArray[np.integer], carry_room: int, fresh_room: int,
                 high: int) -> None:
        self.node_ids = node_ids
        self.room = carry_room
        self.high = high
        size = carry_room + fresh_room
        self.positions = [np.empty(size, np.float64) for _ in range(2)]
        self.orders = [np.empty(size, np.int64) for _ in range(2)]
        self.ids = [np.empty(size, node_ids.dtype) for _ in range(2)]
        self.argsort = _Argsort(size)
        self.carried = 0
        self.written = 0
        self._sorter = ThreadPoolExecutor(1)
        self._sorting: Optional[Future[None]] = None
        self._placer = ThreadPoolExecutor(1)
        self._placing: list[Optional[Future[None]]] = [None, None]

    def fresh(self, buffer: int) -> NDArray[np.float64]:
        return self.positions[buffer][self.room:]

    def submit(self, buffer: int, pending: int, at: int) -> None:
        """Has buffer `buffer` sorted once the window before is (raising what that raised)."""
        sorting, self._sorting = self._sorting, None
        if sorting is not None:
            sorting.result()
        self._sorting = self._sorter.submit(self._sort, buffer, pending, at)

    def _sort(self, buffer: int, pending: int, at: int) -> None:
        """Sorts buffer `buffer`: its carry and `pending` fresh positions, those of the ids in
        ``node_ids[at - pending:at]``, then has their ids placed."""
        lo, hi = self.room - self.carried, self.room + pending
        values = self.positions[buffer][lo:hi]
        self._wait(buffer)  # the ids of two windows ago are placed: their order buffer is free
        order = self.argsort(values, out=self.orders[buffer])
        # A jitter is below high / 2 in magnitude, so positions below at - high / 2 precede
        # every position still to be drawn: they are final.
        if at < self.node_ids.size:
            done = int(np.count_nonzero(values < at - self.high / 2))
        else:
            done = values.size
        carry = values.size - done
        assert carry <= self.room, (carry, self.room)
        np.take(values, order[done:], out=self.positions[1 - buffer][self.room - carry:self.room])
        self._placing[buffer] = self._placer.submit(self._place, buffer, order, done,
                                                    self.carried, pending, at)
        self.carried = carry

    def _place(self, buffer: int, order: NDArray[np.int64], done: int, carried: int,
               pending: int, at: int) -> None:
        ids = self.ids[buffer][self.room - carried:self.room + pending]
        ids[carried:] = self.node_ids[at - pending:at]
        np.take(ids, order[:done], out=self.node_ids[self.written:self.written + done])
        self.written += done
        carry = ids.size - done
        np.take(ids, order[done:], out=self.ids[1 - buffer][self.room - carry:self.room])

    def _wait(self, buffer: int) -> None:
        placing, self._placing[buffer] = self._placing[buffer], None
        if placing is not None:
            placing.result()

    def finish(self) -> None:
        """Waits until every id is placed (raising what sorting or placing raised), and stops
        both threads."""
        try:
            if self._sorting is not None:
                self._sorting.result()
            self._wait(0)
            self._wait(1)
        finally:
            self._sorter.shutdown()
            self._placer.shutdown()


def _jitter_sort(node_ids: NDArray[np.int64], lengths: NDArray[np.int64],
                 rng: np.random.Generator, low: int, high: int) -> bool:
    """Reorders ``node_ids`` in place as ``node_ids[argsort(positions)]``, where position ``i``
    is ``i`` plus its piece's uniform jitter, drawn piece by piece as the reference draws them (a
    block size in ``[low, high)``, then one uniform per sample). Returns whether some piece was
    larger than its block (the reference warns then).

    No epoch-sized temporaries: a jitter is below ``high / 2`` in magnitude, so once positions
    up to index ``end`` exist, those below ``end - high / 2`` precede every later one and are
    final. Positions are sorted a window at a time, on a second thread while this one draws the
    next window, with the unfinished ones carried over (fewer than ``high``); the result is the
    full argsort's (ties, of probability ~0, may order differently, as they may between numpy's
    sort kernels)."""
    count = node_ids.size
    if count == 0:
        return False
    integers, uniform = rng.integers, rng.uniform
    # Windows twice the largest block (the carry is under one block): each position is sorted
    # about 1.5 times, in buffers a few blocks in size.
    window = max(_SORT_WINDOW, 2 * high)
    fresh_room = min(count, window + int(lengths.max()))
    carry_room = 0 if count <= window else min(count, high)  # one window: nothing is carried
    sorter = _WindowSorter(node_ids, carry_room, fresh_room, high)
    ramp = np.arange(fresh_room, dtype=np.float64)
    buffer, pending, at = 0, 0, 0
    fresh = sorter.fresh(buffer)
    np.add(ramp, at, out=fresh)  # the window's unjittered positions (integers: exact)
    warn = False
    try:
        for size in lengths.tolist():
            cutoff = (int(integers(low, high)) - size) / 2
            if cutoff < 0:
                cutoff = 0
                warn = True
            lower = max(-cutoff, -at)
            upper = min(cutoff, count - at - size)
            # uniform + arange, as the reference adds them (IEEE addition commutes exactly).
            fresh[pending:pending + size] += uniform(low=lower, high=upper, size=size)
            at += size
            pending += size
            if pending >= window or at == count:
                sorter.submit(buffer, pending, at)
                buffer, pending = 1 - buffer, 0
                fresh = sorter.fresh(buffer)
                if at < count:
                    np.add(ramp, at, out=fresh)
    finally:
        sorter.finish()
    assert sorter.written == count
    return warn


_ALGOS: dict[str, Callable[..., NDArray[np.int64]]] = {
    "naive": _naive,
    "py1br": _py1br,
    "py1e": _py1e,
    "py1s": _py1s,
    "py2s": _py2s,
}
SHUFFLE_ALGOS = tuple(sorted(_ALGOS))


def get_shuffle(algo: str,
                shard_sizes: ShardSizes,
                num_canonical_nodes: int,
                seed: int,
                epoch: int,
                block_size: int = 1 << 18,
                *,
                compact: bool = False) -> NDArray[np.int64]:
    """The shuffled order of one epoch, identical to mosaicml-streaming 0.13.0's `get_shuffle`.

    Args:
        algo: One of ``naive``, ``py1br``, ``py1e``, ``py1s``, ``py2s``.
        shard_sizes: Sizes of the shuffle units (consecutive id spans), in order.
        num_canonical_nodes: Canonical nodes; a node's positions only receive ids of the spans
            assigned to it, boundaries at ``N*(c+1)//C`` (the partition's rows).
        seed: Run-wide seed (``shuffle_seed``); the span order is fixed by it for the whole run.
        epoch: Epoch; the per-epoch generator is seeded with ``seed + epoch``.
        block_size: Shuffle block size, used by ``py1br`` and ``py1e`` only.
        compact: int32 ids when ``N < 2**31`` (half the memory); int64 otherwise.

    Returns:
        int64 (or, ``compact``, int32) array ``perm`` of length ``N``; ``perm[position]`` is the
        id at that position.
    """
    try:
        fn = _ALGOS[algo]
    except KeyError:
        raise ValueError(f"Unknown shuffle algorithm {algo!r}; expected one of "
                         f"{', '.join(SHUFFLE_ALGOS)}.") from None
    if int(seed) < 0 or int(epoch) < 0:
        raise ValueError(f"`seed` ({seed}) and `epoch` ({epoch}) must be non-negative.")
    sizes = _sizes(shard_sizes)
    return fn(sizes, _check_ncn(num_canonical_nodes), int(seed), int(epoch), int(block_size),
              index_dtype(int(sizes.sum()), compact))


def index_dtype(count: int, compact: bool) -> type:
    """The dtype of ids below `count`: int32 when `compact` and they fit (half the memory of
    an epoch-sized array), else int64."""
    return np.int32 if compact and count < 1 << 31 else np.int64

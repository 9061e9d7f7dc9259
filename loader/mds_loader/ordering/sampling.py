"""Stream weighting and per-epoch resampling (docs/ordering.md §4.6 step B and §7), bit-identical to
mosaicml-streaming 0.13.0.

* :class:`StreamSpec` describes a stream as the user configured it (its shards' sample counts and
  at most one of ``proportion`` / ``repeat`` / ``choose``).
* :func:`apply_weights` resolves every stream's ``choose`` (samples per epoch) and the epoch size,
  like ``Stream.apply_weights``, giving :class:`WeightedStream` objects.
* :func:`get_sampling` spreads one stream's ``choose`` over its shards for an epoch.
* :func:`resample_streams` turns that into the epoch's shuffle units and the "big id -> small
  (global sample) id" map, like ``StreamingDataset.resample_streams``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np
from numpy.typing import NDArray

from .shuffle import _concat_ranges

__all__ = [
    "SAMPLING_METHODS",
    "StreamSpec",
    "WeightedStream",
    "apply_weights",
    "get_sampling",
    "parse_epoch_size",
    "resample_streams",
    "stream_layout",
    "StreamLayout",
]

SAMPLING_METHODS = ("balanced", "fixed")


def _as_sizes(samples_per_shard: Union[Sequence[int], NDArray[np.integer]]) -> NDArray[np.int64]:
    sizes = np.array(samples_per_shard, dtype=np.int64).reshape(-1)
    if sizes.size and sizes.min() < 0:
        raise ValueError("Shard sample counts must be non-negative.")
    sizes.setflags(write=False)
    return sizes


def get_sampling(samples_per_shard: Union[Sequence[int], NDArray[np.integer]], choose: int,
                 granularity: int, seed: int, epoch: int, use_epoch: bool) -> NDArray[np.int64]:
    """How many samples to draw from each shard of one stream this epoch (docs/ordering.md §4.6 B.2).

    Whole multiples of the stream come first (``choose // n`` copies of every shard); the
    remainder is drawn in "picks" of up to `granularity` samples taken in the order of
    ``default_rng(seed + epoch if use_epoch else seed).permutation(num_picks)``. Vectorized (the
    reference walks the picks in a Python loop).
    """
    if choose < 0:
        raise ValueError(f"`choose` must be a non-negative integer, but got: {choose}.")
    if granularity <= 0:
        raise ValueError(f"`granularity` must be a positive integer, but got: {granularity}.")
    if seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer, but got: {seed}.")
    if epoch < 0:
        raise ValueError(f"`epoch` must be a non-negative integer, but got: {epoch}.")
    sizes = np.array(samples_per_shard, dtype=np.int64).reshape(-1)
    total = int(sizes.sum())
    if total <= 0:
        raise ValueError("Cannot sample from a stream without samples.")
    choose, granularity = int(choose), int(granularity)
    if choose % total == 0:
        return sizes * (choose // total)

    picks_per_shard = (sizes + granularity - 1) // granularity
    pick_ends = np.cumsum(picks_per_shard)
    num_picks = int(pick_ends[-1])
    order = np.random.default_rng(seed + epoch if use_epoch else seed).permutation(num_picks)

    # Every pick holds >= 1 sample, so at most the first `remainder` picks in `order` are used.
    remainder = choose % total
    used = order[:remainder]
    shard_index = np.int32 if sizes.size < 2**31 else np.int64
    shard_of = np.repeat(np.arange(sizes.size, dtype=shard_index), picks_per_shard)[used]
    out = sizes * (choose // total)
    if granularity == 1:
        # Every pick holds exactly one sample (the last-pick overwrites below also write 1).
        out += np.bincount(shard_of, minlength=sizes.size)
        return out
    # A pick holds `granularity` samples, except that the reference writes each shard's
    # remainder at index pick_ends[s]-1, the last write winning; for a zero-sample shard that
    # index is a neighbour's last pick (or -1, the final pick). Same fancy assignment here.
    size_of = np.full(num_picks, granularity, np.int64)
    size_of[pick_ends - 1] = sizes - (picks_per_shard - 1) * granularity
    size_of = size_of[used]
    # Walk the picks in order, each taking min(left, size) until `remainder` is reached.
    before = np.cumsum(size_of) - size_of
    taken = np.minimum(size_of, np.maximum(remainder - before, 0))
    out += np.bincount(shard_of, weights=taken, minlength=sizes.size).astype(np.int64)
    return out


def parse_epoch_size(epoch_size: Union[int, float, str, None]) -> Optional[int]:
    """The dataset's `epoch_size` argument as an int (None when unset or 0, which the reference
    treats as unset). Strings take decimal suffixes ``k m b t`` (``"1.5k"`` = 1500)."""
    if not epoch_size:
        return None
    if isinstance(epoch_size, (int, float)) and not isinstance(epoch_size, bool):
        value = int(epoch_size)
    elif isinstance(epoch_size, str):
        text = epoch_size.lower().strip()
        units = {"k": 10**3, "m": 10**6, "b": 10**9, "t": 10**12}
        if text[-1:] in units:
            try:
                value = int(float(text[:-1]) * units[text[-1]])
            except ValueError:
                raise ValueError(f"Unsupported value/suffix {text}. Supported suffix are "
                                 f"{list(units)}.") from None
        elif text.isdigit():
            value = int(text)
        else:
            raise ValueError(f"Unsupported value/suffix {text}. Supported suffix are "
                             f"{list(units)}.")
    else:
        value = int(epoch_size)
    if value < 0:
        raise ValueError(f"Epoch size cannot be negative. Received {value}.")
    return value or None


@dataclass(frozen=True)
class StreamSpec:
    """One stream as configured: its shards' sample counts (``index.json`` order) and at most one
    of `proportion` (relative), `repeat` or `choose` (absolute). Validated like ``Stream``."""

    samples_per_shard: NDArray[np.int64]
    proportion: Optional[float] = None
    repeat: Optional[float] = None
    choose: Optional[int] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "samples_per_shard", _as_sizes(self.samples_per_shard))
        given = [x is not None for x in (self.proportion, self.repeat, self.choose)]
        if sum(given) > 1:
            raise ValueError("At most one of `proportion`, `repeat`, and `choose` may be "
                             "specified; the others are derived")
        for name in ("proportion", "repeat", "choose"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"`{name}` must be non-negative")

    @property
    def num_samples(self) -> int:
        return int(self.samples_per_shard.sum())


@dataclass(frozen=True)
class WeightedStream:
    """A stream with resolved weights: `choose` samples per epoch; `proportion` is its share of
    the epoch and `repeat` = choose / num_samples (floats, as numpy computes them)."""

    samples_per_shard: NDArray[np.int64]
    proportion: float
    repeat: float
    choose: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "samples_per_shard", _as_sizes(self.samples_per_shard))

    @property
    def num_samples(self) -> int:
        return int(self.samples_per_shard.sum())


def apply_weights(streams: Sequence[StreamSpec], epoch_size: Union[int, str, None],
                  seed: int) -> tuple[list[WeightedStream], int]:
    """Resolve each stream's samples per epoch (``Stream.apply_weights``, docs/ordering.md §7).

    Args:
        streams: The streams, in order.
        epoch_size: The dataset's `epoch_size` (int, abbreviation string, or None/0 = unset).
        seed: ``shuffle_seed``; seeds the draw that hands out rounding shortfalls.

    Returns:
        ``(weighted_streams, epoch_size)`` with ``epoch_size = sum(choose)``.

    Raises:
        ValueError: mixed relative/absolute weights, `epoch_size` with absolute weights, a stream
            without samples, proportions summing to zero, or a negative epoch size.
    """
    if not streams:
        raise ValueError("At least one stream is required.")
    choose_per_epoch = parse_epoch_size(epoch_size)
    is_relative = streams[0].proportion is not None
    unspecified = True
    for index, stream in enumerate(streams):
        if (stream.proportion is not None) != is_relative:
            raise ValueError(f"Relative (`proportion`) and absolute (`repeat`, `choose`, none) "
                             f"stream weights are incompatible with each other (error in stream "
                             f"{index})")
        if stream.proportion is not None or stream.repeat is not None or \
                stream.choose is not None:
            unspecified = False
        if stream.num_samples <= 0:
            raise ValueError(f"Stream {index} contains no samples.")
    samples_per_stream = np.array([s.num_samples for s in streams], np.int64)

    if is_relative or (unspecified and choose_per_epoch):
        # Relative: split the epoch by (normalized) proportion, truncating, then hand the
        # shortfall out one sample each to streams drawn by default_rng(seed).choice.
        total = choose_per_epoch or int(samples_per_stream.sum())
        weights = (np.array([s.proportion for s in streams], np.float64) if is_relative
                   else samples_per_stream.astype(np.float64))
        if not weights.sum() > 0:
            raise ValueError("Stream proportions must not all be zero.")
        weights /= weights.sum()
        choose = (total * weights).astype(np.int64)
        shortfall = total - int(choose.sum())
        if not 0 <= shortfall <= len(streams):
            raise ValueError(f"Cannot distribute {total} samples over the stream proportions "
                             f"{weights.tolist()}.")
        choose[np.random.default_rng(seed).choice(len(streams), shortfall, False)] += 1
        proportion = weights
        repeat = choose / samples_per_stream
        total_out = total
    else:
        if choose_per_epoch:
            raise ValueError("Only provide `choose` when weighting streams relatively")
        choose = np.zeros(len(streams), np.int64)
        for index, stream in enumerate(streams):
            if stream.repeat is not None:
                choose[index] = int(stream.repeat * samples_per_stream[index])
            elif stream.choose is not None:
                choose[index] = stream.choose
            else:
                choose[index] = samples_per_stream[index]
        repeat = choose / samples_per_stream
        with np.errstate(invalid="ignore", divide="ignore"):
            proportion = choose / choose.sum()
        total_out = int(choose.sum())

    weighted = [
        WeightedStream(s.samples_per_shard, float(p), float(r), int(c))
        for s, p, r, c in zip(streams, proportion, repeat, choose)
    ]
    return weighted, int(total_out)


@dataclass(frozen=True)
class StreamLayout:
    """Where each stream's shards and samples sit in the concatenation of all streams."""

    samples_per_shard: NDArray[np.int64]  # all shards, streams concatenated
    sample_offset_per_shard: NDArray[np.int64]
    shard_offset_per_stream: NDArray[np.int64]
    shards_per_stream: NDArray[np.int64]
    sample_offset_per_stream: NDArray[np.int64] = field(repr=False)


def stream_layout(streams: Sequence[Union[StreamSpec, WeightedStream]]) -> StreamLayout:
    """Shard/sample offsets of the concatenated streams (global sample id = index into it)."""
    sizes = [s.samples_per_shard for s in streams]
    shards_per_stream = np.array([x.size for x in sizes], np.int64)
    samples_per_shard = np.concatenate(sizes) if sizes else np.zeros(0, np.int64)
    samples_per_stream = np.array([int(x.sum()) for x in sizes], np.int64)
    return StreamLayout(
        samples_per_shard=samples_per_shard,
        sample_offset_per_shard=np.cumsum(samples_per_shard) - samples_per_shard,
        shard_offset_per_stream=np.cumsum(shards_per_stream) - shards_per_stream,
        shards_per_stream=shards_per_stream,
        sample_offset_per_stream=np.cumsum(samples_per_stream) - samples_per_stream,
    )


def resample_streams(streams: Sequence[WeightedStream],
                     seed: int,
                     epoch: int,
                     *,
                     shuffle: bool,
                     sampling_method: str = "balanced",
                     sampling_granularity: int = 1,
                     stream_id: Optional[int] = None
                     ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The epoch's up/down-sampling (``StreamingDataset.resample_streams``, docs/ordering.md §4.6 B).

    Args:
        streams: All streams, with resolved weights, in dataset order.
        seed: ``shuffle_seed``.
        epoch: The epoch.
        shuffle: The dataset's `shuffle` flag (with ``balanced`` it makes the shard sampling
            change every epoch).
        sampling_method: ``'balanced'`` (fresh partial-shard draws each epoch) or ``'fixed'``.
        sampling_granularity: Samples per pick of :func:`get_sampling`.
        stream_id: Resample only this stream (with its own generator), or all when None.

    Returns:
        ``(shuffle_units, small_per_big)``: unit sizes (per shard: whole copies, then the partial
        remainder) and, for each epoch position ("big id"), its global sample id.
    """
    if sampling_method not in SAMPLING_METHODS:
        raise ValueError(f"Invalid sampling method: {sampling_method}. Must be one of "
                         f"`balanced` or `fixed`.")
    rng = np.random.default_rng(seed + epoch if sampling_method == "balanced" else seed)
    use_epoch = bool(shuffle) and sampling_method == "balanced"
    layout = stream_layout(streams)
    selected = range(len(streams)) if stream_id is None else [stream_id]

    units_parts, ids_parts = [], []
    for index in selected:
        first = int(layout.shard_offset_per_stream[index])
        sizes = streams[index].samples_per_shard
        offsets = layout.sample_offset_per_shard[first:first + sizes.size]
        if streams[index].choose == streams[index].num_samples:
            # Not resampled (get_sampling returns the sizes, no draws): one unit per non-empty
            # shard and the stream's ids in order.
            units_parts.append(sizes[sizes > 0])
            start = int(layout.sample_offset_per_stream[index])
            ids_parts.append(np.arange(start, start + streams[index].num_samples, dtype=np.int64))
            continue
        chosen = get_sampling(sizes, streams[index].choose, sampling_granularity, seed, epoch,
                              use_epoch)
        safe = np.maximum(sizes, 1)  # zero-sample shards contribute nothing
        full = np.where(sizes > 0, chosen // safe, 0)
        partial = np.where(sizes > 0, chosen % safe, 0)

        # Units per shard: `full` copies of its size, then the partial remainder if any.
        counts = full + (partial > 0)
        units = np.repeat(sizes, counts)
        has_partial = partial > 0
        units[(np.cumsum(counts) - 1)[has_partial]] = partial[has_partial]
        units_parts.append(units)

        # Ids per unit: a whole unit is its shard's ids in order; a partial unit is a sorted
        # random subset of the shard, drawn from the shared generator in shard order.
        unit_shard = np.repeat(np.arange(sizes.size), counts)
        ids = _concat_ranges(offsets[unit_shard], units)
        unit_starts = np.cumsum(units) - units
        partial_units = (np.cumsum(counts) - 1)[has_partial]
        choice = rng.choice
        for shard, start in zip(np.flatnonzero(has_partial).tolist(),
                                unit_starts[partial_units].tolist()):
            picked = choice(int(sizes[shard]), int(partial[shard]), False)
            picked.sort()
            ids[start:start + picked.size] = offsets[shard] + picked
        ids_parts.append(ids)

    units_all = np.concatenate(units_parts).astype(np.int64, copy=False)
    ids_all = np.concatenate(ids_parts).astype(np.int64, copy=False)
    return units_all, ids_all


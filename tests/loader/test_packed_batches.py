"""Batches copied straight from the shards into one block (mds_loader.format.gather), and the
shared-memory blocks that carry them from DataLoader workers (mds_loader.shared_blocks): the same
batches as collating the reference's samples, as the Arrow path, with 0 and 2 workers, with the
batches of a whole epoch held at once, and across epochs that reuse the blocks."""

from __future__ import annotations

import json
import pickle
from collections import namedtuple
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
import torch.multiprocessing  # noqa: F401 (registers torch's reductions with ForkingPickler)
from torch.utils.data import default_collate

import mds_loader.batch_engine as batch_engine_module
from mds_loader import MDSWriter, StreamingDataLoader, StreamingDataset, write_table
from mds_loader.batches import TextColumn
from mds_loader.errors import MDSFormatError
from mds_loader.format.gather import ColumnSlot, Layout, Slot
from mds_loader.shared_blocks import HEADER, BlockPool, SharedBatch, SharedBlock

COLUMNS = {"i8": "int8", "u16": "uint16", "u64": "uint64", "f16": "float16", "f64": "float64", "big": "int",
           "s": "str", "b": "bytes", "grid": "ndarray:int16:3,2", "vec": "ndarray:float32", "any": "ndarray"}
ROWS = 2600
Pair = namedtuple("Pair", "x y")

# default_collate fails on uint64 scalars (torch.as_tensor), and an ndarray of any dtype has no
# tensor form: the comparisons with collated samples leave them out.
COLLATABLE = [c for c in COLUMNS if c not in ("any", "u64")]

# The reference's ndarray values are read-only numpy arrays; default_collate warns once about them.
pytestmark = pytest.mark.filterwarnings("ignore:The given NumPy array is not writable")


def _sample(i: int) -> dict:
    return {"i8": i % 120 - 60, "u16": i * 7 % 65536, "u64": 2**63 + i, "f16": np.float16(i / 8), "f64": i / 3,
            "big": 10**15 + i, "s": "é" * (i % 5) + str(i), "b": bytes([i % 256]) * (i % 7),
            "grid": (np.arange(6, dtype=np.int16).reshape(3, 2) * i) % 1000, "vec": np.arange(4, dtype=np.float32) + i,
            "any": np.full((2, 2), i, np.int32)}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    """Every column kind the block path copies, in many small shards (a chunk spans several)."""
    path = tmp_path_factory.mktemp("packed") / "mixed"
    with MDSWriter(out=str(path), columns=COLUMNS, size_limit=6000, compression="zstd") as writer:
        for i in range(ROWS):
            writer.write(_sample(i))
    return path


def _same(a, b) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
            assert torch.equal(a[k], b[k]), k
        elif isinstance(a[k], np.ndarray):
            assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
            assert np.array_equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k
            assert [type(x) for x in a[k]] == [type(x) for x in b[k]], k


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_equal_collated_samples(mixed, workers):
    """The default loop (whole batches) and per-sample collation give the same batches; every
    batch of the epoch is held until the end, so no block is reused while still in use."""
    kwargs = dict(batch_size=16, shuffle=True, shuffle_seed=7, columns=COLLATABLE)
    fast = StreamingDataLoader(StreamingDataset(local=str(mixed), **kwargs), batch_size=16, num_workers=workers)
    slow = StreamingDataLoader(StreamingDataset(local=str(mixed), **kwargs), batch_size=16, num_workers=workers,
                               collate_fn=default_collate)
    assert fast.uses_batch_decoding and not slow.uses_batch_decoding
    for _ in range(2):  # the second epoch's workers reuse the first epoch's blocks
        held = list(fast)
        expected = list(slow)
        assert len(held) == len(expected) == -(-ROWS // 16)
        for got, want in zip(held, expected):
            _same(got, want)


def test_persistent_workers_keep_their_blocks(mixed):
    kwargs = dict(batch_size=32, shuffle=True, shuffle_seed=3, columns=COLLATABLE)
    fast = StreamingDataLoader(StreamingDataset(local=str(mixed), **kwargs), batch_size=32, num_workers=2,
                               persistent_workers=True)
    slow = StreamingDataLoader(StreamingDataset(local=str(mixed), **kwargs), batch_size=32, num_workers=0,
                               collate_fn=default_collate)
    for _ in range(3):
        ids = sorted(int(x) for b in fast for x in b["big"])  # batches dropped at once: blocks are freed
        assert ids == sorted(int(x) for b in slow for x in b["big"])
    for pool in fast._blocks.pools.values():
        assert sum(b is not None for b in pool._blocks) <= len(pool._blocks)


def _arrow_path(monkeypatch) -> None:
    monkeypatch.setattr(batch_engine_module, "plan_rows", lambda *a, **k: None)


@pytest.mark.parametrize("fmt", ["torch", "numpy"])
def test_block_path_equals_arrow_path(mixed, monkeypatch, fmt):
    """With samples repeated inside chunks (epoch_size over the dataset's size) and a column
    subset in another order."""
    def batches():
        columns = ["s", "vec", "u64", "grid", "b"] + (["any"] if fmt == "numpy" else [])
        ds = StreamingDataset(local=str(mixed), batch_size=64, shuffle=True, epoch_size=int(ROWS * 2.5), columns=columns)
        return list(ds.iter_batches(fmt))

    packed = batches()
    _arrow_path(monkeypatch)
    arrow = batches()
    assert len(packed) == len(arrow)
    for got, want in zip(packed, arrow):
        if fmt == "numpy":
            for k in ("s", "b"):
                assert got[k].tolist() == want[k].tolist()
                got[k] = want[k] = None
            _same({k: v for k, v in got.items() if v is not None}, {k: v for k, v in want.items() if v is not None})
        else:
            _same(got, want)


@pytest.fixture(scope="module")
def large(tmp_path_factory) -> Path:
    """Values of tens of KB (copied one slice each), str and bytes."""
    path = tmp_path_factory.mktemp("packed") / "large"
    rng = np.random.default_rng(0)
    with MDSWriter(out=str(path), columns={"id": "int64", "img": "bytes", "txt": "str"}, size_limit=1 << 20) as writer:
        for i in range(120):
            writer.write({"id": i, "img": rng.bytes(int(rng.integers(9000, 30000))), "txt": "ü" * (5000 + i)})
    return path


@pytest.mark.parametrize("workers", [0, 2])
def test_large_values(large, workers):
    kwargs = dict(batch_size=8, shuffle=True)
    fast = list(StreamingDataLoader(StreamingDataset(local=str(large), **kwargs), batch_size=8, num_workers=workers))
    slow = list(StreamingDataLoader(StreamingDataset(local=str(large), **kwargs), batch_size=8, num_workers=workers,
                                    collate_fn=default_collate))
    for got, want in zip(fast, slow, strict=True):
        _same(got, want)


def _relabel(path: Path, column: str, encoding: str) -> None:
    """Declares `column` with another encoding of the same payload layout (bytes read as str)."""
    index_path = path / "index.json"
    index = json.loads(index_path.read_text())
    for shard in index["shards"]:
        shard["column_encodings"][shard["column_names"].index(column)] = encoding
    index_path.write_text(json.dumps(index))


@pytest.mark.parametrize("size", [20, 20_000])
def test_invalid_utf8_is_the_arrow_path_error(tmp_path, size):
    path = tmp_path / "bad"
    with MDSWriter(out=str(path), columns={"id": "int64", "t": "bytes"}, compression=None) as writer:
        for i in range(50):
            writer.write({"id": i, "t": (b"ok" * size)[:size] if i != 31 else b"\xff" * size})
    _relabel(path, "t", "str")
    ds = StreamingDataset(local=str(path), batch_size=10, shuffle=False)
    with pytest.raises(MDSFormatError, match=r"sample 31, column 't': not valid UTF-8"):
        list(ds.iter_batches("torch"))


def test_ragged_and_text_number_columns_take_the_arrow_path(tmp_path):
    path = tmp_path / "ragged"
    with MDSWriter(out=str(path), columns={"id": "int64", "r": "ndarray:int32", "n": "str_int"}) as writer:
        for i in range(40):
            writer.write({"id": i, "r": np.arange(1 + i % 3, dtype=np.int32), "n": i * 3})
    ds = StreamingDataset(local=str(path), batch_size=8, shuffle=False, columns=["id", "n"])
    batches = list(ds.iter_batches("torch"))
    assert torch.equal(torch.cat([b["n"] for b in batches]), torch.arange(40) * 3)
    ragged = StreamingDataset(local=str(path), batch_size=8, shuffle=False)
    arrays = [a for b in ragged.iter_batches("numpy") for a in b["r"]]
    assert [a.tolist() for a in arrays] == [list(range(1 + i % 3)) for i in range(40)]
    with pytest.raises(RuntimeError, match="stack expects each tensor to be equal size"):
        list(ragged.iter_batches("torch"))


def test_null_stops_at_its_batch(tmp_path):
    path = tmp_path / "nulls"
    values = [float(i) if i != 37 else None for i in range(60)]
    write_table(pa.table({"id": pa.array(range(60), pa.int64()), "x": pa.array(values, pa.float64())}), str(path))
    ds = StreamingDataset(local=str(path), batch_size=10, shuffle=False)
    got = []
    with pytest.raises(TypeError, match=r"column 'x' is null in sample 37"):
        for batch in ds.iter_batches("torch"):
            got.append(batch["id"])
    assert torch.equal(torch.cat(got), torch.arange(30))


# ---------------------------------------------------------------- shared blocks


def _layout() -> Layout:
    return Layout(192, 2, (ColumnSlot("n", Slot(0, np.dtype(np.int64), (2,))),
                           ColumnSlot("t", Slot(64, np.dtype(np.uint8), (5,)), Slot(128, np.dtype(np.int64), (3,)), True)))


def _fill(block: torch.Tensor) -> None:
    payload = block.numpy()[HEADER:]
    payload[:16] = np.array([7, 9], np.int64).view(np.uint8)
    payload[64:69] = np.frombuffer(b"abcde", np.uint8)
    payload[128:152] = np.array([0, 2, 5], np.int64).view(np.uint8)


def test_block_is_free_once_the_last_view_is_gone():
    pool = BlockPool(size=2)
    slot, block, known = pool.take(_layout().nbytes)
    assert not known
    _fill(block)
    sent = ForkingPickler.dumps(SharedBlock(block, slot, _layout()))  # as a worker's queue sends it
    received = pickle.loads(sent)  # (in this process: torch maps the same pages)
    assert received.handle.data_ptr() == block.data_ptr()
    columns = received.columns(received.handle)
    assert columns["n"].tolist() == [7, 9] and columns["t"][0:2] == ["ab", "cde"]
    numbers, text = columns["n"][1:], columns["t"]
    del columns, received
    assert block.numpy()[0] == 1  # a tensor and a text column still use the block
    del numbers
    assert block.numpy()[0] == 1
    assert isinstance(text, TextColumn)
    del text
    assert block.numpy()[0] == 0
    assert pool.take(100) == (slot, block, True)  # the free block is reused; the receiver maps it


def test_pool_never_hands_out_a_block_in_use():
    pool = BlockPool(size=2)
    a = pool.take(1000)
    b = pool.take(1000)
    assert a[0] != b[0]
    c = pool.take(1000)  # both in use: a new block replaces one of them (its user keeps it alive)
    assert c[1] is not a[1] and c[1] is not b[1] and not c[2]
    assert c[1].numpy()[0] == 1
    small_free = pool.take(10)[1]
    small_free.numpy()[0] = 0
    big = pool.take(8 << 20)  # a free block that is too small is replaced
    assert len(big[1]) >= HEADER + (8 << 20)


def test_shared_batch_round_trip_keeps_structure_and_dtypes():
    """Any batch a collate_fn makes: nested containers, named tuples, dtypes numpy lacks, tensors
    that are not packed (non-contiguous, requiring grad) and other values."""
    from mds_loader.shared_blocks import WorkerBlocks

    batch = {"a": torch.arange(10, dtype=torch.bfloat16), "b": [torch.ones(2, 3, dtype=torch.bool), "s"],
             "c": Pair(torch.zeros(0), torch.arange(6).reshape(2, 3).t()), "d": ["x", "y"], "e": 3,
             "f": (torch.full((2,), 7, dtype=torch.complex64),), "g": torch.ones(2, requires_grad=True)}
    blocks = WorkerBlocks()
    packed = SharedBatch.pack(batch, blocks, worker=0)
    assert isinstance(packed, SharedBatch) and packed.handle is not None
    received = pickle.loads(ForkingPickler.dumps(packed))
    got = received.unpack(blocks.resolve(0, received.slot, received.handle))
    assert type(got["c"]) is Pair and got["d"] == ["x", "y"] and got["e"] == 3 and got["b"][1] == "s"
    for path in (("a",), ("b", 0), ("c", 0), ("c", 1), ("f", 0), ("g",)):
        x, y = got, batch
        for key in path:
            x, y = x[key], y[key]
        assert x.dtype == y.dtype and x.shape == y.shape and torch.equal(x.detach(), y.detach()), path
    assert got["g"].requires_grad
    assert SharedBatch.pack({"s": ["a"]}, blocks, worker=0) == {"s": ["a"]}  # nothing to pack


def test_spawned_workers_start_with_empty_pools(mixed):
    """Workers started by spawn get the loader pickled: their pools start empty and every block
    is sent with its handle the first time."""
    kwargs = dict(batch_size=32, shuffle=True, shuffle_seed=11, columns=COLLATABLE)
    for collate in (None, default_collate):
        extra = {} if collate is None else {"collate_fn": collate}
        spawned = StreamingDataLoader(StreamingDataset(local=str(mixed), **kwargs), batch_size=32, num_workers=2,
                                      multiprocessing_context="spawn", persistent_workers=True, **extra)
        forked = StreamingDataLoader(StreamingDataset(local=str(mixed), **kwargs), batch_size=32, num_workers=2,
                                     collate_fn=default_collate)
        for _ in range(2):
            for got, want in zip(spawned, forked, strict=True):
                _same(got, want)


def _after_cut_epochs(loader: StreamingDataLoader) -> list:
    for stop in (3, 40, 7, 90):
        for k, _ in enumerate(loader):  # each iteration is the next epoch
            if k == stop:
                break
        else:
            raise AssertionError("the epoch ended before the cut")
    return list(loader)


@pytest.mark.parametrize("collate", [None, default_collate])
def test_epochs_cut_short_with_persistent_workers(mixed, collate):
    """Breaking out of an epoch makes the DataLoader drop what the persistent workers had sent
    already (blocks the training process never saw); every later batch must still be right."""
    kwargs = dict(batch_size=16, shuffle=True, shuffle_seed=5, columns=COLLATABLE)
    extra = {} if collate is None else {"collate_fn": collate}
    loader = StreamingDataLoader(StreamingDataset(local=str(mixed), **kwargs), batch_size=16, num_workers=2,
                                 persistent_workers=True, prefetch_factor=4, **extra)
    reference = StreamingDataLoader(StreamingDataset(local=str(mixed), **kwargs), batch_size=16, num_workers=2,
                                    collate_fn=default_collate)
    for got, want in zip(_after_cut_epochs(loader), _after_cut_epochs(reference), strict=True):
        _same(got, want)


def test_null_with_samples_repeated_in_a_chunk(tmp_path, monkeypatch):
    """Each sample appears three times per epoch (epoch_size): the null is found at the same
    batch as through Arrow, after the same batches."""
    path = tmp_path / "nulls"
    values = [float(i) if i != 23 else None for i in range(40)]
    write_table(pa.table({"id": pa.array(range(40), pa.int64()), "x": pa.array(values, pa.float64())}), str(path))

    def run():
        ds = StreamingDataset(local=str(path), batch_size=8, shuffle=True, shuffle_seed=1, epoch_size=120)
        got = []
        with pytest.raises(TypeError, match=r"column 'x' is null in sample \d+") as caught:
            for batch in ds.iter_batches("torch"):
                got.append(batch["x"])
        return torch.cat(got), str(caught.value)

    packed, packed_error = run()
    _arrow_path(monkeypatch)
    arrow, arrow_error = run()
    assert torch.equal(packed, arrow) and packed_error == arrow_error

"""The pieces of batch decoding: a text column of a chunk, sliced into batches and sent between
processes as a DataLoader worker sends it."""

from __future__ import annotations

import multiprocessing as mp

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mds_loader.batches import TextColumn


def _roundtrip_in_child(queue, received, column: TextColumn) -> None:
    queue.put(column)  # pickled by the queue's ForkingPickler, like a DataLoader worker's chunk
    received.wait(60)  # a sender of shared tensors lives until they are received (as workers do)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=12), max_size=40), st.integers(0, 45), st.integers(0, 45))
def test_prop_text_column_slices_are_the_values(values, a, b):
    column = TextColumn.from_arrow(pa.array(values, pa.string()))
    assert len(column) == len(values)
    assert column[a:b] == values[a:b]
    assert column[:] == values


def test_text_column_of_a_sliced_binary_array():
    values = [b"", b"\x00\x01", b"abc" * 1000, b"z"]
    arr = pa.array(values * 3, pa.binary()).slice(2, 7)  # non-zero offset into the buffers
    column = TextColumn.from_arrow(arr)
    assert column[0:7] == arr.to_pylist()
    assert column[3:5] == arr.to_pylist()[3:5]


def test_text_column_with_nulls_stays_a_list():
    assert TextColumn.from_arrow(pa.array(["a", None])) == ["a", None]


@pytest.mark.parametrize("values", [["ab", "", "é" * 3, "z" * 100_000], []])
def test_text_column_travels_between_processes_in_shared_memory(values):
    ctx = mp.get_context("fork")
    queue, received = ctx.Queue(), ctx.Event()
    column = TextColumn.from_arrow(pa.array(values, pa.string()))
    proc = ctx.Process(target=_roundtrip_in_child, args=(queue, received, column))
    proc.start()
    got = queue.get(timeout=60)
    received.set()
    proc.join(60)
    assert isinstance(got, TextColumn)
    assert got[0 : len(values)] == values
    assert all(type(v) is str for v in got[:])

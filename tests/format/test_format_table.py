"""write_table -> read_table round trips for every Arrow type of the mapping (docs/format.md §2),
with nulls, empty values and extremes; encoding overrides; null masks; unsupported types."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mds_tagged import assert_tables_equal
from PIL import Image

from mds_loader import MDSSchemaError, read_table, write_table
from mds_loader.format import MDSDataset, load_index

UTC = dt.timezone.utc
I64 = np.iinfo(np.int64)


def full_table() -> pa.Table:
    """Every mapped Arrow type, 5 rows each, with nulls, empty values and extremes."""
    f16 = np.array([-np.inf, np.inf, np.nan, -0.0, 65504], np.float16)
    cols = {
        "i8": pa.array([-128, 127, 0, None, 1], pa.int8()),
        "i16": pa.array([-(2**15), 2**15 - 1, 0, None, 1], pa.int16()),
        "i32": pa.array([-(2**31), 2**31 - 1, 0, None, 1], pa.int32()),
        "i64": pa.array([I64.min, I64.max, 0, None, 1], pa.int64()),
        "u8": pa.array([0, 255, None, 1, 2], pa.uint8()),
        "u16": pa.array([0, 2**16 - 1, None, 1, 2], pa.uint16()),
        "u32": pa.array([0, 2**32 - 1, None, 1, 2], pa.uint32()),
        "u64": pa.array([0, 2**64 - 1, None, 1, 2**63], pa.uint64()),
        "f16": pa.array(f16, mask=np.array([0, 0, 0, 0, 1], bool)),
        "f32": pa.array([np.float32(3.4028235e38), -np.inf, np.nan, np.float32(1e-45), None], pa.float32()),
        "f64": pa.array([5e-324, -1.7976931348623157e308, np.nan, -0.0, None], pa.float64()),
        "flag": pa.array([True, False, None, True, False]),
        "s": pa.array(["", "héllo ✓ \u0000", None, "x" * 1000, "\U0001f600"]),
        "ls": pa.array(["a", "", None, "b", "c"], pa.large_string()),
        "bin": pa.array([b"", b"\x00", None, bytes(range(256)), b"z"]),
        "lbin": pa.array([b"", b"\xff", None, b"a", b"b"], pa.large_binary()),
        "fbin": pa.array([b"abc", b"\x00\x00\x00", None, b"xyz", b"123"], pa.binary(3)),
        "dec": pa.array([Decimal("-12.50"), Decimal("0.00"), None, Decimal("99999999.99"), Decimal("-0.01")], pa.decimal128(10, 2)),
        "dec38": pa.array([Decimal("9" * 28 + "." + "9" * 10), Decimal(0), None, Decimal("-1e-10"), Decimal(1)], pa.decimal128(38, 10)),
        "dec0": pa.array([Decimal(5), Decimal(-(10**17)), None, Decimal(0), Decimal(1)], pa.decimal128(18, 0)),
        "d": pa.array([dt.date(1, 1, 1), dt.date(9999, 12, 31), None, dt.date(1970, 1, 1), dt.date(1969, 12, 31)]),
        "d64": pa.array([0, 86400000, None, -86400000, 864000000000], pa.date64()),
        "ts": pa.array([dt.datetime(1, 1, 1, tzinfo=UTC), dt.datetime(2024, 2, 29, 12, 0, 0, 1, tzinfo=UTC), None,
                        dt.datetime(1970, 1, 1, tzinfo=UTC), dt.datetime(9999, 12, 31, tzinfo=UTC)], pa.timestamp("us", "UTC")),
        "ts_ms": pa.array([0, 1, None, -1, 10**12], pa.timestamp("ms", "Europe/Paris")),
        "ts_ns": pa.array([0, 1000, None, -1000, 10**15], pa.timestamp("ns")),
        "ts_ntz": pa.array([dt.datetime(2000, 1, 1), None, dt.datetime(1900, 6, 1, 1, 2, 3), dt.datetime(1970, 1, 1), None]),
        "dur": pa.array([0, -1, None, I64.max, I64.min + 1], pa.duration("us")),
        "dur_s": pa.array([0, -1, None, 86400, 5], pa.duration("s")),
        "l_i32": pa.array([[1, 2, 3], [], None, [-(2**31)], [0] * 300], pa.list_(pa.int32())),
        "l_f64": pa.array([[np.nan, -0.0], [], None, [np.inf], [1e-300]], pa.large_list(pa.float64())),
        "l_bool": pa.array([[True, False], [], None, [False], [True] * 9]),
        "l_u64": pa.array([[2**64 - 1], [], None, [0, 1], []], pa.list_(pa.uint64())),
        "l_f16": pa.array([np.array([1.5], np.float16), np.zeros(0, np.float16), None, np.array([-np.inf], np.float16),
                           np.zeros(2, np.float16)], pa.list_(pa.float16())),
        "ll_i16": pa.array([[[1, 2], [3, 4], [5, 6]], [], None, [[7]], [[], []]], pa.list_(pa.list_(pa.int16()))),
        "lll_u8": pa.array([[[[1]]], [[[2, 3]], [[4, 5]]], None, [], [[[0] * 3] * 2] * 2], pa.list_(pa.list_(pa.list_(pa.uint8())))),
        "fl_f32": pa.array([[1, 2, 3], [4, 5, 6], None, [0, 0, 0], [-1, -2, -3]], pa.list_(pa.float32(), 3)),
        "ffl_i8": pa.array([[[1, 2], [3, 4]], None, [[0, 0], [0, 0]], [[-1, -1], [5, 5]], [[9, 9], [9, 9]]], pa.list_(pa.list_(pa.int8(), 2), 2)),
        "lfl_f32": pa.array([[[1, 2]], [], None, [[3, 4], [5, 6]], [[0, 0]]], pa.list_(pa.list_(pa.float32(), 2))),
        "l_str": pa.array([["a", None, ""], [], None, ["é"], ["x"] * 3], pa.list_(pa.string())),
        "l_bin": pa.array([[b"\x00", b""], [], None, [b"abc"], [None]], pa.list_(pa.binary())),
        "l_dec": pa.array([[Decimal("1.5")], [], None, [None, Decimal("-2.0")], []], pa.list_(pa.decimal128(4, 1))),
        "l_i32_nulls": pa.array([[1, None], [], None, [3], []], pa.list_(pa.int32())),
        "ragged": pa.array([[[1], [2, 3]], [], None, [[4]], [[5, 6], [7]]], pa.list_(pa.list_(pa.int64()))),
        "st": pa.array([{"a": 1, "b": "x", "c": [1.5, np.nan], "d": {"e": dt.date(2020, 1, 2)}}, None,
                        {"a": None, "b": None, "c": None, "d": None}, {"a": -1, "b": "", "c": [], "d": {"e": None}},
                        {"a": 0, "b": "é", "c": [np.inf, -np.inf], "d": {"e": dt.date(1, 1, 1)}}],
                       pa.struct([("a", pa.int32()), ("b", pa.string()), ("c", pa.list_(pa.float64())),
                                  ("d", pa.struct([("e", pa.date32())]))])),
        "st_ts": pa.array([{"t": 1, "b": b"\x01"}, None, {"t": None, "b": None}, {"t": -5, "b": b""}, {"t": 0, "b": b"zz"}],
                          pa.struct([("t", pa.timestamp("us", "UTC")), ("b", pa.binary())])),
        "m_str": pa.array([[("k", 1), ("j", None)], [], None, [("é", -5)], [("a", 2**62)]], pa.map_(pa.string(), pa.int64())),
        "m_int": pa.array([[(1, "a")], [], None, [(-2, None), (3, "")], [(0, "z")]], pa.map_(pa.int32(), pa.string())),
        "dict": pa.array(["a", "b", None, "a", ""]).dictionary_encode(),
    }  # fmt: skip
    return pa.table(cols)


# the Arrow types read back where they differ from the written ones
READ_TYPES = {
    "ls": pa.string(), "lbin": pa.binary(), "fbin": pa.binary(), "d64": pa.date32(),
    "ts_ms": pa.timestamp("us", "UTC"), "ts_ns": pa.timestamp("us"), "dur_s": pa.duration("us"),
    "l_f64": pa.list_(pa.float64()), "dict": pa.string(), "lfl_f32": pa.list_(pa.list_(pa.float32())),
}  # fmt: skip
DEFAULT_ENCODINGS = {
    "i8": "int8", "u16": "uint16", "u64": "uint64", "f16": "float16", "flag": "uint8", "s": "str", "bin": "bytes",
    "fbin": "bytes", "dec": "str_decimal", "d": "int32", "ts": "int64", "dur": "int64", "l_i32": "ndarray:int32",
    "l_bool": "ndarray:uint8", "l_u64": "ndarray:uint64", "lll_u8": "ndarray:uint8", "ll_i16": "ndarray:int16", "fl_f32": "ndarray:float32:3",
    "ffl_i8": "ndarray:int8:2,2", "lfl_f32": "ndarray:float32", "l_str": "json", "l_bin": "json", "st": "json",
    "m_str": "json", "dict": "str",
}  # fmt: skip
NOT_NDARRAY = {"l_i32_nulls": "json", "ragged": "json"}


def expected_read(table: pa.Table) -> pa.Table:
    cols = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        cols[name] = col.cast(READ_TYPES.get(name, col.type))
    return pa.table(cols)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[pa.Table, Path]:
    table = full_table()
    path = tmp_path_factory.mktemp("t") / "ds"
    write_table(table, path, columns=NOT_NDARRAY, size_limit=1 << 12, hashes=["xxh64"])
    return table, path


def test_round_trip_of_every_type(written) -> None:
    table, path = written
    got = read_table(path, validate_hash="xxh64")
    assert_tables_equal(got, expected_read(table))
    encodings = dict(zip(load_index(path).shards[0].column_names, load_index(path).shards[0].column_encodings))
    for name, enc in {**DEFAULT_ENCODINGS, **NOT_NDARRAY}.items():
        assert encodings[name] == enc, name
    assert encodings["__nulls__"] == f"ndarray:uint8:{(table.num_columns + 7) // 8}"


def test_bit_exact_floats(written) -> None:
    table, path = written
    got = read_table(path, ["f16", "f32", "f64"])
    for name in ("f16", "f32", "f64"):
        a = table.column(name).combine_chunks()
        b = got.column(name).combine_chunks()
        valid = np.asarray(a.is_valid())
        assert np.array_equal(np.asarray(b.is_valid()), valid)
        assert a.to_numpy(zero_copy_only=False)[valid].tobytes() == b.to_numpy(zero_copy_only=False)[valid].tobytes()


def test_logical_schema_in_the_index(written) -> None:
    table, path = written
    index = load_index(path)
    types = {f.name: f.type for f in index.fields}
    assert [f.name for f in index.fields] == table.column_names  # logical order, not sorted
    assert index.null_mask == "__nulls__"
    assert types["u8"] == "short" and types["u64"] == "decimal(20,0)" and types["f16"] == "float"
    assert types["ts_ms"] == "timestamp" and types["ts_ns"] == "timestamp_ntz" and types["dur"] == "interval day to second"
    assert types["m_int"] == {"keyType": "integer", "type": "map", "valueContainsNull": True, "valueType": "string"}
    assert types["fl_f32"] == {"containsNull": True, "elementType": "float", "type": "array"}


def test_nulls_are_stored_as_zero_values(written) -> None:
    """What the reference (and get_sample) sees: zeros plus the __nulls__ bitmap (§3)."""
    table, path = written
    with MDSDataset(path) as ds:
        row = ds[2]
        nulls = np.unpackbits(row["__nulls__"], bitorder="little")[: table.num_columns].astype(bool)
        assert nulls.tolist() == [table.column(c)[2].as_py() is None for c in table.column_names]
        assert row["i8"] == 0 and type(row["i8"]) is np.int8
        assert row["s"] == "" and row["bin"] == b"" and row["dec"] == Decimal("0") and row["d"] == 0
        assert row["flag"] == 0 and row["ts"] == 0
        assert row["l_i32"].shape == (0,) and row["ll_i16"].shape == (0, 0) and row["lll_u8"].shape == (0, 0, 0)
        assert row["fl_f32"].tolist() == [0, 0, 0] and ds[1]["st"] is None and row["m_str"] is None
        assert ds[1]["ffl_i8"].tolist() == [[0, 0], [0, 0]]
        assert ds[0]["st"] == {"a": 1, "b": "x", "c": [1.5, "NaN"], "d": {"e": 18263}}  # §5
        assert ds[0]["st_ts"] == {"t": 1, "b": base64.b64encode(b"\x01").decode()}
        assert ds[0]["m_int"] == [[1, "a"]] and ds[3]["m_str"] == {"é": -5}
        assert ds[0]["dec38"] == Decimal("9" * 28 + "." + "9" * 10) and ds[3]["dec38"] == Decimal("-0.0000000001")


def test_read_some_columns(written) -> None:
    _, path = written
    got = read_table(path, ["st", "i8"])
    assert got.column_names == ["st", "i8"]
    with pytest.raises(KeyError, match="unknown columns \\['nope'\\]"):
        read_table(path, ["nope"])
    with MDSDataset(path) as ds:
        batch = ds.shard(0).read_batch([2, 0, 2, 1], ["s", "l_i32"])
        assert batch.column(0).to_pylist() == [None, "", None, "héllo ✓ \u0000"]
        assert batch.column(1).to_pylist() == [None, [1, 2, 3], None, []]


def test_nullability_is_kept(tmp_path: Path) -> None:
    schema = pa.schema([pa.field("a", pa.int32(), nullable=False), pa.field("b", pa.string(), nullable=False)])
    table = pa.table({"a": pa.array([1, 2], pa.int32()), "b": ["x", "y"]}, schema=schema)
    write_table(table, tmp_path / "ds", nulls="mask")
    assert "__nulls__" not in load_index(tmp_path / "ds").shards[0].column_names  # nothing nullable
    got = read_table(tmp_path / "ds")
    assert got.schema.equals(schema) and got.equals(table)


def test_nulls_modes(tmp_path: Path) -> None:
    clean = pa.table({"a": [1, 2], "b": ["x", "y"]})
    dirty = pa.table({"a": [1, None], "b": ["x", "y"]})
    write_table(clean, tmp_path / "auto_clean")
    write_table(dirty, tmp_path / "auto_dirty")
    write_table(clean, tmp_path / "mask", nulls="mask")
    write_table(iter(clean.to_batches()), tmp_path / "iter")  # batches: nulls may come later

    def has_mask(name: str) -> bool:
        return "__nulls__" in load_index(tmp_path / name).shards[0].column_names

    assert not has_mask("auto_clean") and has_mask("auto_dirty") and has_mask("mask") and has_mask("iter")
    assert read_table(tmp_path / "auto_clean").equals(clean) and read_table(tmp_path / "auto_dirty").equals(dirty)
    with pytest.raises(MDSSchemaError, match="column 'a' has nulls, but this dataset stores none"):
        write_table(dirty, tmp_path / "error", nulls="error")


def test_batch_inputs(tmp_path: Path) -> None:
    table = pa.table({"x": pa.array(range(1000), pa.int64()), "y": [str(i) for i in range(1000)]})
    write_table(table.to_batches(max_chunksize=100), tmp_path / "a", size_limit=2000)
    write_table(pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=300)), tmp_path / "b", size_limit=2000)
    write_table(table.to_batches()[0], tmp_path / "c", size_limit=2000)
    for name in "abc":
        assert read_table(tmp_path / name).equals(table)
    assert len(load_index(tmp_path / "a").shards) > 5
    other = pa.record_batch([pa.array([1], pa.int32()), pa.array(["a"])], names=["x", "y"])
    with pytest.raises(MDSSchemaError, match=r"batch schema differs from the writer's: changed \['x: int32'\]"):
        write_table([table.to_batches()[0], other], tmp_path / "d")
    with pytest.raises(MDSSchemaError, match="no batches"):
        write_table([], tmp_path / "e")


# ---------------------------------------------------------------------------- overrides


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 3), (10, 20, 30)).save(out, format="JPEG")
    return out.getvalue()


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("L", (2, 2), 7).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    ("values", "encoding", "expect"),
    [
        (pa.array([1, -5, None], pa.int64()), "int32", None),
        (pa.array([1, 300], pa.int16()), "uint16", None),
        (pa.array([2**62, -1, None], pa.int64()), "str_int", None),
        (pa.array([2**62, -1], pa.int64()), "int", None),
        (pa.array([7, 8], pa.int8()), "uint64", None),
        (pa.array([0.1, np.nan, None], pa.float64()), "str_float", None),
        (pa.array([0.1, 1e300, -np.inf], pa.float64()), "float32", [float(np.float32(0.1)), np.inf, -np.inf]),
        # float16 is the natural type of 'float16' for a logical float: it is read as float16 (§4)
        (pa.array([0.1, 1e5], pa.float32()), "float16", pa.array(np.array([0.1, np.inf], np.float16))),
        (pa.array([1.5], pa.float32()), "str_float", None),
        (pa.array([True, False, None]), "int8", None),
        (pa.array(['{"a": [1, 2]}', "null", None]), "json", None),
        (pa.array([_jpeg(), b"", None]), "jpeg", None),
        (pa.array([_png()]), "png", None),
        (pa.array([b"\x80\x04K\x01."]), "pkl", None),
        (pa.array([[1, 2], [3]], pa.list_(pa.int64())), "ndarray:int16", None),
        (pa.array([[1, 2], [3]], pa.list_(pa.int64())), "ndarray:float64", None),
        (pa.array([[1.0, 2.0], [3.0]], pa.list_(pa.float64())), "ndarray:int8", None),
        (pa.array([[1, 2, 3, 4], [5, 6, 7, 8], None], pa.list_(pa.int32())), "ndarray:int32:2,2", None),
        # the natural type of a static shape: fixed-size lists (§4)
        (pa.array([[[1, 2], [3, 4]], None], pa.list_(pa.list_(pa.uint8()))), "ndarray:uint8:2,2",
         pa.array([[[1, 2], [3, 4]], None], pa.list_(pa.list_(pa.uint8(), 2), 2))),
        (pa.array([[1, 2], None], pa.list_(pa.int32())), "json", None),
        (pa.array([[1.5, np.nan]], pa.list_(pa.float64())), "json", None),
        (pa.array([[_jpeg(), _jpeg()], [], None]), "list[jpeg]", None),
        (pa.array([[_png()], []]), "list[png]", None),
        (pa.array([[_jpeg()], [_jpeg(), _jpeg()]]), "jpeg_array", None),
        (pa.array([[b"\x01\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00L\x05"]]), "list[pil]", None),
    ],
)  # fmt: skip
def test_allowed_overrides_round_trip(tmp_path: Path, values: pa.Array, encoding: str, expect) -> None:
    table = pa.table({"c": values})
    write_table(table, tmp_path / "ds", columns={"c": encoding})
    assert load_index(tmp_path / "ds").shards[0].column_encodings[-1] == encoding
    got = read_table(tmp_path / "ds")
    if expect is None:
        assert_tables_equal(got, table)
    elif isinstance(expect, pa.Array):
        assert_tables_equal(got, pa.table({"c": expect}))
    else:
        assert got.schema.equals(table.schema)
        assert json.dumps(got.column("c").to_pylist()) == json.dumps(expect)


@pytest.mark.parametrize(
    ("values", "encoding", "message"),
    [
        (pa.array([1], pa.int64()), "float32", "column 'c' of type long cannot be stored as 'float32'; allowed: int8, int16"),
        (pa.array(["x"]), "bytes", "column 'c' of type string cannot be stored as 'bytes'; allowed: str, json"),
        (pa.array([True]), "str", "type boolean cannot be stored as 'str'"),
        (pa.array([dt.date(2020, 1, 1)]), "int64", "type date cannot be stored as 'int64'; allowed: int32"),
        (pa.array([{"a": 1}]), "ndarray:int32", "struct<a:long> cannot be stored as 'ndarray:int32'; allowed: json"),
        (pa.array([[1]], pa.list_(pa.int32())), "ndarray", "allowed: ndarray:<dtype>"),
        (pa.array([[b"x"]]), "bytes", "array<binary> cannot be stored as 'bytes'; allowed: list\\[jpeg\\]"),
        (pa.array([Decimal(1)]), "int64", "decimal\\(1,0\\) cannot be stored as 'int64'; allowed: str_decimal"),
        (pa.array([1], pa.int64()), "int64:3", "column 'c': encoding 'int64' takes no ':' configuration"),
        (pa.array([300], pa.int64()), "int8", "column 'c': value 300 \\(row 0\\) does not fit int8"),
        (pa.array([-1], pa.int64()), "uint32", "value -1 \\(row 0\\) does not fit uint32"),
        (pa.array([2**63], pa.uint64()), "int", "type decimal\\(20,0\\) cannot be stored as 'int'; allowed: str_decimal"),
        (pa.array([[2.0**63]], pa.list_(pa.float64())), "ndarray:int64", "value 9.223372036854776e\\+18 \\(row 0\\) does not fit int64"),
        (pa.array([[1.5]], pa.list_(pa.float64())), "ndarray:int32", "value 1.5 \\(row 0\\) does not fit int32"),
        (pa.array([[1, 2, 3]], pa.list_(pa.int32())), "ndarray:int32:2", "row 0 has shape \\(3,\\), but 'ndarray:int32:2' needs exactly \\(2,\\)"),
        (pa.array([[[1, 2], [3, 4]]], pa.list_(pa.list_(pa.uint8()))), "ndarray:uint8:4", "row 0 has shape \\(2, 2\\), but 'ndarray:uint8:4' needs"),
        (pa.array([["{"]]).flatten(), "json", "row 0 is not valid JSON text"),
        (pa.array([b"notjpeg"]), "jpeg", "row 0 is not a JPEG file"),
        (pa.array([[b"notpng"]]), "list[png]", "row 0 is not a PNG file"),
        (pa.array([[b"x", None]]), "list[jpeg]", "lists cannot hold null elements"),
    ],
)  # fmt: skip
def test_rejected_overrides_and_values(tmp_path: Path, values: pa.Array, encoding: str, message: str) -> None:
    with pytest.raises(MDSSchemaError, match=message):
        write_table(pa.table({"c": values}), tmp_path / "ds", columns={"c": encoding})


def test_ndarray_needs_rectangular_rows_without_nulls(tmp_path: Path) -> None:
    ragged = pa.table({"c": pa.array([[[1], [2, 3]]], pa.list_(pa.list_(pa.int64())))})
    with pytest.raises(MDSSchemaError, match="column 'c': row 0 is not rectangular .* use encoding 'json'"):
        write_table(ragged, tmp_path / "a")
    holes = pa.table({"c": pa.array([[1, None]], pa.list_(pa.int64()))})
    with pytest.raises(MDSSchemaError, match="column 'c': an ndarray cannot hold null elements; use encoding 'json'"):
        write_table(holes, tmp_path / "b")
    inner = pa.table({"c": pa.array([[[1], None]], pa.list_(pa.list_(pa.int64())))})
    with pytest.raises(MDSSchemaError, match="null inner lists"):
        write_table(inner, tmp_path / "c")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (pa.array([None, None]), "column 'c' has type null, which MDS cannot store"),
        (pa.array([1], pa.time32("s")), "type time32\\[s\\]"),
        (pa.array([(1, 2, 3)], pa.month_day_nano_interval()), "month_day_nano_interval"),
        (pa.array([Decimal("1E+2")], pa.decimal128(5, -2)), "Spark decimals have at most 38 digits and a non-negative scale"),
        (pa.array([Decimal(1)], pa.decimal256(50, 2)), "Spark decimals have at most 38 digits"),
        (pa.array([[None]], pa.list_(pa.null())), "type null"),
    ],
)
def test_unsupported_types(tmp_path: Path, values: pa.Array, message: str) -> None:
    with pytest.raises(MDSSchemaError, match=message):
        write_table(pa.table({"c": values}), tmp_path / "ds")


def test_reserved_and_unknown_columns(tmp_path: Path) -> None:
    with pytest.raises(MDSSchemaError, match="'__nulls__' is reserved"):
        write_table(pa.table({"__nulls__": [1]}), tmp_path / "a")
    with pytest.raises(MDSSchemaError, match=r"encoding overrides for unknown columns \['y'\]"):
        write_table(pa.table({"x": [1]}), tmp_path / "b", columns={"y": "int32"})


def test_lossy_timestamp_conversion_is_refused(tmp_path: Path) -> None:
    table = pa.table({"t": pa.array([1001], pa.timestamp("ns"))})
    with pytest.raises(MDSSchemaError, match="column 't': cannot convert timestamp\\[ns\\] to timestamp\\[us\\]"):
        write_table(table, tmp_path / "ds")


# ---------------------------------------------------------------------------- properties

_TYPES = {
    "int8": (pa.int8(), st.integers(-128, 127)),
    "uint16": (pa.uint16(), st.integers(0, 2**16 - 1)),
    "int64": (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    "uint64": (pa.uint64(), st.integers(0, 2**64 - 1)),
    "float32": (pa.float32(), st.floats(width=32)),
    "float64": (pa.float64(), st.floats()),
    "bool": (pa.bool_(), st.booleans()),
    "string": (pa.string(), st.text(max_size=30)),
    "binary": (pa.binary(), st.binary(max_size=30)),
    "list_i32": (pa.list_(pa.int32()), st.lists(st.integers(-(2**31), 2**31 - 1), max_size=6)),
    "list_f64": (pa.list_(pa.float64()), st.lists(st.floats(), max_size=6)),
    "list_str": (pa.list_(pa.string()), st.lists(st.one_of(st.none(), st.text(max_size=5)), max_size=4)),
    "struct": (pa.struct([("a", pa.int16()), ("b", pa.string())]),
               st.fixed_dictionaries({"a": st.one_of(st.none(), st.integers(-(2**15), 2**15 - 1)), "b": st.text(max_size=5)})),
}  # fmt: skip


@st.composite
def _tables(draw) -> pa.Table:
    n = draw(st.integers(0, 25))
    names = draw(st.lists(st.sampled_from(sorted(_TYPES)), min_size=1, max_size=5, unique=True))
    cols = {}
    for name in names:
        arrow_type, values = _TYPES[name]
        cols[name] = pa.array(draw(st.lists(st.one_of(st.none(), values), min_size=n, max_size=n)), arrow_type)
    return pa.table(cols)


@settings(max_examples=40, deadline=None)
@given(_tables(), st.sampled_from([None, "zstd", "lz4", "snappy"]), st.sampled_from([None, 200, 5000]))
def test_prop_round_trip(tmp_path_factory, table: pa.Table, compression, size_limit) -> None:
    path = tmp_path_factory.mktemp("p") / "ds"
    write_table(table, path, compression=compression, size_limit=size_limit)
    got = read_table(path)
    assert_tables_equal(got, table)
    with MDSDataset(path) as ds:
        if ds.num_samples:
            shard = ds.shard(len(ds.shards) - 1)
            idx = np.arange(shard.num_samples)[::-1]
            batch = pa.Table.from_batches([shard.read_batch(idx)])
            start = int(ds.shard_offsets[len(ds.shards) - 1])
            assert_tables_equal(batch, got.slice(start, shard.num_samples).take(idx))


def test_empty_table_keeps_its_types(tmp_path: Path) -> None:
    table = full_table().slice(0, 0)
    write_table(table, tmp_path / "ds", columns=NOT_NDARRAY)
    index = load_index(tmp_path / "ds")
    assert [s.samples for s in index.shards] == [0]  # one 0-sample shard records the encodings
    got = read_table(tmp_path / "ds")
    assert got.num_rows == 0 and got.schema.equals(expected_read(table).schema)


def test_arrow_decimals_are_stored_in_plain_notation(tmp_path):
    """str_decimal text has exactly ``scale`` fraction digits, also below 1e-6 where Arrow's own
    cast writes exponents (docs/format.md; the JVM source writes the same bytes)."""
    values = [Decimal("0.000000000000000001"), None, Decimal("0"), Decimal("-1.5E-7"), Decimal("123.45")]
    out = tmp_path / "ds"
    write_table(pa.table({"dec": pa.array(values, pa.decimal128(38, 18))}), out, compression=None)
    data = (out / "shard.00000.mds").read_bytes()
    for text in (b"0.000000000000000001", b"0.000000000000000000", b"-0.000000150000000000", b"123.450000000000000000"):
        assert text in data
    assert b"E-" not in data
    assert read_table(out).column("dec").to_pylist() == values

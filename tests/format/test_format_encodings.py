"""Per-value encodings: parsing, the reference's exact bytes, and encode -> decode identity."""

from __future__ import annotations

import io
import json
import math
import pickle
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from mds_tagged import assert_same
from PIL import Image

from mds_loader import MDSEncodingError, MDSFormatError, MDSSchemaError, MDSUnsafeError
from mds_loader.format import encoding_names, is_encoding, parse_encoding

SETTINGS = settings(max_examples=60, deadline=None)
NDARRAY_DTYPES = ["uint8", "int8", "uint16", "int16", "float16", "uint32", "int32", "float32", "uint64", "int64", "float64"]


def roundtrip(encoding: str, value, **kw):
    enc = parse_encoding(encoding)
    data = enc.encode(value)
    if enc.size is not None:
        assert len(data) == enc.size
    return data, enc.decode(data, **kw)


# ---------------------------------------------------------------------------- parsing


def test_the_28_reference_names() -> None:
    assert len(encoding_names()) == 28
    for name in encoding_names():
        assert parse_encoding(name).text == name


@pytest.mark.parametrize(
    ("text", "kind", "dtype", "shape", "size"),
    [
        ("ndarray", "ndarray", None, None, None),
        ("ndarray:", "ndarray", None, None, None),
        ("ndarray:int16", "ndarray", "int16", None, None),
        ("ndarray:float32:3,224,224", "ndarray", "float32", (3, 224, 224), 3 * 224 * 224 * 4),
        ("ndarray:uint8:07", "ndarray", "uint8", (7,), 7),
        ("int", "int", "int64", None, 8),
        ("float16", "scalar", "float16", None, 2),
        ("uint64", "scalar", "uint64", None, 8),
        ("jpegarray", "jpeg_array", None, None, None),
        ("list[png]", "list", None, None, None),
    ],
)
def test_parse(text, kind, dtype, shape, size) -> None:
    enc = parse_encoding(text)
    assert (enc.kind, enc.dtype.name if enc.dtype is not None else None, enc.shape, enc.size) == (kind, dtype, shape, size)


@pytest.mark.parametrize(
    "text",
    ["foo", "foo:1", "int32:4", "str:x", "ndarray:bool", "ndarray:complex64", "ndarray:int32:0", "ndarray:int32:",
     "ndarray::3", "ndarray:int32:2,-1", "ndarray:int32:2:3", "ndarray:<i4", "list[int]", "", "Int32", "ndarray:int32: 3"],
)  # fmt: skip
def test_invalid_encodings(text: str) -> None:
    assert not is_encoding(text)
    with pytest.raises(MDSEncodingError, match="encoding|ndarray") as info:
        parse_encoding(text)
    assert isinstance(info.value, TypeError)  # the reference raises TypeError for bad columns


# ---------------------------------------------------------------------------- exact bytes


def test_reference_byte_examples() -> None:
    """The verified examples of docs/reference-format.md §2."""
    arr = np.arange(6, dtype=np.int16).reshape(2, 3)
    values = bytes.fromhex("000001000200030004000500")
    assert parse_encoding("ndarray").encode(arr) == bytes.fromhex("110802 03".replace(" ", "")) + values
    assert parse_encoding("ndarray:int16").encode(arr) == bytes.fromhex("080203") + values
    assert parse_encoding("ndarray:int16:2,3").encode(arr) == values
    vec = np.zeros(300, np.uint8)
    assert parse_encoding("ndarray").encode(vec)[:4] == bytes([8, 0x05, 0x2C, 0x01])
    assert parse_encoding("int32").encode(-1) == b"\xff\xff\xff\xff"
    assert parse_encoding("str").encode("hi") == b"hi"
    assert parse_encoding("int").encode(True) == (1).to_bytes(8, "little")
    assert parse_encoding("str_float").encode(1e16) == b"1e+16"
    assert parse_encoding("str_decimal").encode(Decimal("-12.50")) == b"-12.50"
    assert parse_encoding("json").encode({"a": "é", "b": [1, None]}) == b'{"a": "\\u00e9", "b": [1, null]}'
    assert parse_encoding("jpeg_array").encode([b"ab", b"c"]) == bytes.fromhex("02000000 02000000 01000000".replace(" ", "")) + b"abc"


def test_bytes_pass_through_for_every_encoding() -> None:
    for name in sorted(encoding_names()):
        enc = parse_encoding(name)
        raw = b"\x01\x02\x03\x04\x05\x06\x07\x08"[: enc.size or 5]
        assert enc.encode(raw) == raw
    with pytest.raises(MDSSchemaError, match="'int32' values are 4 bytes, got 3 bytes"):
        parse_encoding("int32").encode(b"abc")


def test_scalars_follow_numpy_conversions() -> None:
    assert parse_encoding("int32").encode(3.7) == (3).to_bytes(4, "little")  # truncation, like the reference
    assert parse_encoding("float16").encode(1e10) == np.float16(np.inf).tobytes()
    for text, value in [("uint8", -1), ("int8", 128), ("int64", 2**63), ("uint64", -1)]:
        with pytest.raises(MDSSchemaError, match=f"cannot encode {value} as '{text}'"):
            parse_encoding(text).encode(value)


@pytest.mark.parametrize(
    ("text", "value", "message"),
    [
        ("str", 5, "needs a str"),
        ("bytes", "x", "needs bytes"),
        ("int", "5", "needs a Python int"),
        ("int", 2**63, "cannot encode"),
        ("str_int", True, "needs an int"),
        ("str_int", 1.5, "needs an int"),
        ("str_float", 1, "needs a float"),
        ("str_decimal", 1.5, "needs a decimal.Decimal"),
        ("json", {1, 2}, "cannot encode"),
        ("ndarray", [1, 2], "needs a numpy array"),
        ("ndarray", np.array([True]), "unsupported ndarray dtype 'bool'"),
        ("ndarray", np.array(5), "0-d"),
        ("ndarray:int32", np.zeros(2, np.int64), "needs dtype int32, got int64"),
        ("ndarray:int32:2", np.zeros(3, np.int32), r"needs shape \(2,\), got \(3,\)"),
        ("str", None, "MDS has no null"),
        ("pil", "x", "needs a PIL image"),
        ("list[png]", "x", "needs a list of images"),
    ],
)
def test_values_that_do_not_fit(text: str, value, message: str) -> None:
    with pytest.raises(MDSSchemaError, match=message):
        parse_encoding(text).encode(value)


def test_ndarray_extensions() -> None:
    """Empty arrays (the reference reads but cannot write them) and big-endian input."""
    for arr in (np.zeros(0, np.int32), np.zeros((0, 0), np.float64), np.zeros((2, 0), np.uint8)):
        _, got = roundtrip("ndarray", arr)
        assert got.shape == arr.shape and got.dtype == arr.dtype
    big = np.arange(4, dtype=">i4")
    assert parse_encoding("ndarray:int32").encode(big)[2:] == np.arange(4, dtype="<i4").tobytes()
    data, got = roundtrip("ndarray", np.zeros((300, 70000), np.uint8)[:, :1])  # shape code by max(shape)
    assert data[1] == (2 << 2) | 1 and got.shape == (300, 1)


def test_decoded_ndarray_is_a_read_only_view() -> None:
    _, got = roundtrip("ndarray:float32", np.ones((2, 2), np.float32))
    assert not got.flags.writeable


def test_pickle_needs_the_opt_in() -> None:
    enc = parse_encoding("pkl")
    data = enc.encode({"a": (1, 2)})
    assert data == pickle.dumps({"a": (1, 2)})
    with pytest.raises(MDSUnsafeError, match="allow_unsafe_types=True"):
        enc.decode(data)
    assert enc.decode(data, allow_unsafe_types=True) == {"a": (1, 2)}


@pytest.mark.parametrize(
    ("text", "payload"),
    [
        ("int32", b"abc"),
        ("str", b"\xff\xfe"),
        ("str_int", b"x1"),
        ("str_float", b"1.2.3"),
        ("str_decimal", b"1..2"),
        ("json", b"{"),
        ("ndarray", b""),
        ("ndarray", b"\x07"),
        ("ndarray", b"\x08\x05"),
        ("ndarray", b"\x08\x04\x03\x01\x02"),
        ("ndarray:int32:2", b"\x00" * 7),
        ("list[png]", b"\x00\x00\x00\x00\x09\x00\x00\x00"),
        ("list[png]", b"\x00\x00"),
        ("jpeg_array", b"\x01\x00\x00\x00\xff\x00\x00\x00"),
        ("pil", b"\x01\x00"),
        ("png", b"not a png"),
    ],
)
def test_malformed_payloads(text: str, payload: bytes) -> None:
    with pytest.raises(MDSFormatError):
        parse_encoding(text).decode(payload)


def _image(mode: str, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    shape = (5, 7) if mode == "L" else (5, 7, 3 if mode == "RGB" else 4)
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)


def test_images() -> None:
    rgb, gray = _image("RGB", 0), _image("L", 1)
    data, got = roundtrip("pil", rgb)
    assert data[:12] == np.array([7, 5, 3], "<u4").tobytes() + b"" and data[12:15] == b"RGB"
    assert_same(got, rgb)
    _, got = roundtrip("png", gray)
    assert got.format == "PNG" and np.array_equal(np.asarray(got), np.asarray(gray))
    _, got = roundtrip("jpeg", rgb)
    assert got.format == "JPEG" and got.size == rgb.size
    _, got = roundtrip("list[pil]", [rgb, gray])
    assert_same(got, [rgb, gray])
    data, got = roundtrip("list[png]", [])
    assert data == bytes(8) and got == []
    png = io.BytesIO()
    gray.save(png, format="PNG")
    _, got = roundtrip("list[png]", [png.getvalue(), gray])  # elements may be pre-encoded
    assert [np.asarray(g).tolist() for g in got] == [np.asarray(gray).tolist()] * 2


def test_jpeg_keeps_an_opened_files_bytes(tmp_path) -> None:
    path = tmp_path / "x.jpg"
    _image("RGB", 2).save(path, format="JPEG", quality=95)
    with Image.open(path) as img:
        assert parse_encoding("jpeg").encode(img) == path.read_bytes()


def test_jpeg_array() -> None:
    jpegs = []
    for seed in range(3):
        out = io.BytesIO()
        _image("RGB", seed).save(out, format="JPEG")
        jpegs.append(out.getvalue())
    data, got = roundtrip("jpeg_array", jpegs)
    assert data[:4] == (3).to_bytes(4, "little") and [g.size for g in got] == [(7, 5)] * 3
    assert parse_encoding("jpegarray").decode(parse_encoding("jpeg_array").encode([])) == []  # the reference raises


# ---------------------------------------------------------------------------- properties

_floats = st.floats(allow_nan=True, allow_infinity=True)


def _same_float(a: float, b: float) -> bool:
    return a == b and math.copysign(1, a) == math.copysign(1, b) or (math.isnan(a) and math.isnan(b))


@SETTINGS
@given(st.text())
def test_prop_str(value: str) -> None:
    assert roundtrip("str", value)[1] == value


@SETTINGS
@given(st.binary())
def test_prop_bytes(value: bytes) -> None:
    assert roundtrip("bytes", bytearray(value))[1] == value


@SETTINGS
@given(st.integers(-(2**63), 2**63 - 1))
def test_prop_int_and_str_int(value: int) -> None:
    got = roundtrip("int", value)[1]
    assert type(got) is int and got == value
    got = roundtrip("str_int", value)[1]
    assert type(got) is int and got == value


@SETTINGS
@given(st.integers())
def test_prop_str_int_is_unbounded(value: int) -> None:
    assert roundtrip("str_int", value)[1] == value


@SETTINGS
@given(_floats)
def test_prop_str_float(value: float) -> None:
    got = roundtrip("str_float", value)[1]
    assert type(got) is float and _same_float(got, value)


@SETTINGS
@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_prop_str_decimal(value: Decimal) -> None:
    got = roundtrip("str_decimal", value)[1]
    assert type(got) is Decimal and str(got) == str(value)


@pytest.mark.parametrize("dtype", NDARRAY_DTYPES)
def test_prop_scalars(dtype: str) -> None:
    @SETTINGS
    @given(hnp.from_dtype(np.dtype(dtype)))
    def check(value) -> None:
        scalar = np.dtype(dtype).type(value)
        got = roundtrip(dtype, scalar)[1]
        assert type(got) is type(scalar) and got.tobytes() == scalar.tobytes()

    check()


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)


@SETTINGS
@given(_json)
def test_prop_json(value) -> None:
    data, got = roundtrip("json", value)
    assert got == value and data == json.dumps(value).encode()


@SETTINGS
@given(_json)
def test_prop_pkl(value) -> None:
    assert roundtrip("pkl", value, allow_unsafe_types=True)[1] == value


@st.composite
def _arrays(draw, dtype=None, shape=None, min_side=0):
    dtype = dtype or draw(st.sampled_from(NDARRAY_DTYPES))
    shape = shape or draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=min_side, max_side=6))
    return draw(hnp.arrays(np.dtype(dtype), shape))


@SETTINGS
@given(_arrays())
def test_prop_ndarray_dynamic(arr: np.ndarray) -> None:
    for text in ("ndarray", f"ndarray:{arr.dtype.name}"):
        got = roundtrip(text, arr)[1]
        assert got.dtype == arr.dtype and got.shape == arr.shape and got.tobytes() == arr.tobytes()


@SETTINGS
@given(_arrays(min_side=1))
def test_prop_ndarray_static_shape(arr: np.ndarray) -> None:
    shape = ",".join(map(str, arr.shape))
    got = roundtrip(f"ndarray:{arr.dtype.name}:{shape}", arr)[1]
    assert got.dtype == arr.dtype and got.shape == arr.shape and got.tobytes() == arr.tobytes()


@SETTINGS
@given(st.lists(st.binary(max_size=20), max_size=5))
def test_prop_jpeg_array_layout(parts: list[bytes]) -> None:
    data = parse_encoding("jpeg_array").encode(parts)
    assert data == np.array([len(parts), *map(len, parts)], "<u4").tobytes() + b"".join(parts)


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(["L", "RGB", "RGBA"]), st.integers(0, 10**6), st.integers(1, 9), st.integers(1, 9))
def test_prop_lossless_images(mode: str, seed: int, w: int, h: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (h, w) if mode == "L" else (h, w, len(mode))
    img = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)
    for text in ("pil", "png"):
        got = roundtrip(text, img)[1]
        assert got.mode == img.mode and np.array_equal(np.asarray(got), np.asarray(img))
    got = roundtrip("list[pil]", [img, img])[1]
    assert len(got) == 2 and np.array_equal(np.asarray(got[1]), np.asarray(img))


def test_pillow_is_imported_only_for_images() -> None:
    import subprocess
    import sys

    code = ("import sys, mds_loader, mds_loader.format as f; import pyarrow as pa, tempfile; "
            "d = tempfile.mkdtemp() + '/ds'; mds_loader.write_table(pa.table({'x': [1]}), d); mds_loader.read_table(d); "
            "print('PIL' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_pil_header_cannot_ask_for_a_huge_image() -> None:
    payload = np.array([2**31, 2**20, 3], "<u4").tobytes() + b"RGB" + b"\x00" * 12
    with pytest.raises(MDSFormatError, match="needs 6755399441055744 bytes of pixels, the payload has 12"):
        parse_encoding("pil").decode(payload)

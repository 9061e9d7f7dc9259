"""Deterministic samples of every MDS encoding and the writer configurations of the interop tests.

Imported by the tests and by the scripts run in the reference's virtualenv (numpy 2.1, no
pyarrow), so it uses only numpy, PIL and the standard library, and no random generator: every
value is computed from the sample number, identically in both environments.
"""

from __future__ import annotations

import io
from decimal import Decimal

import numpy as np

#: Encodings whose bytes are deterministic (byte-identical files are expected).
DET_COLUMNS = {
    "b": "bytes", "s": "str", "i": "int", "i8": "int8", "i16": "int16", "i32": "int32", "i64": "int64",
    "u8": "uint8", "u16": "uint16", "u32": "uint32", "u64": "uint64", "f16": "float16", "f32": "float32",
    "f64": "float64", "si": "str_int", "sf": "str_float", "sd": "str_decimal", "js": "json", "pk": "pkl",
    "nd": "ndarray", "ndd": "ndarray:int16", "nds": "ndarray:float32:2,3", "ndb": "ndarray:uint8", "pil": "pil",
    "lpil": "list[pil]", "pt": "int32", "pt2": "str",
}  # fmt: skip
#: Image encodings (JPEG/PNG bytes depend on the Pillow build: values are compared, not bytes).
IMG_COLUMNS = {"jpg": "jpeg", "png": "png", "ljpg": "list[jpeg]", "lpng": "list[png]", "ja": "jpeg_array", "jpegarr": "jpegarray", "label": "int32"}

_INTS = {
    "i8": [0, -128, 127, -1], "i16": [0, -(2**15), 2**15 - 1, 7], "i32": [0, -(2**31), 2**31 - 1, -5],
    "i64": [0, -(2**63), 2**63 - 1, 123456789012], "u8": [0, 255, 1, 128], "u16": [0, 2**16 - 1, 3, 9],
    "u32": [0, 2**32 - 1, 5, 2**31], "u64": [0, 2**64 - 1, 2**63, 11],
}  # fmt: skip
_FLOATS = [0.0, -0.0, float("inf"), float("-inf"), float("nan"), 1.5, 1e-5, 65504.0, 1e10, 5e-324, 1 / 3]
_ND_DTYPES = ["uint8", "int8", "uint16", "int16", "float16", "uint32", "int32", "float32", "uint64", "int64", "float64"]


def _pixels(i: int, h: int, w: int, channels: int) -> np.ndarray:
    shape = (h, w) if channels == 1 else (h, w, channels)
    return ((np.arange(int(np.prod(shape)), dtype=np.int64) * (i + 3) + i * 7) % 256).astype(np.uint8).reshape(shape)


def _image(i: int, mode: str = "RGB"):
    from PIL import Image

    return Image.fromarray(_pixels(i, 3 + i % 4, 5 + i % 3, {"L": 1, "RGB": 3, "RGBA": 4}[mode]), mode)


def _ndarray(i: int) -> np.ndarray:
    dtype = _ND_DTYPES[i % len(_ND_DTYPES)]
    shapes = [(3,), (2, 3), (1, 300), (2, 1, 2), (4,), (1,), (2, 2, 2, 2)]
    shape = shapes[i % len(shapes)]
    values = (np.arange(int(np.prod(shape)), dtype=np.int64) * (i + 1)) % 100
    return values.astype(dtype).reshape(shape)


def det_sample(i: int) -> dict:
    """Sample ``i`` of the deterministic columns (values as a user would pass them)."""
    s = {
        "b": bytes((i * 7 + k) % 256 for k in range(i % 13)),
        "s": "" if i % 5 == 0 else "héllo ✓ \u0000 " * (i % 4) + str(i),
        "i": [0, 1, -1, 2**63 - 1, -(2**63), True, i * 12345678901][i % 7],
        "si": [0, -5, 10**30, i, -(10**40)][i % 5],
        "sf": [0.1, float("nan"), float("inf"), -0.0, 1e16, 5e-324, i / 3][i % 7],
        "sd": [Decimal(f"{i}.{i:03d}"), Decimal("-0"), Decimal("1E+5"), Decimal("NaN"), Decimal("-12.50")][i % 5],
        "js": {"i": i, "l": [1, None, "x"], "f": 1.5, "u": "é", "n": {"t": i % 2 == 0}},
        "pk": {"t": (i, "x"), "s": {i, i + 1}, "b": b"\x00" * (i % 3)},
        "nd": _ndarray(i),
        "ndd": (np.arange(i % 7 + 1, dtype=np.int16) * (i - 20)).astype(np.int16),
        "nds": (np.arange(6, dtype=np.float32).reshape(2, 3) / np.float32(i + 1)).astype(np.float32),
        "ndb": _pixels(i, 1 + i % 3, 2, 1),
        "pil": _image(i, ["RGB", "L", "RGBA"][i % 3]),
        "lpil": [_image(i + k, "L") for k in range(i % 3)],
        "pt": (i * 1000 - 7).to_bytes(4, "little", signed=True),  # pre-encoded bytes pass through
        "pt2": "raw bytes é".encode() if i % 2 else "text",
    }
    for name, values in _INTS.items():
        s[name] = values[i % len(values)]
    for k, name in enumerate(("f16", "f32", "f64")):
        s[name] = _FLOATS[(i + k) % len(_FLOATS)]
    return s


def jpeg_bytes(i: int) -> bytes:
    out = io.BytesIO()
    _image(i).save(out, format="JPEG")
    return out.getvalue()


def img_sample(i: int) -> dict:
    """Sample ``i`` of the image columns."""
    return {
        "jpg": _image(i), "png": _image(i, "RGBA"), "ljpg": [_image(i + k) for k in range(1 + i % 2)],
        "lpng": [_image(i + k, "L") for k in range(i % 3)], "ja": [jpeg_bytes(i + k) for k in range(1 + i % 3)],
        "jpegarr": [jpeg_bytes(i)], "label": i,
    }  # fmt: skip


#: (dataset name, columns kind, MDSWriter keyword arguments)
CONFIGS = [
    ("det_none", "det", {}),
    ("det_zstd", "det", {"compression": "zstd", "hashes": ["sha1", "xxh64"], "size_limit": 4096}),
    ("det_zstd1", "det", {"compression": "zstd:1", "size_limit": "3kb"}),
    ("det_zstd22", "det", {"compression": "zstd:22", "hashes": ["xxh3_128"]}),
    ("det_gz", "det", {"compression": "gz", "hashes": ["md5"], "size_limit": 8192}),
    ("det_gz1", "det", {"compression": "gz:1"}),
    ("det_bz2", "det", {"compression": "bz2", "hashes": ["md5", "xxh3_64"], "size_limit": 5000}),
    ("det_bz2_1", "det", {"compression": "bz2:1"}),
    ("det_br", "det", {"compression": "br", "size_limit": 6000}),
    ("det_br0", "det", {"compression": "br:0", "hashes": ["blake2b", "sha256", "sha3_256", "xxh128", "xxh32"]}),
    ("det_snappy", "det", {"compression": "snappy", "hashes": ["sha512"], "size_limit": 2500}),
    ("det_tiny_limit", "det", {"size_limit": 300}),  # every sample is oversize: the 0-sample shard quirk
    ("det_no_limit", "det", {"size_limit": None, "hashes": ["xxh64"]}),
    ("img_none", "img", {}),
    ("img_zstd", "img", {"compression": "zstd:7", "hashes": ["sha1"], "size_limit": 2000}),
]
NUM_SAMPLES = {"det": 40, "img": 10}


def columns(kind: str) -> dict:
    return DET_COLUMNS if kind == "det" else IMG_COLUMNS


def samples(kind: str) -> list[dict]:
    make = det_sample if kind == "det" else img_sample
    return [make(i) for i in range(NUM_SAMPLES[kind])]


def write_all(writer_class, root: str) -> None:
    """Writes every configuration under ``root`` with ``writer_class`` (ours or the reference's)."""
    import os

    for name, kind, kwargs in CONFIGS:
        with writer_class(out=os.path.join(root, name), columns=columns(kind), **kwargs) as writer:
            for sample in samples(kind):
                writer.write(sample)

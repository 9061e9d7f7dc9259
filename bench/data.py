"""The benchmark datasets as Arrow tables (the Spark side builds the same columns with Spark
expressions, see bench/spark.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa


def hex_text(rng: np.random.Generator, rows: int) -> pa.Array:
    digits = np.frombuffer(b"0123456789abcdef", np.uint8)
    return pa.array(rng.choice(digits, (rows, 64)).view("S64").ravel().astype(str))


def make_table(rows: int, seed: int = 0) -> pa.Table:
    """The standard dataset: id, text (64 hex chars), label, score, tokens[256] (~1.1 KB/row)."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 50_000, (rows, 256), dtype=np.int32)
    return pa.table({
        "id": pa.array(np.arange(rows, dtype=np.int64)),
        "text": hex_text(rng, rows),
        "label": pa.array(rng.integers(0, 1000, rows, dtype=np.int32)),
        "score": pa.array(rng.random(rows)),
        "tokens": pa.ListArray.from_arrays(pa.array(np.arange(rows + 1, dtype=np.int32) * 256), pa.array(tokens.ravel())),
    })  # fmt: skip


def make_wide(rows: int, seed: int = 0) -> pa.Table:
    """100 fixed-size numeric columns: id int64, d0..d49 float64, i0..i48 int32."""
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {"id": pa.array(np.arange(rows, dtype=np.int64))}
    for k in range(50):
        cols[f"d{k}"] = pa.array(rng.random(rows))
    for k in range(49):
        cols[f"i{k}"] = pa.array(rng.integers(0, 1_000_000, rows, dtype=np.int32))
    return pa.table(cols)


def make_image(rows: int, seed: int = 0) -> pa.Table:
    """id, label and 51,200 incompressible bytes per row (JPEG-sized)."""
    rng = np.random.default_rng(seed)
    size = 51_200
    data = rng.integers(0, 256, rows * size, dtype=np.uint8)
    offsets = pa.array(np.arange(rows + 1, dtype=np.int64) * size)
    return pa.table({
        "id": pa.array(np.arange(rows, dtype=np.int64)),
        "label": pa.array(rng.integers(0, 1000, rows, dtype=np.int32)),
        "image": pa.Array.from_buffers(pa.large_binary(), rows, [None, offsets.buffers()[1], pa.py_buffer(data)]),
    })  # fmt: skip


def make_fixed(rows: int, seed: int = 0) -> pa.Table:
    """Fixed-size columns only: id, label, score and tokens[256] (written as ``ndarray:int32:256``)."""
    t = make_table(rows, seed)
    return t.drop_columns(["text"])


def photo_jpeg(seed: int) -> bytes:
    """An ImageNet-like JPEG: about 500x375 (420-580 by 315-435, one in five portrait), about
    110 KB (quality 92): smooth color fields at three scales plus sensor-like noise."""
    import io

    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = int(rng.integers(420, 581)), int(rng.integers(315, 436))
    if rng.random() < 0.2:
        w, h = h, w
    img = np.full((h, w, 3), 128, np.float32)
    for cells, amplitude in ((4, 90), (16, 45), (64, 22)):
        small = rng.normal(0, amplitude, (cells * h // w + 2, cells + 2, 3)).astype(np.float32)
        img += np.stack([np.asarray(Image.fromarray(small[..., c]).resize((w, h), Image.BICUBIC)) for c in range(3)], -1)
    img += rng.normal(0, 17, (h, w, 3)).astype(np.float32)
    out = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(out, format="JPEG", quality=92)
    return out.getvalue()


def make_jpeg(rows: int, seed: int = 0) -> pa.Table:
    """id, label and an ImageNet-like JPEG per row (:func:`photo_jpeg`), made on every core."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor() as pool:
        images = list(pool.map(photo_jpeg, range(seed * rows, seed * rows + rows), chunksize=64))
    rng = np.random.default_rng(seed)
    return pa.table({
        "id": pa.array(np.arange(rows, dtype=np.int64)),
        "label": pa.array(rng.integers(0, 1000, rows, dtype=np.int32)),
        "image": pa.array(images, pa.large_binary()),
    })  # fmt: skip


MAKERS = {"standard": make_table, "fixed": make_fixed, "wide": make_wide, "image": make_image, "jpeg": make_jpeg}
# Encoding overrides for write_table.
ENCODINGS: dict[str, dict[str, str]] = {"fixed": {"tokens": "ndarray:int32:256"}, "jpeg": {"image": "jpeg"}}


def variant_rows(variant: str, rows: int, images: int = 5000) -> int:
    """Rows of a variant: the standard count `rows` scaled, or `images` JPEGs."""
    if variant == "jpeg":
        return images
    return {"standard": rows, "fixed": rows, "wide": max(rows // 2, 10), "image": max(rows // 40, 10)}[variant]

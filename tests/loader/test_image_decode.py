"""Batched image decoding (mds_loader.images): image columns decoded into one uint8 tensor per
batch, equal to Pillow's decode, crop and resize of the same bytes (exactly with
``resampler="pillow"``, within 1 with torch's kernel), deterministic random crops and flips that a
resumed run sees again, and errors that name the sample."""

from __future__ import annotations

import io
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mds_loader import ImageDecode, MDSWriter, StreamingDataLoader, StreamingDataset
from mds_loader.errors import MDSConfigError, MDSFormatError, MDSSchemaError
from mds_loader.images import _DRAWS, center_crop, random_crop, uniforms

import mds_loader.batch_engine as batch_engine_module

ROWS = 150
BATCH = 16


def _pixels(i: int, width: int, height: int) -> np.ndarray:
    """Smooth colors plus noise: JPEG-like content, different per sample."""
    rng = np.random.default_rng(i)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(small).resize((width, height), Image.BICUBIC)).astype(np.int16)
    return np.clip(base + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)


def _size(i: int) -> tuple[int, int]:
    """(width, height) of sample i: varied, some portrait."""
    return (90 + i % 37, 70 + i % 23) if i % 5 else (70 + i % 11, 96 + i % 7)


def _file(pixels: np.ndarray, fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt, **kwargs)
    return out.getvalue()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> tuple[Path, list[bytes]]:
    """Varied-size JPEGs (label = sample id) in several shards, as jpeg, as bytes and as png."""
    path = tmp_path_factory.mktemp("images") / "ds"
    files = [_file(_pixels(i, *_size(i)), "JPEG", quality=90) for i in range(ROWS)]
    with MDSWriter(out=str(path), columns={"image": "jpeg", "raw": "bytes", "png": "png", "label": "int"},
                   size_limit=60_000) as writer:  # fmt: skip
        for i, data in enumerate(files):
            png = _file(_pixels(i, *_size(i)), "PNG")
            writer.write({"image": data, "raw": data, "png": png, "label": i})
    return path, files


def _pillow(data: bytes, spec: ImageDecode, box: tuple[int, int, int, int] | None = None, flip: bool = False) -> np.ndarray:
    """Pillow's decode, crop (top, left, height, width), resize and flip of one image, in the spec's layout."""
    image = Image.open(io.BytesIO(data)).convert(spec.mode)
    if box is not None:
        top, left, h, w = box
        image = image.crop((left, top, left + w, top + h))
    if spec.size is not None:
        image = image.resize((spec.size[1], spec.size[0]), Image.BILINEAR if spec.interpolation == "bilinear" else Image.BICUBIC)
    if flip:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    pixels = np.asarray(image).reshape(image.size[1], image.size[0], -1)
    return pixels.transpose(2, 0, 1) if spec.layout == "NCHW" else pixels


def _box(spec: ImageDecode, data: bytes, draws: np.ndarray | None) -> tuple[int, int, int, int]:
    width, height = Image.open(io.BytesIO(data)).size
    if spec.resize == "random_crop":
        return random_crop(height, width, draws, spec.scale, spec.ratio)
    if spec.resize == "center_crop":
        return center_crop(height, width, spec.size)
    return 0, 0, height, width


def _epoch(path: Path, spec: ImageDecode, column: str = "image") -> list[dict]:
    ds = StreamingDataset(local=str(path), batch_size=BATCH, shuffle=True, shuffle_seed=3, columns=[column, "label"])
    return list(ds.iter_batches(decode={column: spec}))


@pytest.mark.parametrize("spec", [
    ImageDecode(size=(40, 48), resampler="pillow", dct_scaling=False),
    ImageDecode(size=40, resize="center_crop", layout="NHWC", resampler="pillow", dct_scaling=False),
    ImageDecode(size=(40, 36), resize="random_crop", flip=True, resampler="pillow", dct_scaling=False, seed=11),
    ImageDecode(size=40, mode="L", interpolation="bicubic", resampler="pillow", dct_scaling=False),
], ids=["stretch", "center_crop-NHWC", "random_crop-flip", "gray-bicubic"])
def test_decoded_batches_equal_pillow_exactly(images, spec):
    path, files = images
    seen = 0
    for batch in _epoch(path, spec):
        assert batch["image"].dtype == torch.uint8
        draws = uniforms(11, 0, batch["label"].numpy(), _DRAWS) if spec.resize == "random_crop" else None
        for k, (label, got) in enumerate(zip(batch["label"].tolist(), batch["image"])):
            data = files[label]
            row = None if draws is None else draws[k]
            expected = _pillow(data, spec, _box(spec, data, row), flip=row is not None and row[-1] < 0.5)
            assert np.array_equal(got.numpy(), expected), label
            seen += 1
    assert seen == ROWS


@pytest.mark.parametrize("resize", ["stretch", "center_crop"])
def test_torch_resampler_is_within_one_of_pillow(images, resize):
    path, files = images
    spec = ImageDecode(size=(40, 48), resize=resize, dct_scaling=False)
    differing = total = 0
    for batch in _epoch(path, spec):
        for label, got in zip(batch["label"].tolist(), batch["image"]):
            expected = _pillow(files[label], spec, _box(spec, files[label], None)).astype(np.int16)
            diff = np.abs(got.numpy().astype(np.int16) - expected)
            assert diff.max() <= 1, label
            differing += int((diff > 0).sum())
            total += diff.size
    assert differing / total < 0.05


def test_without_a_size_images_are_decoded_as_they_are(tmp_path):
    files = [_file(_pixels(i, 50, 30), "JPEG", quality=85) for i in range(40)]
    with MDSWriter(out=str(tmp_path), columns={"image": "jpeg", "label": "int"}) as writer:
        for i, data in enumerate(files):
            writer.write({"image": data, "label": i})
    ds = StreamingDataset(local=str(tmp_path), batch_size=8, shuffle=False)
    batches = list(ds.iter_batches(decode={"image": ImageDecode()}))
    assert [tuple(b["image"].shape) for b in batches] == [(8, 3, 30, 50)] * 5
    for batch in batches:
        for label, got in zip(batch["label"].tolist(), batch["image"]):
            assert np.array_equal(got.numpy(), _pillow(files[label], ImageDecode())), label


def test_without_a_size_different_sizes_fail_naming_both(images):
    path, _ = images
    ds = StreamingDataset(local=str(path), batch_size=BATCH, shuffle=False, columns=["image"])
    with pytest.raises(MDSSchemaError, match=r"column 'image' holds images of different sizes.*96x70 and then 71x91.*sample 1 .*size="):
        list(ds.iter_batches(decode={"image": ImageDecode()}))


def test_dct_scaling_is_pillows_draft_and_close_to_a_full_decode(tmp_path):
    """Large JPEGs asked at a quarter of their size or less are decoded at 1/2, 1/4 or 1/8 scale:
    exactly Pillow's ``draft`` decode (the same libjpeg scaled IDCT) and resize, a few levels from
    a full decode and resize (the bound in the README)."""
    files = [_file(_pixels(i, 400 + 8 * i, 300 + 4 * i), "JPEG", quality=90) for i in range(12)]
    with MDSWriter(out=str(tmp_path), columns={"image": "jpeg", "label": "int"}) as writer:
        for i, data in enumerate(files):
            writer.write({"image": data, "label": i})
    ds = StreamingDataset(local=str(tmp_path), batch_size=4, shuffle=False)
    spec = ImageDecode(size=64, resampler="pillow")
    worst, means = 0, []
    for batch in ds.iter_batches(decode={"image": spec}):
        for label, got in zip(batch["label"].tolist(), batch["image"]):
            draft = Image.open(io.BytesIO(files[label]))
            draft.draft("RGB", (draft.size[0] // 4, draft.size[1] // 4))  # 300x400 and up to 64x64: a 1/4 scale
            expected = np.asarray(draft.convert("RGB").resize((64, 64), Image.BILINEAR)).transpose(2, 0, 1)
            assert np.array_equal(got.numpy(), expected), label
            diff = np.abs(got.numpy().astype(np.int16) - _pillow(files[label], spec))
            worst, means = max(worst, int(diff.max())), means + [float(diff.mean())]
    assert worst <= 12 and max(means) <= 1.5, (worst, means)
    exact = list(ds.iter_batches(decode={"image": ImageDecode(size=64, resampler="pillow", dct_scaling=False)}))
    for batch in exact:
        for label, got in zip(batch["label"].tolist(), batch["image"]):
            assert np.array_equal(got.numpy(), _pillow(files[label], spec)), label


@pytest.mark.parametrize("column", ["raw", "png"])
def test_bytes_and_png_columns(images, column):
    path, files = images
    spec = ImageDecode(size=32, resampler="pillow", dct_scaling=False)
    for batch in _epoch(path, spec, column=column):
        for label, got in zip(batch["label"].tolist(), batch[column]):
            data = files[label] if column == "raw" else _file(_pixels(label, *_size(label)), "PNG")
            assert np.array_equal(got.numpy(), _pillow(data, spec)), label


def test_pil_gray_cmyk_and_rgba_images(tmp_path):
    """pil payloads, a grayscale and a CMYK JPEG (libjpeg-turbo cannot make RGB of CMYK: Pillow
    does) and an RGBA PNG all become RGB."""
    base = _pixels(0, 40, 30)
    rgb = Image.fromarray(base)
    gray = io.BytesIO()
    rgb.convert("L").save(gray, format="JPEG")
    cmyk = io.BytesIO()
    rgb.convert("CMYK").save(cmyk, format="JPEG")
    rgba = io.BytesIO()
    rgb.convert("RGBA").save(rgba, format="PNG")
    values = [gray.getvalue(), cmyk.getvalue(), rgba.getvalue(), _file(base, "JPEG")]
    with MDSWriter(out=str(tmp_path), columns={"image": "bytes", "pil": "pil"}) as writer:
        for data in values:
            writer.write({"image": data, "pil": rgb.convert("RGBA")})
    ds = StreamingDataset(local=str(tmp_path), batch_size=4, shuffle=False)
    spec = ImageDecode(size=(30, 40), resampler="pillow")
    (batch,) = ds.iter_batches(decode={"image": spec, "pil": spec})
    for k, data in enumerate(values):
        assert np.array_equal(batch["image"][k].numpy(), _pillow(data, spec)), k
        assert np.array_equal(batch["pil"][k].numpy(), base.transpose(2, 0, 1))


def test_corrupt_jpeg_fails_at_its_batch_naming_the_sample(tmp_path):
    files = [_file(_pixels(i, 40, 30), "JPEG") for i in range(20)]
    files[13] = files[13][: len(files[13]) // 2]  # truncated
    with MDSWriter(out=str(tmp_path), columns={"image": "jpeg", "label": "int"}) as writer:
        for i, data in enumerate(files):
            writer.write({"image": data, "label": i})
    ds = StreamingDataset(local=str(tmp_path), batch_size=4, shuffle=False)
    got = []
    with pytest.raises(MDSFormatError, match=r"cannot decode the image in column 'image' of sample 13 \(.*shard\.00000\.mds: sample 13\)"):
        for batch in ds.iter_batches(decode={"image": ImageDecode(size=16)}):
            got.append(batch["label"].tolist())
    assert got == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]  # the batches before it, then the error
    loader = StreamingDataLoader(StreamingDataset(local=str(tmp_path), batch_size=4, shuffle=False), batch_size=4,
                                 num_workers=1, decode={"image": ImageDecode(size=16)})
    with pytest.raises(MDSFormatError, match="sample 13"):
        list(loader)


def test_arrow_path_decodes_the_same(images, monkeypatch):
    path, _ = images
    spec = ImageDecode(size=(24, 20), resize="random_crop", flip=True)
    fast = _epoch(path, spec)
    monkeypatch.setattr(batch_engine_module, "plan_rows", lambda *a, **k: None)
    slow = _epoch(path, spec)
    assert len(fast) == len(slow)
    for a, b in zip(fast, slow):
        assert list(a) == list(b) and torch.equal(a["label"], b["label"]) and torch.equal(a["image"], b["image"])


def _run(path: Path, workers: int, spec: ImageDecode, state=None, stop_after=None) -> tuple[list[dict], dict | None]:
    ds = StreamingDataset(local=str(path), batch_size=BATCH, shuffle=True, shuffle_seed=5, columns=["image", "label"])
    loader = StreamingDataLoader(ds, batch_size=BATCH, num_workers=workers, decode={"image": spec})
    if state is not None:
        loader.load_state_dict(state)
    out = []
    for batch in loader:
        out.append({k: v.clone() for k, v in batch.items()})
        if stop_after is not None and len(out) == stop_after:
            return out, loader.state_dict()
    return out, None


@pytest.mark.parametrize("workers", [0, 2])
def test_resumed_augmented_batches_equal_the_uninterrupted_run(images, workers, short_tmpdir):
    path, _ = images
    spec = ImageDecode(size=24, resize="random_crop", flip=True, threads=2)
    whole, _ = _run(path, workers, spec)
    first, state = _run(path, workers, spec, stop_after=3)
    rest, _ = _run(path, workers, spec, state=state)
    assert len(first) + len(rest) == len(whole)
    for a, b in zip(first + rest, whole):
        assert torch.equal(a["label"], b["label"]) and torch.equal(a["image"], b["image"])


def test_crops_depend_on_sample_and_epoch_not_on_workers(images, short_tmpdir):
    path, _ = images
    spec = ImageDecode(size=24, resize="random_crop", flip=True)

    def by_label(batches):
        return {int(label): image for b in batches for label, image in zip(b["label"], b["image"])}

    zero = by_label(_run(path, 0, spec)[0])
    two = by_label(_run(path, 2, spec)[0])
    assert sorted(zero) == sorted(two) == list(range(ROWS))
    assert all(torch.equal(zero[k], two[k]) for k in zero)
    ds = StreamingDataset(local=str(path), batch_size=BATCH, shuffle=True, shuffle_seed=5, columns=["image", "label"])
    epochs = [by_label(ds.iter_batches(decode={"image": spec})) for _ in range(2)]
    assert sum(not torch.equal(epochs[0][k], epochs[1][k]) for k in epochs[0]) > ROWS // 2


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 2000), st.integers(1, 2000), st.integers(0, 2**63), st.integers(0, 50), st.integers(0, 10**9))
def test_prop_random_crop_is_torchvisions(height, width, seed, epoch, sample):
    """The region lies in the image; unless every try failed (a centered fallback), its share of
    the area and aspect ratio are within the ranges up to rounding; the draws are a pure function."""
    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    u = uniforms(seed, epoch, np.array([sample]), _DRAWS)[0]
    assert np.array_equal(u, uniforms(seed, epoch, np.array([7, sample]), _DRAWS)[1])
    assert ((0 <= u) & (u < 1)).all()
    top, left, h, w = random_crop(height, width, u, scale, ratio)
    assert 0 <= top and 0 <= left and 1 <= h and 1 <= w and top + h <= height and left + w <= width
    if (h, w) != (height, width) and (top, left) != ((height - h) // 2, (width - w) // 2):
        share = h * w / (height * width)
        assert scale[0] * 0.5 - 2 / min(h, w) <= share <= scale[1] * 1.0 + 4 / min(h, w)
        assert math.log(ratio[0]) - 2 / min(h, w) <= math.log(w / h) <= math.log(ratio[1]) + 2 / min(h, w)


def test_bad_arguments_fail_clearly(images):
    path, _ = images
    ds = StreamingDataset(local=str(path), batch_size=BATCH)
    with pytest.raises(MDSConfigError, match="needs a size"):
        ImageDecode(resize="random_crop")
    with pytest.raises(MDSConfigError, match="layout must be one of"):
        ImageDecode(size=4, layout="CHW")
    with pytest.raises(MDSConfigError, match="column 'nope', which the batches do not hold"):
        next(ds.iter_batches(decode={"nope": ImageDecode(size=8)}))
    with pytest.raises(MDSSchemaError, match=r"column 'label' \(int\) does not hold one image per sample"):
        next(ds.iter_batches(decode={"label": ImageDecode(size=8)}))
    with pytest.raises(MDSConfigError, match="batch_format='torch' or 'numpy'"):
        next(ds.iter_batches("arrow", decode={"image": ImageDecode(size=8)}))
    with pytest.raises(MDSSchemaError, match=r"\['png'\] do not collate.*decode=\{column: ImageDecode"):
        StreamingDataLoader(ds, batch_size=BATCH, decode={"image": ImageDecode(size=8)})
    batch = next(StreamingDataset(local=str(path), batch_size=BATCH, columns=["image"]).iter_batches(
        "numpy", decode={"image": ImageDecode(size=8, layout="NHWC")}))
    assert isinstance(batch["image"], np.ndarray) and batch["image"].shape == (BATCH, 8, 8, 3)


def test_decode_refuses_a_dataset_that_changes_per_sample_access(images):
    class Transformed(StreamingDataset):
        def __getitem__(self, i):
            return super().__getitem__(i)

    path, _ = images
    ds = Transformed(local=str(path), batch_size=BATCH, columns=["image", "label"])
    with pytest.raises(TypeError, match="would skip Transformed's per-sample access"):
        StreamingDataLoader(ds, batch_size=BATCH, decode={"image": ImageDecode(size=8)})


def test_missing_simplejpeg_says_what_to_install(images, monkeypatch):
    path, _ = images
    monkeypatch.setitem(sys.modules, "simplejpeg", None)
    ds = StreamingDataset(local=str(path), batch_size=BATCH, columns=["image"])
    with pytest.raises(ImportError, match=r"needs simplejpeg and Pillow: pip install 'mds-loader\[images\]'"):
        next(ds.iter_batches(decode={"image": ImageDecode(size=8)}))


def test_decoding_threads_start_no_openmp_teams(images):
    """Pixels move with numpy, and torch resizes contiguous images only: a torch copy (or a resize
    of a strided view) in each decoding thread would start an OpenMP team per thread, cores x cores
    threads on a large machine."""
    if torch.get_num_threads() < 2:
        pytest.skip("torch runs one thread here: no OpenMP team to start")
    path, _ = images

    def tasks() -> int:
        return len(list(Path("/proc/self/task").iterdir()))

    ds = StreamingDataset(local=str(path), batch_size=BATCH, shuffle=True, columns=["image", "label"])
    next(ds.iter_batches(decode={"image": ImageDecode(size=24, threads=1)}))  # (the dataset's own threads)
    before = tasks()
    # (images of 128x128x3 values: torch would run their copies in parallel)
    specs = (ImageDecode(size=128, resize="random_crop", flip=True, threads=4),
             ImageDecode(size=(128, 120), layout="NHWC", threads=4))
    for spec in specs:
        for _ in ds.iter_batches(decode={"image": spec}):
            pass
    assert tasks() - before <= 4  # the pool's threads only


class _ThreadsPerWorker(torch.utils.data.IterableDataset):
    """Yields the default decoding thread count of the process that iterates it."""

    def __iter__(self):
        from mds_loader.images import default_threads

        yield default_threads()


def test_default_threads_divide_the_node_among_its_loading_processes(monkeypatch):
    """16 CPUs, 2 ranks on the node (torchrun's LOCAL_WORLD_SIZE), 2 DataLoader workers each: 4
    threads per worker, so that the node runs as many decoding threads as it has CPUs."""
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    from mds_loader.images import default_threads

    assert default_threads() == 8  # a rank decoding in its own process
    loader = torch.utils.data.DataLoader(_ThreadsPerWorker(), batch_size=None, num_workers=2,
                                         multiprocessing_context="fork")
    assert list(loader) == [4, 4]  # (real worker processes, forked with the patched affinity)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "32")
    assert default_threads() == 1  # never fewer than one

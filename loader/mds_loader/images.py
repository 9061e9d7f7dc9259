"""Batched image decoding: an image column of whole batches decoded straight into one uint8 tensor.

``StreamingDataLoader(..., decode={"image": ImageDecode(size=224)})`` (or the same ``decode`` on
:meth:`StreamingDataset.iter_batches`) turns each batch's ``image`` column into a
``(batch, 3, 224, 224)`` uint8 tensor. The images of a chunk of batches are decoded by a thread pool
straight into the chunk's block (in a DataLoader worker, its shared memory): no PIL image, bytes
object or float copy per sample.

* JPEG: simplejpeg (libjpeg-turbo, releases the GIL), with the same integer IDCT and upsampling as
  Pillow, so that the pixels equal Pillow's. Where the crop is at least twice the size asked for,
  libjpeg's DCT-domain downscaling (1/2, 1/4, 1/8, as Pillow's ``draft``) decodes fewer pixels.
* PNG, other formats and ``pil`` payloads: Pillow.
* Resizing: torch's antialiased uint8 kernel (``resampler="torch"``, what torchvision's v2
  transforms use on tensors: within 1 of Pillow's resize with the same filter), or Pillow's own
  (``resampler="pillow"``: Pillow's pixels exactly, about 3x slower).
* Random crops and flips are drawn from a hash of (seed, epoch, sample id): the same sample gets
  the same crop in an epoch whatever the workers, ranks or resumption.
"""

from __future__ import annotations

import io
import itertools
import math
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import MDSConfigError, MDSFormatError, MDSSchemaError
from .format.encodings import Encoding, decode_image, image_magic_ok, require_pillow
from .format.gather import Payloads, Stop
from .node import loading_processes, usable_cpus

__all__ = ["ImageDecode"]

_RESIZES = ("stretch", "center_crop", "random_crop")
_LAYOUTS = ("NCHW", "NHWC")
_MODES = {"RGB": 3, "L": 1}
_INTERPOLATIONS = ("bilinear", "bicubic")
_RESAMPLERS = ("torch", "pillow")
_ATTEMPTS = 10  # random_crop: tries of a crop inside the image, as torchvision's RandomResizedCrop
_DRAWS = 4 * _ATTEMPTS + 1  # uniforms per sample: (area, ratio, top, left) per try, the flip
# JPEG color spaces libjpeg-turbo turns into RGB as Pillow does (CMYK and YCCK: Pillow's own formula)
_SIMPLEJPEG_COLORS = ("YCbCr", "Gray", "RGB")


@dataclass(frozen=True)
class ImageDecode:
    """How to decode an image column of whole batches into one uint8 tensor.

    Args:
        size: ``(height, width)`` of every image (an int: square). None: images as they are, which
            must then all have one size.
        resize: ``"stretch"`` (the whole image resized to ``size``), ``"center_crop"`` (the largest
            centered region of ``size``'s aspect ratio, resized to ``size``) or ``"random_crop"``
            (torchvision's ``RandomResizedCrop(size, scale, ratio)``: a region of a random share
            ``scale`` of the area and aspect ratio ``ratio``, resized to ``size``).
        layout: ``"NCHW"`` (torch's convention) or ``"NHWC"``.
        mode: ``"RGB"`` (3 channels) or ``"L"`` (grayscale, 1 channel).
        flip: flip each image horizontally with probability 1/2.
        scale, ratio: ``random_crop``'s ranges (torchvision's defaults).
        interpolation: ``"bilinear"`` or ``"bicubic"`` (antialiased, as Pillow's filters).
        resampler: ``"torch"`` (fast; within 1 of Pillow) or ``"pillow"`` (Pillow's pixels).
        dct_scaling: decode JPEGs at 1/2, 1/4 or 1/8 scale when the region kept is at least that
            much larger than ``size`` (faster; close to, not equal to, a full decode and resize).
        seed: the seed of random crops and flips (None: the dataset's ``shuffle_seed``).
        threads: decoding threads (None: the CPUs this process may use, shared among the
            DataLoader's workers of every rank on the node, ``LOCAL_WORLD_SIZE``).
    """

    size: int | tuple[int, int] | None = None
    resize: str = "stretch"
    layout: str = "NCHW"
    mode: str = "RGB"
    flip: bool = False
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    interpolation: str = "bilinear"
    resampler: str = "torch"
    dct_scaling: bool = True
    seed: int | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        size = self.size
        if isinstance(size, int):
            size = (size, size)
        if size is not None:
            if not (isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
                raise MDSConfigError(f"ImageDecode size must be a positive int or (height, width), got {self.size!r}")
            object.__setattr__(self, "size", (int(size[0]), int(size[1])))
        for name, allowed in (("resize", _RESIZES), ("layout", _LAYOUTS), ("mode", tuple(_MODES)),
                              ("interpolation", _INTERPOLATIONS), ("resampler", _RESAMPLERS)):
            if getattr(self, name) not in allowed:
                raise MDSConfigError(f"ImageDecode {name} must be one of {allowed}, got {getattr(self, name)!r}")
        if size is None and (self.resize != "stretch" or self.flip):
            raise MDSConfigError(f"ImageDecode(resize={self.resize!r}, flip={self.flip}) needs a size")
        lo, hi = self.scale
        if not 0 < lo <= hi <= 1:
            raise MDSConfigError(f"ImageDecode scale must be (low, high) with 0 < low <= high <= 1, got {self.scale!r}")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise MDSConfigError(f"ImageDecode ratio must be (low, high) with 0 < low <= high, got {self.ratio!r}")
        if self.threads is not None and self.threads < 1:
            raise MDSConfigError(f"ImageDecode threads must be at least 1, got {self.threads}")

    @property
    def channels(self) -> int:
        return _MODES[self.mode]

    def item_bytes(self) -> int:
        """Bytes of one decoded image (an estimate of 224x224 without a size)."""
        height, width = self.size or (224, 224)
        return height * width * self.channels

    def item_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """One image's shape in the batch tensor."""
        c = self.channels
        return (c, height, width) if self.layout == "NCHW" else (height, width, c)

    def bind(self, column: str, encoding: Encoding, seed: int, epoch: int, ids: np.ndarray,
             where: Callable[[int], str]) -> ImageColumn:  # fmt: skip
        """This decode applied to `column` of the chunk of global sample ids `ids` in `epoch`
        (`seed`: the dataset's, unless :attr:`seed` is set); ``where(row)`` names a row's shard."""
        return ImageColumn(self, column, encoding, seed if self.seed is None else self.seed, epoch, ids, where)


def check_decode(decode: Mapping[str, ImageDecode] | None, encodings: Mapping[str, Encoding]) -> dict[str, ImageDecode]:
    """The ``decode`` argument, validated against the columns read (`encodings`, by name).

    Raises:
        MDSConfigError: a column that is not read, or a value that is not an :class:`ImageDecode`.
        MDSSchemaError: a column that does not hold one image per sample.
        ImportError: simplejpeg or Pillow is missing.
    """
    if not decode:
        return {}
    if not isinstance(decode, Mapping):
        raise MDSConfigError(f"decode must map column names to ImageDecode, got {type(decode).__name__}")
    for name, spec in decode.items():
        if not isinstance(spec, ImageDecode):
            raise MDSConfigError(f"decode[{name!r}] must be an ImageDecode, got {type(spec).__name__}")
        if name not in encodings:
            raise MDSConfigError(f"decode names column {name!r}, which the batches do not hold; they hold {sorted(encodings)}")
        enc = encodings[name]
        if enc.kind not in ("jpeg", "png", "pil", "bytes"):
            raise MDSSchemaError(f"column {name!r} ({enc.text}) does not hold one image per sample; decode takes "
                                 f"columns encoded jpeg, png, pil or bytes (image files)")
    _require_decoders()
    return dict(decode)


def _require_decoders() -> Any:
    try:
        import simplejpeg
    except ImportError as exc:
        raise ImportError("batched image decoding (decode=...) needs simplejpeg and Pillow: "
                          "pip install 'mds-loader[images]'") from exc
    require_pillow()
    return simplejpeg


# ---------------------------------------------------------------------------- randomness


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer on uint64 arrays (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def uniforms(seed: int, epoch: int, ids: np.ndarray, count: int) -> np.ndarray:
    """``(len(ids), count)`` uniforms in [0, 1), a pure function of (seed, epoch, sample id)."""
    golden = np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        base = _mix(np.array([seed & (2**64 - 1)], np.uint64) + golden * np.uint64(epoch + 1))
        key = _mix(base ^ np.asarray(ids, np.uint64))
        draws = _mix(key[:, None] + golden * np.arange(1, count + 1, dtype=np.uint64))
    return (draws >> np.uint64(11)).astype(np.float64) * 2.0**-53


def random_crop(height: int, width: int, u: np.ndarray, scale: tuple[float, float],
                ratio: tuple[float, float]) -> tuple[int, int, int, int]:  # fmt: skip
    """torchvision's ``RandomResizedCrop.get_params`` with the draws `u` (:data:`_DRAWS` uniforms):
    ``(top, left, crop height, crop width)``."""
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for k in range(_ATTEMPTS):
        a, r, t, l = u[4 * k : 4 * k + 4]
        target = area * (scale[0] + (scale[1] - scale[0]) * a)
        aspect = math.exp(log_lo + (log_hi - log_lo) * r)
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(t * (height - h + 1)), int(l * (width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def center_crop(height: int, width: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The largest centered region of `size`'s aspect ratio: ``(top, left, height, width)``."""
    th, tw = size
    if width * th > height * tw:  # wider than the target: full height
        h, w = height, max(1, min(width, int(round(height * tw / th))))
    else:
        w, h = width, max(1, min(height, int(round(width * th / tw))))
    return (height - h) // 2, (width - w) // 2, h, w


# ---------------------------------------------------------------------------- threads

_POOLS: dict[int, tuple[int, ThreadPoolExecutor]] = {}
_POOLS_LOCK = threading.Lock()


def _pool(threads: int) -> ThreadPoolExecutor:
    """This process's pool of `threads` decoding threads (a forked worker makes its own)."""
    with _POOLS_LOCK:
        found = _POOLS.get(threads)
        if found is None or found[0] != os.getpid():
            found = (os.getpid(), ThreadPoolExecutor(threads, thread_name_prefix="mds-image-decode"))
            _POOLS[threads] = found
        return found[1]


def default_threads() -> int:
    """The CPUs this process may use, divided among the node's loading processes (the DataLoader's
    workers times the node's ranks): on a node of 8 ranks with 8 workers each, 96 cores give each
    worker one thread, not 12 (which would be 8x more threads than cores)."""
    return max(1, usable_cpus() // loading_processes())


# ---------------------------------------------------------------------------- one column


class ImageColumn:
    """An :class:`ImageDecode` applied to one column of one chunk (see
    :class:`mds_loader.format.gather.Decoder`)."""

    dtype = np.dtype(np.uint8)

    def __init__(self, spec: ImageDecode, column: str, encoding: Encoding, seed: int, epoch: int, ids: np.ndarray,
                 where: Callable[[int], str]) -> None:  # fmt: skip
        self.spec, self.column, self.kind = spec, column, encoding.kind
        self.ids, self.where = ids, where
        self._draws = uniforms(seed, epoch, ids, _DRAWS) if spec.resize == "random_crop" or spec.flip else None
        self._simplejpeg = _require_decoders()
        self._image = require_pillow()

    # -- what the batch holds

    def plan(self, payloads: Payloads) -> tuple[tuple[int, ...], Stop | None]:
        """The shape of each image in the batch; without a size, the size of the first image, and
        the first row whose image has another size, with its error."""
        spec = self.spec
        if spec.size is not None:
            return spec.item_shape(*spec.size), None
        first: tuple[int, int] | None = None
        for row in range(len(payloads)):
            try:
                size = self._size(payloads.view(row))
            except Exception as exc:  # noqa: BLE001 - a corrupt image: stop there, with its error
                return spec.item_shape(*(first or (0, 0))), (row, self._error(row, exc))
            if first is None:
                first = size
            elif size != first:
                return spec.item_shape(*first), (row, MDSSchemaError(
                    f"column {self.column!r} holds images of different sizes (height x width): {first[0]}x{first[1]} "
                    f"and then {size[0]}x{size[1]} in sample {int(self.ids[row])} ({self.where(row)}); pass "
                    f"ImageDecode(size=...) to resize them to one size"))
        return spec.item_shape(*(first or (0, 0))), None

    def fill(self, out: np.ndarray, payloads: Payloads) -> Stop | None:
        """Decodes every row of `payloads` into `out` on the thread pool; the first row that
        failed, with its error."""
        n = len(payloads)
        rows = itertools.count()
        failures: list[Stop] = []

        def work() -> None:
            while (row := next(rows)) < n:
                try:
                    self._decode_into(out[row], payloads.view(row), row)
                except Exception as exc:  # noqa: BLE001 - reported with the sample it belongs to
                    failures.append((row, self._error(row, exc)))

        threads = self.spec.threads or default_threads()
        if threads <= 1 or n <= 1:
            work()
        else:  # (one pool per thread count: a short last chunk takes fewer of its threads)
            pool = _pool(threads)
            for future in [pool.submit(work) for _ in range(min(n, threads))]:
                future.result()
        return min(failures, key=lambda f: f[0]) if failures else None

    def _error(self, row: int, exc: Exception) -> Exception:
        if isinstance(exc, MDSSchemaError):
            return exc
        return MDSFormatError(f"cannot decode the image in column {self.column!r} of sample {int(self.ids[row])} "
                              f"({self.where(row)}): {exc}")

    # -- one image

    def _is_jpeg(self, data: np.ndarray) -> bool:
        return self.kind != "pil" and image_magic_ok("jpeg", bytes(data[:3]))

    def _size(self, data: np.ndarray) -> tuple[int, int]:
        """(height, width) of an image, from its header."""
        if self._is_jpeg(data):
            height, width, _, _ = self._simplejpeg.decode_jpeg_header(data)
            return int(height), int(width)
        width, height = self._open(data).size
        return int(height), int(width)

    def _open(self, data: np.ndarray) -> Any:
        """A PIL image of a payload (lazy for image files)."""
        if self.kind == "pil":
            return decode_image("pil", data)
        return self._image.open(io.BytesIO(data))

    def _decode_into(self, out: np.ndarray, data: np.ndarray, row: int) -> None:
        """Decodes one payload, crops, resizes and flips it into `out` (its row of the batch)."""
        spec = self.spec
        u = self._draws[row] if self._draws is not None else None
        decoded = self._decode_jpeg(data, u) if self._is_jpeg(data) else None
        if decoded is None:  # another format, or a JPEG whose colors Pillow converts
            image = self._open(data)
            image = image.convert(spec.mode) if image.mode != spec.mode else image
            pixels = np.array(image)  # (writable: torch refuses read-only memory)
            full, region = pixels.shape[:2], None
        else:
            pixels, full, region = decoded
            if spec.mode == "L":  # Pillow's conversion of the decoded RGB (what .convert("L") gives)
                image = self._image.frombuffer("RGB", (pixels.shape[1], pixels.shape[0]), pixels, "raw", "RGB", 0, 1)
                pixels = np.array(image.convert("L"))
        self._place(out, pixels, full, region, u, row)

    def _decode_jpeg(self, data: np.ndarray, u: np.ndarray | None
                     ) -> tuple[np.ndarray, tuple[int, int], tuple[int, int, int, int] | None] | None:  # fmt: skip
        """A JPEG's RGB pixels (height, width, 3), possibly at a reduced scale, its full (height,
        width) and (with a size) the region kept; None for CMYK and YCCK JPEGs, whose colors
        Pillow converts its own way."""
        sj, spec = self._simplejpeg, self.spec
        height, width, colorspace, _ = sj.decode_jpeg_header(data)
        if colorspace not in _SIMPLEJPEG_COLORS:
            return None
        region = None if spec.size is None else self._region(height, width, u)
        factor = 1
        if region is not None and spec.dct_scaling:
            assert spec.size is not None
            reach = min(region[2] / spec.size[0], region[3] / spec.size[1])
            factor = next(f for f in (8, 4, 2, 1) if f <= reach) if reach >= 1 else 1
        if factor > 1:
            pixels = sj.decode_jpeg(data, colorspace="RGB", min_height=-(-height // factor), min_width=-(-width // factor))
        else:
            pixels = sj.decode_jpeg(data, colorspace="RGB")
        return pixels, (height, width), region

    def _region(self, height: int, width: int, u: np.ndarray | None) -> tuple[int, int, int, int]:
        """The region of a (height, width) image kept: (top, left, height, width)."""
        spec = self.spec
        if spec.resize == "random_crop":
            assert u is not None
            return random_crop(height, width, u, spec.scale, spec.ratio)
        if spec.resize == "center_crop":
            assert spec.size is not None
            return center_crop(height, width, spec.size)
        return 0, 0, height, width

    # Pixels move with numpy; torch only resizes, from a contiguous image. (A torch copy or a
    # resize of a strided view runs an OpenMP parallel region, and each decoding thread would start
    # its own team of as many threads as there are cores.)

    def _place(self, out: np.ndarray, pixels: np.ndarray, full: tuple[int, int], region: tuple[int, int, int, int] | None,
               u: np.ndarray | None, row: int) -> None:  # fmt: skip
        """Crops, resizes and flips `pixels` (of a `full`-size image, perhaps decoded at a reduced
        scale; `region`: the part kept, if known) into `out`."""
        spec = self.spec
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        height, width = pixels.shape[:2]
        if spec.size is None:
            expected = out.shape[1:] if spec.layout == "NCHW" else out.shape[:2]
            if tuple(expected) != (height, width):
                raise MDSSchemaError(f"column {self.column!r}: the image of sample {int(self.ids[row])} is {height}x{width}, "
                                     f"its header said {expected[0]}x{expected[1]}")
            image = pixels.transpose(2, 0, 1)
        else:
            top, left, ch, cw = region or self._region(*full, u)
            if (height, width) != tuple(full):  # the region in the scaled image's pixels
                sy, sx = height / full[0], width / full[1]
                top, left = int(top * sy), int(left * sx)
                ch, cw = max(1, min(height - top, round(ch * sy))), max(1, min(width - left, round(cw * sx)))
            image = self._resize(pixels, top, left, ch, cw)
            if spec.flip and u is not None and u[-1] < 0.5:
                image = image[:, :, ::-1]
        out[...] = image if spec.layout == "NCHW" else image.transpose(1, 2, 0)

    def _resize(self, pixels: np.ndarray, top: int, left: int, ch: int, cw: int) -> np.ndarray:
        """The region resized to the size asked for, as a (channels, height, width) array."""
        spec = self.spec
        assert spec.size is not None
        th, tw = spec.size
        if spec.resampler == "pillow":
            Image = self._image
            mode = spec.mode
            source = Image.frombuffer(mode, (pixels.shape[1], pixels.shape[0]), np.ascontiguousarray(pixels), "raw", mode, 0, 1)
            if (top, left, ch, cw) != (0, 0, pixels.shape[0], pixels.shape[1]):
                source = source.crop((left, top, left + cw, top + ch))
            if (ch, cw) != (th, tw):
                source = source.resize((tw, th), Image.BILINEAR if spec.interpolation == "bilinear" else Image.BICUBIC)
            return np.asarray(source).reshape(th, tw, -1).transpose(2, 0, 1)
        region = pixels[top : top + ch, left : left + cw]
        if (ch, cw) == (th, tw):
            return region.transpose(2, 0, 1)
        import torch
        from torch.nn.functional import interpolate

        source = torch.from_numpy(np.ascontiguousarray(region)).permute(2, 0, 1).unsqueeze(0)  # (channels last)
        return interpolate(source, size=(th, tw), mode=spec.interpolation, antialias=True)[0].numpy()

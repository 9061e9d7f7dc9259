"""MDS column encodings: parsing of encoding strings and per-value encode/decode.

Every encoding of mosaicml-streaming 0.13.0 is supported, with the reference's exact bytes and
decoded values (numpy scalars, PIL images, ``Decimal``, read-only ``ndarray`` views, ...). Encoding
strings are parsed in one place, :func:`parse_encoding`, into an :class:`Encoding`, which the
writers, the readers and the schema mapping all use.

Byte layouts (all integers little-endian):

* ``bytes`` / ``str``: the raw bytes / UTF-8 text.
* ``int``: int64. ``int8`` .. ``uint64``, ``float16`` .. ``float64``: the numpy scalar's bytes.
* ``str_int`` / ``str_float`` / ``str_decimal``: ``str(value)`` as UTF-8.
* ``json``: ``json.dumps(value)`` (ASCII escapes). ``pkl``: ``pickle.dumps(value)``.
* ``pil``: ``u32 width, u32 height, u32 len(mode)``, the mode, ``Image.tobytes()``.
* ``jpeg`` / ``png``: the image file bytes.
* ``list[pil|jpeg|png]``: ``u32 0``, ``u32 n``, ``u32 size`` x n, the elements.
* ``jpeg_array`` (alias ``jpegarray``): ``u32 n``, ``u32 size`` x n, the JPEG files.
* ``ndarray[:dtype[:d0,d1,...]]``: ``[u8 dtype code]`` unless the dtype is static, then
  ``[u8 ndim<<2 | shape code][shape]`` unless the shape is static, then the values in C order.

Like the reference, encoding a ``bytes`` value stores it as is, whatever the encoding (values that
are already encoded pass through); the size of fixed-size columns is still checked.

Deliberate differences from the reference, all on the writing side and all stricter or more
lenient only where the reference writes wrong data or fails with an unrelated error:
``ndarray`` accepts empty arrays (the reference reads them but refuses to write them) and writes
big-endian arrays as little-endian; ``str_int`` refuses ``bool`` (the reference writes ``"True"``,
which it cannot read back); ``int``/``str_int`` also accept numpy integers, ``str_float`` numpy
floats, ``bytes`` any bytes-like object, ``list[...]`` tuples, ``jpeg_array`` PIL images.
Reading an empty ``jpeg_array`` returns ``[]`` (the reference raises).
"""

from __future__ import annotations

import io
import math
import sys
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import MDSEncodingError, MDSFormatError, MDSSchemaError, MDSUnsafeError

if TYPE_CHECKING:
    from .families import Family

__all__ = [
    "Encoding",
    "DEFAULT_NDARRAY_DTYPE",
    "parse_encoding",
    "is_encoding",
    "encoding_names",
    "SCALAR_DTYPES",
    "NDARRAY_DTYPE_CODES",
    "NDARRAY_CODE_DTYPES",
    "SHAPE_CODE_DTYPES",
    "shape_code",
    "require_pillow",
    "encode_image",
    "decode_image",
    "split_elements",
    "image_magic_ok",
]

if sys.byteorder != "little":  # pragma: no cover - MDS is little-endian in practice
    raise ImportError("mds_loader supports little-endian machines only (MDS stores native byte order)")

#: Fixed-size numeric encodings and their little-endian numpy dtypes.
SCALAR_DTYPES: dict[str, np.dtype] = {
    name: np.dtype(name).newbyteorder("<")
    for name in ("uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "float16", "float32", "float64")
}

#: ``ndarray`` value dtype -> its one-byte code (the reference's table).
NDARRAY_DTYPE_CODES: dict[str, int] = {
    "uint8": 8, "int8": 9, "uint16": 16, "int16": 17, "float16": 18,
    "uint32": 32, "int32": 33, "float32": 34, "uint64": 64, "int64": 65, "float64": 66,
}  # fmt: skip
#: One-byte code -> ``ndarray`` value dtype.
NDARRAY_CODE_DTYPES: dict[int, np.dtype] = {code: SCALAR_DTYPES[name] for name, code in NDARRAY_DTYPE_CODES.items()}
#: Shape code (low two bits of the ndim byte) -> dtype of the stored shape.
SHAPE_CODE_DTYPES: dict[int, np.dtype] = {0: np.dtype("<u1"), 1: np.dtype("<u2"), 2: np.dtype("<u4"), 3: np.dtype("<u8")}

_NAMES = frozenset(
    {"bytes", "str", "int", "ndarray", "str_int", "str_float", "str_decimal", "pil", "jpeg", "png",
     "jpeg_array", "jpegarray", "list[pil]", "list[jpeg]", "list[png]", "pkl", "json"}
    | set(SCALAR_DTYPES)
)  # fmt: skip

_U32 = np.dtype("<u4")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"


def encoding_names() -> frozenset[str]:
    """The 28 encoding names of the reference (``ndarray`` also takes ``:dtype[:shape]``)."""
    return _NAMES


def shape_code(largest_dim: int) -> int:
    """The reference's shape code for a shape whose largest dimension is ``largest_dim``: the
    smallest unsigned integer type (0: uint8, 1: uint16, 2: uint32, 3: uint64) that holds it."""
    if largest_dim < 1 << 8:
        return 0
    if largest_dim < 1 << 16:
        return 1
    if largest_dim < 1 << 32:
        return 2
    return 3


def require_pillow() -> Any:
    """Imports and returns ``PIL.Image``, with an actionable error if Pillow is missing."""
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - pillow is installed in the test env
        raise ImportError(
            "Pillow is needed to encode or decode image columns (pil, jpeg, png, list[...], "
            "jpeg_array); install it with `pip install mds-loader[images]`"
        ) from exc
    return Image


@dataclass(frozen=True)
class Encoding:
    """A parsed MDS encoding string.

    Attributes:
        text: the encoding string as written in ``index.json`` (``"ndarray:int32:3,4"``).
        name: the part before the first ``:`` (``"ndarray"``); aliases are kept (``"jpegarray"``).
        kind: the canonical family: ``bytes``, ``str``, ``int``, ``scalar`` (``int8`` ..
            ``float64``), ``str_int``, ``str_float``, ``str_decimal``, ``json``, ``pkl``,
            ``ndarray``, ``pil``, ``jpeg``, ``png``, ``list`` or ``jpeg_array``.
        dtype: little-endian numpy dtype of a ``scalar``/``int`` value or of ``ndarray`` elements
            (None for a dynamic ``ndarray`` dtype and for the other kinds).
        shape: static ``ndarray`` shape, or None.
        size: fixed payload size in bytes, or None for variable-size encodings.
        element: the element encoding of ``list[...]`` (``"pil"``, ``"jpeg"`` or ``"png"``).
    """

    text: str
    name: str
    kind: str
    dtype: np.dtype | None = None
    shape: tuple[int, ...] | None = None
    size: int | None = None
    element: str | None = field(default=None)

    @cached_property
    def family(self) -> Family:
        """The encoding's family: how its values and columns are encoded and decoded, and the
        types it reads as (the registry's entry, :data:`mds_loader.format.families.FAMILIES`;
        looked up once per encoding: values are decoded one at a time)."""
        return _families()[self.kind]

    @property
    def dynamic_ndarray(self) -> bool:
        """Whether this is an ``ndarray`` without a static shape (each value stores its own)."""
        return self.kind == "ndarray" and self.shape is None

    @property
    def unsafe(self) -> bool:
        """Whether decoding can run arbitrary code (``pkl``)."""
        return self.family.unsafe

    def __str__(self) -> str:
        return self.text

    def encode(self, value: Any) -> bytes:
        """Encodes one value to its payload bytes, exactly as the reference does.

        Raises:
            MDSSchemaError: the value does not fit the encoding (wrong type, out of range, wrong
                dtype or shape, wrong fixed size).
        """
        if isinstance(value, bytes):
            data = value  # the reference's pass-through of pre-encoded values
        else:
            if value is None and not self.family.takes_none:
                raise MDSSchemaError(f"None cannot be stored as {self.text!r}: MDS has no null; fill it or drop the sample")
            try:
                data = self.family.encode(self, value)
            except MDSSchemaError:
                raise
            except (TypeError, ValueError, OverflowError, AttributeError, UnicodeError) as exc:
                raise MDSSchemaError(f"cannot encode {_short(value)} as {self.text!r}: {exc}") from exc
        if self.size is not None and len(data) != self.size:
            raise MDSSchemaError(
                f"{self.text!r} values are {self.size} bytes, got {len(data)} bytes "
                f"({_short(value)}); was the value typed for this encoding?"
            )
        return data

    def decode(self, data: bytes | bytearray | memoryview, *, allow_unsafe_types: bool = False) -> Any:
        """Decodes one payload to the value the reference returns.

        Raises:
            MDSFormatError: the payload is malformed.
            MDSUnsafeError: a ``pkl`` payload without ``allow_unsafe_types=True``.
        """
        family = self.family
        if family.unsafe and not allow_unsafe_types:
            raise MDSUnsafeError(
                "'pkl' values are unpickled only with allow_unsafe_types=True (unpickling runs "
                "arbitrary code: do it only for data you trust)"
            )
        if self.size is not None and len(data) != self.size:
            raise MDSFormatError(f"{self.text!r} payload must be {self.size} bytes, got {len(data)}")
        try:
            return family.decode(self, data)
        except (MDSFormatError, ImportError, MemoryError):
            raise
        except Exception as exc:  # any decoder failure means a malformed payload
            raise MDSFormatError(f"malformed {self.text!r} payload ({len(data)} bytes): {exc}") from exc


#: The element dtype of a bare ``ndarray`` column with no sample to inspect (an empty dataset):
#: numpy's default dtype, as the JVM source has it (docs/format.md §4).
DEFAULT_NDARRAY_DTYPE = "float64"

_FAMILIES: dict[str, Family] | None = None


def _families() -> dict[str, Family]:
    # The families module builds on this one and on the column codecs: imported on first use.
    global _FAMILIES
    if _FAMILIES is None:
        from .families import FAMILIES

        _FAMILIES = FAMILIES
    return _FAMILIES


def split_elements(data: bytes | bytearray | memoryview, lead: int) -> list[bytes]:
    """Splits a ``list[...]`` (``lead=8``: ``u32 0, u32 n``) or ``jpeg_array`` (``lead=4``:
    ``u32 n``) payload, ``[lead][u32 size x n][elements]``, into its elements.

    Raises:
        MDSFormatError: the sizes do not match the payload.
    """
    data = bytes(data)
    if len(data) < lead:
        raise MDSFormatError(f"payload of {len(data)} bytes is shorter than its {lead}-byte header")
    n = int(np.frombuffer(data, _U32, 1, lead - 4)[0])
    start = lead + 4 * n
    if len(data) < start:
        raise MDSFormatError(f"payload of {len(data)} bytes is too short for {n} element sizes")
    ends = start + np.cumsum(np.frombuffer(data, _U32, n, lead).astype(np.int64))
    total = int(ends[-1]) if n else start
    if total != len(data):
        raise MDSFormatError(f"element sizes add up to {total} bytes, the payload has {len(data)}")
    begins = [start, *ends[:-1].tolist()]
    return [data[a:b] for a, b in zip(begins, ends.tolist())]


def encode_image(kind: str, value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    Image = require_pillow()
    if not isinstance(value, Image.Image):
        raise MDSSchemaError(f"{kind!r} needs a PIL image, got {type(value).__name__}")
    if kind == "pil":
        mode = value.mode.encode("utf-8")
        width, height = value.size
        return np.array([width, height, len(mode)], _U32).tobytes() + mode + value.tobytes()
    if kind == "jpeg":
        from PIL.JpegImagePlugin import JpegImageFile

        filename = getattr(value, "filename", None)
        if isinstance(value, JpegImageFile) and filename:
            try:  # the reference stores an opened JPEG file's original bytes
                with open(filename, "rb") as f:
                    return f.read()
            except FileNotFoundError:
                pass
    out = io.BytesIO()
    value.save(out, format="JPEG" if kind == "jpeg" else "PNG")
    return out.getvalue()


def decode_image(kind: str, data: bytes | bytearray | memoryview) -> Any:
    Image = require_pillow()
    if kind == "pil":
        data = bytes(data)
        if len(data) < 12:
            raise MDSFormatError(f"'pil' payload of {len(data)} bytes is shorter than its 12-byte header")
        width, height, mode_size = (int(x) for x in np.frombuffer(data, _U32, 3))
        mode = data[12 : 12 + mode_size].decode("utf-8")
        raw = data[12 + mode_size :]
        # Checked before Pillow allocates the image, so that a corrupt header cannot ask for terabytes.
        needed = ((width + 7) // 8) * height if mode == "1" else width * height * _pixel_bytes(mode)
        if len(raw) < needed:
            raise MDSFormatError(f"a {width}x{height} {mode} image needs {needed} bytes of pixels, the payload has {len(raw)}")
        return Image.frombytes(mode, (width, height), raw)
    return Image.open(io.BytesIO(bytes(data)))  # lazy, like the reference


@lru_cache(maxsize=None)
def _pixel_bytes(mode: str) -> int:
    """Bytes per pixel of a PIL mode's raw data."""
    return len(require_pillow().new(mode, (1, 1)).tobytes())


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def image_magic_ok(kind: str, payload: bytes) -> bool:
    """Whether ``payload`` starts like a ``kind`` (``"jpeg"`` or ``"png"``) file."""
    return payload.startswith(_JPEG_MAGIC if kind == "jpeg" else _PNG_MAGIC)


@lru_cache(maxsize=1024)
def parse_encoding(text: str) -> Encoding:
    """Parses an encoding string (``"int32"``, ``"ndarray:uint8:2,2,3"``, ``"list[jpeg]"``, ...).

    Accepts exactly what the reference accepts: a name of :func:`encoding_names`, and for
    ``ndarray`` an optional ``:dtype`` (one of the 11 ndarray dtypes) and ``:d0,d1,...`` (every
    dimension at least 1). ``ndarray:`` means ``ndarray``.

    Raises:
        MDSEncodingError: unknown or malformed encoding string.
    """
    if not isinstance(text, str):
        raise MDSEncodingError(f"an encoding must be a string, got {type(text).__name__} {text!r}")
    name, sep, config = text.partition(":")
    if name not in _NAMES:
        raise MDSEncodingError(f"unknown encoding {text!r}; supported encodings are {sorted(_NAMES)}")
    if sep and name != "ndarray":
        raise MDSEncodingError(f"encoding {name!r} takes no ':' configuration, got {text!r}")
    if name == "ndarray":
        return _parse_ndarray(text, config)
    if name in SCALAR_DTYPES:
        dtype = SCALAR_DTYPES[name]
        return Encoding(text, name, "scalar", dtype=dtype, size=dtype.itemsize)
    if name == "int":
        return Encoding(text, name, "int", dtype=np.dtype("<i8"), size=8)
    if name.startswith("list["):
        return Encoding(text, name, "list", element=name[5:-1])
    if name in ("jpeg_array", "jpegarray"):
        return Encoding(text, name, "jpeg_array")
    return Encoding(text, name, name)


def _parse_ndarray(text: str, config: str) -> Encoding:
    if not config:
        return Encoding(text, "ndarray", "ndarray")
    dtype_name, sep, shape_text = config.partition(":")
    if dtype_name not in NDARRAY_DTYPE_CODES:
        raise MDSEncodingError(f"invalid ndarray dtype in {text!r}; use one of {sorted(NDARRAY_DTYPE_CODES)}")
    dtype = SCALAR_DTYPES[dtype_name]
    if not sep:
        return Encoding(text, "ndarray", "ndarray", dtype=dtype)
    dims = shape_text.split(",")
    if not all(d.isdigit() and d.isascii() for d in dims) or any(int(d) < 1 for d in dims):
        raise MDSEncodingError(f"invalid ndarray shape in {text!r}; write it as positive dimensions 'd0,d1,...'")
    shape = tuple(int(d) for d in dims)
    return Encoding(text, "ndarray", "ndarray", dtype=dtype, shape=shape, size=math.prod(shape) * dtype.itemsize)


def is_encoding(text: str) -> bool:
    """Whether ``text`` is a valid encoding string."""
    try:
        parse_encoding(text)
    except MDSEncodingError:
        return False
    return True

"""``dataframe_to_mds``: mosaicml-streaming's converter, call for call, backed by ``format("mds")``.

``streaming.base.converters.dataframe_to_mds(dataframe, merge_index, mds_kwargs, udf_iterable,
udf_kwargs)`` runs ``MDSWriter`` in ``mapInPandas`` tasks, one dataset per task, then merges the
indexes. This one takes the same arguments and returns the same ``(out_local, out_remote)``, and
writes one dataset through :func:`spark_mds.write`: the JVM source where the jar is loaded, the
Python paths where it is not (so it also runs where ``mapInPandas`` writes are refused).

Without ``udf_iterable``, the DataFrame's columns are written as they are, each with the
encoding ``mds_kwargs["columns"]`` gives it (checked against the column's type first). With it,
the samples that ``udf_iterable(pandas_df, **udf_kwargs)`` yields are Python values: each is
encoded as the reference encodes it (JSON text, pickles, images) or converted to a Spark value of
the encoding's type, in ``mapInArrow`` tasks, and then written the same way. A sample without one
of the columns, or a value that does not fit its encoding, fails the task naming the column.

The output has no ``__nulls__`` column (``nulls="error"``): the reference reads the same samples
from it as from its own output, and a null fails the write naming its column, where the reference
fails on it too.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

__all__ = ["dataframe_to_mds"]

log = logging.getLogger(__name__)

#: ``MDSWriter``'s arguments (mosaicml-streaming 0.13.0); ``storage_options`` is ours.
_WRITER_ARGS = frozenset({"out", "columns", "compression", "hashes", "size_limit", "keep_local", "progress_bar",
                          "max_workers", "retry", "exist_ok", "storage_options"})
#: Rows per Arrow batch that the sample conversion emits.
_BATCH_ROWS = 1024


def dataframe_to_mds(dataframe: Any, merge_index: bool = True, mds_kwargs: Mapping[str, Any] | None = None,
                     udf_iterable: Callable[..., Iterable[Mapping[str, Any]]] | None = None,
                     udf_kwargs: Mapping[str, Any] | None = None) -> tuple[str, str]:
    """Writes a Spark DataFrame as one MDS dataset, as mosaicml-streaming's ``dataframe_to_mds`` does.

    Args:
        dataframe: the rows to write.
        merge_index: accepted for compatibility: the output is always one dataset with one
            ``index.json``.
        mds_kwargs: ``MDSWriter``'s arguments. ``out`` (required): a local path, a remote URL
            (``s3://...``, any fsspec or Hadoop URL the writer reaches), or a ``(local, remote)``
            pair, written to ``remote``; ``columns``: name -> MDS encoding (``str``, ``bytes``,
            ``int8``..``uint64``, ``float16``..``float64``, ``str_int``, ``str_float``, ``json``,
            ``pkl``, ``jpeg``, ``png``, ``pil``, ``list[jpeg]``..., ``ndarray:<dtype>[:<shape>]``;
            without ``udf_iterable`` also ``str_decimal``), required with ``udf_iterable``, else
            every column with its type's encoding; ``compression`` (default ``zstd``),
            ``hashes``, ``size_limit``; ``keep_local`` (with a pair: also copy the dataset to
            ``local``); ``exist_ok`` (replace a dataset at ``out``; else an existing one fails);
            ``progress_bar``, ``max_workers``, ``retry`` are accepted (Spark sets the
            parallelism); ``storage_options``: fsspec options of a remote ``out``.
        udf_iterable: ``udf_iterable(pandas_df, **udf_kwargs)`` yields the samples (dicts) of each
            batch of rows, as in the reference.
        udf_kwargs: its keyword arguments.

    Returns:
        ``(out_local, out_remote)``: the local path and ``""`` for a local ``out``; for a remote
        one, a new empty local directory (as the reference returns) or the pair's local path,
        and the remote URL.

    Raises:
        ValueError: an empty DataFrame, no ``out``, no ``columns`` with ``udf_iterable``, a
            column the DataFrame lacks, an encoding its type cannot be stored with, or an
            unknown argument.
        TypeError: an unknown encoding.
    """
    import spark_mds

    if dataframe is None or dataframe.isEmpty():
        raise ValueError("Input dataframe is None or Empty!")
    kwargs = dict(mds_kwargs or {})
    unknown = sorted(set(kwargs) - _WRITER_ARGS)
    if unknown:
        raise ValueError(f"Invalid Writer argument(s): {unknown}")
    if "out" not in kwargs:
        raise ValueError("`out` and `columns` need to be specified in `mds_kwargs`")
    if udf_iterable is not None and "columns" not in kwargs:
        raise ValueError("If udf_iterable is specified, user must provide correct `columns` in the mds_kwargs")
    local, remote = _split_out(kwargs["out"])
    options = _write_options(kwargs)
    columns = kwargs.get("columns")
    if udf_iterable is None:
        frame, encodings = _direct_columns(dataframe, columns)
    else:
        frame, encodings = _sample_columns(dataframe, dict(columns), udf_iterable, dict(udf_kwargs or {}))
    options.update({f"encoding.{name}": text for name, text in encodings.items()})
    mode = "overwrite" if kwargs.get("exist_ok") else "errorifexists"
    spark_mds.write(frame, remote or local, mode, **options)
    if remote:
        if kwargs.get("keep_local") and local:
            _download(remote, local, kwargs.get("storage_options") or {})
        return local or tempfile.mkdtemp(), remote
    return local, ""


def _split_out(out: Any) -> tuple[str, str]:
    """``(local, remote)`` of ``out``: a local path, a URL, or a pair of them."""
    if isinstance(out, (tuple, list)):
        if len(out) != 2 or not all(isinstance(x, (str, os.PathLike)) for x in out):
            raise ValueError(f"`out` must be a path, a URL or a (local, remote) pair of them, got {out!r}")
        return os.fspath(out[0]), os.fspath(out[1])
    if not isinstance(out, (str, os.PathLike)):
        raise ValueError(f"`out` must be a path, a URL or a (local, remote) pair of them, got {out!r}")
    from mds_loader.storage import is_remote, local_path

    text = os.fspath(out)
    return ("", text) if is_remote(text) else (local_path(text), "")


def _write_options(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The writer options of ``format("mds")`` for ``MDSWriter``'s arguments."""
    compression = kwargs.get("compression", "zstd")  # the reference's converter defaults to zstd
    options: dict[str, Any] = {"compression": compression or "none", "nulls": "error"}
    hashes = kwargs.get("hashes")
    if hashes:
        options["hashes"] = hashes if isinstance(hashes, str) else ",".join(hashes)
    if kwargs.get("size_limit") is not None:
        options["size_limit"] = str(kwargs["size_limit"])
    if kwargs.get("storage_options"):
        options["storage_options"] = dict(kwargs["storage_options"])
    return options


def _direct_columns(dataframe: Any, columns: Mapping[str, str] | None) -> tuple[Any, dict[str, str]]:
    """The DataFrame to write and its encoding overrides, when its values are written as they are.

    ``pkl`` columns are the exception: the reference pickles each value, so they go through the
    sample conversion with the rows as samples."""
    from .fallback.layout import override_encoding

    if columns is None:
        log.warning("columns is missing from mds_kwargs: every column is written with its type's encoding")
        return dataframe, {}
    if not isinstance(columns, Mapping):
        raise ValueError(f"mds_kwargs['columns'] must map column names to encodings, got {type(columns).__name__}")
    from pyspark.sql.types import StringType

    schema = {f.name: f.dataType for f in dataframe.schema.fields}
    parsed = {}
    for name, text in columns.items():
        if name not in schema:
            raise ValueError(f"{name} is not a column of input dataframe: {dataframe.columns}")
        parsed[name] = _parse(name, text)
    # The reference encodes these in Python from the rows' values: pickles of any value, and JSON
    # text of a string (a quoted JSON string, where format("mds") stores JSON text as it is).
    if any(e.kind == "pkl" or (e.kind == "json" and isinstance(schema[n], StringType)) for n, e in parsed.items()):
        return _sample_columns(dataframe, dict(columns), None, {})
    for name, text in columns.items():
        override_encoding(name, schema[name], text)
    return dataframe.select(*columns), dict(columns)


def _parse(column: str, text: Any) -> Any:
    """The parsed encoding of a column of ``mds_kwargs["columns"]``.

    Raises:
        MDSEncodingError: unknown or malformed (a TypeError and a ValueError), naming the column.
    """
    from mds_loader.errors import MDSEncodingError
    from mds_loader.format.encodings import parse_encoding

    try:
        return parse_encoding(text)
    except MDSEncodingError as exc:
        raise MDSEncodingError(f"column {column!r}: {exc}") from None


def _sample_columns(dataframe: Any, columns: dict[str, str], udf_iterable: Callable[..., Iterable[Mapping[str, Any]]] | None,
                    udf_kwargs: dict[str, Any]) -> tuple[Any, dict[str, str]]:
    """The DataFrame of the samples that ``udf_iterable`` makes of each batch of rows (or of the
    rows themselves), with each value in the Spark form of its column's encoding."""
    import pyarrow as pa
    from pyspark.sql.types import StructField, StructType

    from .fallback.layout import spark_arrow_schema

    carriers = {name: _Carrier(name, _parse(name, text)) for name, text in columns.items()}
    schema = StructType([StructField(name, c.spark_type, True) for name, c in carriers.items()])
    arrow_schema = spark_arrow_schema(schema)

    def convert(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        rows: dict[str, list[Any]] = {name: [] for name in carriers}

        def flush() -> pa.RecordBatch:
            batch = pa.RecordBatch.from_arrays([pa.array(rows[n], arrow_schema.field(n).type) for n in carriers],
                                               schema=arrow_schema)
            for values in rows.values():
                values.clear()
            return batch

        count = 0
        for batch in batches:
            frame = batch.to_pandas()
            samples = udf_iterable(frame, **udf_kwargs) if udf_iterable is not None else frame.to_dict("records")
            if not isinstance(samples, Iterable):
                raise TypeError(f"udf_iterable must return an iterable of samples, got {type(samples).__name__}")
            for sample in samples:
                for name, carrier in carriers.items():
                    try:
                        value = sample[name]
                    except KeyError:
                        raise KeyError(f"a sample of udf_iterable has no column {name!r} (it has "
                                       f"{sorted(sample)}); mds_kwargs['columns'] names it") from None
                    rows[name].append(carrier.convert(value))
                count += 1
                if count % _BATCH_ROWS == 0:
                    yield flush()
        if count % _BATCH_ROWS:
            yield flush()

    return dataframe.mapInArrow(convert, schema), {n: c.encoding for n, c in carriers.items()}


class _Carrier:
    """How a value of one column reaches the writer: the Spark type that carries it, and the
    conversion of a sample's value into it. Values that the reference encodes in Python (JSON
    text, pickles, images) are encoded here exactly as it does, and stored as they are."""

    def __init__(self, column: str, enc: Any) -> None:
        from pyspark.sql.types import ArrayType, BinaryType, DoubleType, LongType, StringType

        self.column, self.enc = column, enc
        self.encoding = enc.text
        kind = enc.kind
        if kind == "str":
            self.spark_type, self._convert = StringType(), self._text
        elif kind == "bytes":
            self.spark_type, self._convert = BinaryType(), self._bytes
        elif kind in ("int", "str_int") or (kind == "scalar" and enc.dtype.kind in "iu"):
            self.spark_type, self._convert = LongType(), self._integer
        elif kind in ("str_float", "scalar"):
            self.spark_type, self._convert = DoubleType(), self._float
        elif kind == "json":
            self.spark_type, self._convert = StringType(), self._encoded_text
        elif kind in ("pkl", "pil", "jpeg", "png"):
            self.spark_type, self._convert = BinaryType(), enc.encode
        elif kind in ("list", "jpeg_array"):
            self.spark_type, self._convert = ArrayType(BinaryType()), self._images
        elif kind == "ndarray" and enc.dtype is not None:
            self.spark_type, self._convert = ArrayType(_spark_element(enc.dtype)), self._array
        else:
            raise ValueError(f"column {column!r}: {enc.text} is not supported by dataframe_to_mds for Python values "
                             "(str_decimal: use str; ndarray: give its dtype, ndarray:<dtype>[:<shape>])")

    def convert(self, value: Any) -> Any:
        """``value`` in this column's Spark form.

        Raises:
            ValueError: the value does not fit the encoding (naming the column and the value).
        """
        if value is None and not self.enc.family.takes_none:
            raise ValueError(f"column {self.column!r} ({self.encoding}) has a None value; MDS has no nulls")
        try:
            return self._convert(value)
        except Exception as exc:
            raise ValueError(f"column {self.column!r} ({self.encoding}): {str(value)[:80]!r} does not fit: {exc}") from None

    def _text(self, value: Any) -> str:
        if not isinstance(value, str):
            raise TypeError(f"str needs a str, got {type(value).__name__}")
        return value

    def _bytes(self, value: Any) -> bytes:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"bytes needs bytes, got {type(value).__name__}")
        return bytes(value)

    def _integer(self, value: Any) -> int:
        import numpy as np

        if not isinstance(value, (int, np.integer)):
            raise TypeError(f"needs an integer, got {type(value).__name__}")
        if not -(1 << 63) <= int(value) < 1 << 63:
            raise ValueError("integers pass through Spark as 64-bit signed values")
        return int(value)

    def _float(self, value: Any) -> float:
        return float(value)

    def _encoded_text(self, value: Any) -> str:
        return self.enc.encode(value).decode("utf-8")

    def _images(self, value: Any) -> list[bytes]:
        from mds_loader.format.encodings import encode_image

        if not isinstance(value, (list, tuple)):
            raise TypeError(f"needs a list of images, got {type(value).__name__}")
        element = self.enc.element if self.enc.kind == "list" else "jpeg"
        return [encode_image(element, item) for item in value]

    def _array(self, value: Any) -> list[Any]:
        import numpy as np

        array = np.asarray(value)
        if self.enc.shape is None and array.ndim != 1:
            raise ValueError(f"an array of shape {array.shape}: a dynamic ndarray passes through Spark as a "
                             "1-d array; give the shape (ndarray:<dtype>:<d0>,<d1>...) or use pkl")
        if self.enc.shape is not None and array.size != int(np.prod(self.enc.shape)):
            raise ValueError(f"an array of shape {array.shape} for the static shape {self.enc.shape}")
        return array.astype(self.enc.dtype, copy=False).ravel().tolist()


def _spark_element(dtype: Any) -> Any:
    """The Spark type that holds every value of a numpy dtype (the writer narrows it again)."""
    from pyspark.sql.types import DoubleType, LongType

    return DoubleType() if dtype.kind == "f" else LongType()


def _download(remote: str, local: str, storage_options: Mapping[str, Any]) -> None:
    """Copies the dataset at ``remote`` into ``local`` (``keep_local``)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(remote, **storage_options)
    os.makedirs(local, exist_ok=True)
    fs.get(path.rstrip("/") + "/", local.rstrip("/") + "/", recursive=True)

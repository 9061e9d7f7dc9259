"""Options of the Python fallback of ``format("mds")``, parsed and validated like the JVM source's
(``jvm/.../MdsOptions.scala``): same names, defaults and messages.

Write: ``compression`` (default ``zstd``), ``hashes`` (comma-separated), ``size_limit`` (bytes or a
binary-suffixed size such as ``64mb``; default ``1 << 26``; ``0``/``none`` for no limit),
``encoding.<column>``, ``nulls`` (``mask``, the default, or ``error``), ``partition_by``
(comma-separated partition columns, docs/format.md §8; read by the write plan),
``partitionOverwriteMode`` (``dynamic`` is refused, see :func:`check_overwrite_mode`).
Read: ``max_partition_bytes`` (default 128 MiB), ``validate_hash``.
Both, for a remote path (``s3://...``, any fsspec URL): fsspec storage options, as a JSON object in
``storage_options`` and/or one ``storage.<name>`` option each (see :func:`parse_storage_options`).

Differences, all because of what each side can run (docs/format.md §7): the fallback writes ``br``
(Brotli) and the hashes ``blake2b``, ``blake2s``, ``xxh128``, ``xxh3_64`` and ``xxh3_128``, which
the JVM source refuses; Python data sources receive option keys lower-cased, so the column of an
``encoding.<column>`` option is matched case-insensitively (see :func:`resolve_encodings`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mds_loader.errors import MDSConfigError
from mds_loader.format import WriteOptions, get_codec, is_hash
from mds_loader.format.sizes import parse_byte_size
from mds_loader.format.write_options import DEFAULT_SIZE_LIMIT

__all__ = [
    "DEFAULT_COMPRESSION",
    "DEFAULT_SIZE_LIMIT",
    "DEFAULT_MAX_PARTITION_BYTES",
    "parse_write_options",
    "ReadOptions",
    "parse_size",
    "dataset_path",
    "resolve_encodings",
    "parse_storage_options",
]

DEFAULT_COMPRESSION = "zstd"
DEFAULT_MAX_PARTITION_BYTES = 128 << 20

_ENCODING_PREFIX = "encoding."
_STORAGE_PREFIX = "storage."
_STORAGE_JSON = "storage_options"


def _get(options: Mapping[str, str], key: str) -> str | None:
    """Case-insensitive option lookup (Spark hands Python sources lower-cased keys already)."""
    for k, v in options.items():
        if k.lower() == key:
            return None if v is None else str(v)
    return None


def parse_size(text: str, what: str = "size_limit", *, allow_huge: bool = False) -> int | None:
    """The reference's ``bytes_to_int``, as the JVM source parses it: a number of bytes, or a number
    with a case-insensitive binary suffix (``b``, ``kb`` = 1024, ``mb``, ... ``yb``), fractions
    allowed (``1.5mb``). ``0``, ``none``, ``null`` or empty mean no limit (None).

    Raises:
        MDSConfigError: not a size, or (unless ``allow_huge``) 4 GiB or more (shard offsets are u32).
    """
    t = str(text).strip().lower()

    def bad(msg: str) -> MDSConfigError:
        return MDSConfigError(
            f"option {what}='{text}' is invalid: {msg}; use a number of bytes or a number with a binary suffix "
            "(b, kb, mb, gb, ...), e.g. 67108864 or 64mb"
        )

    if t in ("none", "null", ""):
        return None
    try:
        value = parse_byte_size(t)
    except ValueError as exc:
        raise bad(str(exc)) from None
    if value <= 0:
        return None
    if not allow_huge and value >= 1 << 32:
        raise bad("MDS shards use uint32 offsets, so the limit must be below 4 GiB")
    if value > (1 << 63) - 1:
        raise bad("too large")
    return value


def _parse_compression(text: str | None) -> str | None:
    """A compression option: None for none; the family's name otherwise, checked against the
    codecs mds_loader can write (the reference's plus ``lz4``)."""
    raw = DEFAULT_COMPRESSION if text is None else text
    t = raw.strip()
    if t.lower() in ("", "none", "null"):
        return None
    try:
        get_codec(t)
    except MDSConfigError as exc:
        raise MDSConfigError(
            f"invalid option compression '{raw}': {exc}. Allowed: none, zstd, zstd:1..22, gz, gz:0..9, bz2, bz2:1..9, "
            "br, br:0..11, snappy, lz4 (lz4 is an extension the reference cannot read)"
        ) from None
    return t


def _parse_hashes(text: str | None) -> list[str]:
    if text is None:
        return []
    names = []
    for part in text.split(","):
        name = part.strip()
        if not name:
            continue
        if not is_hash(name):
            raise MDSConfigError(
                f"option hashes: unknown hash '{name}'; use hashlib algorithms (md5, sha1, sha256, ...) or "
                "xxh32, xxh64, xxh128, xxh3_64, xxh3_128"
            )
        names.append(name)
    return sorted(set(names))


def _storage_json(text: str) -> dict[str, Any]:
    """The JSON object of the ``storage_options`` option.

    Raises:
        MDSConfigError: not JSON, or not an object (the value is not shown: it may hold secrets).
    """
    example = 'e.g. {"endpoint_url": "https://...", "key": "...", "secret": "..."}'
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise MDSConfigError(f"option {_STORAGE_JSON} is not valid JSON ({exc.args[0]}); give a JSON object, {example}") from None
    if not isinstance(value, dict):
        raise MDSConfigError(f"option {_STORAGE_JSON} must be a JSON object of fsspec options, not a {type(value).__name__}; "
                             f"{example}")
    return value


def _storage_value(text: str) -> Any:
    """A ``storage.<name>`` value: ``true``/``false`` (any case) as booleans, anything else as
    the string it is (Spark hands every option value over as a string)."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return text


def _set_nested(out: dict[str, Any], option: str, path: list[str], value: Any) -> None:
    """Sets ``out[path[0]][path[1]]... = value``, creating the inner objects.

    Raises:
        MDSConfigError: an empty name part, or a part that already holds a value, not an object.
    """
    if any(not part for part in path):
        raise MDSConfigError(f"option {option}: empty name; use storage.<name> or storage.<name>.<inner name>, "
                             "e.g. storage.endpoint_url or storage.client_kwargs.region_name")
    node = out
    for depth, part in enumerate(path[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise MDSConfigError(f"option {option}: {_STORAGE_PREFIX}{'.'.join(path[:depth + 1])} is already set to a "
                                 "value, so it cannot also hold inner options; set one or the other")
        node = child
    node[path[-1]] = value


def parse_storage_options(options: Mapping[str, str]) -> dict[str, Any]:
    """The fsspec storage options of a remote path (credentials, endpoint, region, ...), passed to
    the file system of ``s3://``, ``gs://``, ... URLs and ignored for local paths.

    Two forms, which may be combined: ``storage_options``, a JSON object (any value type, names
    keep their case), and one ``storage.<name>`` option per value, which wins over the JSON.
    Dots nest: ``storage.client_kwargs.region_name`` sets ``{"client_kwargs": {"region_name": ...}}``.
    A ``storage.<name>`` value is a string, except ``true``/``false`` (booleans); give numbers,
    nulls, lists, or names that need capitals (Python data sources receive option names
    lower-cased) in the JSON form.

    Raises:
        MDSConfigError: ``storage_options`` is not a JSON object, or a ``storage.<name>`` is empty or
            clashes with another, naming the option (never its value).
    """
    text = _get(options, _STORAGE_JSON)
    out = _storage_json(text) if text is not None and text.strip() else {}
    for key in sorted(k for k in options if k.lower().startswith(_STORAGE_PREFIX)):
        value = options[key]
        if value is not None:
            _set_nested(out, key, key[len(_STORAGE_PREFIX):].split("."), _storage_value(str(value)))
    return out


def dataset_path(options: Mapping[str, str]) -> str:
    """The dataset path of a read or write (``path``, or ``location``).

    Raises:
        MDSConfigError: no path; the message shows the forms that work with the Python fallback.
    """
    path = _get(options, "path") or _get(options, "location")
    if not path:
        raise MDSConfigError(
            "the mds source needs a path: .save(path) / .load(path), OPTIONS (path '...') or, in SQL, "
            "WITH ('path' = '...'); the Python fallback of the mds source does not receive a table's LOCATION"
        )
    return path


OVERWRITE_MODE = "partitionOverwriteMode"  # the write option (Spark's spark.sql.sources.partitionOverwriteMode)


def overwrite_mode(options: Mapping[str, str]) -> str | None:
    """The ``partitionOverwriteMode`` option's value (lower-cased), None when not given."""
    mode = _get(options, OVERWRITE_MODE.lower())
    return None if mode is None else mode.strip().lower()


def check_overwrite_mode(options: Mapping[str, str], overwrite: bool, partitioned: bool, where: str) -> None:
    """Refuses a dynamic partition overwrite (option ``partitionOverwriteMode``, which
    :func:`spark_mds.write` fills from the session's ``spark.sql.sources.partitionOverwriteMode``):
    it would keep the partitions the new rows do not touch, and this source replaces the whole
    dataset, so it would delete what the user means to keep. The JVM source refuses it the same way.

    Raises:
        MDSConfigError: an overwrite of a partitioned write in dynamic mode.
    """
    if overwrite and partitioned and overwrite_mode(options) == "dynamic":
        raise MDSConfigError(
            f"dynamic partition overwrite is not supported by the mds source ({where}): an overwrite replaces the whole "
            "dataset. Set spark.sql.sources.partitionOverwriteMode=static to replace it, or append"
        )


def parse_write_options(options: Mapping[str, str]) -> WriteOptions:
    """The options of a write (``compression``, ``hashes``, ``size_limit``, ``nulls``,
    ``encoding.<column>``, ``storage.*``/``storage_options``) as the format core's
    :class:`~mds_loader.format.WriteOptions`; ``encodings`` are keyed by the column as the option
    named it (lower-cased by Spark for Python sources).

    Raises:
        MDSConfigError: an invalid option value, naming the option and the allowed values.
    """
    size = _get(options, "size_limit")
    nulls = (_get(options, "nulls") or "mask").strip().lower()
    if nulls not in ("mask", "error"):
        raise MDSConfigError(f"option nulls='{nulls}' is invalid; allowed values: mask (default), error")
    encodings = {
        k[len(_ENCODING_PREFIX):]: str(v).strip() for k, v in options.items() if k.lower().startswith(_ENCODING_PREFIX)
    }
    return WriteOptions(
        compression=_parse_compression(_get(options, "compression")),
        hashes=_parse_hashes(_get(options, "hashes")),
        size_limit=DEFAULT_SIZE_LIMIT if size is None else parse_size(size),
        nulls=nulls,
        encodings=encodings,
        storage_options=parse_storage_options(options),
    )


@dataclass(frozen=True)
class ReadOptions:
    """Validated read options: ``max_partition_bytes`` (target stored bytes per input partition),
    ``validate_hash`` (hash every stored shard file with this algorithm before decoding) and the
    ``storage_options`` of a remote path (:func:`parse_storage_options`; not in the repr)."""

    max_partition_bytes: int = DEFAULT_MAX_PARTITION_BYTES
    validate_hash: str | None = None
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def parse(cls, options: Mapping[str, str]) -> ReadOptions:
        """Parses the options of a read.

        Raises:
            MDSConfigError: an invalid option value.
        """
        mpb = _get(options, "max_partition_bytes")
        max_bytes = DEFAULT_MAX_PARTITION_BYTES
        if mpb is not None:
            parsed = parse_size(mpb, "max_partition_bytes", allow_huge=True)
            if parsed is None:
                raise MDSConfigError(f"option max_partition_bytes='{mpb}' must be a positive size")
            max_bytes = parsed
        vh = (_get(options, "validate_hash") or "").strip() or None
        if vh is not None and not is_hash(vh):
            raise MDSConfigError(f"option validate_hash: unknown hash '{vh}'; use e.g. sha1 or xxh64")
        return cls(max_bytes, vh, parse_storage_options(options))


def resolve_encodings(encodings: Mapping[str, str], columns: Sequence[str]) -> dict[str, str]:
    """Maps ``encoding.<column>`` overrides to the data's column names.

    Python data sources get option keys lower-cased, so a key is matched to the one column whose
    name equals it ignoring case.

    Raises:
        MDSConfigError: a key that names no column, or that matches several columns differing only
            in case (rename one of them).
    """
    resolved: dict[str, str] = {}
    unknown = []
    for key, enc in encodings.items():
        # Every case-insensitive match counts: the key may be a lower-cased "Img" as well as "img".
        matches = [c for c in columns if c.lower() == key.lower()]
        if len(matches) == 1:
            resolved[matches[0]] = enc
        elif len(matches) > 1:
            raise MDSConfigError(
                f"option encoding.{key} matches the columns {', '.join(matches)}, which differ only in case; Python data "
                "sources receive option names lower-cased, so rename the columns apart to give them encodings"
            )
        else:
            unknown.append(key)
    if unknown:
        raise MDSConfigError(
            f"option {', '.join('encoding.' + u for u in unknown)} names no column; columns are {', '.join(columns)}"
        )
    return resolved

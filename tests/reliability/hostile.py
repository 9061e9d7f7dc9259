"""Bad and hostile MDS datasets: a small base dataset and the damage done to copies of it.

Every case is a function ``damage(path)`` that changes a copy of the base dataset in place. Some
damage only the files (the index then disagrees with them: sizes, hashes), others rewrite a shard
*and* its index entry consistently, so that the readers' size and hash checks pass and the bytes
reach the shard and sample decoders. :data:`CASES` maps a case name to ``(damage, needs)``, where
``needs`` says which base dataset the case starts from (``"raw"``: uncompressed shards with sha1
and xxh64 hashes; ``"zstd"`` / ``"gz"``: compressed shards).

Used by the bad-input tests of every reader (mds_loader, the CLI, the JVM source, the Python
fallback) and, for the mutation helpers, by the fuzzers.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import struct
import zlib
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import numpy as np
import xxhash

from mds_loader import MDSWriter
from mds_loader.format import get_codec, parse_encoding

#: Columns of the base dataset: every kind of payload a decoder parses (fixed, strings, bytes,
#: json, numbers as text, dynamic and static ndarrays, image lists).
COLUMNS = {
    "id": "int64",
    "s": "str",
    "b": "bytes",
    "j": "json",
    "n": "str_int",
    "d": "str_decimal",
    "a": "ndarray",  # dynamic dtype and shape
    "a2": "ndarray:uint8",  # static dtype, dynamic shape
    "f": "ndarray:float32:2",  # static shape
    "x": "float64",
}
ROWS = 30
SIZE_LIMIT = 1500  # a few samples per shard: several shards


def sample(i: int) -> dict:
    return {
        "id": i,
        "s": "é" * (i % 5) + f"row{i}",
        "b": bytes(range(i % 7)),
        "j": {"i": i, "l": [i, str(i)]},
        "n": -i * 1000,
        "d": Decimal(i) / 4,
        "a": np.arange(i % 4 + 1, dtype=np.int16).reshape(1, -1),
        "a2": np.full((2, i % 3), i, np.uint8),
        "f": np.array([i, -i], np.float32),
        "x": i / 3,
    }


def write_base(path: Path, compression: str | None) -> Path:
    """The base dataset (24 samples in several shards, sha1 + xxh64 hashes)."""
    with MDSWriter(out=str(path), columns=COLUMNS, compression=compression, hashes=["sha1", "xxh64"],
                   size_limit=SIZE_LIMIT) as w:  # fmt: skip
        for i in range(ROWS):
            w.write(sample(i))
    return path


# ---------------------------------------------------------------------------- raw shard surgery


def load_index(path: Path) -> dict:
    return json.loads((path / "index.json").read_text())


def save_index(path: Path, index: dict) -> None:
    (path / "index.json").write_text(json.dumps(index, sort_keys=True))


def _hashes(data: bytes, names) -> dict[str, str]:
    out = {}
    for name in names:
        out[name] = hashlib.sha1(data).hexdigest() if name == "sha1" else xxhash.xxh64(data).hexdigest()
    return out


def raw_bytes(path: Path, k: int) -> bytes:
    """The raw (decompressed) bytes of shard ``k``."""
    entry = load_index(path)["shards"][k]
    if entry["zip_data"] is None:
        return (path / entry["raw_data"]["basename"]).read_bytes()
    data = (path / entry["zip_data"]["basename"]).read_bytes()
    return get_codec(entry["compression"]).decompress(data)


def set_raw(path: Path, k: int, raw: bytes, samples: int | None = None) -> None:
    """Replaces shard ``k``'s raw bytes *consistently*: its file (recompressed if the shard is
    compressed), and its index entry's sizes, hashes and sample count. A decompressed copy left by
    an earlier read is removed."""
    index = load_index(path)
    entry = index["shards"][k]
    raw_info = entry["raw_data"]
    raw_info["bytes"] = len(raw)
    raw_info["hashes"] = _hashes(raw, raw_info["hashes"])
    if samples is not None:
        entry["samples"] = samples
    if entry["zip_data"] is None:
        (path / raw_info["basename"]).write_bytes(raw)
    else:
        packed = get_codec(entry["compression"]).compress(raw)
        (path / entry["zip_data"]["basename"]).write_bytes(packed)
        entry["zip_data"]["bytes"] = len(packed)
        entry["zip_data"]["hashes"] = _hashes(packed, entry["zip_data"]["hashes"])
        try:
            (path / raw_info["basename"]).unlink()
        except FileNotFoundError:
            pass
    save_index(path, index)


def split_shard(raw: bytes) -> tuple[bytes, list[bytes]]:
    """(header + config, samples) of a raw shard."""
    n = struct.unpack_from("<I", raw, 0)[0]
    offsets = struct.unpack_from(f"<{n + 1}I", raw, 4)
    return raw[: offsets[0]], [raw[offsets[i] : offsets[i + 1]] for i in range(n)]


def join_shard(head: bytes, samples: list[bytes]) -> bytes:
    """A raw shard from the old header's config part and new samples (offsets recomputed)."""
    n_old = struct.unpack_from("<I", head, 0)[0]
    config = head[4 + 4 * (n_old + 1) :]
    start = 4 + 4 * (len(samples) + 1) + len(config)
    offsets = [start]
    for s in samples:
        offsets.append(offsets[-1] + len(s))
    return struct.pack(f"<I{len(samples) + 1}I", len(samples), *offsets) + config + b"".join(samples)


def _sizes(path: Path) -> list[int | None]:
    entry = load_index(path)["shards"][0]
    return [parse_encoding(e).size for e in entry["column_encodings"]]


def split_sample(data: bytes, sizes: list[int | None]) -> list[bytes]:
    """The column payloads of one sample."""
    nvar = sum(s is None for s in sizes)
    var = list(struct.unpack_from(f"<{nvar}I", data, 0))
    pos, out = 4 * nvar, []
    for s in sizes:
        size = var.pop(0) if s is None else s
        out.append(data[pos : pos + size])
        pos += size
    return out


def join_sample(payloads: list[bytes], sizes: list[int | None], var_sizes: list[int] | None = None) -> bytes:
    """A sample from column payloads; ``var_sizes`` overrides the size header (lies)."""
    real = [len(p) for p, s in zip(payloads, sizes) if s is None]
    head = struct.pack(f"<{len(real)}I", *(var_sizes if var_sizes is not None else real))
    return head + b"".join(payloads)


def column_index(path: Path, name: str) -> int:
    return load_index(path)["shards"][0]["column_names"].index(name)


def edit_sample(path: Path, k: int, i: int, fn: Callable[[list[bytes], list[int | None]], bytes]) -> None:
    """Rewrites sample ``i`` of shard ``k`` as ``fn(payloads, sizes)`` (consistently)."""
    head, samples = split_shard(raw_bytes(path, k))
    sizes = _sizes(path)
    samples[i] = fn(split_sample(samples[i], sizes), sizes)
    set_raw(path, k, join_shard(head, samples))


def set_payload(path: Path, column: str, payload: bytes, k: int = 1, i: int = 1) -> None:
    """Replaces one column payload of sample ``i`` of shard ``k`` (sizes kept consistent)."""
    c = column_index(path, column)

    def fn(payloads, sizes):
        payloads[c] = payload
        return join_sample(payloads, sizes)

    edit_sample(path, k, i, fn)


def stored_file(path: Path, k: int) -> Path:
    entry = load_index(path)["shards"][k]
    return path / (entry["zip_data"] or entry["raw_data"])["basename"]


# ---------------------------------------------------------------------------- damage cases


def _truncate_stored(path: Path) -> None:
    f = stored_file(path, 1)
    f.write_bytes(f.read_bytes()[:-7])


def _truncate_consistently(path: Path) -> None:
    raw = raw_bytes(path, 1)
    set_raw(path, 1, raw[: len(raw) // 2])  # the header's last offset now points past the end


def _offset_past_end(path: Path) -> None:
    raw = bytearray(raw_bytes(path, 1))
    struct.pack_into("<I", raw, 8, len(raw) + 1000)  # offsets[1]
    set_raw(path, 1, bytes(raw))


def _offsets_decrease(path: Path) -> None:
    raw = bytearray(raw_bytes(path, 1))
    n = struct.unpack_from("<I", raw, 0)[0]
    struct.pack_into("<I", raw, 4 + 4 * (n // 2 + 1), 9)
    set_raw(path, 1, bytes(raw))


def _huge_sample_count_in_header(path: Path) -> None:
    raw = bytearray(raw_bytes(path, 1))
    struct.pack_into("<I", raw, 0, 0xFFFFFFFF)
    set_raw(path, 1, bytes(raw))


def _var_size_u32_max(path: Path) -> None:
    def fn(payloads, sizes):
        real = [len(p) for p, s in zip(payloads, sizes) if s is None]
        real[0] = 0xFFFFFFFF
        return join_sample(payloads, sizes, real)

    edit_sample(path, 1, 1, fn)


def _var_sizes_wrap_32(path: Path) -> None:
    """Two variable sizes of 2**31 whose sum wraps around to the real total in 32-bit arithmetic."""

    def fn(payloads, sizes):
        real = [len(p) for p, s in zip(payloads, sizes) if s is None]
        real[0] += 1 << 31
        real[1] += 1 << 31
        return join_sample(payloads, sizes, real)

    edit_sample(path, 1, 1, fn)


def _var_size_negative_i32(path: Path) -> None:
    """Sizes s0 + s1 stored as 2**32 - 3 (-3 as a signed int) and s0 + s1 + 3: the total is right
    in 32-bit arithmetic, and the second column would start before the sample."""

    def fn(payloads, sizes):
        real = [len(p) for p, s in zip(payloads, sizes) if s is None]
        real[0], real[1] = (1 << 32) - 3, real[0] + real[1] + 3
        return join_sample(payloads, sizes, real)

    edit_sample(path, 1, 1, fn)


def _sample_sizes_disagree(path: Path) -> None:
    def fn(payloads, sizes):
        real = [len(p) for p, s in zip(payloads, sizes) if s is None]
        real[0] += 2
        return join_sample(payloads, sizes, real)

    edit_sample(path, 1, 1, fn)


def _nd_payload(dtype_code: int | None, dims: list[int], shape_code: int, values: bytes = b"") -> bytes:
    fmt = {0: "B", 1: "H", 2: "I", 3: "Q"}[shape_code]
    head = b"" if dtype_code is None else bytes([dtype_code])
    return head + bytes([(len(dims) << 2) | shape_code]) + struct.pack(f"<{len(dims)}{fmt}", *dims) + values


def _ndarray_shape_overflows(path: Path) -> None:
    # 2**32 x 2**32 elements: the int64 product wraps around to 0, like the empty payload
    set_payload(path, "a2", _nd_payload(None, [1 << 32, 1 << 32], 3))


def _ndarray_zero_dim_after_huge(path: Path) -> None:
    # (2**40, 0) is empty, but would make 2**40 nested lists
    set_payload(path, "a2", _nd_payload(None, [1 << 40, 0], 3))


def _ndarray_many_dims(path: Path) -> None:
    # 63 dimensions of 2**31-1 (products overflow every integer type)
    set_payload(path, "a2", _nd_payload(None, [(1 << 31) - 1] * 63, 2))


def _ndarray_shape_vs_payload(path: Path) -> None:
    set_payload(path, "a2", _nd_payload(None, [3, 1000], 1, b"\x01" * 10))


def _ndarray_bad_dtype_code(path: Path) -> None:
    set_payload(path, "a", _nd_payload(250, [2], 0, b"\x00" * 4))


def _bad_utf8(path: Path) -> None:
    set_payload(path, "s", b"\xff\xfe\xfd")


def _bad_json(path: Path) -> None:
    set_payload(path, "j", b'{"i": [1, 2')


def _deep_json(path: Path) -> None:
    set_payload(path, "j", b"[" * 200_000 + b"]" * 200_000)


def _bad_str_int(path: Path) -> None:
    set_payload(path, "n", b"12x")


def _huge_str_int(path: Path) -> None:
    set_payload(path, "n", b"9" * 5000)


def _bad_decimal(path: Path) -> None:
    set_payload(path, "d", b"1e999999999")


def _fixed_column_short(path: Path) -> None:
    """A sample whose bytes end inside its fixed-size columns (the offsets say so consistently)."""
    head, samples = split_shard(raw_bytes(path, 1))
    samples[1] = samples[1][:6]
    set_raw(path, 1, join_shard(head, samples))


def _wrong_compression(path: Path) -> None:
    """A 'zstd' index entry over a gzip file (consistent sizes and hashes)."""
    index = load_index(path)
    entry = index["shards"][1]
    f = path / entry["zip_data"]["basename"]
    raw = get_codec("zstd").decompress(f.read_bytes())
    packed = get_codec("gz").compress(raw)
    f.write_bytes(packed)
    entry["zip_data"]["bytes"] = len(packed)
    entry["zip_data"]["hashes"] = _hashes(packed, entry["zip_data"]["hashes"])
    save_index(path, index)


def zstd_bomb(size: int) -> bytes:
    """A small zstd stream (frames without a content size) that decompresses to ``size`` zero bytes."""
    import zstandard

    unit = 1 << 27
    frame = zstandard.ZstdCompressor(level=1, write_content_size=False).compress(bytes(min(size, unit)))
    return frame * max(1, size // unit)


def gz_bomb(size: int) -> bytes:
    co = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(1 << 24)
    return b"".join([co.compress(chunk) for _ in range(size // len(chunk))] + [co.flush()])


def _bomb(family: str, size: int) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        index = load_index(path)
        entry = index["shards"][1]
        packed = zstd_bomb(size) if family == "zstd" else gz_bomb(size)
        f = path / entry["zip_data"]["basename"]
        f.write_bytes(packed)
        entry["zip_data"]["bytes"] = len(packed)
        entry["zip_data"]["hashes"] = _hashes(packed, entry["zip_data"]["hashes"])
        save_index(path, index)

    return damage


def _bomb_with_huge_claim(path: Path) -> None:
    """A bomb whose index entry claims a raw size of 4 GiB - 1 (the largest allowed)."""
    _bomb("zstd", 1 << 28)(path)
    index = load_index(path)
    index["shards"][1]["raw_data"]["bytes"] = (1 << 32) - 1
    save_index(path, index)


def _raw_claims_2gib(path: Path) -> None:
    """An uncompressed shard whose index entry claims 2 GiB (the file has a few hundred bytes)."""
    index = load_index(path)
    index["shards"][1]["raw_data"]["bytes"] = (1 << 31) - 100
    save_index(path, index)


def _flip_byte_keep_size(path: Path) -> None:
    """A changed byte, same size: only a hash check notices (validate_hash readers fail)."""
    f = stored_file(path, 1)
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x5A
    f.write_bytes(bytes(data))


def _delete_shard(path: Path) -> None:
    stored_file(path, 1).unlink()


def _index_edit(fn: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        index = load_index(path)
        fn(index)
        save_index(path, index)

    return damage


def _set_basename(name: str) -> Callable[[Path], None]:
    def fn(index: dict) -> None:
        index["shards"][1]["raw_data"]["basename"] = name

    return _index_edit(fn)


def _index_text(text: bytes) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        (path / "index.json").write_bytes(text)

    return damage


def _huge_counts(index: dict) -> None:
    """Every shard claims a billion samples (and 4 GB, as a billion samples need)."""
    for e in index["shards"]:
        e["samples"] = 1_000_000_000
        e["raw_data"]["bytes"] = 4_000_000_008
        e["zip_data"] = None
        e["compression"] = None


def _samples_too_many(index: dict) -> None:
    index["shards"][1]["samples"] = (1 << 32) + 5


def _samples_wrong(index: dict) -> None:
    index["shards"][1]["samples"] += 1


def _wrong_types(index: dict) -> None:
    index["shards"][1]["samples"] = "12"


def _wrong_types_bytes(index: dict) -> None:
    index["shards"][1]["raw_data"]["bytes"] = 1.5


def _wrong_types_list(index: dict) -> None:
    index["shards"][1]["column_names"] = {"id": 1}


def _shards_not_list(index: dict) -> None:
    index["shards"] = {"0": index["shards"][0]}


def _unknown_version(index: dict) -> None:
    index["version"] = 3


def _unknown_shard_version(index: dict) -> None:
    index["shards"][0]["version"] = 99


def _extra_key(index: dict) -> None:
    index["shards"][0]["evil"] = "x"


def _bad_encoding(index: dict) -> None:
    index["shards"][1]["column_encodings"][0] = "ndarray:int64:-1"


def _unknown_compression(index: dict) -> None:
    index["shards"][1]["compression"] = "xz"


def _bad_spark_mds(index: dict) -> None:
    index["spark_mds"] = {"format_version": 1, "schema": {"type": "struct", "fields": [{"name": "id", "type": 42}]}}


def _columns_differ(index: dict) -> None:
    index["shards"][1]["column_names"][0] = "zz"


def _duplicate_file(index: dict) -> None:
    index["shards"][1]["raw_data"]["basename"] = index["shards"][0]["raw_data"]["basename"]


#: Paths that would leave the dataset directory (absolute, parent, URL, drive letter, NUL...).
ESCAPING_PATHS = [
    "../outside.mds",
    "sub/../../outside.mds",
    "/etc/passwd",
    "//server/share/x.mds",
    "s3://bucket/x.mds",
    "file:///etc/passwd",
    "http://127.0.0.1:9/x.mds",
    "C:\\x.mds",
    "C:x.mds",
    "a\\..\\..\\x.mds",
    "x.mds\x00.txt",
    "./x.mds",
    "",
]


def pickle_bomb(marker: Path) -> bytes:
    """A pickle that creates ``marker`` when unpickled."""

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    return pickle.dumps(Evil())


CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated_stored_file": (_truncate_stored, "raw"),
    "truncated_stored_file_zstd": (_truncate_stored, "zstd"),
    "truncated_consistently": (_truncate_consistently, "raw"),
    "truncated_consistently_zstd": (_truncate_consistently, "zstd"),
    "offset_past_end": (_offset_past_end, "raw"),
    "offsets_decrease": (_offsets_decrease, "raw"),
    "huge_sample_count_in_header": (_huge_sample_count_in_header, "raw"),
    "var_size_u32_max": (_var_size_u32_max, "raw"),
    "var_sizes_wrap_32": (_var_sizes_wrap_32, "raw"),
    "var_size_negative_i32": (_var_size_negative_i32, "raw"),
    "sample_sizes_disagree": (_sample_sizes_disagree, "gz"),
    "fixed_column_short": (_fixed_column_short, "raw"),
    "ndarray_shape_overflows": (_ndarray_shape_overflows, "raw"),
    "ndarray_zero_dim_after_huge": (_ndarray_zero_dim_after_huge, "raw"),
    "ndarray_many_dims": (_ndarray_many_dims, "raw"),
    "ndarray_shape_vs_payload": (_ndarray_shape_vs_payload, "raw"),
    "ndarray_bad_dtype_code": (_ndarray_bad_dtype_code, "raw"),
    "bad_utf8": (_bad_utf8, "raw"),
    "bad_json": (_bad_json, "raw"),
    "deep_json": (_deep_json, "raw"),
    "bad_str_int": (_bad_str_int, "raw"),
    "huge_str_int": (_huge_str_int, "raw"),
    "bad_decimal": (_bad_decimal, "raw"),
    "wrong_compression": (_wrong_compression, "zstd"),
    "zstd_bomb": (_bomb("zstd", 4 << 30), "zstd"),
    "gz_bomb": (_bomb("gz", 1 << 28), "gz"),
    "bomb_with_huge_claim": (_bomb_with_huge_claim, "zstd"),
    "raw_claims_2gib": (_raw_claims_2gib, "raw"),
    "hash_mismatch": (_flip_byte_keep_size, "raw"),
    "hash_mismatch_zstd": (_flip_byte_keep_size, "zstd"),
    "missing_shard": (_delete_shard, "zstd"),
    "index_not_json": (_index_text(b"{\"shards\": [}"), "raw"),
    "index_empty": (_index_text(b""), "raw"),
    "index_truncated": (None, "raw"),  # filled in below (needs the real index)
    "index_binary": (_index_text(bytes(range(256)) * 4), "raw"),
    "index_deep": (_index_text(b"[" * 100_000 + b"]" * 100_000), "raw"),
    "index_huge_int": (_index_text(b'{"version": 2, "shards": [], "x": ' + b"9" * 5000 + b"}"), "raw"),
    "index_is_list": (_index_text(b"[1, 2, 3]"), "raw"),
    "huge_counts": (_index_edit(_huge_counts), "raw"),
    "samples_over_u32": (_index_edit(_samples_too_many), "raw"),
    "samples_disagree_with_header": (_index_edit(_samples_wrong), "raw"),
    "wrong_type_samples": (_index_edit(_wrong_types), "raw"),
    "wrong_type_bytes": (_index_edit(_wrong_types_bytes), "raw"),
    "wrong_type_column_names": (_index_edit(_wrong_types_list), "raw"),
    "shards_not_a_list": (_index_edit(_shards_not_list), "raw"),
    "unknown_index_version": (_index_edit(_unknown_version), "raw"),
    "unknown_shard_version": (_index_edit(_unknown_shard_version), "raw"),
    "extra_shard_key": (_index_edit(_extra_key), "raw"),
    "bad_encoding": (_index_edit(_bad_encoding), "raw"),
    "unknown_compression": (_index_edit(_unknown_compression), "zstd"),
    "bad_spark_mds": (_index_edit(_bad_spark_mds), "raw"),
    "columns_differ_between_shards": (_index_edit(_columns_differ), "raw"),
    "duplicate_file_name": (_index_edit(_duplicate_file), "raw"),
}
for _n, _p in enumerate(ESCAPING_PATHS):
    CASES[f"escaping_path_{_n}"] = (_set_basename(_p), "raw")


def _truncated_index(path: Path) -> None:
    text = (path / "index.json").read_bytes()
    (path / "index.json").write_bytes(text[: len(text) // 2])


CASES["index_truncated"] = (_truncated_index, "raw")

#: Cases whose damage only a hash check can notice: readers without validate_hash may read them.
HASH_ONLY = {"hash_mismatch", "hash_mismatch_zstd"}
#: Cases that leave the decoded data valid for some readers (decoders that do not look at the
#: damaged bytes, e.g. Spark reading a column as its stored text): they may succeed.
MAY_READ = HASH_ONLY | {"bad_decimal", "huge_str_int", "columns_differ_between_shards"}


def make_case(name: str, root: Path, bases: dict[str, Path]) -> Path:
    """A damaged copy of the base dataset under ``root/name``."""
    damage, needs = CASES[name]
    path = root / name
    shutil.copytree(bases[needs], path)
    damage(path)
    return path


def make_bases(root: Path) -> dict[str, Path]:
    return {c or "raw": write_base(root / f"base-{c or 'raw'}", c) for c in (None, "zstd", "gz")}

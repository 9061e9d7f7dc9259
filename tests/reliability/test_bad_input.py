"""Bad and hostile input through every reader: truncated shards, offsets past the end, sizes that
overflow 32-bit and 64-bit arithmetic, wrong compression, decompression bombs, hash mismatches,
malformed or hostile index.json (escaping paths, absolute paths, URLs, huge counts, wrong types,
unknown versions) and pickle columns without opt-in.

Each reader must fail with a clear error (an MDS error naming the file, or FileNotFoundError for
a missing file; exit status 1 and one line for the CLI) and never crash the interpreter or the
JVM, never allocate memory in proportion to a hostile claim, never touch a file outside the
dataset. The readers run in child processes (a segfault fails the test instead of killing
pytest), with an address-space limit that turns a runaway allocation into a reported
MemoryError. The cases are in hostile.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rel_support import HERE, run_child, tree  # noqa: I001 (puts the test directories on sys.path)

import hostile
from support import require_jar

READERS = ["read_table", "read_table_hash", "get_sample", "streaming_samples", "streaming_arrow", "streaming_numpy",
           "cached_samples", "cached_batches", "cli_validate", "cli_validate_decode", "cli_head", "cli_inspect"]  # fmt: skip
BATCH_READERS = {"read_table", "read_table_hash", "streaming_arrow", "streaming_numpy", "cached_batches", "cli_head"}
SAMPLE_READERS = {"get_sample", "streaming_samples", "cached_samples", "cli_validate_decode"}
HASH_READERS = {"read_table_hash", "cached_samples", "cli_validate", "cli_validate_decode"}  # xxh64, sha1, every hash

INDEX_CASES = {n for n in hostile.CASES if n.startswith(("index_", "escaping_path_", "wrong_type_", "unknown_"))} | {
    "samples_over_u32", "shards_not_a_list", "extra_shard_key", "bad_encoding", "bad_spark_mds", "duplicate_file_name"}
#: Payload damage that a structural validation (mds validate) does not decode.
PAYLOAD_CASES = {n for n in hostile.CASES if n.startswith("ndarray_")} | {
    "bad_utf8", "bad_json", "deep_json", "bad_str_int", "huge_str_int", "bad_decimal"}


#: Decompression bombs with honest index entries: a 98 KB zstd file that inflates to 4 GiB, and a
#: gzip one of 256 MiB (bomb_with_huge_claim claims 4 GiB in index.json: it is inflated up to its
#: real 256 MiB before the sizes disagree, as any reader must).
BOMBS = ["zstd_bomb", "gz_bomb"]


def allowed_to_read(case: str, reader: str) -> bool:
    """Whether ``reader`` may succeed on ``case`` (it does not look at the damaged bytes, or the
    damage leaves them valid for it)."""
    if case in hostile.HASH_ONLY:
        return reader not in HASH_READERS
    if case in INDEX_CASES:
        return False
    if reader == "cli_inspect":  # reads index.json only
        return True
    if case in PAYLOAD_CASES and reader == "cli_validate":
        return True
    if case == "bad_decimal":  # '1e999999999' is a valid decimal text
        return True
    if case in ("bad_json", "deep_json") and reader in BATCH_READERS:  # json columns are text in batches
        return True
    if case == "ndarray_zero_dim_after_huge" and reader in SAMPLE_READERS:  # an empty numpy array of that shape
        return True
    if case == "columns_differ_between_shards" and reader in SAMPLE_READERS | {"cli_validate"}:
        return True  # per-sample reading uses each shard's own columns, like the reference
    return False


def judge(case: str, reader: str, outcome: dict, case_dir: str) -> str | None:
    """None if the outcome is acceptable, else what is wrong."""
    if "ok" in outcome:
        return None if allowed_to_read(case, reader) else "read without error"
    mro, message = outcome["mro"], outcome["message"]
    if reader.startswith("cli_validate"):  # a report: one line per problem, then a summary
        lines = message.removeprefix("exit 1: ").splitlines()
        if not message.startswith("exit 1: ") or not lines[-1].startswith("INVALID: ") or case not in message:
            return f"validate did not report the dataset INVALID with exit status 1: {message!r}"
        if not all(line.startswith(("error: ", "warning: ", "INVALID: ")) for line in lines):
            return f"validate printed something else than problems and a summary: {message!r}"
        if case in hostile.HASH_ONLY and "checksum" not in message:
            return f"validate does not say checksum: {message!r}"
        return None
    if reader.startswith("cli_"):
        if not message.startswith("exit 1: mds ") or message.count("\n") or case not in message:
            return f"CLI error not one line with exit status 1 naming the dataset: {message!r}"
        if case in hostile.HASH_ONLY and "checksum" not in message:
            return f"CLI error does not say checksum: {message!r}"
        if case.startswith("escaping_path_") and "basename" not in message:
            return f"CLI error does not name the unsafe basename: {message!r}"
        return None
    if not ("MDSError" in mro or outcome["error"] in ("FileNotFoundError",)):
        return f"{outcome['error']} is not a clear error: {message!r}\n{outcome['trace']}"
    if case not in message:
        return f"the message does not name the dataset's file: {message!r}"
    if case.startswith("escaping_path_") and "MDSPathError" not in mro:
        return f"an unsafe path gave {outcome['error']}, not MDSPathError: {message!r}"
    if case in INDEX_CASES and "MDSIndexError" not in mro:
        return f"a malformed index gave {outcome['error']}, not MDSIndexError: {message!r}"
    if case in hostile.HASH_ONLY and reader in HASH_READERS and "MDSChecksumError" not in mro:
        return f"a hash mismatch gave {outcome['error']}, not MDSChecksumError: {message!r}"
    if case == "missing_shard" and outcome["error"] != "FileNotFoundError":
        return f"a missing shard gave {outcome['error']}: {message!r}"
    return None


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    bases = hostile.make_bases(root / "bases")
    for name in hostile.CASES:
        hostile.make_case(name, root / "cases", bases)
    return root


def test_every_python_reader_rejects_bad_input(cases):
    """63 damaged datasets x 11 readers (read_table with and without validate_hash, MDSDataset
    samples, StreamingDataset samples / arrow / numpy batches, local and cached, mds validate /
    head / inspect)."""
    names = sorted(hostile.CASES)
    before = {n: tree(cases / "cases" / n) for n in names if n.startswith("escaping_path_")}
    lines, _ = run_child([str(HERE / "probe_readers.py"), str(cases / "cases"), str(cases / "cache"), *names], timeout=600)
    results = {r["case"]: r["results"] for r in lines if "case" in r}
    assert sorted(results) == names
    problems = []
    for case in names:
        assert sorted(results[case]) == sorted(READERS)
        for reader, outcome in results[case].items():
            problem = judge(case, reader, outcome, str(cases / "cases" / case))
            if problem:
                problems.append(f"{case} / {reader}: {problem}")
    assert not problems, "\n".join(problems)
    # Bombs (small files that inflate to GiBs) are refused as corrupt after at most the raw size
    # index.json gives, never inflated: in a process of their own, the readers' peak memory stays
    # far below the 4 GiB and 256 MiB they would inflate to.
    lines, _ = run_child([str(HERE / "probe_readers.py"), str(cases / "cases"), str(cases / "cache"), *BOMBS], timeout=600)
    for r in lines:
        for reader, outcome in r.get("results", {}).items():
            assert reader == "cli_inspect" or "corrupt" in outcome["message"], (r["case"], reader, outcome)
            assert outcome["peak_rss_mib"] < 640, (r["case"], reader, outcome["peak_rss_mib"])
    # Nothing was written outside the datasets (escaping names are never opened nor decompressed to).
    assert not list(cases.glob("**/outside.mds")) and not (cases / "x.mds").exists()
    for n, files in before.items():
        assert tree(cases / "cases" / n) == files
    print(f"bad inputs: {len(names)} cases x {len(READERS)} readers = {len(names) * len(READERS)} reads, all rejected "
          f"or read correctly")  # fmt: skip


PKL_SCRIPT = r"""
import json, os, sys, contextlib, io
from mds_loader import MDSWriter, read_table, StreamingDataset
from mds_loader.format import MDSDataset
from mds_loader.cli import main as cli
sys.path.insert(0, sys.argv[3])
import hostile
path, marker = sys.argv[1], sys.argv[2]
with MDSWriter(out=path, columns={"id": "int64", "obj": "pkl"}, compression="zstd") as w:
    for i in range(6):
        w.write({"id": i, "obj": i})
# every value a pickle that creates `marker` when loaded
import struct
from pathlib import Path
p = Path(path)
for k in range(len(hostile.load_index(p)["shards"])):
    head, samples = hostile.split_shard(hostile.raw_bytes(p, k))
    sizes = [8, None]
    new = []
    for s in samples:
        payloads = hostile.split_sample(s, sizes)
        payloads[1] = hostile.pickle_bomb(Path(marker))
        new.append(hostile.join_sample(payloads, sizes))
    hostile.set_raw(p, k, hostile.join_shard(head, new))

def outcome(fn):
    try:
        value = fn()
        return {"ok": repr(value)[:200], "marker": os.path.exists(marker)}
    except Exception as e:
        return {"error": type(e).__name__, "mro": [c.__name__ for c in type(e).__mro__], "message": str(e)[:300],
                "marker": os.path.exists(marker)}

def cli_head():
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli(["head", path, "-n", "3"])
    return status, out.getvalue()[-300:], err.getvalue()

results = {
    "read_table": outcome(lambda: read_table(path).column("obj").to_pylist()[:2]),
    "get_sample": outcome(lambda: MDSDataset(path)[0]),
    "streaming_samples": outcome(lambda: next(iter(StreamingDataset(local=path, batch_size=2)))),
    "streaming_getitem": outcome(lambda: StreamingDataset(local=path, batch_size=2)[3]),
    "streaming_arrow": outcome(lambda: next(StreamingDataset(local=path, batch_size=2).iter_batches("arrow")).column("obj").to_pylist()),
    "streaming_numpy": outcome(lambda: list(next(StreamingDataset(local=path, batch_size=2).iter_batches("numpy"))["obj"])),
    "cli_head": outcome(cli_head),
}
results["opt_in"] = outcome(lambda: MDSDataset(path, allow_unsafe_types=True)[0])  # the control: the payload is live
print(json.dumps(results))
"""


def test_pickle_columns_are_never_unpickled_without_opt_in(tmp_path):
    """A ``pkl`` column whose values run code when unpickled (they create a marker file): no
    reader unpickles it (per-sample reads fail with MDSUnsafeError, batch reads return the stored
    bytes); with ``allow_unsafe_types=True`` the code runs (proof that the payload is live)."""
    marker = tmp_path / "pwned"
    lines, _ = run_child(["-c", PKL_SCRIPT, str(tmp_path / "ds"), str(marker), str(HERE)])
    results = lines[-1]
    for reader in ("read_table", "get_sample", "streaming_samples", "streaming_getitem", "streaming_arrow",
                   "streaming_numpy", "cli_head"):  # fmt: skip
        r = results[reader]
        assert r["marker"] is False, (reader, r)
        if "error" in r:
            assert "MDSUnsafeError" in r["mro"] or "MDSSchemaError" in r["mro"], (reader, r)
            if "MDSUnsafeError" in r["mro"]:
                assert "allow_unsafe_types" in r["message"], r
    assert "MDSUnsafeError" in results["get_sample"]["mro"] and "MDSUnsafeError" in results["streaming_samples"]["mro"]
    assert results["opt_in"]["marker"] is True


# ---------------------------------------------------------------------------- Spark readers

#: The cases the Spark readers get (each read is a Spark job: a representative subset).
SPARK_CASES = [
    "hash_mismatch", "samples_disagree_with_header", "wrong_type_bytes", "duplicate_file_name",
    "truncated_stored_file", "truncated_consistently_zstd", "offset_past_end", "huge_sample_count_in_header",
    "var_size_u32_max", "var_sizes_wrap_32", "var_size_negative_i32", "sample_sizes_disagree", "fixed_column_short",
    "ndarray_shape_overflows", "ndarray_zero_dim_after_huge", "ndarray_many_dims", "ndarray_bad_dtype_code",
    "bad_utf8", "deep_json", "wrong_compression", "zstd_bomb", "gz_bomb", "bomb_with_huge_claim", "raw_claims_2gib",
    "hash_mismatch_zstd", "missing_shard", "index_not_json", "index_deep", "huge_counts", "wrong_type_samples",
    "unknown_index_version", "extra_shard_key", "escaping_path_0", "escaping_path_2", "escaping_path_4",
    "escaping_path_7",
]  # fmt: skip
_CRASH_MARKERS = ("OutOfMemoryError", "StackOverflowError", "IndexOutOfBounds", "NegativeArraySize", "NullPointerException",
                  "ClassCastException", "MemoryError", "RecursionError", "SparkOutOfMemory")  # fmt: skip


def judge_spark(case: str, reader: str, outcome: dict) -> str | None:
    if "ok" in outcome:
        if case in hostile.HASH_ONLY and not reader.endswith("_hash"):
            return None
        if case == "deep_json":  # a json column without a logical schema is read as its text
            return None
        if reader == "jvm_one_column" and case in ("ndarray_shape_overflows", "ndarray_zero_dim_after_huge",
                                                    "ndarray_many_dims", "bad_utf8"):  # fmt: skip
            return None  # the first column ('a') is not the damaged one
        if case == "bad_utf8" and reader.startswith("jvm"):
            return None  # Spark strings are bytes: the JVM passes invalid UTF-8 through (as Spark's own sources do)
        return "read without error"
    message = outcome["error"]
    crash = [m for m in _CRASH_MARKERS if m in message]
    if crash:
        return f"{crash}: {message[:1500]}"
    clear = "io.sparkmds.format.MdsException" in message or "MdsConcurrentWriteException" in message
    clear = clear or any(f"{e}:" in message for e in ("MDSIndexError", "MDSPathError", "MDSFormatError", "MDSChecksumError",
                                                       "MDSSchemaError", "MDSConfigError"))  # fmt: skip
    clear = clear or ("missing" in case and ("FileNotFound" in message or "does not exist" in message))
    if not clear:
        return f"not a clear error: {message[:2000]}"
    if case.startswith("escaping_path_") and not ("index.json may only name files inside the dataset directory" in message
                                                  or "unsafe shard basename" in message):
        return f"an unsafe path was not named as such: {message[:1500]}"
    if case in BOMBS and "corrupt" not in message:
        return f"a decompression bomb was not called corrupt: {message[:1500]}"
    if case == "hash_mismatch_zstd" and reader.endswith("_hash") and "hash" not in message:
        return f"a hash mismatch was not reported as such: {message[:1500]}"
    return None


@pytest.mark.spark
@pytest.mark.slow
def test_spark_readers_reject_bad_input(cases):
    """The JVM source and the Python fallback on the representative cases, in one Spark session:
    clear errors (MdsException / MDS*Error naming the file), never an OutOfMemoryError,
    StackOverflowError, index or size exception; the JVM reads an intact dataset afterwards."""
    require_jar()
    for name in SPARK_CASES:  # the Python readers above may have left decompressed copies: start afresh
        shutil.rmtree(cases / "spark" / name, ignore_errors=True)
        shutil.copytree(cases / "cases" / name, cases / "spark" / name)
    lines, _ = run_child([str(HERE / "probe_spark.py"), str(cases / "spark"), *SPARK_CASES], timeout=900,
                         env={"MDS_PROBE_INTACT": str(cases / "bases" / "base-zstd")})  # fmt: skip
    results = {r["case"]: r["results"] for r in lines if "case" in r}
    assert sorted(results) == sorted(SPARK_CASES)
    problems = [f"{case} / {reader}: {problem}" for case, rs in results.items() for reader, outcome in rs.items()
                if (problem := judge_spark(case, reader, outcome))]  # fmt: skip
    assert not problems, "\n\n".join(problems)
    assert lines[-1] == {"alive": hostile.ROWS}
    print(f"bad inputs through Spark: {len(SPARK_CASES)} cases x {len(next(iter(results.values())))} readers")

"""`mds vacuum`: removes only old, unreferenced `shard.*.mds*` files and what dead Spark jobs left; never a
referenced file, nor a file of a running Spark job."""

from __future__ import annotations

import json
import os
import time

import pyarrow as pa

from cli_support import call, files, run_mds
from support import decompress_beside
from mds_loader import read_table, write_table

HOURS = 3600


def _age(path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def _dataset(path, n: int = 100) -> pa.Table:
    table = pa.table({"x": pa.array(range(n), pa.int64())})
    write_table(table, path, size_limit=512, hashes=["xxh64"])
    for f in path.iterdir():
        _age(f, 5 * HOURS)  # everything old: age alone must never remove a referenced file
    return table


def _leftovers(ds) -> dict[str, object]:
    """Files a failed Spark job and a reader could leave: old and young orphans, other files."""
    made = {
        "old": ds / "shard.0123456789ab.00000.7.00000.mds.zstd",
        "old_raw": ds / "shard.0123456789ab.00001.8.00000.mds",
        "young": ds / "shard.ba9876543210.00000.3.00000.mds.zstd",
        "notes": ds / "notes.txt",
        "hidden": ds / ".shard.00000.mds.x1y2.tmp",
    }
    for name, path in made.items():
        path.write_bytes(b"x" * 100)
        _age(path, 2 * HOURS if name != "young" else 60)
    return made


def test_dry_run_then_remove_with_the_age_threshold(capsys, tmp_path):
    ds = tmp_path / "ds"
    table = _dataset(ds)
    made = _leftovers(ds)
    before = files(ds)
    rc, out, _ = call(capsys, "vacuum", ds, "--dry-run")
    assert rc == 0
    assert files(ds) == before  # a dry run removes nothing
    lines = out.splitlines()
    assert f"would remove  {made['old'].name}  (100 B, 2.0 h old)" in lines
    assert f"would remove  {made['old_raw'].name}  (100 B, 2.0 h old)" in lines
    assert any(line.startswith("kept (modified ") and line.endswith(made["young"].name) for line in lines)
    assert lines[-1] == (f"vacuum {ds}: 2 unreferenced file(s) would be removed (200 B); 1 newer than "
                         f"--older-than 1h kept (a writer may still publish them)")  # fmt: skip

    rc, out, _ = call(capsys, "vacuum", ds)
    assert rc == 0
    assert not made["old"].exists() and not made["old_raw"].exists()
    assert made["young"].exists() and made["notes"].exists() and made["hidden"].exists()
    assert read_table(ds).equals(table)

    rc, out, _ = call(capsys, "vacuum", ds, "--older-than", "30s")
    assert rc == 0 and not made["young"].exists()
    assert set(before) - set(files(ds)) == {made[k].name for k in ("old", "old_raw", "young")}
    assert read_table(ds).equals(table)


def test_referenced_files_are_never_removed(capsys, tmp_path):
    ds = tmp_path / "ds"
    table = _dataset(ds)
    decompress_beside(ds)  # as the reference leaves them: referenced as raw_data
    for f in ds.iterdir():
        _age(f, 10 * 24 * HOURS)
    before = files(ds)
    assert any(f.endswith(".mds") for f in before) and any(f.endswith(".mds.zstd") for f in before)
    proc = run_mds("vacuum", ds, "--older-than", "0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"vacuum {ds}: 0 unreferenced file(s) removed (0 B)"
    assert files(ds) == before
    assert read_table(ds).equals(table)


def test_merged_dataset_subdirectories(capsys, tmp_path):
    """A merge_index-style dataset: the root index names files in subdirectories that have their
    own index.json. Their unreferenced shards go; what any index references stays; other
    subdirectories are not entered."""
    root = tmp_path / "root"
    root.mkdir()
    shards = []
    for part in ("a", "b"):
        _dataset(root / part)
        for entry in json.loads((root / part / "index.json").read_text())["shards"]:
            for key in ("raw_data", "zip_data"):
                entry[key]["basename"] = f"{part}/{entry[key]['basename']}"
            shards.append(entry)
    # The root takes every shard of a/ but only the first of b/: b's own index still references the rest.
    b_count = len(json.loads((root / "b" / "index.json").read_text())["shards"])
    merged = shards[: len(shards) - b_count + 1]
    (root / "index.json").write_text(json.dumps({"shards": merged, "version": 2}, sort_keys=True))
    (root / "unrelated").mkdir()
    orphans = [root / "shard.junk.mds", root / "a" / "shard.stale.00000.mds.zstd"]
    untouched = root / "unrelated" / "shard.00000.mds"
    for p in [*orphans, untouched]:
        p.write_bytes(b"y" * 10)
        _age(p, 2 * HOURS)
    before = files(root)
    rc, out, err = call(capsys, "vacuum", root, "--older-than", "1h")
    assert rc == 0, err
    assert "removed  shard.junk.mds  (10 B, 2.0 h old)" in out
    assert "removed  a/shard.stale.00000.mds.zstd  (10 B, 2.0 h old)" in out
    assert files(root) == sorted(set(before) - {str(p.relative_to(root)) for p in orphans})
    assert untouched.exists()
    assert read_table(root / "b").num_rows == 100 and read_table(root).num_rows > 100


def test_running_spark_jobs_keep_their_files(capsys, tmp_path):
    """A Spark write job's marker (.mds-write.J) keeps every file of the job while it is younger
    than --older-than, however old the files; an old marker (its driver died) goes with them."""
    ds = tmp_path / "ds"
    table = _dataset(ds)
    running = {n: ds / n for n in (".mds-write.0123456789ab", "shard.0123456789ab.00000.7.00000.mds.zstd",
                                   ".index.json.0123456789ab.tmp")}  # fmt: skip
    dead = {n: ds / n for n in (".mds-write.ba9876543210", "shard.ba9876543210.00001.3.00000.mds")}
    for name, path in {**running, **dead}.items():
        path.write_bytes(b"z" * 10)
        _age(path, 2 * HOURS)
    _age(running[".mds-write.0123456789ab"], 60)  # the running job's marker is young
    rc, out, err = call(capsys, "vacuum", ds)
    assert rc == 0, err
    assert ("kept (write job 0123456789ab is running: its marker is newer than --older-than)  "
            "shard.0123456789ab.00000.7.00000.mds.zstd") in out.splitlines()
    assert all(p.exists() for p in running.values())
    assert not any(p.exists() for p in dead.values())
    assert out.splitlines()[-1] == (f"vacuum {ds}: 2 unreferenced file(s) removed (20 B); 3 newer than --older-than 1h "
                                    "kept (a writer may still publish them)")  # fmt: skip
    rc, out, err = call(capsys, "vacuum", ds, "--older-than", "30s")
    assert rc == 0 and not any(p.exists() for p in running.values())
    assert read_table(ds).equals(table)


def test_bad_index_removes_nothing(capsys, tmp_path):
    ds = tmp_path / "ds"
    _dataset(ds)
    made = _leftovers(ds)
    (ds / "index.json").write_text("{")
    before = files(ds)
    rc, _, err = call(capsys, "vacuum", ds, "--older-than", "0")
    assert rc == 1 and err.startswith(f"mds vacuum: error: {ds / 'index.json'}: not valid JSON")
    assert files(ds) == before and made["old"].exists()


def test_usage_errors(capsys, tmp_path):
    ds = tmp_path / "ds"
    _dataset(ds)
    rc, _, err = call(capsys, "vacuum", ds, "--older-than", "soon")
    assert rc == 2 and "invalid duration 'soon'" in err
    rc, _, err = call(capsys, "vacuum", "s3://bucket/ds")
    assert rc == 2 and "vacuum works on local dataset directories only" in err

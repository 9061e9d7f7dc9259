"""Reading is read-only: every reader of mds_loader and every `mds` command that reads leaves the
dataset directory byte-for-byte as it was, compressed shards included (they are decompressed in
memory, never beside their files)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cli_support import call, nulls_table
from mds_loader import StreamingDataset, read_table, write_table
from mds_loader.format import MDSDataset


def _snapshot(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*"))
            if p.is_file()}  # fmt: skip


@pytest.mark.parametrize("compression", ["zstd", "br", None])
def test_reading_leaves_the_dataset_as_it_was(capsys, tmp_path, compression):
    ds = tmp_path / "ds"
    write_table(nulls_table(60), ds, compression=compression, hashes=["sha1", "xxh64"], size_limit="2kb")
    before = _snapshot(ds)
    assert len(before) > 3
    read_table(ds)
    read_table(ds, validate_hash="xxh64")
    with MDSDataset(ds, validate_hash="sha1") as d:
        [d.get_sample(i) for i in range(len(d))]
        d.verify()
    for args in (["inspect", ds], ["validate", "--decode", "--no-progress", ds], ["head", ds, "-n", "40"]):
        rc, _, err = call(capsys, *args)
        assert rc == 0, (args, err)
    assert _snapshot(ds) == before


def test_streaming_dataset_of_a_remote_leaves_the_remote_as_it_was(tmp_path):
    """StreamingDataset decompresses into its local cache (as the reference does), never into the
    remote dataset it reads."""
    remote = tmp_path / "remote"
    write_table(nulls_table(60), remote, compression="zstd", size_limit="2kb")
    before = _snapshot(remote)
    assert len(list(StreamingDataset(remote=str(remote), local=str(tmp_path / "cache"), batch_size=4))) == 60
    assert _snapshot(remote) == before

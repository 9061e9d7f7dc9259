"""Parquet -> MDS without Spark, two ways, then read back.

1. The `mds` command line tool: `mds convert SRC DST` streams a Parquet directory (as Spark or
   pandas write them) batch by batch into an MDS dataset; `mds inspect`, `mds validate` and
   `mds head` then look at it.
2. The Python API: `write_table(batches, path)` and `read_table(path)`.

Both outputs read back equal to the Parquet data, nulls, decimals and timestamps included (the
exact Arrow schema is kept in index.json, docs/format.md §1), and mosaicml-streaming reads them as
ordinary MDS datasets.

Usage: python examples/parquet_to_mds.py [OUTPUT_DIR]   (default: a temporary directory, removed)
"""

from __future__ import annotations

import argparse
import datetime
import decimal
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from mds_loader import StreamingDataset, read_table, write_table


def mds_command() -> list[str]:
    """The `mds` console script next to this Python (or the module, if it is not installed)."""
    script = Path(sys.executable).parent / "mds"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mds_loader.cli"]


def run(*args: str) -> None:
    """Runs `mds ...` and shows its output."""
    print(f"\n$ mds {' '.join(args)}")
    proc = subprocess.run([*mds_command(), *args], capture_output=True, text=True)
    print(proc.stdout.rstrip())
    if proc.returncode != 0:
        raise SystemExit(f"mds {args[0]} failed ({proc.returncode}): {proc.stderr.strip()}")


def make_parquet(directory: Path, rows: int = 5_000, files: int = 2) -> pa.Table:
    """A Parquet directory of `files` part files, like Spark writes; returns all its rows."""
    directory.mkdir(parents=True)
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    table = pa.table({
        "id": pa.array(range(rows), pa.int64()),
        "text": [None if i % 10 == 0 else f"document {i}" for i in range(rows)],  # nulls
        "label": pa.array([i % 5 for i in range(rows)], pa.int16()),
        "price": pa.array([decimal.Decimal(i) / 100 for i in range(rows)], pa.decimal128(12, 2)),
        "created": pa.array([start + datetime.timedelta(minutes=i) for i in range(rows)], pa.timestamp("us", tz="UTC")),
        "embedding": pa.array([[i / rows, 1 - i / rows, 0.5, -0.5] for i in range(rows)], pa.list_(pa.float32(), 4)),
    })  # fmt: skip
    per_file = -(-rows // files)
    for k in range(files):
        pq.write_table(table.slice(k * per_file, per_file), directory / f"part-{k:05d}.parquet", row_group_size=1_000)
    (directory / "_SUCCESS").touch()  # ignored by pyarrow.dataset, like Spark's marker
    print(f"wrote {rows:,} rows in {files} Parquet files to {directory}")
    return table


def main(out: Path) -> None:
    source = make_parquet(out / "parquet")

    print("\n== 1. the mds command line tool ==")
    cli_out = out / "mds-cli"
    run("convert", str(out / "parquet"), str(cli_out), "--hashes", "xxh64", "--size-limit", "64kb")
    run("inspect", str(cli_out))
    run("validate", str(cli_out), "--decode")
    run("head", str(cli_out), "-n", "3", "--columns", "id,text,price,created")

    print("\n== 2. the Python API ==")
    api_out = out / "mds-api"
    batches = pads.dataset(out / "parquet", format="parquet").to_batches()  # streamed, one batch at a time
    write_table(batches, api_out, compression="zstd", size_limit=1 << 20)
    print(f"write_table(batches, {api_out!s}) done")

    for path in (cli_out, api_out):
        back = read_table(path)
        print(f"read_table({path.name}): {back.num_rows:,} rows, equal to the Parquet data: {back.equals(source)}")
        assert back.equals(source), f"{path} differs from the Parquet data"
    print(f"types kept: {read_table(cli_out).schema.field('price').type}, {read_table(cli_out).schema.field('created').type}")

    # The same dataset streams into training (per-sample dicts, as mosaicml-streaming returns them).
    dataset = StreamingDataset(local=str(cli_out), shuffle=True, batch_size=16)
    sample = dataset[1]
    print(f"StreamingDataset: {len(dataset):,} samples; sample 1 = id {sample['id']}, text {sample['text']!r}, "
          f"embedding {sample['embedding']}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", nargs="?", help="where to write the files (kept); default: a temporary directory")
    args = parser.parse_args()
    if args.output_dir:
        main(Path(args.output_dir))
    else:
        tmp = tempfile.mkdtemp(prefix="mds-parquet-to-mds-")
        try:
            main(Path(tmp))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

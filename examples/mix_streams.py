"""Mixing two MDS datasets in one training stream with `Stream` (no Spark needed).

Two small datasets are written with `write_table`: "books" (1,000 samples) and "code" (300
samples). They are then mixed three ways, and each epoch's samples are counted per source:

1. `repeat` / `choose`: every book twice per epoch, and 100 of the 300 code samples (a different
   100 each epoch);
2. `proportion`: an epoch of 1,000 samples made 80 % of books and 20 % of code, whatever the
   sizes of the datasets (code is oversampled);
3. the same mix through `StreamingDataLoader`, decoded as whole batches of tensors.

Usage: python examples/mix_streams.py [OUTPUT_DIR]   (default: a temporary directory, removed)
"""

from __future__ import annotations

import argparse
import collections
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa

from mds_loader import Stream, StreamingDataLoader, StreamingDataset, write_table


def make_dataset(path: Path, source: str, n: int) -> None:
    """A dataset whose samples say where they come from."""
    table = pa.table({
        "source": [source] * n,
        "id": pa.array(range(n), pa.int64()),
        "tokens": pa.array([[i % 50_000, (7 * i) % 50_000, (13 * i) % 50_000] for i in range(n)], pa.list_(pa.int32())),
    })  # fmt: skip
    write_table(table, path, size_limit=8 << 10)  # small shards, so that shuffling has something to shuffle
    print(f"wrote {n:,} samples of {source!r} to {path}")


def count_epoch(dataset: StreamingDataset) -> tuple[collections.Counter, set[int]]:
    """Iterates one epoch: samples per source, and which code samples were drawn."""
    counts: collections.Counter = collections.Counter()
    code_ids = set()
    for sample in dataset:  # each iteration of the dataset is the next epoch
        counts[sample["source"]] += 1
        if sample["source"] == "code":
            code_ids.add(int(sample["id"]))
    return counts, code_ids


def main(out: Path) -> None:
    books, code = out / "books", out / "code"
    make_dataset(books, "books", 1_000)
    make_dataset(code, "code", 300)

    print("\n1. repeat=2 for books, choose=100 for code")
    dataset = StreamingDataset(
        streams=[Stream(local=str(books), repeat=2), Stream(local=str(code), choose=100)],
        shuffle=True, shuffle_seed=17, batch_size=32,
    )  # fmt: skip
    print(f"   epoch size: {dataset.epoch_size:,} samples (2 x 1,000 books + 100 code)")
    chosen = []
    for epoch in range(2):
        counts, code_ids = count_epoch(dataset)
        chosen.append(code_ids)
        print(f"   epoch {epoch}: books={counts['books']:,} code={counts['code']:,} "
              f"(distinct code samples: {len(code_ids)})")  # fmt: skip
    print(f"   code samples drawn in both epochs: {len(chosen[0] & chosen[1])} of 100 (choose draws anew each epoch)")

    print("\n2. proportion 0.8 / 0.2, epoch_size=1000")
    dataset = StreamingDataset(
        streams=[Stream(local=str(books), proportion=0.8), Stream(local=str(code), proportion=0.2)],
        epoch_size=1_000, shuffle=True, shuffle_seed=17, batch_size=32,
    )  # fmt: skip
    for epoch in range(2):
        counts, _ = count_epoch(dataset)
        print(f"   epoch {epoch}: books={counts['books']:,} code={counts['code']:,}")

    print("\n3. the same mix as whole batches of tensors (StreamingDataLoader)")
    dataset = StreamingDataset(
        streams=[Stream(local=str(books), proportion=0.8), Stream(local=str(code), proportion=0.2)],
        epoch_size=1_000, shuffle=True, shuffle_seed=17, batch_size=100, columns=["source", "tokens"],
    )  # fmt: skip
    loader = StreamingDataLoader(dataset, batch_size=100, num_workers=0)
    counts = collections.Counter()
    batches = 0
    for batch in loader:
        batches += 1
        counts.update(batch["source"])
        if batches == 1:
            print(f"   first batch: tokens {tuple(batch['tokens'].shape)} {batch['tokens'].dtype}, "
                  f"sources {batch['source'][:6]}...")  # fmt: skip
    print(f"   {batches} batches: books={counts['books']:,} code={counts['code']:,}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", nargs="?", help="where to write the datasets (kept); default: a temporary directory")
    args = parser.parse_args()
    if args.output_dir:
        main(Path(args.output_dir))
    else:
        tmp = tempfile.mkdtemp(prefix="mds-mix-streams-")
        try:
            main(Path(tmp))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

"""Reading a dataset written by mosaicml-streaming (the reference MDS implementation).

The golden datasets in tests/data/reference/datasets were written by `streaming.MDSWriter`
(mosaicml-streaming 0.13.0), along with the values and sample orders the reference returned. This
example copies two of them to a scratch directory and reads them with mds-loader:

1. `StreamingDataset` as a drop-in replacement (same parameters, same per-sample values, shard
   hashes checked with `validate_hash`), compared with what the reference returned;
2. the shuffled epoch through `StreamingDataLoader`, compared with the reference's order for the
   same seed;
3. `read_table`: the whole dataset as one Arrow table (types inferred from the encodings, since
   the reference writes no logical schema: docs/format.md §4);
4. images: `jpeg`/`png`/`pil` columns come back as PIL images per sample, and as the stored
   bytes in Arrow.

Usage: python examples/read_reference_dataset.py [OUTPUT_DIR]   (default: a temporary directory, removed)
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from mds_loader import StreamingDataLoader, StreamingDataset, read_table

REFERENCE = Path(__file__).resolve().parent.parent / "tests" / "data" / "reference"


def copy_dataset(name: str, out: Path) -> tuple[Path, list[dict]]:
    """A private copy of a golden dataset (readers write decompressed shards next to the
    compressed ones), and the samples the reference returned for it."""
    target = out / name
    shutil.copytree(REFERENCE / "datasets" / name, target, ignore=shutil.ignore_patterns("expected.json"))
    expected = json.loads((REFERENCE / "datasets" / name / "expected.json").read_text())
    print(f"copied {name} ({len(list(target.glob('shard.*')))} shard files) to {target}")
    return target, expected["samples"]


def tagged_ndarray(tagged: dict) -> np.ndarray:
    """An ndarray as expected.json stores it (dtype, shape, base64 of the C-order bytes)."""
    nd = tagged["ndarray"]
    return np.frombuffer(base64.b64decode(nd["data_b64"]), nd["dtype"]).reshape(nd["shape"])


def main(out: Path) -> None:
    path, expected = copy_dataset("tabular_zstd_sha1-xxh64", out)  # zstd shards with sha1 + xxh64 hashes

    print("\n1. StreamingDataset, per sample")
    dataset = StreamingDataset(local=str(path), validate_hash="xxh64", batch_size=8)
    sample = dataset[0]
    print(f"   {len(dataset)} samples; sample 0: " + ", ".join(f"{k}={type(v).__name__}" for k, v in sample.items()))
    same = all(
        int(dataset[i]["id"]) == int(want["id"]["scalar"]["repr"])
        and dataset[i]["text"] == want["text"]["value"]
        and np.array_equal(dataset[i]["tokens"], tagged_ndarray(want["tokens"]))
        and np.array_equal(dataset[i]["emb"], tagged_ndarray(want["emb"]))
        for i, want in enumerate(expected)
    )
    print(f"   every sample equals what mosaicml-streaming returned: {same}")
    assert same

    print("\n2. shuffled epoch through StreamingDataLoader (seed 9176, py1e, batch 8)")
    reference_order = json.loads((REFERENCE / "iteration.json").read_text())["run0"]
    assert reference_order["config"] == {"seed": 9176, "ncn": None, "algo": "py1e", "bs": 8, "workers": 0,
                                         "dataset": "datasets/tabular_none"}  # fmt: skip
    # `tokens` has a different length in every sample, so default_collate cannot batch it (with
    # either implementation): decode only the columns the loop needs.
    dataset = StreamingDataset(local=str(path), shuffle=True, shuffle_seed=9176, batch_size=8, columns=["id", "label"])
    loader = StreamingDataLoader(dataset, batch_size=8, num_workers=0)
    epoch = [batch["id"].tolist() for batch in loader]
    print(f"   first batches: {epoch[0]} {epoch[1]} ...")
    identical = epoch == reference_order["epochs"][0]
    print(f"   {len(epoch)} batches; order identical to mosaicml-streaming 0.13.0: {identical}")
    assert identical

    print("\n3. read_table: the whole dataset as Arrow")
    table = read_table(path)
    print(f"   {table.num_rows} rows; schema: " + ", ".join(f"{f.name}: {f.type}" for f in table.schema))
    print(f"   first row: id={table['id'][0]}, label={table['label'][0]}, tokens[:5]={table['tokens'][0].values[:5].to_pylist()}")

    print("\n4. images")
    path, _ = copy_dataset("images", out)
    images = StreamingDataset(local=str(path))
    sample = images[0]
    print("   per sample: " + ", ".join(f"{k}={type(v).__name__}" for k, v in sample.items()))
    table = read_table(path, columns=["label", "jpg"])
    print(f"   read_table: jpg is {table.schema.field('jpg').type} (the stored JPEG file, "
          f"{len(table['jpg'][0].as_py())} bytes in row 0), label is {table.schema.field('label').type}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", nargs="?", help="where to copy the datasets (kept); default: a temporary directory")
    args = parser.parse_args()
    if args.output_dir:
        main(Path(args.output_dir))
    else:
        tmp = tempfile.mkdtemp(prefix="mds-read-reference-")
        try:
            main(Path(tmp))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

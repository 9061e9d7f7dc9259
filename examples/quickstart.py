"""spark-mds quickstart: from a Spark DataFrame to a PyTorch training loop, through MDS.

1. Spark writes a DataFrame (text, tokens, label, a small PNG image) with format("mds").
2. The same data through SQL: CREATE TABLE ... USING mds, INSERT, SELECT with a filter.
3. A small torch model trains for an epoch with StreamingDataLoader (2 workers, shuffled);
   the run is interrupted mid-epoch and resumed from its state_dict in a fresh loader.

Run it with `make demo` (or `python examples/quickstart.py [OUTPUT_DIR]`).
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, BinaryType, IntegerType, LongType, StringType, StructField, StructType

import spark_mds
from mds_loader import StreamingDataLoader, StreamingDataset, read_table

ROWS = 20_000
TOKENS = 32
VOCAB = 1000
BATCH = 64


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def make_rows(n: int, seed: int = 0) -> list[tuple]:
    """Synthetic samples: the label is whether token 7 occurs, so a model can learn it."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, VOCAB, size=(n, TOKENS), dtype=np.int32)
    labels = (tokens == 7).any(axis=1) | (tokens < 40).sum(axis=1) > 1
    images = []
    for shade in range(8):  # a few distinct 8x8 PNGs, reused
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (shade * 32, 255 - shade * 32, 128)).save(buf, format="PNG")
        images.append(buf.getvalue())
    return [(i, f"sample {i}", tokens[i].tolist(), int(labels[i]), images[i % 8]) for i in range(n)]


SCHEMA = StructType([
    StructField("id", LongType(), False),
    StructField("text", StringType(), True),
    StructField("tokens", ArrayType(IntegerType(), False), False),
    StructField("label", IntegerType(), False),
    StructField("image", BinaryType(), True),
])


class BagOfTokens(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.EmbeddingBag(VOCAB, 32)
        self.head = torch.nn.Linear(32, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(tokens.long()))


def train(loader: StreamingDataLoader, model: torch.nn.Module, opt: torch.optim.Optimizer, max_batches: int | None = None):
    """Trains until the loader is exhausted or `max_batches` batches; returns (batches, samples, loss, seconds)."""
    seen = samples = 0
    loss_sum = 0.0
    start = time.perf_counter()
    for batch in loader:
        loss = torch.nn.functional.cross_entropy(model(batch["tokens"]), batch["label"].long())
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += 1
        samples += len(batch["label"])
        loss_sum += loss.item()
        if max_batches is not None and seen >= max_batches:
            break
    return seen, samples, loss_sum / max(seen, 1), time.perf_counter() - start


def main(out: str) -> None:
    path = os.path.join(out, "train")

    step("1. Spark: df.write.format('mds')")
    builder = SparkSession.builder.master("local[2]").appName("spark-mds quickstart") \
        .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "4") \
        .config("spark.sql.warehouse.dir", os.path.join(out, "warehouse"))
    spark = spark_mds.configure(builder).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    print("format('mds') is served by:", spark_mds.register(spark))
    df = spark.createDataFrame(make_rows(ROWS), SCHEMA).repartition(4)
    start = time.perf_counter()
    df.write.format("mds").option("encoding.image", "png").mode("overwrite").save(path)
    print(f"wrote {ROWS} rows in {time.perf_counter() - start:.1f} s to {path}")
    back = spark.read.format("mds").load(path)
    back.printSchema()
    print("rows read back:", back.count(), "| label=1:", back.filter("label = 1").count())

    step("2. Spark SQL: CREATE TABLE ... USING mds, INSERT, SELECT")
    table_path = os.path.join(out, "sql_table")
    spark.sql(f"CREATE TABLE events (id BIGINT, text STRING, label INT) USING mds LOCATION '{table_path}'")
    spark.sql("INSERT INTO events VALUES (1, 'hello', 0), (2, 'world', 1), (3, 'again', 1)")
    spark.sql("INSERT INTO events SELECT id + 10, text, label FROM events WHERE id < 3")
    spark.sql("SELECT id, text FROM events WHERE label = 1 ORDER BY id").show()
    spark.sql("DROP TABLE events")  # an external table: the data stays at its location
    spark.stop()

    step("3. PyTorch: StreamingDataLoader, 2 workers, shuffled, interrupted and resumed")
    print("the same dataset, read without Spark:", read_table(path, columns=["id", "label"]).num_rows, "rows")
    torch.manual_seed(0)
    model = BagOfTokens()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    dataset = StreamingDataset(local=path, batch_size=BATCH, shuffle=True, columns=["tokens", "label"])
    loader = StreamingDataLoader(dataset, batch_size=BATCH, num_workers=2)
    print(f"{len(dataset)} samples per epoch, {len(loader)} batches; whole-batch decoding: {loader.uses_batch_decoding}")
    batches, samples, loss, seconds = train(loader, model, opt, max_batches=len(loader) // 2)
    state = loader.state_dict()
    print(f"trained {batches} batches ({samples} samples, {samples / seconds:,.0f} samples/s), loss {loss:.3f}; "
          f"stopping mid-epoch, state_dict = {state}")

    # A new process would do exactly this after loading its checkpoint.
    resumed = StreamingDataLoader(StreamingDataset(local=path, batch_size=BATCH, shuffle=True,
                                                   columns=["tokens", "label"]), batch_size=BATCH, num_workers=2)
    resumed.load_state_dict(state)
    batches2, samples2, loss2, seconds2 = train(resumed, model, opt)
    print(f"resumed: {batches2} more batches ({samples2} samples, {samples2 / seconds2:,.0f} samples/s), loss {loss2:.3f}")
    assert samples + samples2 == ROWS, "the interrupted and resumed halves cover the epoch exactly once"
    print(f"epoch complete: {samples + samples2} samples, each exactly once")

    sample = StreamingDataset(local=path, batch_size=BATCH)[0]
    print("a sample as mosaicml-streaming would return it:",
          {k: (type(v).__name__ if k == "image" else v) for k, v in sample.items() if k != "tokens"})


if __name__ == "__main__":
    given = sys.argv[1] if len(sys.argv) > 1 else None
    out = given or tempfile.mkdtemp(prefix="spark-mds-quickstart-")
    try:
        main(out)
    finally:
        if given is None:
            shutil.rmtree(out, ignore_errors=True)

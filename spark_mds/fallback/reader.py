"""The read side of the Python fallback: schema inference from ``index.json`` and a
``DataSourceReader`` that yields Arrow record batches cast exactly to the Spark schema.

Column pruning: PySpark 4.1 gives a Python reader no required columns (``DataSourceReader`` has
``pushFilters`` but nothing like ``pruneColumns``), so a query's ``select`` cannot reach it. The
reader decodes exactly the columns of the schema it receives, so a *user schema* that names a
subset of the columns prunes (``spark.read.schema("id BIGINT, text STRING").format("mds")``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql.types import BinaryType, StructType

from mds_loader.errors import MDSSchemaError
from mds_loader.format import ReadColumn, ReadSchema, ShardEntry, ShardReader, parse_encoding

from .compat import DataSourceReader, InputPartition
from .dataset import check_same_columns, index_where, ndarray_infos, read_index, shard_files
from .layout import check_arrow_transferable, dataset_spark_schema, spark_arrow_type, type_sql
from .options import ReadOptions, parse_storage_options
from .partitions import Partitioning
from .storage import open_store

__all__ = ["MdsInputPartition", "MdsReader", "infer_schema", "plan_partitions", "default_parallelism"]

_MIN_PARTITION_BYTES = 4 << 20
_BATCH_BYTES = 16 << 20  # raw shard bytes decoded per Arrow batch
_MAX_BATCH_ROWS = 65536


def infer_schema(path: str, options: Mapping[str, str] | None = None) -> StructType:
    """The Spark schema of the dataset at ``path`` (``spark_mds`` or inferred, docs/format.md §4);
    ``options`` are the read's (only its storage options are used here).

    Raises:
        FileNotFoundError: there is no ``index.json``.
        MDSSchemaError: the schema holds a type the fallback cannot return (year-month intervals).
        MDSConfigError: invalid storage options, or a path that fsspec cannot open.
    """
    store = open_store(path, parse_storage_options(options or {}))
    snap = read_index(store)
    if snap.index is None:
        raise FileNotFoundError(f"no MDS dataset at {store.location}: index.json is missing")
    check_same_columns(snap.index)
    infos = ndarray_infos(store, snap.index)
    schema = dataset_spark_schema(snap.index, infos, index_where(store))
    for f in schema.fields:
        check_arrow_transferable(f.name, f.dataType, reading=True)
    # A partitioned dataset: its partition columns follow the data columns, as in Spark's file sources.
    return StructType(schema.fields + Partitioning.of(snap.index, index_where(store)).schema.fields)


class MdsInputPartition(InputPartition):
    """One read task: a group of consecutive shards (their index entries) of one partition
    directory, and that directory's partition values (empty if the dataset is not partitioned)."""

    def __init__(self, shards: list[ShardEntry], values: tuple = ()) -> None:
        self.shards = shards
        self.values = values


def plan_partitions(shards: Sequence[ShardEntry], max_partition_bytes: int, parallelism: int,
                    values: Sequence[tuple] | None = None) -> list[MdsInputPartition]:  # fmt: skip
    """One input partition per shard, small shards grouped, like the JVM source and Spark's file
    sources: a group is cut before it would exceed ``min(max_partition_bytes, max(4 MiB,
    total / parallelism))`` stored bytes, and where the shards' partition ``values`` change."""
    sizes = [(s.zip_data or s.raw_data).bytes for s in shards]
    values = values if values is not None else [()] * len(shards)
    target = min(max_partition_bytes, max(_MIN_PARTITION_BYTES, sum(sizes) // max(1, parallelism)))
    groups: list[MdsInputPartition] = []
    cur: list[ShardEntry] = []
    cur_values: tuple = ()
    size = 0
    for shard, n, v in zip(shards, sizes, values):
        if cur and (size + n > target or v != cur_values):
            groups.append(MdsInputPartition(cur, cur_values))
            cur, size = [], 0
        cur.append(shard)
        cur_values = v
        size += n
    if cur:
        groups.append(MdsInputPartition(cur, cur_values))
    return groups


def _partition_values(parts: Partitioning, shards: Sequence[ShardEntry], where: str) -> list[tuple]:
    """Each shard's partition values, parsed once per partition directory."""
    seen: dict[str, tuple] = {}
    out = []
    for s in shards:
        d = parts.dir_prefix(s.raw_data.basename)
        if d not in seen:
            seen[d] = parts.values_of(s.raw_data.basename, where)
        out.append(seen[d])
    return out


def _stored_bytes_column(c: ReadColumn, size: int | None) -> ReadColumn:
    """Reads a column's stored payloads (what the reference would decode) instead of its values:
    variable-size columns as ``bytes``, fixed-size ones as a ``size``-byte static ndarray."""
    if size is None:
        enc = parse_encoding("bytes")
        return ReadColumn(c.name, enc, pa.binary(), pa.binary(), None, c.nullable, c.null_bit)
    enc = parse_encoding(f"ndarray:uint8:{size}")
    t = pa.list_(pa.uint8(), size)
    return ReadColumn(c.name, enc, t, t, None, c.nullable, c.null_bit)


def _fixed_to_binary(arr: pa.Array, size: int) -> pa.Array:
    values = arr.values.slice(arr.offset * size, len(arr) * size)
    values = values.fill_null(0).to_numpy(zero_copy_only=False)  # null rows' slots hold nulls: keep uint8
    out = pa.Array.from_buffers(pa.binary(size), len(arr), [None, pa.py_buffer(np.ascontiguousarray(values))])
    if arr.null_count:
        out = pc.if_else(arr.is_valid(), out, pa.scalar(None, out.type))
    return out.cast(pa.binary())


class MdsReader(DataSourceReader):
    """Reads an MDS dataset into Arrow record batches of exactly the Spark ``schema`` (names,
    order, types), decoding only that schema's columns.

    A field is matched to the dataset's column of the same name (else ignoring case). A field
    declared ``BINARY`` reads the column's stored bytes; any other type is converted from the
    column's decoded values by an Arrow cast, checked when the query is planned.
    """

    def __init__(self, path: str, schema: StructType, options: dict, parallelism: int) -> None:
        opts = ReadOptions.parse(options)
        store = open_store(path, opts.storage_options)
        self.store = store  # travels to the read tasks (a remote store as its URL and options)
        self.location = store.location
        self.validate_hash = opts.validate_hash
        for f in schema.fields:
            check_arrow_transferable(f.name, f.dataType, reading=True)
        snap = read_index(store)
        parts = Partitioning.of(snap.index, index_where(store)) if snap.index is not None else Partitioning(StructType([]))
        # The partition columns asked for: (position in the schema, position among the partition values).
        self.partition_fields = [(i, parts.names.index(f.name)) for i, f in enumerate(schema.fields) if f.name in parts.names]
        data_fields = [f for f in schema.fields if f.name not in parts.names]
        self.schema = schema
        self.target = pa.schema([pa.field(f.name, spark_arrow_type(f.dataType), f.nullable) for f in schema.fields])
        self.data_target = pa.schema([pa.field(f.name, spark_arrow_type(f.dataType), f.nullable) for f in data_fields])
        self.partitions_ = []  # a path without index.json (an empty catalog location) reads as empty
        self.read_schema = ReadSchema([], None)
        self.fixed_binary: dict[int, int] = {}
        if snap.index is None:
            return
        index = snap.index
        check_same_columns(index)
        if index.shards:
            first = index.shards[0]
            infos = ndarray_infos(store, index)
            dataset = ReadSchema.build(first.column_names, first.encodings, index.fields, index.null_mask, infos,
                                       index_where(store))  # fmt: skip
            sizes = dict(zip(first.column_names, first.column_sizes))
        else:
            dataset, sizes = ReadSchema([], None), {}
        by_name = {c.name: c for c in dataset.columns}
        columns = []
        for i, f in enumerate(data_fields):
            c = by_name.get(f.name) or next((x for x in dataset.columns if x.name.lower() == f.name.lower()), None)
            if c is None:
                if not index.shards:
                    break  # nothing to read: the schema's columns need not exist
                raise MDSSchemaError(
                    f"column '{f.name}' is not in the MDS dataset at {self.location}; its columns are "
                    f"{', '.join(x.name for x in dataset.columns)}"
                )
            if isinstance(f.dataType, BinaryType) and not pa.types.is_binary(c.arrow_type):
                size = sizes[c.name]
                c = _stored_bytes_column(c, size)
                if size is not None:
                    self.fixed_binary[i] = size
            else:
                self._check_cast(f.name, c, f.dataType)
            columns.append(c)
        self.read_schema = ReadSchema(columns, dataset.null_mask if index.shards else None)
        values = _partition_values(parts, index.shards, index_where(store)) if parts else None
        self.partitions_ = plan_partitions(index.shards, opts.max_partition_bytes, parallelism, values) if index.shards else []

    def _check_cast(self, name: str, c: ReadColumn, t: object) -> None:
        target = spark_arrow_type(t)  # type: ignore[arg-type]
        if c.arrow_type == target:
            return
        # Text is never parsed into another type (the JVM source does not either); other values
        # convert by Arrow's safe casts (numbers widen, integers read as dates or timestamps, ...).
        text = pa.types.is_string(c.arrow_type) or pa.types.is_large_string(c.arrow_type)
        try:
            if text and not (pa.types.is_string(target) or pa.types.is_large_string(target)):
                raise pa.ArrowInvalid("text")
            pa.array([], c.arrow_type).cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise MDSSchemaError(
                f"column '{name}' is stored as '{c.encoding.text}' and cannot be read as {type_sql(t)}; read it with its "  # type: ignore[arg-type]
                "stored type or as binary (the stored bytes)"
            ) from None

    def partitions(self) -> Sequence[InputPartition]:
        return self.partitions_

    def __getstate__(self) -> dict:
        # The reader travels to every read task; the shard list travels only in its own partition.
        state = dict(self.__dict__)
        state["partitions_"] = []
        return state

    def __reduce__(self) -> tuple:
        # Unpickling checks first that the worker's interpreter has spark-mds (a clear error if not).
        from ..worker_guard import seal

        return seal(self)

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        """Decodes a group of shards, yielding batches of about 16 MiB of raw shard data."""
        if not isinstance(partition, MdsInputPartition):  # no shards: Spark still runs one empty task
            return
        files = shard_files(self.store, self.validate_hash)
        for entry in partition.shards:
            if entry.samples == 0:
                continue
            try:
                reader = files.open(entry, schema=self.read_schema)
            except FileNotFoundError as exc:
                raise FileNotFoundError(
                    f"{exc}: the dataset at {self.location} changed since this query was planned (Spark plans a "
                    "Python data source's DataFrame or temporary view once, when it is first used); load it "
                    "again with spark.read.format(...).load(path) or re-create the view"
                ) from None
            with reader:
                for batch in self._read_shard(reader, entry):
                    yield self._with_partition_values(batch, partition.values)

    def _read_shard(self, reader: ShardReader, entry: ShardEntry) -> Iterator[pa.RecordBatch]:
        """The shard's rows in batches of about :data:`_BATCH_BYTES` raw bytes."""
        per_row = max(1, entry.raw_data.bytes // max(1, entry.samples))
        step = max(1, min(_MAX_BATCH_ROWS, _BATCH_BYTES // per_row))
        for start in range(0, entry.samples, step):
            idx = np.arange(start, min(entry.samples, start + step))
            try:
                batch = reader.read_batch(idx, schema=self.read_schema)
            except MDSSchemaError as exc:  # values that the column's type cannot hold
                raise MDSSchemaError(
                    f"{exc}. In Spark, read such a column as BINARY (its stored bytes) with a user schema: "
                    "spark.read.schema('<column> BINARY, ...').format('mds').load(path)"
                ) from None
            yield self._conform(batch, len(idx))

    def _with_partition_values(self, batch: pa.RecordBatch, values: tuple) -> pa.RecordBatch:
        """The batch's data columns with the partition's values as constant columns, in schema order."""
        if not self.partition_fields:
            return batch
        data = iter(batch.columns)
        constant = {i: pa.repeat(pa.scalar(values[k], self.target.field(i).type), batch.num_rows)
                    for i, k in self.partition_fields}  # fmt: skip
        arrays = [constant[i] if i in constant else next(data) for i in range(len(self.target))]
        return pa.RecordBatch.from_arrays(arrays, schema=self.target)

    def _conform(self, batch: pa.RecordBatch, n: int) -> pa.RecordBatch:
        if not self.data_target:  # no columns: a batch of n empty rows
            return pa.RecordBatch.from_struct_array(pa.array([{}] * n, pa.struct([])))
        arrays = []
        for i, field in enumerate(self.data_target):
            arr = batch.column(i)
            size = self.fixed_binary.get(i)
            if size is not None:
                arr = _fixed_to_binary(arr, size)
            if arr.type != field.type:
                try:
                    arr = arr.cast(field.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise MDSSchemaError(f"column '{field.name}': cannot read its values as {field.type}: {exc}") from None
            arrays.append(arr)
        return pa.RecordBatch.from_arrays(arrays, schema=self.data_target)


def default_parallelism() -> int:
    """The parallelism assumed when grouping shards, when the session's is unknown."""
    return max(1, os.cpu_count() or 1)

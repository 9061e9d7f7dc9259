"""Partitioned datasets (docs/format.md §8) on the Python side: Hive-style directories
``col=value/...`` under a root ``index.json`` whose shard basenames carry them and whose
``spark_mds.partition_columns`` holds the columns' Spark schema. Values are written and parsed as
Spark's file sources (and the JVM source, which uses Spark's own functions) do: Spark's path
escaping, ``__HIVE_DEFAULT_PARTITION__`` for null and the empty string."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Any

from pyspark.sql.types import (BooleanType, ByteType, DateType, IntegerType, LongType, ShortType, StringType, StructField,
                               StructType)

from mds_loader.errors import MDSIndexError, MDSSchemaError
from mds_loader.format import Index

__all__ = ["Partitioning", "escape_path_name", "unescape_path_name", "partition_columns_option", "DEFAULT_PARTITION_NAME"]

DEFAULT_PARTITION_NAME = "__HIVE_DEFAULT_PARTITION__"
# Spark's ExternalCatalogUtils.charToEscape (POSIX): control characters and these.
_ESCAPED = frozenset('"#%\'*/:=?\\\x7f{[]^') | frozenset(chr(c) for c in range(1, 0x20))
_HEX = re.compile(r"%([0-9A-Fa-f]{2})")
_INTEGRAL = (ByteType, ShortType, IntegerType, LongType)


def escape_path_name(text: str) -> str:
    """Spark's ``escapePathName``: the characters a path component cannot hold as ``%XX``."""
    return "".join(f"%{ord(c):02X}" if c in _ESCAPED else c for c in text)


def unescape_path_name(text: str) -> str:
    """Spark's ``unescapePathName``: ``%XX`` back to its character (anything else is kept)."""
    return _HEX.sub(lambda m: chr(int(m.group(1), 16)), text)


@dataclass(frozen=True)
class Partitioning:
    """The partition columns of a dataset (empty: not partitioned)."""

    schema: StructType

    @property
    def names(self) -> list[str]:
        return self.schema.fieldNames()

    def __bool__(self) -> bool:
        return bool(self.schema.fields)

    @classmethod
    def of(cls, index: Index, where: str) -> Partitioning:
        """The partitioning that an index records (``spark_mds.partition_columns``)."""
        obj = (index.spark_mds or {}).get("partition_columns")
        if obj is None:
            return cls(StructType([]))
        try:
            return cls(StructType.fromJson(obj))
        except Exception as exc:  # noqa: BLE001 - any malformed schema
            raise MDSIndexError(f"invalid MDS index {where}: spark_mds.partition_columns is not a Spark schema ({exc})") from None

    @classmethod
    def for_write(cls, schema: StructType, columns: list[str]) -> Partitioning:
        """The partitioning of a write of ``schema`` by ``columns`` (matched ignoring case, as Spark
        does): they must exist, be distinct, leave a data column, and have a type whose text form is
        exact. The messages are the JVM source's.

        Raises:
            MDSSchemaError: naming the column.
        """
        fields = []
        for c in columns:
            f = next((f for f in schema.fields if f.name.lower() == c.lower()), None)
            if f is None:
                raise MDSSchemaError(f"partition column '{c}' is not a column of the data; columns are "
                                     f"{', '.join(schema.fieldNames())}")  # fmt: skip
            if not isinstance(f.dataType, (StringType, BooleanType, DateType, *_INTEGRAL)):
                raise MDSSchemaError(
                    f"partition column '{f.name}' has type {f.dataType.simpleString().upper()}; mds partitions by string, "
                    "integer (tinyint to bigint), boolean or date columns. Cast it, or derive such a column"
                )
            fields.append(StructField(f.name, f.dataType, True))
        if len({f.name for f in fields}) != len(fields):
            raise MDSSchemaError(f"partition columns {', '.join(columns)} name a column twice")
        if fields and len(fields) == len(schema.fields):
            raise MDSSchemaError(f"every column ({', '.join(columns)}) is a partition column; an MDS dataset needs at "
                                 "least one data column")  # fmt: skip
        return cls(StructType(fields))

    def dir_of(self, values: tuple) -> str:
        """The directory of one row's partition values, without a trailing slash: ``a=1/b=x``."""
        parts = []
        for f, v in zip(self.schema.fields, values):
            text = None if v is None else ("true" if v is True else "false" if v is False else str(v))
            parts.append(f"{escape_path_name(f.name)}="
                         f"{DEFAULT_PARTITION_NAME if not text else escape_path_name(text)}")  # fmt: skip
        return "/".join(parts)

    def dir_prefix(self, basename: str) -> str:
        """The partition directories of a root index's shard basename: ``a=1/b=x``."""
        return "/".join(basename.split("/")[: len(self.schema.fields)])

    def values_of(self, basename: str, where: str) -> tuple[Any, ...]:
        """The partition values of a root index's shard, from its basename's directories."""
        dirs = basename.split("/")[:-1]
        pattern = "/".join(f"{n}=<value>" for n in self.names)

        def bad(why: str) -> MDSIndexError:
            return MDSIndexError(f"MDS index {where}: shard '{basename}' {why}; the dataset is partitioned by "
                                 f"{', '.join(self.names)}, so every shard must lie under {pattern}/")  # fmt: skip

        if len(dirs) < len(self.schema.fields):
            raise bad("is not inside the partition directories")
        values = []
        for f, d in zip(self.schema.fields, dirs):
            name, eq, text = d.partition("=")
            if not eq or unescape_path_name(name) != f.name:
                raise bad(f"has directory '{d}' where '{f.name}=...' belongs")
            text = unescape_path_name(text)
            values.append(None if text == DEFAULT_PARTITION_NAME else _parse(text, f.name, f.dataType, where))
        return tuple(values)


def _parse(text: str, column: str, t: Any, where: str) -> Any:
    try:
        if isinstance(t, StringType):
            return text
        if isinstance(t, BooleanType):
            return {"true": True, "false": False}[text]
        if isinstance(t, _INTEGRAL):
            return int(text)
        if isinstance(t, DateType):
            return datetime.date.fromisoformat(text)
    except (KeyError, ValueError):
        pass
    raise MDSSchemaError(f"MDS index {where}: partition directory value '{text}' of column '{column}' is not a "
                         f"{t.simpleString()}")  # fmt: skip


def partition_columns_option(options: dict) -> list[str]:
    """The ``partition_by`` write option (comma-separated column names): how ``spark_mds.write``
    passes ``partition_by`` to the Python data source, which Spark's ``partitionBy`` refuses."""
    text = next((str(v) for k, v in options.items() if k.lower() == "partition_by" and v is not None), "")
    return [c.strip() for c in text.split(",") if c.strip()]


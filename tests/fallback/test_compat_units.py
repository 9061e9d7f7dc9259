"""What the fallback needs from each PySpark version (3.5 - 4.3), without a Spark session: our own
Spark -> Arrow type mapping (public ``pyspark.sql.types`` only), the ``spark_mds.fallback.compat``
shim, and the worker guard (``spark_mds.worker_guard``). Runs unchanged on every supported PySpark.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import types

import pyarrow as pa
import pyspark
import pytest
from pyspark import cloudpickle
from pyspark.sql.types import (
    ArrayType, BinaryType, BooleanType, ByteType, DateType, DayTimeIntervalType, DecimalType, DoubleType, FloatType,
    IntegerType, LongType, MapType, NullType, ShortType, StringType, StructField, StructType, TimestampNTZType,
    TimestampType, YearMonthIntervalType,
)  # fmt: skip

from mds_loader.errors import MDSSchemaError
from spark_mds.fallback import compat
from spark_mds.fallback.layout import spark_arrow_type
from spark_mds.fallback.writer import MdsArrowWriter, plan_write
from spark_mds.worker_guard import WorkerEnvironmentError, _unseal, source_class

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
def _list(t: pa.DataType, nullable: bool = True) -> pa.DataType:
    return pa.list_(pa.field("element", t, nullable))


NESTED = StructType([StructField("a", IntegerType(), False), StructField("m", MapType(StringType(), ArrayType(DateType())))])
CASES = [
    (BooleanType(), pa.bool_()), (ByteType(), pa.int8()), (ShortType(), pa.int16()), (IntegerType(), pa.int32()),
    (LongType(), pa.int64()), (FloatType(), pa.float32()), (DoubleType(), pa.float64()),
    (DecimalType(38, 18), pa.decimal128(38, 18)), (StringType(), pa.string()), (BinaryType(), pa.binary()),
    (DateType(), pa.date32()), (TimestampType(), pa.timestamp("us", tz="UTC")), (TimestampNTZType(), pa.timestamp("us")),
    (DayTimeIntervalType(), pa.duration("us")), (DayTimeIntervalType(0, 0), pa.duration("us")), (NullType(), pa.null()),
    (ArrayType(IntegerType(), False), _list(pa.int32(), False)),
    (ArrayType(ArrayType(StringType())), _list(_list(pa.string()))),
    (MapType(IntegerType(), BinaryType(), False),
     pa.map_(pa.field("key", pa.int32(), False), pa.field("value", pa.binary(), False))),
    (NESTED, pa.struct([pa.field("a", pa.int32(), False), pa.field("m", pa.map_(pa.string(), _list(pa.date32())))])),
]  # fmt: skip


@pytest.mark.parametrize("t, arrow", CASES, ids=[t.simpleString() for t, _ in CASES])
def test_arrow_types_are_the_ones_spark_exchanges(t, arrow):
    assert spark_arrow_type(t) == arrow
    assert spark_arrow_type(t).equals(arrow, check_metadata=True)


def _pyspark_arrow_type(t, large):
    """PySpark's own (private) mapping, whose signature changed in 4.2: the cross-check of ours."""
    from pyspark.sql.pandas.types import to_arrow_type

    try:
        return to_arrow_type(t, timestamp_utc=True, prefers_large_types=large)  # 3.5 (no large types) - 4.1
    except TypeError:
        try:
            return to_arrow_type(t, timezone="UTC", prefers_large_types=large)  # 4.2+
        except TypeError:
            return None if large else to_arrow_type(t)


def _loose(t: pa.DataType) -> pa.DataType:
    """``t`` with every nested field nullable (PySpark 3.5's mapping drops nested nullability, which the
    JVM ignores when it reads Arrow)."""
    if pa.types.is_map(t):
        return pa.map_(_loose(t.key_type), _loose(t.item_type))
    if pa.types.is_list(t):
        return pa.list_(_loose(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _loose(f.type)) for f in t])
    return t


@pytest.mark.parametrize("large", [False, True])
def test_same_types_as_pyspark_itself(large):
    exact = int(pyspark.__version__.split(".")[0]) >= 4
    for t, _ in CASES:
        theirs = _pyspark_arrow_type(t, large)
        if theirs is not None:
            ours = spark_arrow_type(t, large=large)
            assert (ours == theirs) if exact else (_loose(ours) == _loose(theirs)), (pyspark.__version__, t, ours, theirs)


def test_large_types():
    t = StructType([StructField("s", StringType()), StructField("b", ArrayType(BinaryType()))])
    assert spark_arrow_type(t, large=True) == pa.struct([pa.field("s", pa.large_string()),
                                                         pa.field("b", _list(pa.large_binary()))])  # fmt: skip


def test_types_without_an_arrow_form_fail_naming_them():
    with pytest.raises(MDSSchemaError, match=r"type INTERVAL YEAR TO MONTH has no Arrow form"):
        spark_arrow_type(YearMonthIntervalType())
    with pytest.raises(MDSSchemaError, match=r"type INTERVAL YEAR TO MONTH has no Arrow form"):
        spark_arrow_type(ArrayType(YearMonthIntervalType()))


def test_the_shim_matches_the_pyspark_version():
    has_api = int(pyspark.__version__.split(".")[0]) >= 4
    assert compat.HAS_PYTHON_DATA_SOURCE is has_api
    assert issubclass(MdsArrowWriter, compat.DataSourceArrowWriter)

    class Failing(Exception):
        def getErrorClass(self):  # PySpark 3.5's name
            return "DATA_SOURCE_NOT_FOUND"

    assert compat.error_condition(Failing()) == "DATA_SOURCE_NOT_FOUND" and compat.error_condition(ValueError()) == ""


def test_sealed_writer_round_trips(tmp_path):
    schema = StructType([StructField("id", LongType(), False)])
    writer = MdsArrowWriter(plan_write({"path": str(tmp_path / "ds")}, schema, False, str(tmp_path / "ds")))
    for dumps in (pickle.dumps, cloudpickle.dumps):
        copy = pickle.loads(dumps(writer))
        assert type(copy) is MdsArrowWriter and copy.plan == writer.plan
    writer.abort([])


def test_unsealing_without_the_package_names_the_interpreter():
    module = types.ModuleType("spark_mds_missing_pkg")
    exec("class Thing:\n    pass\n", module.__dict__)
    sys.modules[module.__name__] = module
    try:
        payload = cloudpickle.dumps((module.Thing, {}))
    finally:
        del sys.modules[module.__name__]
    with pytest.raises(WorkerEnvironmentError) as info:
        _unseal(payload, "/opt/driver/bin/python")
    text = str(info.value)
    assert f"its interpreter {sys.executable} (Python" in text and "cannot import spark_mds_missing_pkg" in text
    assert "spark.pyspark.python" in text and "PYSPARK_PYTHON" in text and "/opt/driver/bin/python" in text


def test_the_registered_source_class_reaches_a_worker_without_spark_mds():
    """The class unpickles where spark_mds cannot be imported, and fails clearly when created."""
    if not compat.HAS_PYTHON_DATA_SOURCE:
        pytest.skip(f"pyspark {pyspark.__version__} has no Python Data Source API")
    data = cloudpickle.dumps(source_class("mds_x", 3))
    script = textwrap.dedent("""
        import importlib.abc, pickle, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in ("spark_mds", "mds_loader"):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        sys.meta_path.insert(0, Block())
        cls = pickle.loads(sys.stdin.buffer.read())
        print(cls.name(), cls.parallelism)
        try:
            cls({"path": "/x"})
        except ImportError as exc:
            print(type(exc).__name__, exc)
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", script], input=data, capture_output=True, cwd="/", env=env, check=True)
    lines = out.stdout.decode().splitlines()
    assert lines[0] == "mds_x 3"
    assert lines[1].startswith("WorkerEnvironmentError spark-mds cannot run in this Spark Python worker") and \
        "cannot import spark_mds" in lines[1]  # fmt: skip

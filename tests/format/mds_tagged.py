"""Exact comparison of decoded values with the tagged values of tests/data/reference (see its
README.md), and the reverse tagging used by interop scripts (this module imports only numpy and
PIL, so the reference's virtualenv can import it too)."""

from __future__ import annotations

import base64
import decimal
import math
from typing import Any

import numpy as np


def tag(value: Any) -> Any:
    """Tags a decoded value as tests/data/reference/README.md describes."""
    if isinstance(value, np.ndarray):
        return {"ndarray": {"dtype": value.dtype.name, "shape": list(value.shape),
                            "data_b64": base64.b64encode(np.ascontiguousarray(value).tobytes()).decode()}}  # fmt: skip
    if isinstance(value, np.generic):
        if isinstance(value, np.floating):
            return {"scalar": {"dtype": value.dtype.name, "repr": float(value).hex()}}
        return {"scalar": {"dtype": value.dtype.name, "repr": str(value)}}
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return {"value": value}
    if isinstance(value, float):
        return {"float_hex": value.hex()}
    if isinstance(value, bytes):
        return {"bytes_b64": base64.b64encode(value).decode()}
    if isinstance(value, decimal.Decimal):
        return {"decimal": str(value)}
    if isinstance(value, list):
        return {"list": [tag(v) for v in value]}
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        Image = None
    if Image is not None and isinstance(value, Image.Image):
        return {"image": {"mode": value.mode, "size": list(value.size), "pixels": tag(np.asarray(value))}}
    return {"json": _jsonable(value)}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_jsonable(v) for v in value)
    if isinstance(value, bytes):
        return {"bytes_b64": base64.b64encode(value).decode()}
    return value


def assert_tagged(actual: Any, expected: Any, where: str = "value") -> None:
    """Asserts that ``actual`` is exactly the value ``expected`` (a tag) describes: same Python
    and numpy types, bit-identical floats (nan and inf included), same image mode, size, pixels."""
    (key, spec), = expected.items()
    if key == "value":
        assert type(actual) is type(spec) and actual == spec, f"{where}: {actual!r} != {spec!r}"
    elif key == "float_hex":
        assert type(actual) is float, f"{where}: {type(actual)} is not float"
        assert actual.hex() == spec or (math.isnan(actual) and spec == "nan"), f"{where}: {actual.hex()} != {spec}"
    elif key == "scalar":
        assert isinstance(actual, np.generic) and actual.dtype.name == spec["dtype"], f"{where}: {actual!r} is not a {spec['dtype']} scalar"
        if isinstance(actual, np.floating):
            got = float(actual).hex()
            assert got == spec["repr"] or (got == "nan" and spec["repr"] == "nan"), f"{where}: {got} != {spec['repr']}"
            if math.isnan(float(actual)):
                return
        else:
            assert str(actual) == spec["repr"], f"{where}: {actual} != {spec['repr']}"
    elif key == "bytes_b64":
        assert type(actual) is bytes and actual == base64.b64decode(spec), f"{where}: bytes differ"
    elif key == "ndarray":
        assert isinstance(actual, np.ndarray), f"{where}: {type(actual)} is not an ndarray"
        assert actual.dtype.name == spec["dtype"] and list(actual.shape) == spec["shape"], (
            f"{where}: {actual.dtype.name}{list(actual.shape)} != {spec['dtype']}{spec['shape']}"
        )
        assert np.ascontiguousarray(actual).tobytes() == base64.b64decode(spec["data_b64"]), f"{where}: array bytes differ"
    elif key == "decimal":
        assert isinstance(actual, decimal.Decimal) and str(actual) == spec, f"{where}: {actual!r} != Decimal({spec!r})"
    elif key == "json":
        assert _jsonable(actual) == spec, f"{where}: {actual!r} != {spec!r}"
    elif key == "image":
        from PIL import Image

        assert isinstance(actual, Image.Image), f"{where}: {type(actual)} is not a PIL image"
        assert actual.mode == spec["mode"] and list(actual.size) == spec["size"], f"{where}: image mode/size differ"
        assert_tagged(np.asarray(actual), spec["pixels"], f"{where} pixels")
    elif key == "list":
        assert isinstance(actual, list) and len(actual) == len(spec), f"{where}: list of {len(actual) if isinstance(actual, list) else type(actual)} != {len(spec)}"
        for i, (a, e) in enumerate(zip(actual, spec)):
            assert_tagged(a, e, f"{where}[{i}]")
    else:  # pragma: no cover
        raise AssertionError(f"unknown tag {key}")


def assert_same(actual: Any, expected: Any, where: str = "value") -> None:
    """Asserts that two decoded values are exactly equal (types included)."""
    assert_tagged(actual, tag(expected), where)


def _nan_safe(value: Any) -> Any:
    """``value`` with float NaNs replaced by a marker (NaN != NaN), recursively."""
    if isinstance(value, float) and math.isnan(value):
        return ("NaN",)
    if isinstance(value, list):
        return [_nan_safe(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_nan_safe(v) for v in value)
    if isinstance(value, dict):
        return {k: _nan_safe(v) for k, v in value.items()}
    return value


def assert_tables_equal(actual: Any, expected: Any) -> None:
    """Asserts that two pyarrow tables have the same schema and values (NaN equal to NaN,
    chunking ignored)."""
    assert actual.schema.equals(expected.schema), f"schemas differ:\n{actual.schema}\n!=\n{expected.schema}"
    for name in expected.column_names:
        a, e = actual.column(name).to_pylist(), expected.column(name).to_pylist()
        assert _nan_safe(a) == _nan_safe(e), f"column {name!r} differs: {a[:5]} != {e[:5]}"

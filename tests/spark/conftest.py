"""Fixtures of the Spark tests: one shared local Spark session (local[2]) with the spark-mds jar.

Once loaded, this module is `conftest` in sys.modules, shadowing tests/conftest.py for test files
that import from it; so it re-exports the helpers of tests/support.py. Our own helpers live in
mds_testutil.
"""

from __future__ import annotations

import os

import pytest

from mds_testutil import PYTHON_SOURCE, REF_VENV, REFERENCE_DATA, ROOT, Implementation, _builder, run_reference  # noqa: F401 (re-exported)
from support import require_jar


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    require_jar()
    warehouse = str(tmp_path_factory.mktemp("warehouse"))
    session = _builder("local[2]", warehouse).getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture
def out(tmp_path) -> str:
    """A fresh output directory path (not created)."""
    return str(tmp_path / "ds")


@pytest.fixture(scope="module", params=["jar", "python"])
def impl(request, spark) -> Implementation:
    if request.param == "python" and PYTHON_SOURCE:
        from spark_mds.python_source import register_python_source

        register_python_source(spark, "mds_py")  # (False when already registered by another module)
    return Implementation(request.param)

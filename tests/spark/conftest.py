"""One shared local Spark session (local[2]) with the spark-mds jar, for every test under tests/spark."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import spark_mds

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

SPARK_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.memory": "1g",
    "spark.sql.ansi.enabled": "true",
}


def _builder(master: str, warehouse: str):
    from pyspark.sql import SparkSession

    b = SparkSession.builder.master(master).appName("spark-mds-tests")
    for k, v in SPARK_CONF.items():
        b = b.config(k, v)
    b = b.config("spark.sql.warehouse.dir", warehouse)
    return spark_mds.configure(b)


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    if not os.path.isfile(os.path.join(ROOT, "spark_mds", "jars", "spark-mds.jar")):
        pytest.fail("spark_mds/jars/spark-mds.jar is missing: run `make jar`")
    warehouse = str(tmp_path_factory.mktemp("warehouse"))
    session = _builder("local[2]", warehouse).getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture
def out(tmp_path) -> str:
    """A fresh output directory path (not created)."""
    return str(tmp_path / "ds")


def run_spark_script(script: str, *args: str, master: str = "local[2,2]", timeout: float = 300) -> str:
    """Runs `script` in a separate Python process with its own SparkSession `spark` (e.g. local[2,2]
    to allow task retries). Returns its stdout."""
    prelude = (
        "import sys, json\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        f"sys.path.insert(0, {str(HERE)!r})\n"
        "from conftest import _builder\n"
        f"spark = _builder({master!r}, tempfile_dir).getOrCreate()\n"
        "spark.sparkContext.setLogLevel('ERROR')\n"
    )
    wh = tempfile.mkdtemp(prefix="mds-wh-")
    try:
        proc = subprocess.run(
            [sys.executable, "-c", f"tempfile_dir = {wh!r}\n" + prelude + script, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=str(ROOT),
        )
    finally:
        shutil.rmtree(wh, ignore_errors=True)
    if proc.returncode != 0:
        raise AssertionError(f"spark script failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
    return proc.stdout

"""The smoke matrix: every Spark version users run beside the default one (the suite's pyspark 4.1;
3.5 also runs the whole Spark suite, `make test-spark35`), each in its own venv made by
`make spark-venvs` (tools/make_spark_venv.sh, which also checks that installing spark-mds kept
that pyspark).

Per version, with the jar and with the Python path (tests/versions/smoke.py): a write/read/SQL
round trip of every type, exact; mosaicml-streaming 0.13.0 reads what each implementation wrote,
with identical values; and where pyspark ships a Spark Connect server (4.x), a Connect client
writes and reads with the jar on the server and without it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import spark_mds
from support import READ_ALL, ROOT, check_interop_sample, require_jar, run_python, run_reference

pytestmark = [pytest.mark.spark, pytest.mark.slow]

SPARK = ROOT / "tests" / "spark"
sys.path.insert(0, str(SPARK))
from test_connect import SCRIPT as CONNECT  # noqa: E402
from spark_tables import INTEROP_ROWS  # noqa: E402

VERSIONS = ["3.5.8", "4.0.5", "4.2.1", "4.3.0"]


def _python(version: str) -> Path:
    python = ROOT / ".venv-spark" / version / "bin" / "python"
    if not python.exists():
        pytest.fail(f"no venv for pyspark {version} at {python.parent.parent}: run `make spark-venvs`")
    return python


@pytest.mark.parametrize("version", VERSIONS)
def test_round_trips_and_the_reference_reads_them(version, tmp_path, ref_python):
    python = _python(version)
    spark_mds.jar_path(version)  # the jar for this version is built (else FileNotFoundError: make jar)
    smoke = (ROOT / "tests" / "versions" / "smoke.py").read_text()
    r = run_python(smoke, str(tmp_path), python=python, timeout=900, env={"PYSPARK_PYTHON": str(python)})
    assert r["pyspark"] == version
    assert r["register"] == "jvm"
    for impl in ("jvm", "python"):
        got = r[impl]
        assert got["rows_equal"] and got["pruned_equal"], (impl, got)
        assert got["schema_equal"], (impl, got["schema"])
        assert got["appended"] == 6, (impl, got)
    assert r["jvm"]["sql_rows"] == 2
    if version.startswith("4."):
        assert r["python"]["sql_rows"] == 3  # 4 rows, 2 appended, 1 inserted through the view: 3 true
    paths = [str(tmp_path / f"interop-{impl}") for impl in ("jvm", "python")]
    samples = run_reference(ref_python, READ_ALL, *[f"{p}|sha1" for p in paths])
    for p in paths:
        by_id = {s["id"]["np"][1]: s for s in samples[p]}
        assert sorted(by_id) == list(range(60)), p
        for i, s in by_id.items():
            check_interop_sample(s, INTEROP_ROWS[i % 3])


@pytest.mark.parametrize("version", [v for v in VERSIONS if not v.startswith("3.")])
@pytest.mark.parametrize("with_jar", [True, False], ids=["jar-on-server", "python-source"])
def test_spark_connect(version, with_jar, tmp_path):
    python = _python(version)
    jar = require_jar() if with_jar else ""
    r = run_python(CONNECT, jar, str(tmp_path / "ds"), python=python, timeout=600, env={"PYSPARK_PYTHON": str(python)})
    assert r["session"] == "pyspark.sql.connect.session", r
    assert r["register"] == ("jvm" if with_jar else "python"), r
    assert "an MDS dataset already exists at" in r["modes"]["errorifexists"], r["modes"]
    assert r["modes"]["ignore"] == "ok", r["modes"]
    assert r["same_rows"] and r["loader_rows"] == 250 and r["loader_ids"], r

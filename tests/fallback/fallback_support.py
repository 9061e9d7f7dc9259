"""Helpers of the fallback tests: a Spark session in a separate process, and dataset file checks.

The tests of the Python fallback need a session *without* the spark-mds jar, and the comparison
tests one *with* it; a process holds one SparkContext, and the JVM tests of tests/spark hold one in
the pytest process. So every Spark session of these tests lives in its own child process
(:class:`SparkProcess`), started once per test module, that runs the functions of
``fallback_spark_cases`` on request and returns their JSON results (or their traceback).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

SPARK_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.memory": "1g",
    "spark.sql.ansi.enabled": "true",
    "spark.python.worker.reuse": "true",
}


class SparkProcess:
    """A child Python process with its own SparkSession.

    Args:
        master: e.g. ``"local[2,2]"`` (two cores, one retry per task).
        jar: put the spark-mds jar on the session's classpath.
        register_as: register the Python fallback under this name (None: do not register); the
            result of ``register_python_source`` is in :attr:`registered`.
        cases: the module whose functions :meth:`call` runs (e.g. another test directory's).
        pythonpath: more directories for the child's (and its Python workers') ``PYTHONPATH``,
            e.g. the one that holds ``cases``.
        workers_python: the interpreter of Spark's Python workers (``PYSPARK_PYTHON``); default: this one.
        remote: a Spark Connect session (PySpark 4.0+: a Connect server in the child, on a free
            port, and a client session of it) instead of a classic one.
    """

    def __init__(self, master: str = "local[2,2]", *, jar: bool = False, register_as: str | None = "mds",
                 timeout: float = 300, cases: str = "fallback_spark_cases", pythonpath: tuple[str, ...] = (),
                 workers_python: str | None = None, remote: bool = False) -> None:  # fmt: skip
        self.timeout = timeout
        self.log = tempfile.NamedTemporaryFile(prefix="mds-fallback-spark-", suffix=".log", delete=False)
        config = {"master": master, "jar": jar, "register_as": register_as, "cases": cases, "remote": remote}
        # the shared test helpers too: tests/ (support, spark_tables) and tests/spark (mds_testutil)
        paths = [str(ROOT), str(HERE), str(ROOT / "tests"), str(ROOT / "tests" / "spark"), *pythonpath,
                 os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "PYSPARK_PYTHON": workers_python or sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
               "PYTHONHASHSEED": "0", "PYTHONPATH": os.pathsep.join(paths)}  # fmt: skip
        self.proc = subprocess.Popen(
            [sys.executable, "-u", str(Path(__file__)), "serve", json.dumps(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, cwd=str(ROOT), env=env, text=True,
        )  # fmt: skip
        hello = self._reply(timeout=300)
        self.registered = hello.get("registered")

    def _reply(self, timeout: float) -> dict:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.close()
            raise AssertionError(f"the Spark process did not answer within {timeout}s; log: {self.log.name}\n{self.log_tail()}")
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"the Spark process exited ({self.proc.poll()}); log:\n{self.log_tail()}")
        return json.loads(line)

    def log_tail(self, n: int = 6000) -> str:
        try:
            with open(self.log.name, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def call(self, case: str, **kwargs: Any) -> Any:
        """Runs ``<cases>.<case>(spark, **kwargs)`` in the child; returns its result.

        Raises:
            AssertionError: the case raised (its traceback is the message).
        """
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"case": case, "kwargs": kwargs}) + "\n")
        self.proc.stdin.flush()
        reply = self._reply(self.timeout)
        if not reply["ok"]:
            raise AssertionError(f"{case} failed in the Spark process:\n{reply['error']}")
        return reply["result"]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(timeout=60)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(config: dict) -> None:
    """The child's loop: one JSON request per stdin line, one JSON reply per line on the original stdout."""
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything else printed (Spark, py4j, the cases) goes to the log
    sys.stdout = sys.stderr
    from pyspark.sql import SparkSession

    import spark_mds

    warehouse = tempfile.mkdtemp(prefix="mds-fallback-wh-")
    b = SparkSession.builder.master(config["master"]).appName("spark-mds-fallback-tests")
    for k, v in SPARK_CONF.items():
        b = b.config(k, v)
    b = b.config("spark.sql.warehouse.dir", warehouse)
    if config["jar"]:
        b = spark_mds.configure(b)
    port = _free_port() if config.get("remote") else None
    if port is not None:  # a Spark Connect server in this process, on a port of its own
        b = b.config("spark.plugins", "org.apache.spark.sql.connect.SparkConnectPlugin")
        b = b.config("spark.connect.grpc.binding.port", str(port))
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    if port is not None:
        from pyspark.sql.connect.session import SparkSession as RemoteSparkSession

        os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"  # pyspark.sql.functions etc. build Connect columns
        spark = RemoteSparkSession.builder.remote(f"sc://localhost:{port}").getOrCreate()
    registered = None
    if config["register_as"]:  # PySpark 4.0+ (the Python Data Source API)
        from spark_mds.python_source import register_python_source

        registered = register_python_source(spark, config["register_as"])
    proto.write(json.dumps({"ok": True, "registered": registered}) + "\n")
    proto.flush()
    import importlib

    cases = importlib.import_module(config.get("cases", "fallback_spark_cases"))

    for line in sys.stdin:
        request = json.loads(line)
        try:
            result = getattr(cases, request["case"])(spark, **request["kwargs"])
            reply = {"ok": True, "result": result}
        except BaseException:
            reply = {"ok": False, "error": traceback.format_exc()}
        proto.write(json.dumps(reply, default=str) + "\n")
        proto.flush()
    spark.stop()
    shutil.rmtree(warehouse, ignore_errors=True)


# ---------------------------------------------------------------------------- dataset files


if __name__ == "__main__" and sys.argv[1:2] == ["serve"]:
    _serve(json.loads(sys.argv[2]))


def raw_shard(path: str, entry: dict) -> bytes:
    """The raw (decompressed) content of a shard whose index entry (JSON) is ``entry``."""
    from mds_loader.format import get_codec

    stored = (Path(path) / (entry["zip_data"] or entry["raw_data"])["basename"]).read_bytes()
    return stored if entry["zip_data"] is None else get_codec(entry["compression"]).decompress(stored)


def without_names(entry: dict) -> dict:
    """A shard entry (JSON) without its file names: what must agree between two writers."""
    e = {k: v for k, v in entry.items() if k not in ("raw_data", "zip_data")}
    e["raw"] = {k: v for k, v in entry["raw_data"].items() if k != "basename"}
    return e

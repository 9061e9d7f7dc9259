"""Speculative duplicate task attempts never duplicate samples (JVM source and Python fallback).

Spark never launches a speculative copy on the host of the original attempt, so local mode (and
local-cluster, whose executors share one host name) never speculates. This test starts a small
standalone cluster instead: a master and two workers bound to 127.0.0.2 and 127.0.0.3 (distinct
"hosts" on the loopback interface), one core each. Partition 0's first attempt is held in its
write (after its first shard file) until the job has ended, so a speculative copy runs on the
other worker and wins, whatever the machine's speed; then the first attempt writes on. The dataset
read back holds every row exactly once, index.json references one attempt per partition, and no
file of the losing attempt remains.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from rel_support import CHILD_ENV, HERE, ROOT, kill_group, run_child, tree, wait_for  # noqa: I001
from support import require_jar

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``spark://127.0.0.1:PORT`` with two one-core workers on two loopback addresses."""
    import pyspark

    home = os.path.dirname(pyspark.__file__)
    spark_class = os.path.join(home, "bin", "spark-class")
    root = tmp_path_factory.mktemp("cluster")
    env = {**CHILD_ENV, "SPARK_HOME": home, "SPARK_LOG_DIR": str(root), "SPARK_WORKER_DIR": str(root)}
    port = _free_port("127.0.0.1")
    procs = []

    def start(args: list[str], log: str, extra: dict | None = None) -> subprocess.Popen:
        with open(root / log, "w") as out:
            p = subprocess.Popen([spark_class, *args], stdout=out, stderr=subprocess.STDOUT, env={**env, **(extra or {})},
                                 start_new_session=True, cwd=str(root))  # fmt: skip
        procs.append(p)
        return p

    try:
        start(["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port), "--webui-port",
               str(_free_port("127.0.0.1"))], "master.log")  # fmt: skip
        wait_for(lambda: "ALIVE" in (root / "master.log").read_text(), 60, "the Spark master")
        for h in ("127.0.0.2", "127.0.0.3"):
            start(["org.apache.spark.deploy.worker.Worker", "--host", h, "--cores", "1", "--memory", "1g",
                   "--webui-port", str(_free_port(h)), "--work-dir", str(root / f"work-{h}"),
                   f"spark://127.0.0.1:{port}"], f"worker-{h}.log", {"SPARK_LOCAL_IP": h})  # fmt: skip
        wait_for(lambda: (root / "master.log").read_text().count("Registering worker") == 2, 60, "two Spark workers")
        yield f"spark://127.0.0.1:{port}"
    finally:
        for p in procs:
            kill_group(p, 30)


def test_speculative_duplicates_never_duplicate_samples(cluster, tmp_path):
    require_jar()
    marks = tmp_path / "marks"
    marks.mkdir()
    args = {"master": cluster, "jvm": str(tmp_path / "jvm"), "py": str(tmp_path / "py"), "marks": str(marks)}
    lines, _ = run_child([str(HERE / "spark_jobs.py"), "speculation", json.dumps(args)], timeout=600)
    results = lines[-1]["results"]
    assert [r["fmt"] for r in results] == ["mds", "mds_py"]
    expected = Counter(list(range(400)) + list(range(1000, 1400)))
    for r in results:
        fmt = r["fmt"]
        assert r["error"] is None, (fmt, r["error"])
        attempts = Counter(a.split(".")[0] for a in r["attempts"])  # partition -> attempts that ran
        assert attempts["0"] >= 2, (fmt, r["attempts"])  # the speculative copy of partition 0 did run
        assert Counter(r["ids"]) == expected, fmt  # every row exactly once: no duplicate from the two attempts
        path = Path(args["jvm" if fmt == "mds" else "py"])
        new = [n for n in r["shards"] if n.split(".")[1] != r["shards"][0].split(".")[1]]
        per_partition: dict[str, set] = {}
        for n in new:
            per_partition.setdefault(n.split(".")[2], set()).add(n.split(".")[3])
        assert all(len(a) == 1 for a in per_partition.values()), (fmt, per_partition)  # one attempt per partition
        index = json.loads((path / "index.json").read_text())
        stored = {"index.json"} | {(s["zip_data"] or s["raw_data"])["basename"] for s in index["shards"]}
        # the losers' files are gone (the message names the attempts that ran, to tell which one left them)
        jobs = sorted({n.split(".")[1] for n in r["shards"]})  # (the first write's job, this one's)
        assert set(tree(path)) == stored, (fmt, r["attempts"], jobs, sorted(set(tree(path)) ^ stored))

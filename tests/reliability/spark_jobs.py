"""Spark drivers of the write-fault tests, each run as its own process (so that a test can kill it,
run two at once, or give it its own master): ``python spark_jobs.py JOB JSON_ARGS``. Results are
JSON lines on stdout.

Both implementations are exercised in one session: the JVM source is ``format("mds")`` and the
Python fallback is registered beside it as ``format("mds_py")`` (the same code that serves
``format("mds")`` when the jar is absent).

Fault injection at the driver's commit:

* JVM source: the runtime conf ``spark.mds.test.beforeCommit`` / ``spark.mds.test.beforePublish``
  (``MdsTestHooks`` in MdsWriteJob.scala): the driver creates the named marker file when it gets
  there and waits while the file exists.
* Python fallback: the same two points, through a subclass of its writer defined here
  (``beforeCommit``: every task has committed; ``beforePublish``: the optimistic check passed,
  ``index.json`` is about to be replaced).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
for _p in (HERE, os.path.join(ROOT, "tests", "spark")):
    if _p not in sys.path:
        sys.path.insert(0, _p)


def pause(marker: str | None) -> None:
    """Creates ``marker`` and waits while it exists (at most 10 minutes)."""
    if not marker:
        return
    with open(marker, "w"):
        pass
    deadline = time.monotonic() + 600
    while os.path.exists(marker) and time.monotonic() < deadline:
        time.sleep(0.02)


def emit(obj) -> None:
    print(json.dumps(obj), flush=True)


# ---------------------------------------------------------------------------- fallback with hooks


def hooked_fallback(name: str, hooks: dict[str, str]):
    """A Python fallback source registered as ``name`` whose driver-side commit pauses at the
    hooks' points: those given here, or per write by the options ``test.beforeCommit`` and
    ``test.beforePublish`` (removed before the real source sees the options)."""
    from spark_mds.fallback.writer import MdsArrowWriter, WritePlan, plan_write
    from spark_mds.python_source import MdsDataSource
    from spark_mds.fallback.options import dataset_path

    class PausingStore:
        def __init__(self, store, marker):
            self._store, self._marker = store, marker

        def __getattr__(self, attr):
            return getattr(self._store, attr)

        def publish_index(self, *args, **kwargs):
            pause(self._marker)
            return self._store.publish_index(*args, **kwargs)

        def publish_index_if_unchanged(self, data, job_id, expected, before_publish=None):
            def hook():
                if before_publish is not None:
                    before_publish()
                pause(self._marker)

            return self._store.publish_index_if_unchanged(data, job_id, expected, hook)

    @dataclasses.dataclass(frozen=True)
    class HookedPlan(WritePlan):
        marker: str | None = None

        def store(self):
            return PausingStore(super().store(), self.marker)

    class HookedWriter(MdsArrowWriter):
        def __init__(self, plan, before_commit):
            super().__init__(plan)
            self.before_commit = before_commit

        def commit(self, messages):
            pause(self.before_commit)
            return super().commit(messages)

    def writer(self, schema, overwrite):
        options = dict(self.options)
        points = dict(hooks)
        for point in ("beforeCommit", "beforePublish"):
            marker = options.pop(f"test.{point}".lower(), None)
            if marker:
                points[point] = marker
        plan = plan_write(options, schema, overwrite, dataset_path(self.options))
        fields = {f.name: getattr(plan, f.name) for f in dataclasses.fields(WritePlan)}
        return HookedWriter(HookedPlan(**fields, marker=points.get("beforePublish")), points.get("beforeCommit"))

    return type(f"Hooked_{name}", (MdsDataSource,), {"short_name": name, "parallelism": 2, "writer": writer})


# ---------------------------------------------------------------------------- sessions


def session(master: str = "local[2,2]", conf: dict[str, str] | None = None, fallback_hooks: dict | None = None):
    os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    from mds_testutil import _builder

    b = _builder(master, tempfile.mkdtemp(prefix="mds-rel-wh-"))
    b = b.config("spark.python.worker.reuse", "true")
    for k, v in (conf or {}).items():
        b = b.config(k, v)
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("OFF")
    if fallback_hooks is not None:
        spark.dataSource.register(hooked_fallback("mds_py", fallback_hooks))
    else:
        from spark_mds.python_source import register_python_source

        assert register_python_source(spark, "mds_py")
    return spark


def frame(spark, lo: int, hi: int, partitions: int = 2, width: int = 40):
    return spark.range(lo, hi, numPartitions=partitions).selectExpr(
        "id", f"concat('row ', cast(id as string), repeat('x', {width})) as text", "array(id, id * 2, id * 3) as tokens")


def read_ids(spark, fmt: str, path: str) -> list[int]:
    return sorted(r.id for r in spark.read.format(fmt).load(path).select("id").collect())


class Watcher:
    """Records the names of every shard file that appears in a directory while active (polling)."""

    def __init__(self, path: str) -> None:
        self.path, self.seen, self._stop = path, set(), False

    def _run(self) -> None:
        while not self._stop:
            try:
                self.seen.update(n for n in os.listdir(self.path) if n.startswith("shard."))
            except FileNotFoundError:
                pass
            time.sleep(0.005)

    def __enter__(self) -> set:
        import threading

        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self.seen

    def __exit__(self, *exc) -> None:
        self._stop = True
        self._thread.join()


def _error(fn) -> str | None:
    try:
        fn()
        return None
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"[:3000]


# ---------------------------------------------------------------------------- jobs


def job_task_failures(args: dict) -> None:
    """For each implementation: (1) a task whose first attempt fails after writing shards, then
    (2) a job whose task fails every attempt, in append and overwrite mode."""

    from rel_support import stored, tree

    spark = session("local[2,2]")
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "20")  # fallback tasks write shards early
    for fmt, path in (("mds", args["jvm"]), ("mds_py", args["py"])):
        frame(spark, 0, 600).write.format(fmt).mode("overwrite").option("size_limit", "1kb").save(path)
        initial_jobs = {n.split(".")[1] for n in tree(path) if n.startswith("shard.")}

        # Row 1550 of partition 1 fails the first time the JVM evaluates it (System.setProperty
        # returns the previous value, "null" once), so only attempt 0 fails, after a pause of 1 s
        # that lets the fallback's writer (another process) write the shards of the rows before.
        # The arguments depend on the row, so that the optimizer cannot fold the calls.
        key = f"mds.rel.{fmt}.{os.getpid()}.{time.time_ns()}"
        # Wide rows: the JVM sends the fallback's writer its input through a 64 KiB buffer.
        df = frame(spark, 1000, 1600, width=400).selectExpr(
            f"CASE WHEN id = 1550 AND spark_partition_id() = 1 "
            f"AND java_method('java.lang.Thread', 'sleep', CAST(1000 + 0 * id AS BIGINT)) = 'null' "
            f"AND java_method('java.lang.System', 'setProperty', concat('{key}', spark_partition_id()), 'done') = 'null' "
            f"THEN CAST(raise_error('injected failure of attempt 0') AS BIGINT) ELSE id END AS id", "text", "tokens")
        with Watcher(path) as seen:
            err = _error(lambda: df.write.format(fmt).mode("append").option("size_limit", "8kb").save(path))
        index = json.load(open(os.path.join(path, "index.json")))
        final_attempts = {s["raw_data"]["basename"].split(".")[3] for s in index["shards"]
                          if s["raw_data"]["basename"].split(".")[1] not in initial_jobs}
        result = {
            "fmt": fmt, "retry_error": err,
            "failed_attempt_files": sorted(n for n in seen if n.split(".")[1] not in initial_jobs
                                           and n.split(".")[3] not in final_attempts),
            "files": sorted(tree(path)), "referenced": sorted(stored(path)),
            "ids": read_ids(spark, fmt, path),
            "new_shards": [s["raw_data"]["basename"] for s in index["shards"]
                           if s["raw_data"]["basename"].split(".")[1] not in initial_jobs],
        }  # fmt: skip
        before = tree(path)

        bad = frame(spark, 2000, 2600).selectExpr(
            "CASE WHEN id >= 2450 AND spark_partition_id() = 1 "
            "THEN CAST(raise_error('injected failure of every attempt') AS BIGINT) ELSE id END AS id", "text", "tokens")
        for mode in ("append", "overwrite"):
            err = _error(lambda: bad.write.format(fmt).mode(mode).option("size_limit", "1kb").save(path))
            after = tree(path)
            result[mode] = {"error": err, "unchanged": after == before,
                            "diff": sorted(set(after) ^ set(before)) + sorted(k for k in before if after.get(k, before[k]) != before[k])}
        result["ids_after"] = read_ids(spark, fmt, path)
        emit(result)


def job_write(args: dict) -> None:
    """One write, with hooks; optionally waits at a barrier (a file per participant) first."""
    hooks = args.get("hooks", {})
    fmt = args["fmt"]
    conf = {}
    spark = session(args.get("master", "local[2]"), conf, fallback_hooks=hooks if fmt == "mds_py" and hooks else None)
    if fmt == "mds":
        for point, marker in hooks.items():
            spark.conf.set(f"spark.mds.test.{point}", marker)
    df = frame(spark, args["lo"], args["hi"], args.get("partitions", 2))
    df.count()  # warm up the session before the barrier
    barrier = args.get("barrier")
    if barrier:
        open(os.path.join(barrier, args["name"]), "w").close()
        while len(os.listdir(barrier)) < args["parties"]:
            time.sleep(0.01)
    emit({"started": time.time()})
    err = _error(lambda: df.write.format(fmt).mode(args.get("mode", "append")).option("size_limit", args.get("size_limit", "2kb"))
                 .save(args["path"]))
    emit({"done": time.time(), "error": err})


def job_speculation(args: dict) -> None:
    """Writes with speculative execution on: partition 0's first attempt is slow (it sleeps at
    its end, after writing shards), so a speculative copy runs on the other executor and wins."""
    from pyspark import TaskContext
    from pyspark.sql import functions as F

    conf = {
        "spark.speculation": "true", "spark.speculation.interval": "100ms", "spark.speculation.multiplier": "1.2",
        "spark.speculation.quantile": "0.5", "spark.speculation.minTaskRuntime": "300ms",
        "spark.executor.memory": "512m", "spark.driver.host": "127.0.0.1", "spark.task.maxFailures": "4",
        "spark.pyspark.python": sys.executable,
    }  # fmt: skip
    spark = session(args["master"], conf)
    marks = args["marks"]
    out = []
    for fmt, path in (("mds", args["jvm"]), ("mds_py", args["py"])):
        frame(spark, 0, 400, 4).write.format(fmt).mode("overwrite").option("size_limit", "1kb").save(path)

        @F.udf("long")
        def slow(x, fmt=fmt):
            ctx = TaskContext.get()
            name = f"{fmt}.{ctx.partitionId()}.{ctx.attemptNumber()}.{ctx.taskAttemptId()}"
            if not os.path.exists(os.path.join(marks, name)):
                open(os.path.join(marks, name), "w").close()
            if ctx.partitionId() == 0 and ctx.attemptNumber() == 0 and x >= 1090:
                time.sleep(0.3)  # 10 rows: 3 s, long after the other tasks
            return x

        df = frame(spark, 1000, 1400, 4).select(slow("id").alias("id"), "text", "tokens")
        err = _error(lambda: df.write.format(fmt).mode("append").option("size_limit", "1kb").save(path))
        time.sleep(3)  # let a killed attempt finish its cleanup before the files are compared
        index = json.load(open(os.path.join(path, "index.json")))
        out.append({"fmt": fmt, "error": err, "ids": read_ids(spark, fmt, path),
                    "attempts": sorted(n for n in os.listdir(marks) if n.startswith(fmt + ".")),
                    "shards": [s["raw_data"]["basename"] for s in index["shards"]]})  # fmt: skip
    emit({"results": out})


def job_rounds(args: dict) -> None:
    """A sequence of appends, each with its own format, path and hook markers: the test moves
    two such drivers forward in lockstep to make them race. One line per round."""
    spark = session("local[2]", fallback_hooks={})
    for r in args["rounds"]:
        df = frame(spark, r["lo"], r["hi"])
        writer = df.write.format(r["fmt"]).mode("append").option("size_limit", "2kb")
        for point in ("beforeCommit", "beforePublish"):
            marker = r.get("hooks", {}).get(point, "")
            if r["fmt"] == "mds":
                spark.conf.set(f"spark.mds.test.{point}", marker)
            elif marker:
                writer = writer.option(f"test.{point}", marker)
        start = time.time()
        err = _error(lambda: writer.save(r["path"]))
        emit({"round": r["name"], "error": err, "seconds": time.time() - start})


JOBS = {"task_failures": job_task_failures, "write": job_write, "speculation": job_speculation, "rounds": job_rounds}

if __name__ == "__main__":
    JOBS[sys.argv[1]](json.loads(sys.argv[2]))

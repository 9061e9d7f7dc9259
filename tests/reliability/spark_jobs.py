"""Spark drivers of the write-fault tests, each run as its own process (so that a test can kill it,
run two at once, or give it its own master): ``python spark_jobs.py JOB JSON_ARGS``. Results are
JSON lines on stdout.

Both implementations are exercised in one session: the JVM source is ``format("mds")`` and the
Python fallback is registered beside it as ``format("mds_py")`` (the same code that serves
``format("mds")`` when the jar is absent).

Fault injection, the same points in both implementations (``MdsTestHooks`` in MdsWriteJob.scala for
the JVM; for the fallback, a subclass of its writer defined here), set per write by the runtime conf
``spark.mds.test.<point>`` (JVM) or the write option ``test.<point>`` (fallback):

* ``beforeCommit`` / ``beforePublish`` (a file path): the driver creates that file on reaching the
  point (every task has committed / the optimistic check passed, ``index.json`` is about to be
  replaced) and waits while it exists.
* ``taskHooks`` (a directory): attempt ``a`` (its attempt number) of partition ``p`` creates
  ``start.p.a`` when it starts and ``end.p.a`` once it has ended (after removing its own files if
  it failed). Before writing its second shard file, if ``hold.p.a`` exists, it creates
  ``held.p.a`` and waits while ``hold.p.a`` exists; then, if ``fail.p.a`` exists, it fails.

Nothing here waits for time to pass: every step waits for a file that the other side creates or
removes (:func:`wait_file`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
for _p in (HERE, os.path.join(ROOT, "tests", "spark")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

#: The longest any step waits for the other side (the test's own timeout is the real bound).
PATIENCE = 600.0


def wait_file(path: str, present: bool = True, what: str = "") -> None:
    """Waits until ``path`` exists (or, with ``present=False``, no longer exists)."""
    deadline = time.monotonic() + PATIENCE
    while os.path.exists(path) != present:
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {PATIENCE:.0f} s for {what or path} to {'appear' if present else 'go away'}")
        time.sleep(0.02)


def pause(marker: str | None) -> None:
    """Creates ``marker`` and waits while it exists."""
    if not marker:
        return
    touch(marker)
    wait_file(marker, present=False)


def touch(path: str) -> None:
    with open(path, "a"):
        pass


def emit(obj) -> None:
    print(json.dumps(obj), flush=True)


# ---------------------------------------------------------------------------- fallback with hooks

POINTS = ("beforeCommit", "beforePublish", "taskHooks")


def hooked_fallback(name: str, hooks: dict[str, str]):
    """A Python fallback source registered as ``name`` with the hooks of the module docstring: those
    given here, or per write by the options ``test.<point>`` (removed before the real source sees
    the options)."""
    from spark_mds.fallback.writer import MdsArrowWriter, WritePlan, plan_write
    from spark_mds.python_source import MdsDataSource
    from spark_mds.fallback.options import dataset_path

    class HookedStore:
        """The store of the driver's commit (``beforePublish``) and of one task attempt (``taskHooks``)."""

        def __init__(self, store, marker, task_dir, tag):
            self._store, self._marker, self._task_dir, self._tag = store, marker, task_dir, tag
            self._shards = 0

        def __getattr__(self, attr):
            return getattr(self._store, attr)

        def write_bytes(self, name, data):
            if self._task_dir and name.startswith("shard."):
                self._shards += 1
                if self._shards == 2:
                    hold = os.path.join(self._task_dir, f"hold.{self._tag}")
                    if os.path.exists(hold):
                        touch(os.path.join(self._task_dir, f"held.{self._tag}"))
                        wait_file(hold, present=False)
                    if os.path.exists(os.path.join(self._task_dir, f"fail.{self._tag}")):
                        raise RuntimeError(f"injected failure of attempt {self._tag} before its second shard file")
            return self._store.write_bytes(name, data)

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
        task_dir: str | None = None

        def store(self):
            from pyspark import TaskContext

            ctx = TaskContext.get()
            tag = None if ctx is None else f"{ctx.partitionId()}.{ctx.attemptNumber()}"
            return HookedStore(super().store(), self.marker, self.task_dir if tag else None, tag)

    class HookedWriter(MdsArrowWriter):
        def __init__(self, plan, before_commit):
            super().__init__(plan)
            self.before_commit = before_commit

        def write(self, iterator):
            from pyspark import TaskContext

            ctx = TaskContext.get()
            tag = f"{ctx.partitionId()}.{ctx.attemptNumber()}"
            task_dir = self.plan.task_dir
            if task_dir:
                touch(os.path.join(task_dir, f"start.{tag}"))
            try:
                return super().write(iterator)
            finally:
                if task_dir:
                    touch(os.path.join(task_dir, f"end.{tag}"))

        def commit(self, messages):
            pause(self.before_commit)
            return super().commit(messages)

    def writer(self, schema, overwrite):
        options = dict(self.options)
        points = dict(hooks)
        for point in POINTS:
            marker = options.pop(f"test.{point}".lower(), None)
            if marker:
                points[point] = marker
        plan = plan_write(options, schema, overwrite, dataset_path(self.options))
        fields = {f.name: getattr(plan, f.name) for f in dataclasses.fields(WritePlan)}
        hooked = HookedPlan(**fields, marker=points.get("beforePublish"), task_dir=points.get("taskHooks"))
        return HookedWriter(hooked, points.get("beforeCommit"))

    return type(f"Hooked_{name}", (MdsDataSource,), {"short_name": name, "parallelism": 2, "writer": writer})


def with_hooks(spark, fmt: str, writer, hooks: dict[str, str]):
    """``writer`` (a DataFrameWriter) with the hooks set for its implementation; for the JVM they
    are the session's runtime conf (unset ones cleared)."""
    for point in POINTS:
        marker = hooks.get(point, "")
        if fmt == "mds":
            spark.conf.set(f"spark.mds.test.{point}", marker)
        elif marker:
            writer = writer.option(f"test.{point}", marker)
    return writer


# ---------------------------------------------------------------------------- sessions

#: Spark SIGKILLs the Python worker of a killed task that has not stopped after this long (2 s by
#: default). Tests that hold a fallback task after its job ended need it to live on: a slow worker.
PATIENT_PYTHON = {"spark.python.task.killTimeout": "600s"}


def session(master: str = "local[2,2]", conf: dict[str, str] | None = None, fallback_hooks: dict | None = None):
    os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    from mds_testutil import _builder

    b = _builder(master, tempfile.mkdtemp(prefix="mds-rel-wh-"))
    b = b.config("spark.python.worker.reuse", "true")
    for k, v in (conf or {}).items():
        b = b.config(k, v)
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("OFF")
    spark.dataSource.register(hooked_fallback("mds_py", fallback_hooks or {}))
    return spark


def frame(spark, lo: int, hi: int, partitions: int = 2, width: int = 40):
    return spark.range(lo, hi, numPartitions=partitions).selectExpr(
        "id", f"concat('row ', cast(id as string), repeat('x', {width})) as text", "array(id, id * 2, id * 3) as tokens")


def read_ids(spark, fmt: str, path: str) -> list[int]:
    return sorted(r.id for r in spark.read.format(fmt).load(path).select("id").collect())


def _error(fn) -> str | None:
    try:
        fn()
        return None
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"[:3000]


class Background:
    """Runs ``fn`` in a thread; :meth:`result` waits for it and returns its error (None: it succeeded).

    Spark looks up Python data sources (``mds_py``) in the active session of the calling JVM
    thread, which a new thread does not have: the thread makes ``spark`` active first."""

    def __init__(self, spark, fn) -> None:
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, args=(spark, fn), daemon=True)
        self._thread.start()

    def _run(self, spark, fn) -> None:
        spark._jvm.org.apache.spark.sql.SparkSession.setActiveSession(spark._jsparkSession)
        self.error = _error(fn)

    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self) -> str | None:
        self._thread.join(PATIENCE)
        if self._thread.is_alive():
            raise TimeoutError(f"the write did not end within {PATIENCE:.0f} s")
        return self.error


def hook_dir(root: str, name: str) -> str:
    d = os.path.join(root, name)
    os.makedirs(d)
    return d


# ---------------------------------------------------------------------------- jobs


def job_task_failures(args: dict) -> None:
    """For each implementation: (1) a task whose first attempt fails after writing a shard file,
    then (2) a job whose task fails every attempt while the other task is held in its write until
    the driver has aborted the job, in append and overwrite mode."""

    from rel_support import stored, tree

    spark = session("local[2,2]", PATIENT_PYTHON)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "20")  # fallback tasks write shards early
    hooks_root = args["hooks"]
    for fmt, path in (("mds", args["jvm"]), ("mds_py", args["py"])):
        frame(spark, 0, 600).write.format(fmt).mode("overwrite").option("size_limit", "1kb").save(path)
        initial_jobs = {n.split(".")[1] for n in tree(path) if n.startswith("shard.")}

        # (1) Partition 1's first attempt writes a shard file, is held, then fails.
        hooks = hook_dir(hooks_root, f"{fmt}.retry")
        for name in ("hold.1.0", "fail.1.0"):
            touch(os.path.join(hooks, name))
        writer = with_hooks(spark, fmt, frame(spark, 1000, 1600).write.format(fmt).mode("append")
                            .option("size_limit", "1kb"), {"taskHooks": hooks})  # fmt: skip
        job = Background(spark, lambda: writer.save(path))
        wait_file(os.path.join(hooks, "held.1.0"), what="partition 1's first attempt to be held")
        failed_attempt_files = sorted(n for n in os.listdir(path) if n.startswith("shard.") and n.split(".")[1] not in initial_jobs
                                      and n.split(".")[2] == "00001")  # fmt: skip
        os.remove(os.path.join(hooks, "hold.1.0"))
        err = job.result()
        wait_file(os.path.join(hooks, "end.1.0"), what="the failed attempt's end")
        index = json.load(open(os.path.join(path, "index.json")))
        result = {
            "fmt": fmt, "retry_error": err, "failed_attempt_files": failed_attempt_files,
            "files": sorted(tree(path)), "referenced": sorted(stored(path)),
            "ids": read_ids(spark, fmt, path),
            "new_shards": [s["raw_data"]["basename"] for s in index["shards"]
                           if s["raw_data"]["basename"].split(".")[1] not in initial_jobs],
        }  # fmt: skip
        before = tree(path)

        # (2) Partition 1 fails both attempts (local[2,2]); partition 0's first attempt, held in its
        # write until the job has failed and the driver has aborted it, then writes on.
        bad = frame(spark, 2000, 2600)
        for mode in ("append", "overwrite"):
            hooks = hook_dir(hooks_root, f"{fmt}.{mode}")
            for name in ("hold.0.0", "hold.1.0", "fail.1.0", "fail.1.1"):
                touch(os.path.join(hooks, name))
            writer = with_hooks(spark, fmt, bad.write.format(fmt).mode(mode).option("size_limit", "1kb"), {"taskHooks": hooks})
            job = Background(spark, lambda: writer.save(path))
            wait_file(os.path.join(hooks, "held.0.0"), what="partition 0 to be held")
            wait_file(os.path.join(hooks, "held.1.0"), what="partition 1 to be held")
            os.remove(os.path.join(hooks, "hold.1.0"))  # partition 1 fails, and fails again: the job fails
            err = job.result()  # the driver has aborted the job
            os.remove(os.path.join(hooks, "hold.0.0"))  # partition 0 writes on
            wait_file(os.path.join(hooks, "end.0.0"), what="partition 0's first attempt to end")
            after = tree(path)
            result[mode] = {"error": err, "unchanged": after == before,
                            "diff": sorted(set(after) ^ set(before)) + sorted(k for k in before if after.get(k, before[k]) != before[k])}
        with_hooks(spark, fmt, spark.range(0).write, {})
        result["ids_after"] = read_ids(spark, fmt, path)
        emit(result)


def job_write(args: dict) -> None:
    """One write, with hooks; optionally waits at a barrier (a file per participant) first."""
    hooks = args.get("hooks", {})
    fmt = args["fmt"]
    spark = session(args.get("master", "local[2]"))
    df = frame(spark, args["lo"], args["hi"], args.get("partitions", 2))
    df.count()  # warm up the session before the barrier
    barrier = args.get("barrier")
    if barrier:
        touch(os.path.join(barrier, args["name"]))
        deadline = time.monotonic() + PATIENCE
        while len(os.listdir(barrier)) < args["parties"] and time.monotonic() < deadline:
            time.sleep(0.01)
    emit({"started": time.time()})
    writer = df.write.format(fmt).mode(args.get("mode", "append")).option("size_limit", args.get("size_limit", "2kb"))
    err = _error(lambda: with_hooks(spark, fmt, writer, hooks).save(args["path"]))
    emit({"done": time.time(), "error": err})


def job_speculation(args: dict) -> None:
    """Writes with speculative execution on. Partition 0's first attempt is held in its write (after
    its first shard file) until the job has ended: Spark launches a speculative copy on the other
    executor, which wins. Then the first attempt writes on, as a slow duplicate would."""
    conf = {
        "spark.speculation": "true", "spark.speculation.interval": "100ms", "spark.speculation.multiplier": "1.2",
        "spark.speculation.quantile": "0.5", "spark.speculation.minTaskRuntime": "300ms",
        "spark.executor.memory": "512m", "spark.driver.host": "127.0.0.1", "spark.task.maxFailures": "4",
        "spark.pyspark.python": sys.executable, **PATIENT_PYTHON,
    }  # fmt: skip
    spark = session(args["master"], conf)
    out = []
    for fmt, path in (("mds", args["jvm"]), ("mds_py", args["py"])):
        frame(spark, 0, 400, 4).write.format(fmt).mode("overwrite").option("size_limit", "1kb").save(path)
        hooks = hook_dir(args["marks"], fmt)
        touch(os.path.join(hooks, "hold.0.0"))
        writer = with_hooks(spark, fmt, frame(spark, 1000, 1400, 4).write.format(fmt).mode("append")
                            .option("size_limit", "1kb"), {"taskHooks": hooks})  # fmt: skip
        job = Background(spark, lambda: writer.save(path))
        wait_file(os.path.join(hooks, "held.0.0"), what="partition 0's first attempt to be held")
        err = job.result()  # ends once the speculative copy of partition 0 has won
        os.remove(os.path.join(hooks, "hold.0.0"))
        wait_file(os.path.join(hooks, "end.0.0"), what="the first attempt of partition 0 to end")
        # Other partitions may have had a speculative copy too (a slow machine): every attempt that
        # started before the commit has ended, removing its files, before the dataset is examined.
        for started in sorted(n for n in os.listdir(hooks) if n.startswith("start.")):
            tag = started[len("start."):]
            wait_file(os.path.join(hooks, f"end.{tag}"), what=f"attempt {tag} to end")
        index = json.load(open(os.path.join(path, "index.json")))
        out.append({"fmt": fmt, "error": err, "ids": read_ids(spark, fmt, path),
                    "attempts": sorted(n[len("start."):] for n in os.listdir(hooks) if n.startswith("start.")),
                    "shards": [s["raw_data"]["basename"] for s in index["shards"]]})  # fmt: skip
    emit({"results": out})


def job_rounds(args: dict) -> None:
    """A sequence of appends, each with its own format, path and hook markers: the test moves
    two such drivers forward in lockstep to make them race. One line per round."""
    spark = session("local[2]")
    for r in args["rounds"]:
        writer = frame(spark, r["lo"], r["hi"]).write.format(r["fmt"]).mode("append").option("size_limit", "2kb")
        writer = with_hooks(spark, r["fmt"], writer, r.get("hooks", {}))
        start = time.time()
        err = _error(lambda: writer.save(r["path"]))
        emit({"round": r["name"], "error": err, "seconds": time.time() - start})


JOBS = {"task_failures": job_task_failures, "write": job_write, "speculation": job_speculation, "rounds": job_rounds}

if __name__ == "__main__":
    JOBS[sys.argv[1]](json.loads(sys.argv[2]))

"""Training-loop processes of the loader fault tests: ``python loader_jobs.py JSON_ARGS``.

The loop iterates a ``StreamingDataLoader`` over a ``StreamingDataset`` and appends each batch's
sample ids to ``log`` (one JSON line per batch, flushed and fsynced, as a training job's own
progress would be); every ``every`` batches it saves the loader's ``state_dict()`` to ``ckpt``
(atomically, like a checkpoint, with the number of batches it covers). With ``resume`` it first loads the state dict from ``ckpt``.
After ``signal_after`` batches it creates the ``ready`` file and waits while that file exists (a
latch, not a pace: the test kills the job or one of its workers, or deletes files, at a known
point of the epoch, then removes ``ready`` to let the job go on). Worker pids are written to
``pids``.
"""

from __future__ import annotations

import json
import os
import sys
import time


def _worker_init(pids: str):
    def init(worker_id: int) -> None:
        if pids:
            with open(pids, "a") as f:
                f.write(f"{os.getpid()}\n")

    return init


def _hold(ready: str) -> None:
    """Creates ``ready`` and waits while it exists (at most 10 minutes: the test removes it, or
    kills this process). The DataLoader workers go on meanwhile until their queues are full."""
    open(ready, "w").close()
    deadline = time.monotonic() + 600
    while os.path.exists(ready) and time.monotonic() < deadline:
        time.sleep(0.01)


def main(args: dict) -> None:
    from mds_loader import Stream, StreamingDataLoader, StreamingDataset

    stream = Stream(remote=args.get("remote"), local=args["local"])
    ds = StreamingDataset(streams=[stream], batch_size=args["batch_size"], shuffle=True, shuffle_seed=7,
                          num_canonical_nodes=1, cache_limit=args.get("cache_limit"))  # fmt: skip
    loader = StreamingDataLoader(ds, batch_size=args["batch_size"], num_workers=args["workers"],
                                 worker_init_fn=_worker_init(args.get("pids", "")))  # fmt: skip
    if args.get("resume"):
        with open(args["ckpt"]) as f:
            loader.load_state_dict(json.load(f)["state"])
    log = open(args["log"], "a")
    n = 0
    try:
        for batch in loader:
            ids = [int(i) for i in batch["id"]]
            log.write(json.dumps(ids) + "\n")
            log.flush()
            os.fsync(log.fileno())
            n += 1
            if args.get("every") and n % args["every"] == 0:
                tmp = args["ckpt"] + ".tmp"
                with open(tmp, "w") as f:
                    json.dump({"state": loader.state_dict(), "batches": n}, f)
                os.replace(tmp, args["ckpt"])
            if args.get("signal_after") and n == args["signal_after"]:
                _hold(args["ready"])
    except Exception as exc:  # noqa: BLE001 - reported for the test
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)[:2000]}), flush=True)
        sys.exit(3)
    print(json.dumps({"batches": n}), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))

"""An epoch's order is computed once per node and shared through a file (mds_loader.node_orders):
once per node whatever the interleaving, recovered after SIGKILL of its writer at any point, kept
apart between jobs, removed when no process of the job is left, and the same order after
resuming with another number of workers."""

from __future__ import annotations

import gc
import json
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

import mds_loader.dataset as dataset_module
from mds_loader import StreamingDataLoader, StreamingDataset
from mds_loader.node_orders import NodeOrders, job_name
from mds_loader.ordering import generate_work, rank_batches, resolve_shuffle_block_size
from support import copy_reference_dataset, run_python


@pytest.fixture(scope="module")
def tabular(tmp_path_factory) -> Path:
    return copy_reference_dataset("tabular_none", tmp_path_factory.mktemp("data"))


@pytest.fixture
def orders_root(tmp_path, monkeypatch) -> Path:
    """Order files of this test's jobs under tmp_path (DataLoader workers inherit it)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path / "mds-loader" / "orders"


CHILD = """
import json, os, sys, time
import numpy as np
from mds_loader import node_orders
root, job, mode, log = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]

def stop(where):
    print(where, flush=True)
    sys.stdin.readline()  # held here until the test kills this process

def compute():
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\\n")
    if mode == "computing":
        stop("computing")
    return np.arange(1000, dtype=np.int64).reshape(10, 100) * 3

if mode == "writing":
    node_orders._before_publish = lambda tmp: stop("writing")
order = node_orders.NodeOrders(job, root=root).get({"k": 1}, 4, compute)
print(json.dumps([order.shape, int(order.sum()), order.flags.writeable, type(order).__name__]), flush=True)
"""


def _child(root: Path, job: str, mode: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(root), job, mode, str(log)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def test_computed_once_whatever_the_interleaving(tmp_path):
    """Four processes of one job ask at once, or one after the other, while the job lives (this
    process holds it, as a rank's main process does): one computes, every one maps its file."""
    log = tmp_path / "computed"
    owner = NodeOrders("job-a", root=str(tmp_path / "orders"))
    children = [_child(tmp_path / "orders", "job-a", "plain", log) for _ in range(4)]
    outs = [json.loads(c.communicate(timeout=120)[0].splitlines()[-1]) for c in children]
    assert all(c.returncode == 0 for c in children)
    assert outs == [[[10, 100], 3 * 999 * 1000 // 2, False, "memmap"]] * 4
    assert len(log.read_text().split()) == 1
    owner.close()
    assert not (tmp_path / "orders" / "job-a").exists()  # the last one to leave removed it


@pytest.mark.parametrize("where", ["computing", "writing"])
def test_a_writer_killed_at_any_point_leaves_no_lock_and_no_order(tmp_path, where):
    """SIGKILL while computing (holding the lock) or after writing the temporary file: the next
    process computes the order again and publishes it; the half-written file is gone."""
    root, log = tmp_path / "orders", tmp_path / "computed"
    child = _child(root, "job-k", where, log)
    assert child.stdout.readline().strip() == where
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    job_dir = root / "job-k"
    leftovers = sorted(p.name for p in job_dir.iterdir())
    assert not [n for n in leftovers if n.endswith(".npy")]  # nothing published
    assert bool([n for n in leftovers if n.endswith(".tmp")]) == (where == "writing")
    orders = NodeOrders("job-k", root=str(root))
    order = orders.get({"k": 1}, 4, lambda: np.arange(1000, dtype=np.int64).reshape(10, 100) * 3)
    assert int(order.sum()) == 3 * 999 * 1000 // 2 and not order.flags.writeable
    assert not [p for p in job_dir.iterdir() if p.name.endswith(".tmp")]
    assert len(log.read_text().split()) == 1  # (the killed one)
    del order
    orders.close()
    assert not job_dir.exists()


def test_jobs_never_meet_and_dead_jobs_are_swept(tmp_path):
    root = tmp_path / "orders"
    env_a = {"TORCHELASTIC_RUN_ID": "none", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    env_b = dict(env_a, MASTER_PORT="29501")
    assert job_name("x", env_a) != job_name("x", env_b) and job_name("x", env_a) == job_name("y", env_a)
    assert job_name("x", {}) != job_name("y", {})
    a = NodeOrders(job_name("x", env_a), root=str(root))
    a.get({"seed": 1}, 0, lambda: np.zeros(3, np.int64))
    dead = root / "job-dead"  # what a job killed with SIGKILL leaves: nobody holds its lock
    dead.mkdir()
    (dead / ".alive").touch()
    (dead / "0000000000.x.npy").write_bytes(b"x")
    b = NodeOrders(job_name("x", env_b), root=str(root))
    assert not dead.exists() and Path(a.directory).exists()  # a is alive: its directory stays
    assert int(b.get({"seed": 2}, 0, lambda: np.ones(3, np.int64)).sum()) == 3
    assert int(a.get({"seed": 1}, 0, lambda: np.ones(3, np.int64)).sum()) == 0  # its own file
    a.close()
    assert not Path(a.directory).exists() and Path(b.directory).exists()
    b.close()


def test_old_epochs_are_removed(tmp_path):
    orders = NodeOrders("job-e", root=str(tmp_path))
    for epoch in range(4):
        orders.get({"k": 0}, epoch, lambda: np.full(2, epoch))
    assert sorted(p.name.split(".")[0] for p in Path(orders.directory).glob("*.npy")) == ["0000000002", "0000000003"]
    orders.close()


def _log_order_computations(monkeypatch, log: Path) -> None:
    """Appends ``<epoch>:<thread name>`` to `log` for every order the dataset computes (forked
    DataLoader workers inherit the patch)."""
    original = dataset_module.generate_work

    def counted(*args, **kwargs):
        with open(log, "a") as f:
            f.write(f"{kwargs['epoch']}:{threading.current_thread().name}\n")
        return original(*args, **kwargs)

    monkeypatch.setattr(dataset_module, "generate_work", counted)


def _computed_epochs(log: Path) -> list[str]:
    return [line.split(":")[0] for line in log.read_text().split()]


def _order_batches(ds: StreamingDataset, epoch: int, workers: int) -> list[list[int]]:
    """The batches of rank 0 that generate_work gives for `epoch` (the fixtures' settings)."""
    work = generate_work("random", ds._weighted, epoch=epoch, sample_in_epoch=0, world=(1, 1, max(workers, 1)),
                         batch_size=8, num_canonical_nodes=1, seed=3, shuffle=True, shuffle_algo="py1e",
                         shuffle_block_size=resolve_shuffle_block_size(None, 1))
    return [b.tolist() for b in rank_batches(work, 0, 0, 8)]


def test_dataloader_workers_share_one_computation(tabular, orders_root, tmp_path, monkeypatch):
    """Two DataLoader workers: one computes each epoch's order, the other maps it; the batches
    are those the order gives; the files go when the dataset does."""
    log = tmp_path / "computed"
    _log_order_computations(monkeypatch, log)
    ds = StreamingDataset(local=str(tabular), columns=["id"], batch_size=8, shuffle=True, shuffle_seed=3)
    loader = StreamingDataLoader(ds, batch_size=8, num_workers=2)
    epochs = [[b["id"].tolist() for b in loader] for _ in range(2)]
    assert _computed_epochs(log) == ["0", "1"]
    for epoch, batches in enumerate(epochs):
        assert batches == _order_batches(ds, epoch, 2)
    assert len(list(orders_root.glob("*/*.npy"))) == 2
    del loader, ds
    gc.collect()
    assert not list(orders_root.glob("*/*"))


@pytest.mark.parametrize("workers", [0, 2])
def test_the_next_epoch_is_prepared_in_the_background(tabular, orders_root, tmp_path, monkeypatch, workers):
    """The process that makes an epoch's order makes the next one's on a background thread (the
    main process, or a persistent worker); the next epoch maps it, computed once, and its batches
    are the order's."""
    log = tmp_path / "computed"
    _log_order_computations(monkeypatch, log)
    monkeypatch.setattr(dataset_module, "_PREPARE_AHEAD_SAMPLES", 0)
    ds = StreamingDataset(local=str(tabular), columns=["id"], batch_size=8, shuffle=True, shuffle_seed=3)
    loader = StreamingDataLoader(ds, batch_size=8, num_workers=workers, persistent_workers=workers > 0)
    first = [b["id"].tolist() for b in loader]
    if workers == 0:
        ds._preparing.join()
        assert log.read_text().split() == ["0:MainThread", "1:mds-loader-next-order"]
        assert len(list(orders_root.glob("*/0000000001.*.npy"))) == 1
    second = [b["id"].tolist() for b in loader]
    assert [e for e in _computed_epochs(log) if e in "01"] == ["0", "1"]  # (epoch 2's may be under way)
    assert first == _order_batches(ds, 0, workers)
    assert second == _order_batches(ds, 1, workers)


RESUME = """
import json, sys
from mds_loader import StreamingDataLoader, StreamingDataset
path, workers, state = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
ds = StreamingDataset(local=path, columns=["id"], batch_size=8, shuffle=True, shuffle_seed=3, num_canonical_nodes=2)
loader = StreamingDataLoader(ds, batch_size=8, num_workers=workers)
loader.load_state_dict(state)
print(json.dumps([b["id"].tolist() for b in loader]))
"""


@pytest.mark.parametrize("after", [0, 1, 3])
def test_resume_with_another_number_of_workers(tabular, orders_root, after):
    """Stopped with 2 workers, resumed with 0, 1 or 3: the rest of the epoch is every sample not
    seen yet, once, in the order generate_work gives the new world."""
    ds = StreamingDataset(local=str(tabular), columns=["id"], batch_size=8, shuffle=True, shuffle_seed=3,
                          num_canonical_nodes=2)
    loader = StreamingDataLoader(ds, batch_size=8, num_workers=2)
    it = iter(loader)
    head = [next(it)["id"].tolist() for _ in range(11)]
    state = loader.state_dict()
    del it
    rest = run_python(RESUME, str(tabular), str(after), json.dumps(state))
    seen = [x for b in head for x in b]
    assert sorted(seen + [x for b in rest for x in b]) == list(range(300))
    work = generate_work("random", ds._weighted, epoch=0, sample_in_epoch=state["sample_in_epoch"],
                         world=(1, 1, max(after, 1)), batch_size=8, num_canonical_nodes=2, seed=3, shuffle=True,
                         shuffle_algo="py1e", shuffle_block_size=resolve_shuffle_block_size(None, 2))
    assert rest == [b.tolist() for b in rank_batches(work, 0, 0, 8)]


def test_preparing_ahead_never_raises(tmp_path, caplog):
    """Preparing an order ahead is best effort: a failure (the process exiting under it, its
    thread pools shut down) is logged at debug level, and whoever needs the order makes it."""
    orders = NodeOrders("job-p", root=str(tmp_path / "orders"))

    def failing():
        raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    with caplog.at_level("DEBUG", logger="mds_loader.node_orders"):
        assert orders.prepare({"k": 1}, 2, failing) is False
    assert "not prepared ahead" in caplog.text
    assert orders.prepare({"k": 1}, 2, lambda: np.arange(6)) is True
    assert orders.prepare({"k": 1}, 2, lambda: np.arange(6)) is False  # there already
    np.testing.assert_array_equal(orders.get({"k": 1}, 2, failing), np.arange(6))
    orders.close()

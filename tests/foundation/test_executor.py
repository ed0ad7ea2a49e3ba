"""The executor: local spawn pool and a real Dask LocalCluster with 2 worker processes."""

import logging
import os

import pytest

from medae.config import ExecutorConfig
from medae.executor import MapError, map_items, worker_count
from tests.foundation import _workers as w


def test_inline_preserves_order():
    res = map_items(w.square, [3, 1, 2], ExecutorConfig(workers=1))
    assert res.values == [9, 1, 4] and res.ok


def test_local_pool_uses_other_processes_and_keeps_order():
    res = map_items(w.worker_pid, list(range(4)), ExecutorConfig(workers=2))
    assert os.getpid() not in res.values
    assert map_items(w.square, list(range(6)), ExecutorConfig(workers=2)).values == [
        0, 1, 4, 9, 16, 25]


def test_failure_names_the_item_and_others_still_run():
    with pytest.raises(MapError) as info:
        map_items(w.fail_on_three, [1, 3, 5], ExecutorConfig(workers=2),
                  names=["shard_0001", "shard_0003", "shard_0005"])
    msg = str(info.value)
    assert msg == "1 of 3 items failed: shard_0003: ValueError: item value 3 is not allowed"
    collected = map_items(w.fail_on_three, [1, 3, 5], ExecutorConfig(workers=1),
                          names=["a", "b", "c"], on_error="collect")
    assert collected.values == [2, None, 6]
    assert [f.name for f in collected.failures] == ["b"]
    assert "fail_on_three" in collected.failures[0].detail  # traceback kept for the log


def test_thread_pool_runs_in_this_process_in_parallel_and_keeps_order():
    import threading

    barrier = threading.Barrier(2, timeout=10)  # both items must be running at once

    def meet(x: int) -> tuple[int, int]:
        barrier.wait()
        return os.getpid(), x * x

    res = map_items(meet, [3, 1], ExecutorConfig(workers=2), threads=True)
    assert res.values == [(os.getpid(), 9), (os.getpid(), 1)]
    with pytest.raises(MapError, match=r"^1 of 3 items failed: b: ValueError: item value 3 is"):
        map_items(w.fail_on_three, [1, 3, 5], ExecutorConfig(workers=2), names=["a", "b", "c"],
                  threads=True)


def test_dead_worker_is_reported_not_hung():
    res = map_items(w.die, [0, 1], ExecutorConfig(workers=2), names=["r0", "r1"],
                    on_error="collect")
    assert [f.name for f in res.failures] == ["r1"]
    assert "worker process died" in res.failures[0].error


def test_progress_logged_for_long_maps(caplog):
    caplog.set_level(logging.INFO, logger="medae")
    map_items(w.square, list(range(20)), ExecutorConfig(workers=1), desc="shards")
    lines = [r.getMessage() for r in caplog.records if r.name == "medae.executor"]
    assert lines and lines[-1].startswith("shards: 20/20 done")


def test_worker_count_defaults_to_cores():
    assert worker_count(ExecutorConfig()) == len(os.sched_getaffinity(0))
    assert worker_count(ExecutorConfig(workers=3)) == 3


@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=logging.ERROR)
    yield cluster
    cluster.close()


def test_dask_cluster_runs_items_on_two_worker_processes(dask_cluster):
    cfg = ExecutorConfig(address=dask_cluster.scheduler_address)
    res = map_items(w.square, list(range(8)), cfg)
    assert res.values == [0, 1, 4, 9, 16, 25, 36, 49]
    pids = set(map_items(w.worker_pid, list(range(8)), cfg).values)
    assert os.getpid() not in pids
    assert len(dask_cluster.workers) == 2


def test_dask_failure_names_the_item(dask_cluster):
    cfg = ExecutorConfig(address=dask_cluster.scheduler_address)
    with pytest.raises(MapError, match=r"1 of 4 items failed: rec_3: ValueError: item value 3"):
        map_items(w.fail_on_three, [0, 1, 2, 3], cfg, names=[f"rec_{i}" for i in range(4)])


def test_unreachable_scheduler_is_a_clear_error():
    from medae.errors import MedaeError

    with pytest.raises(MedaeError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:1"):
        map_items(w.square, [1, 2], ExecutorConfig(address="tcp://127.0.0.1:1"))

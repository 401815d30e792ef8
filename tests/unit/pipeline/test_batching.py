"""MicroBatcher: shared batches, per-caller results and errors, waiting rules, shutdown."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pytest

from app.pipeline.batching import BatcherClosed, MicroBatcher
from tests.unit.pipeline.conftest import call_together


class Recorder:
    """A batch function that doubles numbers, remembers its batches, and can be slowed."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.batches: list[list[int]] = []

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        time.sleep(self.delay)
        if any(item < 0 for item in items):
            raise ValueError(f"negative item in {items}")
        return [2 * item for item in items]


def test_concurrent_callers_share_batches_and_get_their_own_items() -> None:
    run = Recorder(delay=0.05)
    sizes: list[int] = []
    batcher = MicroBatcher(run, max_size=4, max_wait_s=0.02, on_batch=sizes.append)
    results = call_together([partial(batcher, [i, 100 + i]) for i in range(8)])
    assert results == [[2 * i, 200 + 2 * i] for i in range(8)]
    assert all(len(batch) <= 4 for batch in run.batches)
    assert max(len(batch) for batch in run.batches) == 4
    assert batcher.stats.items == 16 and batcher.stats.batches == len(run.batches)
    assert sizes == [len(batch) for batch in run.batches]


def test_a_request_larger_than_the_batch_runs_alone_and_whole() -> None:
    run = Recorder()
    batcher = MicroBatcher(run, max_size=2)
    assert batcher([1, 2, 3]) == [2, 4, 6]
    assert run.batches == [[1, 2, 3]]
    assert batcher([]) == []


def test_a_lone_caller_waits_at_most_max_wait() -> None:
    batcher = MicroBatcher(Recorder(), max_size=8, max_wait_s=0.2)
    start = time.monotonic()
    assert batcher([1]) == [2]
    assert 0.18 <= time.monotonic() - start < 1.0


def test_no_waiting_once_every_possible_caller_is_queued() -> None:
    alone = MicroBatcher(Recorder(), max_size=8, max_wait_s=5.0, max_callers=1)
    start = time.monotonic()
    assert alone([1]) == [2]
    run = Recorder()
    pair = MicroBatcher(run, max_size=8, max_wait_s=5.0, max_callers=2)
    assert call_together([lambda: pair([1]), lambda: pair([2])]) == [[2], [4]]
    assert time.monotonic() - start < 2.0
    assert run.batches in ([[1, 2]], [[2, 1]])


def test_max_callers_may_be_a_live_count() -> None:
    running = [3]
    batcher = MicroBatcher(Recorder(), max_size=8, max_wait_s=5.0, max_callers=lambda: running[0])
    running[0] = 1  # the others finished: nobody else can come
    start = time.monotonic()
    assert batcher([1]) == [2]
    assert time.monotonic() - start < 2.0
    assert batcher.occupancy == 0


def test_only_requests_with_equal_keys_share_a_batch() -> None:
    run = Recorder(delay=0.05)
    batcher = MicroBatcher(run, max_size=8, max_wait_s=0.05)
    results = call_together([partial(batcher, [i], key=i % 2) for i in range(6)])
    assert results == [[2 * i] for i in range(6)]
    assert all(len({item % 2 for item in batch}) == 1 for batch in run.batches)


def test_an_error_reaches_only_the_caller_that_caused_it() -> None:
    run = Recorder(delay=0.05)
    batcher = MicroBatcher(run, max_size=8, max_wait_s=0.05, max_callers=4)
    results = call_together([partial(batcher, [i if i != 2 else -1]) for i in range(4)])
    assert results[0] == [0] and results[1] == [2] and results[3] == [6]
    assert isinstance(results[2], ValueError)
    assert len(run.batches[0]) > 1  # they did share a batch before it was split
    assert batcher([5]) == [10]  # the batcher still works afterwards


def test_close_fails_queued_callers_lets_the_running_batch_finish_and_refuses_new_ones() -> None:
    started = threading.Event()
    release = threading.Event()

    def slow(items: list[int]) -> list[int]:
        started.set()
        release.wait(5)
        return items

    batcher = MicroBatcher(slow, max_size=1)
    threads_before = threading.active_count()
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(batcher, [1])
        assert started.wait(5)
        queued = pool.submit(batcher, [2])
        time.sleep(0.05)
        batcher.close()
        with pytest.raises(BatcherClosed):
            queued.result(timeout=5)
        release.set()
        assert running.result(timeout=5) == [1]
    with pytest.raises(BatcherClosed):
        batcher([3])
    assert threading.active_count() == threads_before  # the batcher owns no threads


def test_close_releases_a_leader_waiting_for_company() -> None:
    batcher = MicroBatcher(Recorder(), max_size=8, max_wait_s=30.0)
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(batcher, [1])
        time.sleep(0.1)
        start = time.monotonic()
        batcher.close()
        with pytest.raises(BatcherClosed):
            waiting.result(timeout=5)
    assert time.monotonic() - start < 1.0

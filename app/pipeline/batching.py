"""MicroBatcher: dynamic micro-batching, so concurrent callers share one forward pass."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class BatcherClosed(RuntimeError):
    """The batcher was closed before this call's items ran."""


@dataclass(eq=False)
class _Request(Generic[In, Out]):
    items: list[In]
    key: Hashable
    arrived: float
    # Wakes this caller alone: when its outputs are in, or when it is to lead a batch.
    ready: threading.Condition
    outputs: list[Out] | None = None
    error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.outputs is not None or self.error is not None


@dataclass
class BatchStats:
    batches: int = 0
    items: int = 0


class MicroBatcher(Generic[In, Out]):
    """Runs `run` once over the items of several concurrent callers.

    Leader/follower, with no thread of its own: a caller that finds the model idle becomes
    the leader. It waits until `max_size` items of its key are queued, or `max_callers`
    requests are (nobody else can come; it may be a function giving a live count), or it
    has waited `max_wait_s`; then it runs them in one call, hands each caller its slice,
    passes the lead to the oldest caller still queued, and returns. Callers that queue
    while a batch runs form the next one, so batches grow with the load. A request is never
    split; one larger than `max_size` runs alone. When a batch fails it is rerun request by
    request, so an error reaches only the caller that caused it.

    Each caller sleeps on a condition of its own (all share one lock), and is woken only
    when its result is in or it is to lead: under load, waking every waiting thread at
    each step cost more CPU than the batching saved.
    """

    def __init__(
        self,
        run: Callable[[list[In]], Sequence[Out]],
        max_size: int,
        max_wait_s: float = 0.0,
        max_callers: int | Callable[[], int] | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {max_size}")
        self._run = run
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self.max_callers = max_callers
        self.stats = BatchStats()
        self._on_batch = on_batch  # told the item count of every batch run
        self._lock = threading.Lock()
        self._queue: list[_Request[In, Out]] = []
        # The caller gathering or running the current batch; None while the model is idle.
        self._leader: _Request[In, Out] | None = None
        self._running = 0  # requests in the batch being run
        self._closed = False

    def __call__(self, items: Sequence[In], key: Hashable = None) -> list[Out]:
        """Outputs for `items`, in order; only items with an equal `key` share a batch."""
        if not items:
            return []
        request: _Request[In, Out] = _Request(
            list(items), key, time.monotonic(), threading.Condition(self._lock)
        )
        with self._lock:
            if self._closed:
                raise BatcherClosed("the batcher is closed")
            self._queue.append(request)
            if self._leader is None:
                self._leader = request
            else:
                self._leader.ready.notify()  # a gathering leader checks whether it is full
            while not request.done and self._leader is not request:
                request.ready.wait()
        if not request.done:
            self._lead(request)
        if request.error is not None:
            raise request.error
        assert request.outputs is not None
        return request.outputs

    def close(self) -> None:
        """Refuse new calls and fail queued ones; a batch already running completes."""
        with self._lock:
            self._closed = True
            for request in self._queue:
                request.error = BatcherClosed("the batcher closed before this call ran")
                request.ready.notify()
            self._queue.clear()

    def _lead(self, leader: _Request[In, Out]) -> None:
        """Gather a batch headed by `leader` (the oldest queued request), run it, and pass
        the lead on."""
        with self._lock:
            deadline = leader.arrived + self.max_wait_s
            while (
                not self._closed and not self._full() and (left := deadline - time.monotonic()) > 0
            ):
                leader.ready.wait(left)
            if self._closed:  # close() failed every queued request, this one included
                self._leader = None
                return
            batch = self._take()
            self._running = len(batch)
        items = sum(len(r.items) for r in batch)
        results: list[list[Out] | BaseException] = []
        try:
            results = _run_all(self._run, batch)
        except BaseException as error:  # e.g. SystemExit: never strand the followers
            results = [error] * len(batch)
            raise
        finally:
            with self._lock:
                for request, result in zip(batch, results, strict=True):
                    if isinstance(result, BaseException):
                        request.error = result
                    else:
                        request.outputs = result
                    request.ready.notify()
                self._running = 0
                self.stats.batches += 1
                self.stats.items += items
                self._leader = self._queue[0] if self._queue else None
                if self._leader is not None:
                    self._leader.ready.notify()
        if self._on_batch is not None:
            self._on_batch(items)

    @property
    def occupancy(self) -> int:
        """Requests queued or in the running batch (read without the lock: a snapshot)."""
        return len(self._queue) + self._running

    def _full(self) -> bool:
        head = self._queue[0].key
        queued = sum(len(r.items) for r in self._queue if r.key == head)
        callers = self.max_callers() if callable(self.max_callers) else self.max_callers
        everyone = callers is not None and len(self._queue) >= callers
        return queued >= self.max_size or everyone

    def _take(self) -> list[_Request[In, Out]]:
        head = self._queue[0]
        batch, size = [head], len(head.items)
        for request in self._queue[1:]:
            if request.key == head.key and size + len(request.items) <= self.max_size:
                batch.append(request)
                size += len(request.items)
        self._queue = [r for r in self._queue if r not in batch]
        return batch


def _run_all(
    run: Callable[[list[In]], Sequence[Out]], batch: list[_Request[In, Out]]
) -> list[list[Out] | BaseException]:
    items = [item for request in batch for item in request.items]
    try:
        outputs = list(run(items))
        if len(outputs) != len(items):
            raise RuntimeError(f"batch function returned {len(outputs)} outputs for {len(items)}")
    except Exception as error:
        if len(batch) == 1:
            return [error]
        # Rerun alone, so only the request that caused the failure sees it.
        return [_run_all(run, [request])[0] for request in batch]
    results: list[list[Out] | BaseException] = []
    start = 0
    for request in batch:
        results.append(outputs[start : start + len(request.items)])
        start += len(request.items)
    return results

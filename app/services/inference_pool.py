"""InferencePool: the bounded thread pool requests run their blocking inference on."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import TypeVar

T = TypeVar("T")


class InferencePool:
    """Runs each request's detection and embedding on one of `workers` threads, and counts
    the calls running: a micro-batch stops waiting for company once every running call is
    in it (app/pipeline/batched_pipeline.py), so a lone request never waits at all."""

    def __init__(self, workers: int) -> None:
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="inference")
        self._lock = threading.Lock()
        self._running = 0

    def running(self) -> int:
        """Calls running on the pool's threads now."""
        return self._running

    def submit(self, fn: Callable[..., T], *args: object) -> Future[T]:
        """`fn(*args)` on a pool thread, counted while it runs."""
        return self._executor.submit(self._counted, partial(fn, *args))

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)` on a pool thread, awaited off the event loop."""
        return await asyncio.wrap_future(self.submit(fn, *args))

    def _counted(self, call: Callable[[], T]) -> T:
        with self._lock:
            self._running += 1
        try:
            return call()
        finally:
            with self._lock:
                self._running -= 1

    def shutdown(self) -> None:
        """Finish running calls, drop queued ones."""
        self._executor.shutdown(wait=True, cancel_futures=True)

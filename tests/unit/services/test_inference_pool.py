"""InferencePool: runs calls off the event loop and counts those running."""

from __future__ import annotations

import asyncio
import threading

import pytest

from app.services.inference_pool import InferencePool


def test_running_counts_calls_in_progress() -> None:
    pool = InferencePool(workers=4)
    inside = threading.Barrier(4)  # the three calls and the test
    release = threading.Event()
    seen: list[int] = []

    def work(n: int) -> int:
        inside.wait(timeout=10)
        release.wait(timeout=10)
        seen.append(pool.running())
        return n * 2

    async def main() -> list[int]:
        calls = asyncio.gather(*(pool.run(work, n) for n in range(3)))
        await asyncio.to_thread(inside.wait, 10)
        assert pool.running() == 3
        release.set()
        return list(await calls)

    try:
        assert asyncio.run(main()) == [0, 2, 4]
        assert pool.running() == 0
        assert all(1 <= n <= 3 for n in seen)
    finally:
        pool.shutdown()


def test_a_failing_call_is_no_longer_counted() -> None:
    pool = InferencePool(workers=1)

    def fail() -> None:
        raise ValueError("bad image")

    try:
        with pytest.raises(ValueError, match="bad image"):
            asyncio.run(pool.run(fail))
        assert pool.running() == 0
    finally:
        pool.shutdown()

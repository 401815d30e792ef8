"""PixelBudget: requests wait, in arrival order, until the pixels they decode fit."""

from __future__ import annotations

import asyncio
import io
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from app.services.pixel_budget import PixelBudget, heap_trimmer, pixels_held


async def _enter(budget: PixelBudget, pixels: int, log: list[str], name: str) -> asyncio.Event:
    """Hold `pixels` in a task of its own until the returned event is set."""
    done = asyncio.Event()

    async def holder() -> None:
        async with budget.hold(pixels):
            log.append(name)
            await done.wait()

    asyncio.get_running_loop().create_task(holder())
    await asyncio.sleep(0)  # let it reach the budget
    return done


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_request_waits_until_the_pixels_before_it_are_released() -> None:
    async def scenario() -> None:
        budget = PixelBudget(100)
        log: list[str] = []
        first = await _enter(budget, 60, log, "first")
        second = await _enter(budget, 30, log, "second")
        third = await _enter(budget, 30, log, "third")  # 60 + 30 + 30 > 100
        await _settle()
        assert log == ["first", "second"] and budget.in_use == 90
        first.set()
        await _settle()
        assert log == ["first", "second", "third"] and budget.in_use == 60
        second.set(), third.set()
        await _settle()
        assert (budget.in_use, budget.holders) == (0, 0)

    asyncio.run(scenario())


def test_the_pixels_held_and_the_waits_are_reported() -> None:
    held: list[int] = []
    waits: list[None] = []

    async def scenario() -> None:
        budget = PixelBudget(100, on_change=held.append, on_wait=lambda: waits.append(None))
        log: list[str] = []
        first = await _enter(budget, 60, log, "first")
        second = await _enter(budget, 50, log, "second")  # 110 > 100: waits
        await _settle()
        assert (held, len(waits)) == ([60], 1)
        first.set()
        await _settle()
        second.set()
        await _settle()
        assert held == [60, 0, 50, 0] and len(waits) == 1

    asyncio.run(scenario())


def test_requests_are_admitted_in_arrival_order() -> None:
    # A stream of small requests must not starve a large one waiting ahead of them.
    async def scenario() -> None:
        budget = PixelBudget(100)
        log: list[str] = []
        running = await _enter(budget, 50, log, "running")
        large = await _enter(budget, 80, log, "large")
        small = await _enter(budget, 10, log, "small")  # would fit, but arrived later
        await _settle()
        assert log == ["running"]
        running.set()
        await _settle()
        assert log == ["running", "large", "small"]
        large.set(), small.set()

    asyncio.run(scenario())


def test_one_request_alone_is_admitted_whatever_its_size() -> None:
    async def scenario() -> None:
        budget = PixelBudget(100)
        async with budget.hold(1_000):
            assert budget.in_use == 1_000

    asyncio.run(scenario())


def test_a_cancelled_waiter_gives_way_and_holds_nothing() -> None:
    # A client that disconnects while its request waits must not leak budget.
    async def scenario() -> None:
        budget = PixelBudget(100)
        log: list[str] = []
        running = await _enter(budget, 90, log, "running")

        async def waiter() -> None:
            async with budget.hold(50):
                log.append("never")

        task = asyncio.get_running_loop().create_task(waiter())
        small = await _enter(budget, 10, log, "small")  # queued behind the waiter
        await _settle()
        task.cancel()
        await _settle()
        assert task.cancelled() and log == ["running", "small"]
        running.set(), small.set()
        await _settle()
        assert (budget.in_use, budget.holders) == (0, 0)

    asyncio.run(scenario())


def test_pixels_stay_held_until_the_thread_lets_go_of_them() -> None:
    # A request cancelled while its inference runs: the thread still holds the image.
    gate = threading.Event()

    async def scenario() -> None:
        budget = PixelBudget(100)
        with ThreadPoolExecutor(1) as pool:
            await budget.acquire(60)
            work = pool.submit(gate.wait, 5)
            budget.release_when_done(work, 60)
            waiting = asyncio.ensure_future(asyncio.wrap_future(work))
            await _settle()
            waiting.cancel()
            await _settle()
            assert waiting.cancelled() and budget.in_use == 60
            gate.set()
            for _ in range(100):
                if budget.in_use == 0:
                    break
                await asyncio.sleep(0.01)
            assert (budget.in_use, budget.holders) == (0, 0)

    asyncio.run(scenario())


def test_memory_is_trimmed_once_idle_after_large_images() -> None:
    trimmed = threading.Event()

    async def scenario() -> None:
        budget = PixelBudget(100, trim_after=50, trim=trimmed.set)
        async with budget.hold(30), budget.hold(30):
            pass
        await asyncio.sleep(0.2)  # the trim runs on a worker thread
        assert trimmed.is_set()
        trimmed.clear()
        async with budget.hold(10):  # too little released since to trim again
            pass
        await asyncio.sleep(0.2)
        assert not trimmed.is_set()

    asyncio.run(scenario())


def test_the_heap_trimmer_runs_here() -> None:
    trim = heap_trimmer()
    if trim is None:
        pytest.skip("the C library has no malloc_trim (not glibc)")
    assert trim() in (0, 1)  # 1 when memory was returned to the system


def test_pixels_held_by_requests_that_keep_or_let_go_of_their_images() -> None:
    def png(width: int, height: int) -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", (width, height)).save(buffer, format="PNG")
        return buffer.getvalue()

    images = [png(40, 30), png(100, 10), b"not an image"]
    # verify with two images keeps both decoded; enrolment keeps only each face crop.
    assert pixels_held(images, 10_000, one_at_a_time=False) == 1_200 + 1_000
    assert pixels_held(images, 10_000, one_at_a_time=True) == 1_200
    # Over the limit it is refused from its header, before decoding: it counts as the limit.
    assert pixels_held([png(200, 100)], 10_000, one_at_a_time=False) == 10_000
    assert pixels_held([], 10_000, one_at_a_time=True) == 0


def test_a_budget_needs_room_for_a_pixel() -> None:
    with pytest.raises(ValueError):
        PixelBudget(0)

"""PixelBudget: bounds the image pixels that requests hold in memory at once."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future
from contextlib import asynccontextmanager
from typing import Any

from app.pipeline.image_io import header_pixels

log = logging.getLogger(__name__)


class PixelBudget:
    """Admits requests in arrival order while the pixels they decode fit in `limit`.

    Each running request holds its images decoded, and briefly two or three copies of each
    while decoding: eight concurrent 36-megapixel uploads peaked at 2.7 GB. A request whose
    images do not fit waits, on the event loop and holding no inference thread, until
    earlier ones finish. One request alone is always admitted, whatever its size.

    Freed image memory stays with the C allocator (1.1 GB after that burst, against 0.2 GB
    before it). Once every request has finished and at least `trim_after` pixels were
    released, `trim` runs on a worker thread to hand it back to the operating system.
    """

    def __init__(
        self,
        limit: int,
        trim_after: int = 16_000_000,
        trim: Callable[[], object] | None = None,
        on_change: Callable[[int], object] | None = None,
        on_wait: Callable[[], object] | None = None,
    ) -> None:
        """`on_change` is told the pixels held after each change, `on_wait` of each request
        that has to wait (the service's metrics)."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self.limit = limit
        self.trim_after = trim_after
        self._trim = trim
        self._on_change = on_change
        self._on_wait = on_wait
        self.in_use = 0
        self.holders = 0
        self._released = 0  # since the last trim
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    @asynccontextmanager
    async def hold(self, pixels: int) -> AsyncIterator[None]:
        """Hold `pixels` of the budget for the body's duration, waiting first if needed."""
        await self.acquire(pixels)
        try:
            yield
        finally:
            self.release(pixels)

    async def acquire(self, pixels: int) -> None:
        """Wait until `pixels` fit (or nothing else is held), and take them."""
        if not self._waiting and self._fits(pixels):
            self._take(pixels)
            return
        if self._on_wait is not None:
            self._on_wait()
        ticket: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((pixels, ticket))
        try:
            await ticket
        except asyncio.CancelledError:
            if ticket.done() and not ticket.cancelled():  # admitted just as it was cancelled
                self.release(pixels)
            else:
                with contextlib.suppress(ValueError):  # _admit may have dropped it already
                    self._waiting.remove((pixels, ticket))
                self._admit()  # it may have blocked smaller requests behind it
            raise

    def _fits(self, pixels: int) -> bool:
        return self.holders == 0 or self.in_use + pixels <= self.limit

    def _take(self, pixels: int) -> None:
        self.in_use += pixels
        self.holders += 1
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.in_use)

    def release_when_done(self, work: Future[Any], pixels: int) -> None:
        """Release `pixels` once `work`, running on another thread, has finished: not when
        its awaiting coroutine is cancelled, since the thread holds the images until then."""
        loop = asyncio.get_running_loop()

        def done(_: Future[Any]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to admit
                loop.call_soon_threadsafe(self.release, pixels)

        work.add_done_callback(done)

    def release(self, pixels: int) -> None:
        """Give `pixels` back (on the event loop's thread), admitting whoever now fits."""
        self.in_use -= pixels
        self.holders -= 1
        self._released += pixels
        self._changed()
        self._admit()
        if self.holders == 0 and self._released >= self.trim_after and self._trim is not None:
            self._released = 0
            with contextlib.suppress(RuntimeError):  # the executor has shut down
                asyncio.get_running_loop().run_in_executor(None, _logged(self._trim))

    def _admit(self) -> None:
        # Strictly in arrival order: small requests never starve a large one.
        while self._waiting:
            pixels, ticket = self._waiting[0]
            if not ticket.cancelled() and not self._fits(pixels):
                return
            self._waiting.popleft()
            if not ticket.cancelled():
                self._take(pixels)
                ticket.set_result(None)


def _logged(trim: Callable[[], object]) -> Callable[[], None]:
    """`trim`, its failure logged rather than left in a future nobody reads."""

    def run() -> None:
        try:
            trim()
        except Exception:
            log.exception("returning freed memory to the system failed")

    return run


def pixels_held(images: Sequence[bytes], max_pixels: int, one_at_a_time: bool) -> int:
    """The pixels decoding `images` holds at its peak, per their headers: all of them, or
    the largest where each is let go before the next is decoded. An image over `max_pixels`
    is refused before it is decoded, so it counts as `max_pixels`."""
    each = [min(header_pixels(data), max_pixels) for data in images]
    return max(each, default=0) if one_at_a_time else sum(each)


def heap_trimmer() -> Callable[[], object] | None:
    """glibc's malloc_trim(0), which returns freed heap memory to the operating system;
    None where the C library has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        log.info("no malloc_trim in the C library; freed image memory stays with the process")
        return None
    return lambda: trim(0)

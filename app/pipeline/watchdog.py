"""Watchdog: one thread that calls back when a watched call outlives its timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess


class Watchdog:
    """Calls `on_hung(process)` when a call watched on `process` has run `timeout_s`.

    One thread, looking every quarter of the timeout, so a hung child is killed within 1.25
    timeouts. A threading.Timer per call cost 0.9 ms of thread start-up each, on every
    detection batch.
    """

    def __init__(self, timeout_s: float, on_hung: Callable[[BaseProcess], None]) -> None:
        self.timeout_s = timeout_s
        self._on_hung = on_hung
        self._watched: tuple[float, BaseProcess] | None = None  # (deadline, process)
        self._lock = threading.Lock()  # a new watch() is never lost to an expiring one
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, process: BaseProcess) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, name="face-detection-watchdog", daemon=True
            )
            self._thread.start()
        with self._lock:
            self._watched = (time.monotonic() + self.timeout_s, process)

    def clear(self) -> None:
        with self._lock:
            self._watched = None

    def stop(self) -> None:
        self._stopped.set()

    def _loop(self) -> None:
        while not self._stopped.wait(self.timeout_s / 4):
            with self._lock:
                watched = self._watched
                expired = watched is not None and time.monotonic() >= watched[0]
                if expired:
                    self._watched = None
            if expired and watched is not None:
                self._on_hung(watched[1])

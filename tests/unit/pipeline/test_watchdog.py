"""Watchdog: a call that outlives its timeout is reported once; a finished one never."""

from __future__ import annotations

import multiprocessing
import time
from multiprocessing.process import BaseProcess

from app.pipeline.watchdog import Watchdog


def test_a_call_past_its_deadline_is_reported_once_and_a_cleared_one_never() -> None:
    hung: list[BaseProcess] = []
    watchdog = Watchdog(0.2, hung.append)
    process = multiprocessing.current_process()
    try:
        watchdog.watch(process)
        watchdog.clear()  # answered in time
        time.sleep(0.5)
        assert hung == []
        watchdog.watch(process)
        deadline = time.monotonic() + 2.0
        while not hung and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # and not again
        assert hung == [process]
    finally:
        watchdog.stop()

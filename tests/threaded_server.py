"""A real uvicorn server on a thread of the test process, sharing its loaded models."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn


@contextmanager
def running(config: uvicorn.Config, timeout_s: float = 60.0) -> Iterator[None]:
    """`config`'s server, listening, until the block ends; then it is stopped."""
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server never started"
            time.sleep(0.02)
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=30)

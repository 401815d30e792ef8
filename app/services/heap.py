"""Keeps what start-up allocated out of the garbage collector's full collections."""

from __future__ import annotations

import gc


def settle_heap() -> None:
    """Exempt what start-up allocated (libraries, models, the index) from garbage collection.

    A full collection walks every tracked object. After loading torch and the models that
    took 100-270 ms, stalling every thread, and showed as the tail of p99 latency; frozen
    objects are skipped. Collect first, so that no garbage is frozen.
    """
    gc.collect()
    gc.freeze()


def resettle_heap() -> None:
    """After a model swap: let the collector reach the old runtime, then freeze again."""
    if gc.get_freeze_count():  # only where settle_heap ran: the service's own process
        gc.unfreeze()
        settle_heap()

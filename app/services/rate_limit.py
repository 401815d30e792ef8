"""RateLimiter: a token bucket per API key (or client address) for the keyed endpoints."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Hashable

# Buckets kept before idle ones are dropped. Keys are few; without keys, addresses are
# not, and a flood of new ones must not grow the table without bound.
MAX_TRACKED = 10_000


class RateLimiter:
    """`rate` requests a second per identity, in bursts of up to `burst`."""

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_tracked: int = MAX_TRACKED,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_tracked = max_tracked
        self._buckets: dict[Hashable, tuple[float, float]] = {}  # tokens, when
        self._lock = threading.Lock()

    def take(self, identity: Hashable) -> float:
        """0.0 when a request may run now (it takes a token), else the seconds until one may."""
        with self._lock:
            now = self._clock()
            tokens = self._tokens(identity, now)
            if tokens >= 1.0:
                self._buckets[identity] = (tokens - 1.0, now)
                if len(self._buckets) > self._max_tracked:
                    self._prune(now)
                return 0.0
            self._buckets[identity] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def wait(self, identity: Hashable) -> float:
        """What `take` would answer, without taking a token: 0.0 when one is left."""
        with self._lock:
            tokens = self._tokens(identity, self._clock())
            return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def _tokens(self, identity: Hashable, now: float) -> float:
        """The tokens `identity` holds at `now`; the caller holds the lock."""
        tokens, when = self._buckets.get(identity, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - when) * self.rate)

    def _prune(self, now: float) -> None:
        """Drops buckets that have refilled (forgetting them changes nothing), then, if a
        flood of identities leaves over 3/4 of the table, all but the newest half: each
        prune then frees at least a quarter, so a steady flood cannot make every request
        scan the whole table."""
        full = self.burst / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full}
        if len(self._buckets) > self._max_tracked * 3 // 4:
            by_age = sorted(self._buckets.items(), key=lambda item: item[1][1])
            self._buckets = dict(by_age[len(by_age) - self._max_tracked // 2 :])


def limiter_for(rate: float, burst: int) -> RateLimiter | None:
    """The limiter the settings ask for; None when rate limiting is off (rate 0). A burst
    of 0 means one second's worth of requests, at least 1."""
    if rate <= 0:
        return None
    return RateLimiter(rate, burst or max(1, math.ceil(rate)))

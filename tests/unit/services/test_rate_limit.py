"""The token bucket behind FACE_RATE_LIMIT (app/services/rate_limit.py)."""

from __future__ import annotations

import pytest

from app.services.rate_limit import RateLimiter, limiter_for


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(0.5)  # one token every 0.5 s
    clock.now += 0.25
    assert limiter.take("a") == pytest.approx(0.25)  # a refused request takes nothing
    clock.now += 0.25
    assert limiter.take("a") == 0.0
    assert limiter.take("a") == pytest.approx(0.5)
    clock.now += 60  # refills to the burst, no further
    assert [limiter.take("a") for _ in range(4)][3] == pytest.approx(0.5)


def test_each_identity_has_its_own_bucket() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, clock=Clock())
    assert limiter.take(b"key-1") == 0.0
    assert limiter.take(b"key-1") > 0
    assert limiter.take(b"key-2") == 0.0


def test_the_table_stays_bounded_under_a_flood_of_identities() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=5, clock=clock, max_tracked=100)
    for n in range(1000):
        clock.now += 0.001
        limiter.take(f"10.0.{n // 256}.{n % 256}")
        assert len(limiter._buckets) <= 100
    # A known identity that spent its burst is still limited after the pruning.
    for _ in range(5):
        limiter.take("busy")
    assert limiter.take("busy") > 0


def test_settings() -> None:
    assert limiter_for(0, 0) is None
    limiter = limiter_for(2.5, 0)
    assert limiter is not None and limiter.burst == 3  # one second's worth, rounded up
    limiter = limiter_for(0.2, 0)
    assert limiter is not None and limiter.burst == 1
    assert limiter_for(5, 20).burst == 20  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        RateLimiter(rate=0, burst=1)


def test_a_steady_flood_does_not_prune_on_every_request() -> None:
    """Idle buckets outlive burst/rate here (100 s), so a flood of new addresses at the
    table's size once made each request scan the whole table."""
    clock = Clock()
    prunes = 0

    class Counting(RateLimiter):
        def _prune(self, now: float) -> None:
            nonlocal prunes
            prunes += 1
            super()._prune(now)

    limiter = Counting(rate=0.01, burst=1, clock=clock, max_tracked=100)
    for n in range(2000):
        clock.now += 1.0  # about as many new addresses within burst/rate as the table holds
        limiter.take(f"address-{n}")
    assert prunes <= 2000 // 25 + 1  # at least a quarter of the table freed each time

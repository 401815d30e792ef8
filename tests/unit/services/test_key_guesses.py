"""Failed key attempts per address, behind FACE_AUTH_FAILURE_LIMIT (app/services/key_guesses.py)."""

from __future__ import annotations

import pytest

from app.config import Settings
from app.security import key_digest
from app.services.key_guesses import KeyGuessThrottle, guesser, throttle_for
from app.services.rate_limit import RateLimiter
from tests.unit.services.test_rate_limit import Clock

GOOD = key_digest("a-valid-key-0123456789")
OTHER_GOOD = key_digest("another-valid-key-0123456789")


def test_failures_spend_the_address_bucket_and_valid_keys_spend_nothing() -> None:
    clock = Clock()
    throttle = KeyGuessThrottle(RateLimiter(rate=0.5, burst=2, clock=clock))
    for _ in range(5):
        assert throttle.admits("10.0.0.1", GOOD) == 0.0  # spends nothing
    assert [throttle.failed("10.0.0.1") for _ in range(2)] == [0.0, 0.0]
    assert throttle.failed("10.0.0.1") == pytest.approx(2.0)
    assert throttle.failed("10.0.0.2") == 0.0  # another address has its own bucket
    # Over the limit, the key this address used goes on; any other is refused, right or
    # wrong: a 200 for the right one would end the guessing.
    assert throttle.admits("10.0.0.1", GOOD) == 0.0
    assert throttle.admits("10.0.0.1", OTHER_GOOD) == pytest.approx(2.0)
    assert throttle.admits("10.0.0.2", OTHER_GOOD) == 0.0
    clock.now += 2.0  # a token back: a new key may be tried, and is then known
    assert throttle.admits("10.0.0.1", OTHER_GOOD) == 0.0
    assert throttle.failed("10.0.0.1") == 0.0
    assert throttle.admits("10.0.0.1", OTHER_GOOD) == 0.0


def test_wait_takes_no_token() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, clock=Clock())
    assert limiter.wait("a") == 0.0
    assert limiter.wait("a") == 0.0
    assert limiter.take("a") == 0.0
    assert limiter.wait("a") == pytest.approx(1.0)
    assert limiter.take("a") == pytest.approx(1.0)


def test_the_keys_used_by_each_address_stay_bounded() -> None:
    throttle = KeyGuessThrottle(RateLimiter(rate=1.0, burst=1, clock=Clock()), max_tracked=100)
    for n in range(1000):
        assert throttle.admits(f"10.0.{n // 256}.{n % 256}", GOOD) == 0.0
        assert len(throttle._used) <= 100
    # The most recently used pairs are kept: a busy client survives the pruning.
    assert ("10.0.3.231", GOOD) in throttle._used


def test_on_by_default_and_off_at_zero() -> None:
    throttle = throttle_for(Settings().auth_failure_limit, Settings().auth_failure_burst)
    assert throttle is not None
    assert (throttle.failures.rate, throttle.failures.burst) == (1.0, 10)
    assert throttle_for(0, 10) is None
    one_seconds = throttle_for(2.5, 0)
    assert one_seconds is not None and one_seconds.failures.burst == 3


def test_an_ipv6_slash_64_is_one_guesser() -> None:
    """One host usually holds a whole /64: counted address by address, it would have 2**64
    buckets of failures to spend."""
    throttle = KeyGuessThrottle(RateLimiter(rate=0.001, burst=2, clock=Clock()))
    assert throttle.failed("2001:db8:1:2::1") == 0.0
    assert throttle.failed("2001:db8:1:2:ffff::9") == 0.0
    assert throttle.failed("2001:db8:1:2:abcd::") > 0  # the same /64's third failure
    assert throttle.admits("2001:db8:1:2::77", GOOD) > 0
    assert throttle.failed("2001:db8:1:3::1") == 0.0  # the next /64 is someone else
    # IPv4, also mapped into IPv6, counts by address; what is no address, as it is.
    assert [throttle.failed(a) for a in ("192.0.2.1", "::ffff:192.0.2.1", "192.0.2.1")] == [
        0.0,
        0.0,
        pytest.approx(1000.0),
    ]
    assert guesser("unknown") == "unknown"
    assert guesser("2001:db8:1:2::1") == "2001:db8:1:2::/64"

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


def wrong(n: int) -> bytes:
    return key_digest(f"wrong-key-{n}")


def test_failures_spend_the_address_bucket_and_valid_keys_spend_nothing() -> None:
    clock = Clock()
    throttle = KeyGuessThrottle(RateLimiter(rate=0.5, burst=2, clock=clock))
    for _ in range(5):
        assert throttle.admits("10.0.0.1", GOOD) == 0.0  # spends nothing
    assert [throttle.failed("10.0.0.1", wrong(n)) for n in range(2)] == [0.0, 0.0]
    assert throttle.failed("10.0.0.1", wrong(2)) == pytest.approx(2.0)
    assert throttle.failed("10.0.0.2", wrong(2)) == 0.0  # another address has its own bucket
    # Over the limit, the key this address used goes on; any other is refused, right or
    # wrong: a 200 for the right one would end the guessing.
    assert throttle.admits("10.0.0.1", GOOD) == 0.0
    assert throttle.admits("10.0.0.1", OTHER_GOOD) == pytest.approx(2.0)
    assert throttle.admits("10.0.0.2", OTHER_GOOD) == 0.0
    clock.now += 2.0  # a token back: a new key may be tried, and is then known
    assert throttle.admits("10.0.0.1", OTHER_GOOD) == 0.0
    assert throttle.failed("10.0.0.1", wrong(3)) == 0.0
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
    assert throttle.failed("2001:db8:1:2::1", wrong(1)) == 0.0
    assert throttle.failed("2001:db8:1:2:ffff::9", wrong(2)) == 0.0
    assert throttle.failed("2001:db8:1:2:abcd::", wrong(3)) > 0  # the same /64's third failure
    assert throttle.admits("2001:db8:1:2::77", GOOD) > 0
    assert throttle.failed("2001:db8:1:3::1", wrong(1)) == 0.0  # the next /64 is someone else
    # IPv4, also mapped into IPv6, counts by address; what is no address, as it is.
    addresses = ("192.0.2.1", "::ffff:192.0.2.1", "192.0.2.1")
    assert [throttle.failed(a, wrong(n)) for n, a in enumerate(addresses)] == [
        0.0,
        0.0,
        pytest.approx(1000.0),
    ]
    assert guesser("unknown") == "unknown"
    assert guesser("2001:db8:1:2::1") == "2001:db8:1:2::/64"


def test_only_distinct_wrong_keys_spend_tokens() -> None:
    """Before, every failure spent a token: a client retrying one stale key twice a second
    kept its address's bucket empty, and a working client there, new since the last
    restart, was refused for as long."""
    clock = Clock()
    throttle = KeyGuessThrottle(RateLimiter(rate=0.001, burst=3, clock=clock))
    for _ in range(50):
        assert throttle.failed("10.0.0.1", wrong(1)) == 0.0
        assert throttle.failed("10.0.0.1", None) == 0.0  # a missing key: one value
    assert throttle.admits("10.0.0.1", GOOD) == 0.0  # a token left
    assert throttle.failed("10.0.0.1", wrong(2)) == 0.0
    assert throttle.failed("10.0.0.1", wrong(3)) == pytest.approx(1000.0)
    assert throttle.admits("10.0.0.1", OTHER_GOOD) == pytest.approx(1000.0)
    # A key refused with 429 is not noted: told 401 next time, a guesser would know it
    # wrong, where a valid one gets 429 again.
    assert throttle.failed("10.0.0.1", wrong(3)) == pytest.approx(1000.0)
    # Those it was told of stay free; the pairs are by guesser, not by the key alone.
    assert throttle.failed("10.0.0.1", wrong(1)) == 0.0
    assert throttle.failed("10.0.0.1", wrong(2)) == 0.0
    assert throttle.failed("10.0.0.2", wrong(1)) == 0.0
    assert throttle.failed("10.0.0.2", wrong(2)) == 0.0
    assert throttle.failed("10.0.0.2", wrong(4)) == 0.0
    assert throttle.failed("10.0.0.2", wrong(5)) > 0


def test_a_slash_64_shares_its_wrong_keys() -> None:
    throttle = KeyGuessThrottle(RateLimiter(rate=0.001, burst=2, clock=Clock()))
    assert throttle.failed("2001:db8:1:2::1", wrong(1)) == 0.0
    assert throttle.failed("2001:db8:1:2::2", wrong(1)) == 0.0  # one pair: no token spent
    assert throttle.failed("2001:db8:1:2::3", wrong(2)) == 0.0
    assert throttle.failed("2001:db8:1:2::4", wrong(3)) > 0


def test_the_wrong_keys_noted_stay_bounded() -> None:
    throttle = KeyGuessThrottle(RateLimiter(rate=1.0, burst=1, clock=Clock()), max_tracked=100)
    for n in range(1000):
        assert throttle.failed(f"10.0.{n // 256}.{n % 256}", wrong(n)) == 0.0
        assert len(throttle._wrong) <= 100
    # The most recently tried are kept: a stale key retried stays free.
    assert ("10.0.3.231", wrong(999)) in throttle._wrong
    assert throttle.failed("10.0.3.231", wrong(999)) == 0.0

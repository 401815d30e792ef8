"""KeyGuessThrottle: failed API-key attempts per client address, for FACE_AUTH_FAILURE_LIMIT."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Hashable
from typing import TypeVar

from app.services.rate_limit import MAX_TRACKED, RateLimiter, limiter_for

_Pair = TypeVar("_Pair", bound=Hashable)


class KeyGuessThrottle:
    """Each request with a missing or wrong key new to its address spends a token of the
    address's bucket. An address with none left is refused every key it has not used
    before, right or wrong: were a right one let through, the answer (200 against 429)
    would tell a guesser when it had found one, however slowly its wrong guesses were
    answered. The keys an address did use go on working, so that one misbehaving client
    behind a reverse proxy (one address for all) does not lock out the others; and a
    wrong key it was told was wrong is told so again for free, so that a client retrying
    a stale key does not keep the bucket empty for a working client first seen later."""

    def __init__(self, failures: RateLimiter, max_tracked: int = MAX_TRACKED) -> None:
        self.failures = failures
        self._max_tracked = max_tracked
        # (address, key digest) pairs, least recently used first. Only holders of a valid
        # key add to it; bounded all the same, as the buckets are.
        self._used: dict[tuple[str, bytes], None] = {}
        # (address, digest) pairs of the wrong keys (None: a missing one) each address was
        # answered 401 for, least recently tried first; bounded by the same rule.
        self._wrong: dict[tuple[str, bytes | None], None] = {}
        self._lock = threading.Lock()

    def failed(self, address: str, digest: bytes | None) -> float:
        """A wrong key (by its digest; None when missing) from `address`: 0.0 when it may be
        told so, else the seconds until it may. Only a key the address was not told of
        before spends a token: repeating one teaches a guesser nothing. One refused with
        429 is not noted, so its next answer is a valid key's (429), not a 401."""
        address = guesser(address)
        pair = (address, digest)
        with self._lock:  # held across the take: the same key sent twice at once, once
            if pair in self._wrong:
                self._wrong[pair] = self._wrong.pop(pair)  # now the most recently tried
                return 0.0
            wait = self.failures.take(address)
            if wait == 0.0:
                _note(self._wrong, pair, self._max_tracked)
            return wait

    def admits(self, address: str, digest: bytes) -> float:
        """A valid key (by its digest) from `address`: 0.0 when it may be used, else the
        seconds until the address may try a key it has not used before. Spends nothing."""
        address = guesser(address)
        pair = (address, digest)
        with self._lock:
            if pair in self._used:
                self._used[pair] = self._used.pop(pair)  # now the most recently used
                return 0.0
        wait = self.failures.wait(address)
        if wait > 0:
            return wait
        with self._lock:
            _note(self._used, pair, self._max_tracked)
        return 0.0


def _note(pairs: dict[_Pair, None], pair: _Pair, max_tracked: int) -> None:
    """Adds `pair` as the most recent; over `max_tracked`, keeps the newest half. Forgetting
    a pair costs its client a token at worst, and nothing while its address has tokens."""
    pairs[pair] = None
    if len(pairs) > max_tracked:
        for stale in list(pairs)[: len(pairs) - max_tracked // 2]:
            del pairs[stale]


def guesser(address: str) -> str:
    """Whom failures from `address` count against: an IPv6 address's /64, which one host or
    subscriber usually holds whole (one bucket per address would give it 2**64), else the
    address (IPv4, including one mapped into IPv6)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:  # "unknown", a Unix socket's path
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def throttle_for(rate: float, burst: int) -> KeyGuessThrottle | None:
    """The throttle the settings ask for; None when it is off (rate 0). A burst of 0 means
    one second's worth of attempts, at least 1."""
    limiter = limiter_for(rate, burst)
    return None if limiter is None else KeyGuessThrottle(limiter)

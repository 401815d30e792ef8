"""KeyGuessThrottle: failed API-key attempts per client address, for FACE_AUTH_FAILURE_LIMIT."""

from __future__ import annotations

import ipaddress
import threading

from app.services.rate_limit import MAX_TRACKED, RateLimiter, limiter_for


class KeyGuessThrottle:
    """Each request with a missing or wrong key spends a token of its address's bucket. An
    address with none left is refused every key it has not used before, right or wrong:
    were a right one let through, the answer (200 against 429) would tell a guesser when
    it had found one, however slowly its wrong guesses were answered. The keys an address
    did use go on working, so that one misbehaving client behind a reverse proxy (one
    address for all) does not lock out the others."""

    def __init__(self, failures: RateLimiter, max_tracked: int = MAX_TRACKED) -> None:
        self.failures = failures
        self._max_tracked = max_tracked
        # (address, key digest) pairs, least recently used first. Only holders of a valid
        # key add to it; bounded all the same, as the buckets are.
        self._used: dict[tuple[str, bytes], None] = {}
        self._lock = threading.Lock()

    def failed(self, address: str) -> float:
        """A missing or wrong key from `address`: 0.0 when it may be told so (a token is
        spent), else the seconds until it may."""
        return self.failures.take(guesser(address))

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
            self._used[pair] = None
            if len(self._used) > self._max_tracked:
                # Forgetting a pair costs its client nothing while its address has tokens.
                for stale in list(self._used)[: len(self._used) - self._max_tracked // 2]:
                    del self._used[stale]
        return 0.0


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

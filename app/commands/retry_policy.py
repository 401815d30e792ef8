"""How `import` retries: bounded attempts with back-off, and waits a rate limit asks for."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

# Worth another try: the service is starting (503) or a proxy in front of it is (502, 504).
RETRY_STATUSES = frozenset({502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` tries in all, sleeping base_delay_s, then twice that, ... up to max_delay_s."""

    attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    # Over a rate limit (429) a request waits as long as the service asks, without using up
    # its attempts: an import against FACE_RATE_LIMIT goes at the allowed rate, not to its
    # end with every file an error. This bounds the waiting, per request.
    rate_limited_s: float = 300.0

    def delay(self, attempt: int) -> float:
        return float(min(self.base_delay_s * 2**attempt, self.max_delay_s))


def retry_after_s(response: httpx.Response) -> float | None:
    """Seconds the answer asks to wait: our error's `details.retry_after_s` (to the
    millisecond), else its Retry-After header (seconds or an HTTP date); None if neither."""
    try:
        asked = response.json()["error"]["details"]["retry_after_s"]
        if isinstance(asked, int | float) and asked >= 0:
            return float(asked)
    except (ValueError, KeyError, TypeError):
        pass
    header = response.headers.get("retry-after", "").strip()
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class Turns:
    """When a client's workers may send. At once until a rate limit is met; after a 429 they
    all hold for its wait, then take turns that far apart, not only the one that got it:
    each request over the limit costs its upload for nothing. The gap narrows with each
    answer that is not a 429, back to none."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 0.0
        self._gap = 0.0

    def claim(self) -> float:
        """Seconds until the caller's turn, which is then taken."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._gap
        return start - now

    def record(self, pause: float | None) -> None:
        """A 429 asked to wait `pause` seconds; None: the answer was another."""
        with self._lock:
            if pause is None:
                self._gap = self._gap * 0.98 if self._gap > 0.001 else 0.0
            else:
                self._gap = max(self._gap, pause)
                self._next = max(self._next, time.monotonic() + pause)

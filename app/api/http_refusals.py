"""A refusal written straight to a connection, below the app, and its rate-limited log line."""

from __future__ import annotations

import json
import logging
import time
from http import HTTPStatus

log = logging.getLogger(__name__)

# Refusals of one kind are logged at most this often, with a count of the others.
WARN_EVERY_S = 10.0


def refusal_bytes(
    status: int, code: str, message: str, default_headers: list[tuple[bytes, bytes]]
) -> bytes:
    """A whole HTTP/1.1 answer in the service's error shape, closing the connection."""
    body = json.dumps({"error": {"code": code, "message": message, "details": None}})
    head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode()]
    head += [name + b": " + value for name, value in default_headers]
    head += [b"content-type: application/json", b"content-length: %d" % len(body)]
    head += [b"connection: close"]
    return b"\r\n".join(head) + b"\r\n\r\n" + body.encode()


_warned: dict[str, tuple[float, int]] = {}  # code -> (when last logged, refusals since)


def warn_refusal(code: str, message: str) -> None:
    """Log a refusal, at most once every WARN_EVERY_S for each code: a flood of refused
    connections must not become a flood of log lines."""
    now = time.monotonic()
    last, since = _warned.get(code, (float("-inf"), 0))
    if now - last < WARN_EVERY_S:
        _warned[code] = (last, since + 1)
        return
    more = f" (and {since} more since the last)" if since else ""
    log.warning("%s%s", message, more)
    _warned[code] = (now, 0)

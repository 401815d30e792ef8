"""Admission of a request: its API key, its role, and the rate limits it is charged to."""

from __future__ import annotations

from starlette.types import Scope

from app.errors import FaceServiceError, Forbidden, RateLimited, Unauthorized
from app.security import Role, allows, key_digest
from app.state import AppState


def admit(
    state: AppState, key: str | None, required: Role, address: str, charged: object = None
) -> object:
    """401 without a valid key (429 from an address over FACE_AUTH_FAILURE_LIMIT) and 403
    without the `required` role (when keys are configured), then the rate limit, charged to
    the key or, without keys, to `address`, unless `charged` is that bucket already. The
    bucket, or None without a rate limit."""
    role: str = "open"
    if state.keys.enabled:
        found = known_role(state, key, address)
        # After the throttle: a 403 would tell a guesser over the limit its key is valid.
        if not allows(found, required):
            raise Forbidden(f"This endpoint needs the {required} role.")
        role = found
    if state.limiter is None:
        return None
    # One bucket per key (by its digest, so the key itself is not kept), or per client
    # address when the service has no keys.
    identity: object = key_digest(key) if key is not None and role != "open" else address
    if identity != charged:
        check_rate(state, identity, role)
    return identity


def known_role(state: AppState, key: str | None, address: str) -> Role:
    """The role of a valid key; else 401 (429 from an address over FACE_AUTH_FAILURE_LIMIT).
    A valid key new to an address over it gets the same 429: the answer must not tell a
    guesser its key is valid, whatever the route, or whether there is one."""
    if key is None or (found := state.keys.role_of(key)) is None:
        raise refused_key(state, key, address)
    wait = state.key_guesses.admits(address, key_digest(key)) if state.key_guesses else 0.0
    if wait > 0:
        raise _too_many_failures(state, wait)
    return found


def check_rate(state: AppState, identity: object, role: str) -> None:
    """429 over FACE_RATE_LIMIT for this bucket."""
    assert state.limiter is not None
    wait = state.limiter.take(identity)
    if wait > 0:
        state.metrics.rate_limited.labels(role).inc()
        raise RateLimited(
            f"Over the rate limit of {state.limiter.rate:g} requests a second "
            f"(bursts of {state.limiter.burst}); retry in {wait:.2f} s.",
            wait,
        )


def refused_key(state: AppState, key: str | None, address: str) -> FaceServiceError:
    """The answer to a missing or wrong key: 401, spending a token of `address`'s failed
    attempts (FACE_AUTH_FAILURE_LIMIT) unless it was told of this key before, or 429 when
    it has none left. A valid key used on a route of another role (403) is no guess, and
    spends none."""
    digest = None if key is None else key_digest(key)
    wait = state.key_guesses.failed(address, digest) if state.key_guesses else 0.0
    if wait > 0:
        return _too_many_failures(state, wait)
    return Unauthorized("A valid X-API-Key header is required.")


def _too_many_failures(state: AppState, wait: float) -> RateLimited:
    # The same answer, and metric label, for a wrong key and for a valid one new to the
    # address: /metrics is open to all.
    assert state.key_guesses is not None
    failures = state.key_guesses.failures
    state.metrics.rate_limited.labels("unauthenticated").inc()
    return RateLimited(
        f"Over the limit of {failures.rate:g} requests a second without a valid X-API-Key "
        f"from this address (bursts of {failures.burst}); retry in {wait:.2f} s.",
        wait,
    )


def client_address(scope: Scope) -> str:
    """The client's address, as Starlette's `request.client.host` gives it."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"

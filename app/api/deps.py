"""Annotated dependency aliases shared by the routes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Form, Query, Request, UploadFile
from fastapi.security import APIKeyHeader
from starlette.types import Scope

from app.api.content_type import check_media_type
from app.api.form_guard import check_form
from app.api.handlers import API_KEY_HEADER
from app.api.query_guard import check_query
from app.config import FacePolicy, Settings
from app.errors import (
    FaceServiceError,
    Forbidden,
    InvalidRequest,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
)
from app.security import Role, allows, key_digest
from app.services.probes import Upload
from app.state import AppState, Runtime

_api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)

T = TypeVar("T")


# Dependencies that do no I/O are async: FastAPI runs a plain `def` dependency on its
# thread pool, a thread hop per dependency per request that waits for the GIL under load.
async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.face
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def get_settings(state: StateDep) -> Settings:
    return state.settings


async def get_runtime(state: StateDep) -> Runtime:
    return state.require_runtime()


SettingsDep = Annotated[Settings, Depends(get_settings)]
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


# The key in the ASGI scope's state (Starlette's `request.state`) under which
# app/api/early_checks.py notes the rate-limit bucket it charged a request with a body,
# before reading it. The route's own check still checks the key and role, and charges the
# request only if that bucket is not the one it would charge: a mark trusted for more (a
# shared state, a route matched otherwise) could let a request through unchecked.
CHARGED_EARLY = "face_charged_early"


def require_role(required: Role) -> Callable[..., Awaitable[None]]:
    """The key check of a router's routes, its rate limit, then the body's media type
    (app/api/content_type.py), its form fields (app/api/form_guard.py) and the query
    (app/api/query_guard.py)."""

    async def check(
        request: Request, state: StateDep, key: Annotated[str | None, Depends(_api_key_header)]
    ) -> None:
        charged = getattr(request.state, CHARGED_EARLY, None)
        admit(state, key, required, client_address(request.scope), charged)
        await check_media_type(request)
        await check_form(request)
        await check_query(request)

    # So that the early checks read a route's role from its dependencies, not from a table
    # of paths kept by hand.
    check.required_role = required  # type: ignore[attr-defined]
    return check


def required_role(call: object) -> Role | None:
    """The role a dependency made by require_role asks for; None for any other callable."""
    role = getattr(call, "required_role", None)
    return "admin" if role == "admin" else "client" if role == "client" else None


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


ClientKey = Depends(require_role("client"))
AdminKey = Depends(require_role("admin"))


async def read_upload(file: UploadFile, settings: Settings) -> Upload:
    """Read at most the size limit plus one byte, so an oversized file is never held whole."""
    data = await file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise PayloadTooLarge(
            f"{file.filename or 'upload'} is larger than {settings.max_upload_bytes} bytes."
        )
    return Upload(filename=file.filename or "upload", data=data)


def form_or_query(name: str, form: T | None, query: T | None) -> T | None:
    """A setting that may come as a form field or as a query parameter. Both, with different
    values, is refused: whichever one won, the client meant the other."""
    if form is not None and query is not None and form != query:
        problems = [
            {"loc": [where, name], "msg": f"{name} is {value} here", "type": "conflicting_value"}
            for where, value in (("body", form), ("query", query))
        ]
        raise InvalidRequest(
            f"{name} is given twice, as {form} in the form and {query} in the query; give it once.",
            problems,
        )
    return form if form is not None else query


async def face_policy(
    face_query: Annotated[FacePolicy | None, Query(alias="face")] = None,
    face: Annotated[FacePolicy | None, Form()] = None,
) -> FacePolicy | None:
    """The face policy, from the query or the form."""
    return form_or_query("face", face, face_query)


FacePolicyDep = Annotated[FacePolicy | None, Depends(face_policy)]
UploadReader = Callable[[UploadFile, Settings], Awaitable[Upload]]

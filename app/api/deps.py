"""Annotated dependency aliases shared by the routes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Form, Query, Request, UploadFile
from fastapi.security import APIKeyHeader

from app.api.admission import admit, client_address
from app.api.content_type import check_media_type
from app.api.form_guard import check_form
from app.api.handlers import API_KEY_HEADER
from app.api.query_guard import check_query
from app.config import FacePolicy, Settings
from app.errors import InvalidRequest, PayloadTooLarge, problem
from app.security import Role
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
            problem([where, name], f"{name} is {value} here", "conflicting_value")
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

# A listing's cursor; a subject cursor is about 92 characters, a face id 19 digits at most.
AfterQuery = Annotated[
    str | None,
    Query(max_length=200, description="A page's `next_after`: the page after it."),
]
UploadReader = Callable[[UploadFile, Settings], Awaitable[Upload]]

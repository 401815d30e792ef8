"""Every error leaves the service in one JSON shape, never with a stack trace."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app.errors import DatabaseUnavailable, FaceServiceError

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


# The header clients authenticate with, named in every 401's challenge (RFC 9110 11.6.1).
API_KEY_HEADER = "X-API-Key"
_CHALLENGE = f'ApiKey header="{API_KEY_HEADER}"'

# Methods a 405 may list in its Allow header, in the order they are listed.
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The one error shape; `details` is always there, null when there is nothing to add."""
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = _CHALLENGE
    body = {"code": code, "message": message, "details": details}
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def domain_error(exc: FaceServiceError) -> JSONResponse:
    """A domain error's answer, wherever it is raised: a route, or a check before one."""
    headers = getattr(exc, "headers", None)  # RateLimited's Retry-After
    return error_response(exc.status_code, exc.code, exc.message, exc.details, headers)


async def _domain(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FaceServiceError)
    return domain_error(exc)


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Keep only location, message and type: the raw input may be a whole uploaded file.
    problems = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    broken = next((e for e in exc.errors() if e.get("type") == "json_invalid"), None)
    if broken is not None:  # its loc is the character position, not a field
        reason = (broken.get("ctx") or {}).get("error", "unreadable")
        where = broken.get("loc", ("body", "?"))[-1]
        message = f"The request body is not valid JSON: {reason} at character {where}."
        return error_response(422, "invalid_request", message, problems)
    said = "; ".join(_problem(problem) for problem in problems)
    return error_response(422, "invalid_request", f"Invalid request: {said}.", problems)


def _problem(problem: dict[str, Any]) -> str:
    """The field a problem is about and what is wrong with it, so that a client which shows
    only the message (the import's report) still says why; a rule over several fields is
    the body's."""
    where = ".".join(str(part) for part in problem["loc"][1:]) or "body"
    why = str(problem.get("msg", "")).removeprefix("Value error, ").rstrip(".")
    return f"{where} ({why})" if why else where


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = str(exc.detail)
    path = request.url.path
    if exc.status_code == 404 and path.endswith("/") and path.strip("/"):
        message += f"; paths take no trailing slash (try {path.rstrip('/')})"
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    return error_response(exc.status_code, code, message, headers=headers)


def _allowed_methods(request: Request) -> str:
    """Every method some route takes on this path. Starlette's own Allow header names
    only the first route that matched the path: GET /v1/subjects and POST /v1/subjects
    are two routes, so a DELETE there was told "Allow: POST"."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]
    return ", ".join(allowed)


async def _database(request: Request, exc: Exception) -> JSONResponse:
    # The database cannot be reached (stopped, restarting, network): a temporary state that
    # clients may retry, not a bug. Logged without a traceback; the driver says why.
    log.error("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    error = DatabaseUnavailable("The database is unavailable; retry shortly.")
    return await _domain(request, error)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "Internal server error.")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(FaceServiceError, _domain)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(OperationalError, _database)
    app.add_exception_handler(Exception, _unexpected)

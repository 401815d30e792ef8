"""GuardAndMeasure: the request guards and HTTP metrics, as plain ASGI middleware."""

# Plain ASGI rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware runs
# every request through an extra task and memory streams, a cost every request paid.

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote_plus

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.body_limits import BodyLimits, BodyTooLarge
from app.api.content_type import UploadMediaCheck
from app.api.early_checks import BODY_METHODS, EarlyChecks, RouteRole
from app.api.handlers import API_KEY_HEADER, error_response
from app.api.upload_routes import UploadRoute
from app.errors import Problem, problem
from app.metrics import Metrics
from app.security import KeyRing, is_remote_address

log = logging.getLogger(__name__)

# The route label of requests refused before routing (no key, body too large, ...).
REFUSED_ROUTE = "refused"

_KEY_HEADER = API_KEY_HEADER.lower().encode()  # ASGI header names are lower-case bytes


class GuardAndMeasure:
    """Refuses oversized bodies, NUL characters in the path or query, bodies without a valid
    API key (when keys are configured), of the wrong role or over the rate limit, and
    uploads not sent as multipart, before any parsing; and records each request's latency
    and status by route template."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        max_upload_bytes: int,
        keys: KeyRing | None = None,
        max_files: int = 1,
        uploads: Iterable[UploadRoute] = (),
        roles: Iterable[RouteRole] = (),
    ) -> None:
        self.app = app
        self.early = EarlyChecks(roles)
        self.metrics = metrics
        self.keys = keys
        uploads = tuple(uploads)
        self.limits = BodyLimits(uploads, max_upload_bytes, max_files)
        self.media = UploadMediaCheck(uploads)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            # The first of repeated headers, as Starlette and FastAPI read them: a second
            # Content-Type must not choose the limit for a body parsed by the first.
            headers.setdefault(name, value)
        path = _route_path(scope)
        limit = self.limits.limit(scope["method"], path, headers.get(b"content-type", b""))
        refusal = self._refusal(scope, headers, path, limit)
        if refusal is not None:
            start, status = time.perf_counter(), 0

            async def send_refusal(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            await refusal(scope, receive, send_refusal)
            self._measure(scope["method"], REFUSED_ROUTE, status, start)
            return
        received = 0

        async def counted_receive() -> Message:
            # Content-Length was checked already; this catches chunked bodies, and
            # clients whose header understated the body.
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        start = time.perf_counter()
        status = 500
        started = False

        async def send_and_note(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)

        try:
            await self.app(scope, counted_receive, send_and_note)
        except Exception as error:
            # Answered here rather than by Starlette's outermost handler, which re-raises
            # after answering: uvicorn then logged the error a second time and closed the
            # connection, failing the client's next request on it.
            if started:
                raise
            await self._answer(error, scope)(scope, counted_receive, send_and_note)
        finally:
            # The router has put the matched route into the scope by now. Labelled by its
            # path template, not the raw path, to keep label cardinality bounded.
            route = str(getattr(scope.get("route"), "path", "unmatched"))
            self._measure(scope["method"], route, status, start)

    def _measure(self, method: str, route: str, status: int, start: float) -> None:
        self.metrics.latency.labels(method, route).observe(time.perf_counter() - start)
        self.metrics.requests.labels(method, route, str(status)).inc()

    @staticmethod
    def _answer(error: Exception, scope: Scope) -> ASGIApp:
        if isinstance(error, BodyTooLarge):  # from a route that reads the body itself
            return error_response(413, "payload_too_large", str(error.detail))
        log.error("unhandled error on %s %s", scope["method"], scope["path"], exc_info=error)
        return error_response(500, "internal_error", "Internal server error.")

    def _refusal(
        self, scope: Scope, headers: dict[bytes, bytes], path: str, limit: int
    ) -> ASGIApp | None:
        # An upload's body in another media type is the route's 415 whatever its size, so
        # not a 413 for the JSON limit; answered after the key checks, as a small one is.
        unsupported = self.media.refusal(scope, path, headers)
        # Refuse oversized bodies before the multipart parser spools them to disk.
        length = headers.get(b"content-length", b"")
        if unsupported is None and length.isdigit() and int(length) > limit:
            return error_response(413, "payload_too_large", f"Request body exceeds {limit} bytes.")
        # Without keys the service is for this machine only. `python -m app serve` refuses
        # other addresses; this holds the rule however the app is served (e.g. uvicorn
        # --host 0.0.0.0): the address a connection arrived on must be loopback.
        if self.keys is not None and not self.keys.enabled:
            server = scope.get("server")
            if server and is_remote_address(str(server[0])):
                return error_response(
                    403,
                    "forbidden",
                    "FACE_API_KEYS is empty, so this service answers loopback connections only.",
                )
        # Every route that takes a body needs a key, so a body without a valid one is
        # refused before it is read, and so is a valid one new to an address over its
        # failed attempts, on any path; the routes' own check (app/api/deps.py) answers for
        # requests without a body.
        if self.keys is not None and self.keys.enabled and scope["method"] in BODY_METHODS:
            refused = self.early.key_refusal(scope, self.keys, headers.get(_KEY_HEADER))
            if refused is not None:
                return refused  # 401, or 429 for an address guessing
        # Bodies are read as sent: a compressed one was parsed as if it were not.
        encoding = headers.get(b"content-encoding", b"identity").strip().lower()
        if scope["method"] in BODY_METHODS and encoding not in (b"", b"identity"):
            return error_response(
                415,
                "unsupported_media_type",
                f"Content-Encoding {encoding.decode('latin-1')} is not supported; "
                "send the body uncompressed.",
            )
        # PostgreSQL cannot store NUL characters, so ids and names holding one are refused
        # here for paths and queries, and by schemas.common.NulFree for bodies and forms.
        query = scope.get("query_string", b"").decode("latin-1")
        if "\x00" in scope["path"] or "\x00" in unquote_plus(query):
            return error_response(
                422,
                "invalid_request",
                "NUL characters are not allowed in the path or query.",
                nul_problems(scope["path"], query),
            )
        # Last: a request refused above spends none of its rate limit. An unsupported upload
        # spends it, as the route's own check charges a small one before its 415.
        early = self.early.refusal(scope, path, headers.get(_KEY_HEADER))
        return early if early is not None else unsupported


def _route_path(scope: Scope) -> str:
    """The path the router matches: without the root path (`--root-path`), which uvicorn
    puts in front of it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    # As Starlette's router: only a root that ends at a "/" of the path ("/api" is not the
    # root of "/apiv1/subjects").
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :]
    return path


def nul_problems(path: str, query: str) -> list[Problem]:
    """Where NUL characters are: the path, and each query parameter holding one in its name
    or value (named without the NULs)."""
    pairs = parse_qsl(query, keep_blank_values=True)
    named = [name.replace("\x00", "") for name, value in pairs if "\x00" in name + value]
    where: list[list[str | int]] = [["path"]] if "\x00" in path else []
    where += [["query", name] for name in dict.fromkeys(named)]
    return [problem(loc, "a NUL character", "nul_character") for loc in where]

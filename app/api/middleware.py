"""GuardAndMeasure: the request guards and HTTP metrics, as plain ASGI middleware.

Plain ASGI rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware runs
every request through an extra task and memory streams, a cost every request paid.
"""

from __future__ import annotations

import time
from urllib.parse import unquote_plus

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.handlers import error_response
from app.metrics import Metrics


class GuardAndMeasure:
    """Refuses oversized bodies and NUL characters in the path or query before any parsing,
    and records each request's latency and status by route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            # The router has put the matched route into the scope by now. Labelled by its
            # path template, not the raw path, to keep label cardinality bounded.
            route = str(getattr(scope.get("route"), "path", "unmatched"))
            method = scope["method"]
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - start)
            self.metrics.requests.labels(method, route, str(status)).inc()

    def _refusal(self, scope: Scope) -> ASGIApp | None:
        # Refuse oversized bodies before the multipart parser spools them to disk.
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit():
                if int(value) > self.max_body_bytes:
                    message = f"Request body exceeds {self.max_body_bytes} bytes."
                    return error_response(413, "payload_too_large", message)
                break
        # PostgreSQL cannot store NUL characters, so ids and names holding one are refused
        # here for paths and queries, and by schemas.common.NulFree for bodies and forms.
        query = scope.get("query_string", b"").decode("latin-1")
        if "\x00" in scope["path"] or "\x00" in unquote_plus(query):
            return error_response(
                422, "invalid_request", "NUL characters are not allowed in the path or query."
            )
        return None

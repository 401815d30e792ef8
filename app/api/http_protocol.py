"""uvicorn's httptools protocol with limits on header size, slow clients and connections."""

# uvicorn sets none of these for httptools. The parser gathers a header value by
# concatenation, so its cost grows with the square of the value's length: one connection
# sending a 300 MB header held the event loop, and so the whole service, for 100 s. A
# connection that sends half a request and waits was kept forever, and enough of them used
# up the process's open files, so that the model watcher and the database failed too.

from __future__ import annotations

import asyncio
import json
import logging
import resource
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.config import Settings

log = logging.getLogger(__name__)

MAX_AUTO_CONNECTIONS = 4096
# How long a refused connection that is still sending is read (and what it sends dropped)
# before it is closed: closed with unread data, the kernel resets it, and the client may
# see the reset instead of the answer.
LINGER_S = 2.0


@dataclass(frozen=True)
class HttpLimits:
    max_header_bytes: int
    header_timeout_s: float
    body_timeout_s: float
    max_connections: int

    @classmethod
    def of(cls, settings: Settings) -> HttpLimits:
        return cls(
            settings.http_max_header_bytes,
            settings.http_header_timeout_s,
            settings.http_body_timeout_s,
            settings.http_max_connections or auto_max_connections(),
        )


def auto_max_connections() -> int:
    """Half the open-file limit, so that the database, the index and the models always
    have file descriptors left, and at most MAX_AUTO_CONNECTIONS."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_AUTO_CONNECTIONS
    return max(16, min(MAX_AUTO_CONNECTIONS, soft // 2))


def guarded_protocol(limits: HttpLimits) -> type[HttpToolsProtocol]:
    """The protocol class to hand uvicorn (its `http` argument), bound to `limits`."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """Refuses a request whose line and headers exceed max_header_bytes (431) before the
    parser sees them, or that takes longer than header_timeout_s to send them (408); closes
    a connection whose body pauses longer than body_timeout_s; answers connections beyond
    max_connections 503 at once. Each refusal closes the connection."""

    limits: ClassVar[HttpLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # the bytes arriving belong to a request's line and headers
        self._head_bytes = 0
        self._tail = b""  # the head's last bytes, where its end may begin
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refuse(503, "too_many_connections", "Too many open connections; retry.")
            return
        self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused or self.transport.is_closing():  # nothing more is parsed
            return
        if self._in_head and not self._head_fits(data):
            self._refuse(
                431,
                "headers_too_large",
                f"The request line and headers exceed {self.limits.max_header_bytes} bytes.",
                linger=True,
            )
            return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_late)

    def on_headers_complete(self) -> None:
        self._in_head, self._head_bytes, self._tail = False, 0, b""
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()
        self._arm_body_timer()  # cancelled at once by on_message_complete when no body

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm_body_timer()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        self._in_head = True  # what comes next is the next request

    def _head_fits(self, data: bytes) -> bool:
        """Whether the head stays within max_header_bytes with `data`: all of it, or up to
        the blank line that ends the head, where that falls within the limit."""
        room = self.limits.max_header_bytes - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            self._tail = (self._tail + data)[-3:]
            return True
        window = self._tail + data[:room]
        return b"\n\r\n" in window or b"\n\n" in window

    def _arm_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
        self._body_timer = self.loop.call_later(self.limits.body_timeout_s, self._body_late)

    def _head_late(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            seconds = self.limits.header_timeout_s
            self._refuse(408, "request_timeout", f"The request's headers took over {seconds} s.")

    def _body_late(self) -> None:
        self._body_timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        # Not the client's pause: the service has not taken what came, or has not yet asked
        # for the body a client that sent "Expect: 100-continue" waits to send.
        if self.flow.read_paused or (cycle is not None and cycle.waiting_for_100_continue):
            self._arm_body_timer()
            return
        if cycle is not None and not cycle.response_started:
            cycle.disconnected = True  # the route's own answer, if it comes, is dropped
            cycle.message_event.set()
            seconds = self.limits.body_timeout_s
            self._refuse(408, "request_timeout", f"The request's body paused over {seconds} s.")
        else:
            log.warning("closing a connection whose request body paused too long")
            self.transport.close()

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None

    def _refuse(self, status: int, code: str, message: str, linger: bool = False) -> None:
        """Answer with the service's error shape, then close: the connection's state (a head
        half read, a body half sent) is not worth resynchronising. `linger`: a client still
        sending gets LINGER_S to read the answer first."""
        log.warning("%s from %s: %s", code, self.client, message)
        self._cancel_timers()
        self._refused = True
        body = json.dumps({"error": {"code": code, "message": message, "details": None}})
        head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode()]
        head += [name + b": " + value for name, value in self.server_state.default_headers]
        head += [
            b"content-type: application/json",
            b"content-length: %d" % len(body),
            b"connection: close",
        ]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body.encode())
        if linger and self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()

"""uvicorn's httptools protocol with limits on header size, slow clients and connections."""

# uvicorn sets none of these for httptools. The parser gathers a header value by
# concatenation, so its cost grows with the square of the value's length: one connection
# sending a 300 MB header held the event loop, and so the whole service, for 100 s. A
# connection that sends half a request and waits was kept forever, and enough of them used
# up the process's open files, so that the model watcher and the database failed too.

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.api.http_limits import HttpLimits
from app.api.http_refusals import refusal_bytes, warn_refusal

# How long a refused connection that is still sending is read (and what it sends dropped)
# before it is closed: closed with unread data, the kernel resets it, and the client may
# see the reset instead of the answer.
LINGER_S = 2.0


def guarded_protocol(limits: HttpLimits) -> type[HttpToolsProtocol]:
    """The protocol class to hand uvicorn (its `http` argument), bound to `limits`."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """Refuses a request whose line and headers exceed max_header_bytes (431) before the
    parser sees them, or that takes longer than header_timeout_s to send them (408); ends a
    request whose body pauses longer than body_timeout_s (408), or whose trailer or chunk
    framing grows past max_header_bytes with no body in it (431); answers connections beyond
    max_connections 503 at once. Each refusal closes the connection, and is written only
    where no earlier answer is owed on it (pipelining)."""

    limits: ClassVar[HttpLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # the bytes arriving belong to a request's line and headers
        self._head_bytes = 0
        self._tail = b""  # the head's last bytes, where its end may begin
        self._loose_bytes = 0  # bytes after a head with no body in them: trailers, framing
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_deadline = 0.0
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refuse(503, "too_many_connections", "Too many open connections; retry.")
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused or self.transport.is_closing():  # nothing more is parsed
            return
        if self._in_head:
            if not self._head_fits(data):
                limit = self.limits.max_header_bytes
                self._refuse_head(
                    431, "headers_too_large", f"The request line and headers exceed {limit} bytes."
                )
                return
        else:
            self._loose_bytes += len(data)  # on_body sets it back to 0 during the feed
        super().data_received(data)
        if self._refused or self.transport.is_closing():
            return
        if not self._in_head and self._loose_bytes > self.limits.max_header_bytes:
            # httptools gathers a trailer as it does a header, by concatenation.
            limit = self.limits.max_header_bytes
            self._refuse_body(
                431, "headers_too_large", f"The request's trailer exceeds {limit} bytes."
            )
        elif self._in_head and self._head_bytes and self._head_timer is None:
            # Bytes the parser skips without beginning a message (a bare CRLF between
            # requests) stopped uvicorn's keep-alive timer, and would hold the connection.
            self._arm_head_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        if self._head_timer is None:
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._in_head, self._head_bytes, self._tail, self._loose_bytes = False, 0, b"", 0
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()
        if not self.parser.should_upgrade():
            self._body_arrived()  # the timer is cancelled at once when there is no body

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._loose_bytes = 0
        self._body_arrived()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        self._in_head = True  # what comes next is the next request
        cycle = self.cycle
        if (
            cycle is not None
            and cycle.response_complete
            and not self.pipeline
            and self.timeout_keep_alive_task is None
            and not self.transport.is_closing()
        ):
            # Answered before its body ended (an early 401, say): uvicorn started the
            # keep-alive timer with the answer, the body's bytes stopped it, and nothing
            # else would end the idle connection.
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

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

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_late)

    def _body_arrived(self) -> None:
        # One timer a request, pushed back by a deadline: not one timer for every chunk.
        self._body_deadline = self.loop.time() + self.limits.body_timeout_s
        if self._body_timer is None:
            self._body_timer = self.loop.call_later(self.limits.body_timeout_s, self._body_late)

    def _answer_owed(self) -> bool:
        """Whether an earlier request on this connection still waits for its answer."""
        return bool(self.pipeline) or (self.cycle is not None and not self.cycle.response_complete)

    def _head_late(self) -> None:
        self._head_timer = None
        if not self._in_head or self._refused or self.transport.is_closing():
            return
        if self.flow.read_paused or self._answer_owed():
            # The head waits on the service (an earlier request, reading paused), not on
            # the client: its time starts again once that answer is out.
            self._arm_head_timer()
            return
        seconds = self.limits.header_timeout_s
        self._refuse_head(408, "request_timeout", f"The request's headers took over {seconds} s.")

    def _body_late(self) -> None:
        self._body_timer = None
        if self._refused or self.transport.is_closing():
            return
        now = self.loop.time()
        if now < self._body_deadline:
            self._body_timer = self.loop.call_later(self._body_deadline - now, self._body_late)
            return
        cycle = self.cycle
        # Not the client's pause: the service has not taken what came, or has not yet asked
        # for the body a client that sent "Expect: 100-continue" waits to send.
        if self.flow.read_paused or (cycle is not None and cycle.waiting_for_100_continue):
            self._body_arrived()
            return
        seconds = self.limits.body_timeout_s
        self._refuse_body(408, "request_timeout", f"The request's body paused over {seconds} s.")

    def _refuse_head(self, status: int, code: str, message: str) -> None:
        """Refuse the request whose head is arriving: answered, unless an earlier request's
        answer is still owed (pipelining), which this one must not take the place of."""
        self._refuse(status, code, message, answer=not self._answer_owed(), linger=status == 431)

    def _refuse_body(self, status: int, code: str, message: str) -> None:
        """Refuse the request whose body is arriving: answered if the service has not begun
        its own answer, which is then dropped."""
        cycle = self.cycle
        answer = cycle is not None and not cycle.response_started and not self.pipeline
        if answer:
            cycle.disconnected = True
            cycle.message_event.set()
        self._refuse(status, code, message, answer=answer, linger=status == 431)

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None

    def _refuse(
        self, status: int, code: str, message: str, answer: bool = True, linger: bool = False
    ) -> None:
        """Answer with the service's error shape (`answer`), then close: the connection's
        state (a head half read, a body half sent) is not worth resynchronising. `linger`: a
        client still sending gets LINGER_S to read the answer first."""
        warn_refusal(code, f"{code} from {self.client}: {message}")
        self._cancel_timers()
        self._refused = True
        if not answer:
            self.transport.close()
            return
        default_headers = self.server_state.default_headers
        self.transport.write(refusal_bytes(status, code, message, default_headers))
        if linger and self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()

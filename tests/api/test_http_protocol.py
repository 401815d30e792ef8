"""GuardedHttpToolsProtocol under a real uvicorn server: header size, slow clients, connections."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn

from app.api import http_refusals
from app.api.http_limits import HttpLimits, auto_max_connections
from app.api.http_protocol import guarded_protocol
from app.config import Settings
from benchmarks.ports import free_port
from tests.threaded_server import running

LIMITS = HttpLimits(
    max_header_bytes=16_384, header_timeout_s=5.0, body_timeout_s=5.0, max_connections=50
)
# Long enough for no loaded machine to miss it, short enough to wait out in a test.
SHORT_S = 0.5


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers every request with the length of its body, read whole; /slow takes 1.5 s
    before it reads anything."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        await asyncio.sleep(1.5)
    if scope["path"] == "/early":  # answers without reading the body, as an early 401 does
        await send(
            {"type": "http.response.start", "status": 401, "headers": [(b"content-length", b"0")]}
        )
        await send({"type": "http.response.body", "body": b""})
        return
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = json.dumps({"received": size}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@contextmanager
def serving(limits: HttpLimits) -> Iterator[int]:
    port = free_port()
    config = uvicorn.Config(
        echo,
        host="127.0.0.1",
        port=port,
        http=guarded_protocol(limits),
        log_level="error",
        timeout_keep_alive=1,
    )
    with running(config):
        yield port


_unread: dict[int, bytes] = {}  # bytes read past an answer, by socket: the next one's


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    _unread.pop(sock.fileno(), None)  # left by a closed socket that had the same number
    return sock


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response: status, headers (lower-case names) and body (by Content-Length)."""
    data = _unread.pop(sock.fileno(), b"")
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed with no answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    if body[length:]:
        _unread[sock.fileno()] = body[length:]
    return int(status_line.split()[1]), headers, body[:length]


def closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def request(path: str = "/", body: bytes = b"", **headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def assert_refused(sock: socket.socket, status: int, code: str) -> None:
    answer, headers, body = read_answer(sock)
    assert (answer, headers["content-type"], headers["connection"]) == (
        status,
        "application/json",
        "close",
    )
    error = json.loads(body)["error"]
    assert error["code"] == code and error["details"] is None, error
    assert closed(sock)


def test_ordinary_requests_pass_on_one_connection() -> None:
    with serving(LIMITS) as port, connect(port) as sock:
        # Keep-alive, a body in several pieces, and two requests sent back to back.
        for size in (0, 10, 200_000):
            head = request(body=b"")[: -len(b"\r\n\r\n")].replace(b"Content-Length: 0", b"")
            sock.sendall(head + f"Content-Length: {size}\r\n\r\n".encode())
            for start in range(0, size, 65_536):
                sock.sendall(b"x" * min(65_536, size - start))
                time.sleep(0.05)
            assert read_answer(sock)[2] == json.dumps({"received": size}).encode()
        sock.sendall(request(body=b"ab") + request(body=b"abc"))
        assert [json.loads(read_answer(sock)[2]) for _ in range(2)] == [
            {"received": 2},
            {"received": 3},
        ]


def test_headers_over_the_limit_get_431_before_they_are_parsed() -> None:
    with serving(LIMITS) as port:
        with connect(port) as sock:
            # It used to be read whole: 300 MB held the event loop for 100 s.
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000)
            assert_refused(sock, 431, "headers_too_large")
        with connect(port) as sock:  # and the server goes on serving
            sock.sendall(request(body=b"ok"))
            assert json.loads(read_answer(sock)[2]) == {"received": 2}


def test_a_head_within_the_limit_sent_with_its_body_at_once_passes() -> None:
    with serving(LIMITS) as port, connect(port) as sock:
        # One send of a 15 KB head and a 100 KB body: more than the limit in one chunk, but
        # the head ends within it.
        sock.sendall(request(body=b"y" * 100_000, X_Pad="p" * 15_000))
        assert json.loads(read_answer(sock)[2]) == {"received": 100_000}


@pytest.mark.parametrize("sent", [b"", b"POST / HTTP/1.1\r\nHost: x\r\n"])
def test_a_head_not_sent_in_time_gets_408(sent: bytes) -> None:
    limits = HttpLimits(16_384, SHORT_S, 30.0, 50)
    with serving(limits) as port, connect(port) as sock:
        sock.sendall(sent)  # nothing, or half a head, then silence
        assert_refused(sock, 408, "request_timeout")


def test_a_head_sent_slowly_byte_by_byte_gets_408_all_the_same() -> None:
    limits = HttpLimits(16_384, SHORT_S * 2, 30.0, 50)
    with serving(limits) as port, connect(port) as sock:
        # Each byte resets no timer: the head's deadline runs from its first byte.
        started = time.monotonic()
        for byte in b"POST / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"z" * 100:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.05)
            if time.monotonic() - started > 10 * limits.header_timeout_s:
                break
        assert_refused(sock, 408, "request_timeout")


def test_a_body_that_stops_gets_408_and_the_connection_closes() -> None:
    limits = HttpLimits(16_384, 30.0, SHORT_S, 50)
    with serving(limits) as port, connect(port) as sock:
        sock.sendall(
            request(body=b"0123456789").replace(b"Content-Length: 10", b"Content-Length: 1000")
        )
        assert_refused(sock, 408, "request_timeout")


def test_connections_over_the_limit_get_503_at_once() -> None:
    limits = HttpLimits(16_384, 30.0, 30.0, 3)
    with serving(limits) as port:
        idle = [connect(port) for _ in range(3)]
        try:
            time.sleep(0.2)  # accepted, as the server counts them
            with connect(port) as sock:
                assert_refused(sock, 503, "too_many_connections")
            idle.pop().close()
            time.sleep(0.2)
            with connect(port) as sock:
                sock.sendall(request(body=b"ok"))
                assert json.loads(read_answer(sock)[2]) == {"received": 2}
        finally:
            for sock in idle:
                sock.close()


def test_the_limits_come_from_the_settings() -> None:
    settings = Settings(
        http_max_header_bytes=20_000, http_header_timeout_s=3, http_max_connections=7
    )
    assert HttpLimits.of(settings) == HttpLimits(20_000, 3.0, 30.0, 7)
    assert HttpLimits.of(Settings()).max_connections == auto_max_connections()
    assert 16 <= auto_max_connections() <= 4096


def test_a_bare_crlf_after_an_answer_does_not_hold_the_connection() -> None:
    """The parser skips a CRLF between requests without beginning one, and uvicorn's
    keep-alive timer stops at any byte: such a connection was held forever, and a few
    hundred of them filled the connection limit."""
    limits = HttpLimits(16_384, SHORT_S, 30.0, 50)
    with serving(limits) as port, connect(port) as sock:
        sock.sendall(request(body=b"ok"))
        assert json.loads(read_answer(sock)[2]) == {"received": 2}
        sock.sendall(b"\r\n")
        assert_refused(sock, 408, "request_timeout")


def test_a_trailer_over_the_limit_gets_431() -> None:
    """httptools gathers a trailer by concatenation too; it counted as body, unlimited."""
    with serving(LIMITS) as port, connect(port) as sock:
        head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        sock.sendall(head + b"2\r\nok\r\n0\r\nX-Trailer: ")
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            for _ in range(10):
                sock.sendall(b"t" * 4096)
                time.sleep(0.02)
        assert_refused(sock, 431, "headers_too_large")


def test_a_pipelined_head_waiting_on_a_slow_answer_is_not_timed_out() -> None:
    """While the service answers an earlier request, reading pauses: the next head cannot
    arrive, and its timer used to answer 408 in place of the slow request's 200."""
    limits = HttpLimits(16_384, SHORT_S, 30.0, 50)
    with serving(limits) as port, connect(port) as sock:
        sock.sendall(request("/slow", b"a") + b"POST / HTTP/1.1\r\nHo")
        time.sleep(3 * SHORT_S)
        sock.sendall(b"st: x\r\nContent-Length: 3\r\n\r\nabc")
        assert [json.loads(read_answer(sock)[2]) for _ in range(2)] == [
            {"received": 1},
            {"received": 3},
        ]


def test_an_oversized_pipelined_head_never_takes_an_earlier_requests_place() -> None:
    with serving(LIMITS) as port, connect(port) as sock:
        sock.sendall(request("/slow", b"a"))
        time.sleep(0.3)  # read apart from the next head
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 50_000)
        # The slow request's answer is owed first: no 431 in its place, the connection
        # closes instead.
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                answer += chunk
        assert b"431" not in answer.split(b"\r\n", 1)[0], answer[:200]


def test_a_flood_of_refusals_is_logged_once_with_a_count(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(http_refusals, "_warned", {})
    caplog.set_level(logging.WARNING, logger="app.api.http_refusals")
    limits = HttpLimits(16_384, 30.0, 30.0, 1)
    with serving(limits) as port, connect(port) as held:
        time.sleep(0.2)
        for _ in range(5):
            with connect(port) as sock:
                assert_refused(sock, 503, "too_many_connections")
        held.sendall(request(body=b"ok"))
        assert json.loads(read_answer(held)[2]) == {"received": 2}
    logged = [r.getMessage() for r in caplog.records if "too_many_connections" in r.getMessage()]
    assert len(logged) == 1, logged


def test_a_body_sent_after_its_early_answer_does_not_hold_the_connection() -> None:
    """uvicorn starts its keep-alive timer with the answer; the body's bytes after it
    stopped that timer, and the idle connection was held forever: a few hundred such
    unauthenticated connections filled the connection cap."""
    with serving(LIMITS) as port, connect(port) as sock:
        sock.sendall(request("/early").replace(b"Content-Length: 0", b"Content-Length: 5"))
        assert read_answer(sock)[0] == 401
        sock.sendall(b"12345")
        assert closed(sock)  # by the keep-alive timeout (1 s here), not never

"""403, 429 and an upload's 415 for requests with a body, before their body is read."""

from __future__ import annotations

import math
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from app.api.early_checks import BODY_METHODS, find_route_roles
from app.config import Settings
from app.main import create_app
from benchmarks.ports import free_port
from tests.api.conftest import ClientFactory, assert_error
from tests.threaded_server import running

ADMIN = "admin-key-0123456789abcdef"
CLIENT = "client-key-0123456789abcdef"
OTHER = "other-client-key-0123456789"
KEYS = f"admin:{ADMIN},client:{CLIENT},client:{OTHER}"


@contextmanager
def serving(data_dir: Path, models: Any, **overrides: Any) -> Iterator[str]:
    """The app under a real uvicorn server on a free loopback port, in this process (its
    models shared), so that a raw socket can send headers and hold the body back."""
    defaults: dict[str, Any] = {"embedder": "arcface-mbf", "device": "cpu"}
    settings = Settings(data_dir=data_dir, **(defaults | overrides))
    port = free_port()
    config = uvicorn.Config(create_app(settings, models), host="127.0.0.1", port=port)
    with running(config):
        yield f"http://127.0.0.1:{port}"


def headers_only(port: int, method: str, path: str, headers: dict[str, str]) -> bytes:
    """Sends a request's line and headers, never its body, and returns what the server
    answers within a few seconds (b"" when it answers nothing: it waits for the body)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        answer = b""
        try:
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(body) < length and (chunk := sock.recv(65536)):
                body += chunk
            return head + b"\r\n\r\n" + body
        except (TimeoutError, StopIteration):
            return answer


def test_over_the_limit_and_wrong_role_are_answered_before_the_body_is_sent(
    tmp_path: Path, models: Any
) -> None:
    """Before, the service waited for (and would have parsed) the whole 5 MB upload, or the
    admin route's JSON, before its 429 or 403: a client over its limit still cost a read
    and a spool to disk per request."""
    with serving(
        tmp_path / "data", models, api_keys=KEYS, rate_limit=0.001, rate_limit_burst=1
    ) as url:
        port = int(url.rsplit(":", 1)[1])
        with httpx.Client(base_url=url, timeout=30) as http:
            assert http.get("/v1/subjects", headers={"X-API-Key": CLIENT}).status_code == 200
        upload = {
            "X-API-Key": CLIENT,
            "Content-Type": "multipart/form-data; boundary=b",
            "Content-Length": "5000000",  # under the upload limit: not a 413
        }
        answer = headers_only(port, "POST", "/v1/subjects/some-id/faces", upload)
        assert answer.startswith(b"HTTP/1.1 429 "), answer[:300]
        assert b"\r\nretry-after: " in answer.lower()
        assert b'"code":"rate_limited"' in answer
        assert b"rate limit of 0.001 requests a second (bursts of 1)" in answer

        admin_json = {
            "X-API-Key": OTHER,
            "Content-Type": "application/json",
            "Content-Length": "900000",  # under the JSON limit
        }
        answer = headers_only(port, "POST", "/v1/admin/calibrate", admin_json)
        assert answer.startswith(b"HTTP/1.1 403 "), answer[:300]
        assert b'"code":"forbidden"' in answer
        assert b"This endpoint needs the admin role." in answer
        with httpx.Client(base_url=url, timeout=30) as http:  # 403 first: no token spent
            assert http.get("/v1/subjects", headers={"X-API-Key": OTHER}).status_code == 200


def test_an_upload_in_another_type_is_refused_before_its_body_is_sent(
    tmp_path: Path, models: Any
) -> None:
    """A form-encoded body to an upload route was read whole by the form parser before its
    415, and any body over 1 MB was told 413; the 415 now answers the headers, after the
    key check, whatever the size."""
    taken = b"This endpoint takes multipart/form-data with a field named image, not "
    with serving(tmp_path / "data", models, api_keys=KEYS) as url:
        port = int(url.rsplit(":", 1)[1])
        for kind in ("application/x-www-form-urlencoded", "application/octet-stream"):
            for length in ("500000", "2280860"):
                sent = {"X-API-Key": CLIENT, "Content-Type": kind, "Content-Length": length}
                answer = headers_only(port, "POST", "/v1/detect", sent)
                assert answer.startswith(b"HTTP/1.1 415 "), (kind, length, answer[:300])
                assert b'"code":"unsupported_media_type"' in answer
                assert taken + kind.encode() + b"." in answer
                del sent["X-API-Key"]
                answer = headers_only(port, "POST", "/v1/detect", sent)
                assert answer.startswith(b"HTTP/1.1 401 "), (kind, length, answer[:300])


@pytest.mark.parametrize("keys", [KEYS, ""], ids=["per-key", "per-address"])
def test_a_request_with_a_body_is_charged_once(make_client: ClientFactory, keys: str) -> None:
    """The early check takes the token, and the route's own check must not take another:
    with a burst of 4, four requests pass, bodies or not, and the fifth is refused."""
    client = make_client(api_keys=keys, rate_limit=0.001, rate_limit_burst=4)
    mine = {"X-API-Key": CLIENT} if keys else {}
    created = client.post("/v1/subjects", json={"name": "Ada"}, headers=mine)
    assert created.status_code == 201, created.text
    subject = created.json()["id"]
    renamed = client.patch(f"/v1/subjects/{subject}", json={"name": "Ada L."}, headers=mine)
    assert renamed.status_code == 200, renamed.text
    assert client.get("/v1/subjects", headers=mine).status_code == 200  # the same bucket
    assert client.post("/v1/subjects", json={"name": "Bo"}, headers=mine).status_code == 201
    refused = client.post("/v1/subjects", json={"name": "Cy"}, headers=mine)
    error = assert_error(refused, 429, "rate_limited")
    assert refused.headers["Retry-After"] == str(math.ceil(error["details"]["retry_after_s"]))
    assert_error(client.get("/v1/subjects", headers=mine), 429, "rate_limited")
    role = "client" if keys else "open"
    assert f'face_rate_limited_total{{role="{role}"}} 2.0' in client.get("/metrics").text
    if keys:  # another key has its own bucket, untouched by the early checks of this one
        other = client.post("/v1/subjects", json={"name": "Di"}, headers={"X-API-Key": OTHER})
        assert other.status_code == 201, other.text


def test_every_route_with_a_body_has_the_role_of_its_prefix(client: TestClient) -> None:
    """The roles are read from the routes' AdminKey and ClientKey: every route taking a body
    has one, the admin role exactly under /v1/admin, so none is left to the late check."""
    routes = find_route_roles(client.app.routes)  # type: ignore[attr-defined]
    with_body = [r for r in routes if r.methods and r.methods & BODY_METHODS]
    assert len(with_body) >= 10
    for route in with_body:
        expected = "admin" if route.path.startswith("/v1/admin/") else "client"
        assert route.role == expected, route.path
    assert {r.role for r in routes if r.path in ("/v1/health", "/metrics")} == {None}


def test_the_early_mark_never_stands_in_for_the_routes_key_check(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mark only says which rate-limit bucket was charged: the route still checks the
    key and its role, so a mark that reached the wrong request (a state shared between
    requests, or an early match of another route) lets nothing through."""
    from app.api import early_checks
    from app.api.deps import CHARGED_EARLY
    from app.security import key_digest

    def marks_every_request(self: Any, scope: Any, path: str, key: bytes | None) -> None:
        scope.setdefault("state", {})[CHARGED_EARLY] = key_digest(CLIENT)

    monkeypatch.setattr(early_checks.EarlyChecks, "refusal", marks_every_request)
    client = make_client(api_keys=KEYS, rate_limit=0.001, rate_limit_burst=1)
    answer = client.post(
        "/v1/admin/calibrate", json={"target_far": 0.01}, headers={"X-API-Key": CLIENT}
    )
    assert_error(answer, 403, "forbidden")
    assert_error(client.get("/v1/subjects"), 401, "unauthorized")
    # Another key's request marked with this bucket is charged to its own.
    other = {"X-API-Key": OTHER}
    assert client.post("/v1/subjects", json={"name": "a"}, headers=other).status_code == 201
    assert_error(
        client.post("/v1/subjects", json={"name": "b"}, headers=other), 429, "rate_limited"
    )

"""The request guards and HTTP metrics of app/api/middleware.py."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from pathlib import Path

from fastapi.testclient import TestClient

from app.api.body_limits import FORM_ALLOWANCE_BYTES, MAX_JSON_BODY_BYTES
from tests.api.conftest import ClientFactory, assert_error, new_subject


def _counter(metrics: str, method: str, route: str, status: int) -> float:
    pattern = (
        r"^face_http_requests_total\{"
        + rf'method="{method}",route="{re.escape(route)}",status="{status}"'
        + r"\} (\S+)$"
    )
    found = re.search(pattern, metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_requests_are_counted_by_route_template_and_status(client: TestClient) -> None:
    subject = new_subject(client, "Ada")
    assert client.get(f"/v1/subjects/{subject}").status_code == 200
    assert client.get(f"/v1/subjects/{subject}").status_code == 200
    assert_error(client.get("/v1/subjects/no-such-id"), 404, "subject_not_found")
    assert client.get("/v1/nowhere").status_code == 404

    metrics = client.get("/metrics").text
    assert _counter(metrics, "POST", "/v1/subjects", 201) == 1
    # One series for every subject id: the template, not the raw path.
    assert _counter(metrics, "GET", "/v1/subjects/{subject_id}", 200) == 2
    assert _counter(metrics, "GET", "/v1/subjects/{subject_id}", 404) == 1
    assert _counter(metrics, "GET", "unmatched", 404) == 1
    assert subject not in metrics
    latency = re.search(
        r'^face_http_request_duration_seconds_count\{method="GET",'
        r'route="/v1/subjects/\{subject_id\}"\} (\S+)$',
        metrics,
        re.MULTILINE,
    )
    assert latency is not None and float(latency.group(1)) == 3


def test_oversized_bodies_are_refused_before_parsing(make_client: ClientFactory) -> None:
    # Room for verify's two files of 1,000 bytes plus 1,000,000 bytes of form fields.
    client = make_client(max_upload_bytes=1000, max_files_per_request=1)
    body = b"x" * 1_002_001
    refused = client.post(
        "/v1/verify",
        content=body,
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert_error(refused, 413, "payload_too_large")
    assert "1002000 bytes" in refused.json()["error"]["message"]
    # Refusals never reach a route, and the service keeps serving; the metrics count them
    # under a route label of their own.
    assert client.get("/v1/health").status_code == 200
    metrics = client.get("/metrics").text
    assert "/v1/verify" not in metrics
    assert _counter(metrics, "POST", "refused", 413) == 1


def _chunks(total: int, size: int = 100_000) -> Iterator[bytes]:
    """A body without Content-Length: the client sends it chunked."""
    for _ in range(total // size):
        yield b"x" * size


def test_chunked_bodies_are_counted_against_the_limit(make_client: ClientFactory) -> None:
    # Room for verify's two files of 1,000 bytes plus 1,000,000 bytes of form fields.
    client = make_client(max_upload_bytes=1000, max_files_per_request=1)
    multipart = client.post(
        "/v1/verify",
        content=_chunks(1_200_000),
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert "1002000 bytes" in assert_error(multipart, 413, "payload_too_large")["message"]
    subject = client.post(
        "/v1/subjects", content=_chunks(1_200_000), headers={"content-type": "application/json"}
    )
    assert_error(subject, 413, "payload_too_large")
    assert client.get("/v1/subjects").json()["total"] == 0
    assert client.get("/v1/health").status_code == 200


def test_json_bodies_have_a_limit_of_their_own(client: TestClient) -> None:
    body = json.dumps({"name": "Ada", "metadata": {"notes": "x" * MAX_JSON_BODY_BYTES}})
    headers = {"content-type": "application/json"}
    refused = client.post("/v1/subjects", content=body, headers=headers)
    message = assert_error(refused, 413, "payload_too_large")["message"]
    assert message == f"Request body exceeds {MAX_JSON_BODY_BYTES} bytes."
    assert client.get("/v1/subjects").json()["total"] == 0


def test_only_upload_routes_take_upload_sized_bodies(make_client: ClientFactory) -> None:
    # A JSON route whose request claims to be multipart keeps the JSON limit: the body is
    # not parsed as an upload there, and FastAPI would read it all into memory.
    client = make_client(max_upload_bytes=10_000_000)
    body = b"x" * (MAX_JSON_BODY_BYTES + 1)
    multipart = {"content-type": "multipart/form-data; boundary=b"}
    for path in ("/v1/subjects", "/v1/admin/calibrate", "/v1/admin/finetune"):
        refused = client.post(path, content=body, headers=multipart)
        assert_error(refused, 413, "payload_too_large")
    subject = new_subject(client, "Ada")
    patched = client.patch(f"/v1/subjects/{subject}", content=body, headers=multipart)
    assert_error(patched, 413, "payload_too_large")
    # The upload routes take it to their own limit (and then find no valid form in it).
    for path in ("/v1/verify", "/v1/identify", "/v1/detect", f"/v1/subjects/{subject}/faces"):
        assert client.post(path, content=body, headers=multipart).status_code != 413


def test_only_upload_routes_answer_a_large_body_of_another_type_with_415(
    client: TestClient,
) -> None:
    """An upload route names the form it takes whatever the body's size; every other route,
    or a path an upload route takes only but for a trailing slash, keeps the JSON limit."""
    body = b"x" * (2 * MAX_JSON_BODY_BYTES)
    raw = {"content-type": "application/octet-stream"}
    subject = new_subject(client, "Ada")
    for path in ("/v1/verify", "/v1/identify", "/v1/detect", f"/v1/subjects/{subject}/faces"):
        assert_error(client.post(path, content=body, headers=raw), 415, "unsupported_media_type")
        assert_error(client.post(path, content=body), 415, "unsupported_media_type")
    as_json = json.dumps({"name": "Ada", "metadata": {"notes": "x" * MAX_JSON_BODY_BYTES}})
    typed = {"content-type": "application/json"}
    for path in ("/v1/subjects", "/v1/admin/calibrate", "/v1/detect/", "/v1/nowhere"):
        assert_error(client.post(path, content=as_json, headers=typed), 413, "payload_too_large")
        assert_error(client.post(path, content=body, headers=raw), 413, "payload_too_large")
    patched = client.patch(f"/v1/subjects/{subject}", content=as_json, headers=typed)
    assert_error(patched, 413, "payload_too_large")
    # PUT is no upload route's method: the 405 a small body gets is not made a 415.
    assert_error(client.put("/v1/detect", content=body, headers=raw), 413, "payload_too_large")
    assert_error(client.put("/v1/detect", content=b"x", headers=raw), 405, "method_not_allowed")
    metrics = client.get("/metrics").text
    assert _counter(metrics, "POST", "refused", 415) == 8
    assert client.get(f"/v1/subjects/{subject}").json()["name"] == "Ada"


def test_each_upload_route_takes_the_files_it_uses(make_client: ClientFactory) -> None:
    """Identify took an enrolment-sized body (201 MB by default), held in memory part by
    part: now one file for identify and detect, two for verify, the per-request maximum for
    enrolment, each plus 1 MB of form."""
    client = make_client(max_upload_bytes=100_000, max_files_per_request=5)
    subject = new_subject(client, "Ada")
    multipart = {"content-type": "multipart/form-data; boundary=b"}
    for path, files in (
        ("/v1/identify", 1),
        ("/v1/detect", 1),
        ("/v1/verify", 2),
        (f"/v1/subjects/{subject}/faces", 5),
    ):
        limit = 100_000 * files + FORM_ALLOWANCE_BYTES
        refused = client.post(path, content=b"x" * (limit + 1), headers=multipart)
        assert f"{limit} bytes" in assert_error(refused, 413, "payload_too_large")["message"]
        taken = client.post(path, content=b"x" * limit, headers=multipart)
        assert taken.status_code != 413  # then refused as a malformed form
    assert client.get("/v1/health").status_code == 200


def test_requests_refused_before_routing_are_counted(make_client: ClientFactory) -> None:
    client = make_client(api_keys="admin:adm-secret-123")
    for _ in range(3):
        assert_error(client.post("/v1/subjects", json={"name": "x"}), 401, "unauthorized")
    metrics = client.get("/metrics", headers={"X-API-Key": "adm-secret-123"}).text
    assert _counter(metrics, "POST", "refused", 401) == 3


def test_health_and_readiness_answer_head(client: TestClient) -> None:
    for path in ("/v1/health", "/v1/ready"):
        response = client.head(path)
        assert response.status_code == 200 and response.content == b""


def test_a_trailing_slash_is_a_404_not_a_redirect_to_the_host_header(
    client: TestClient,
) -> None:
    # Starlette would answer 307 with Location built from the Host header the client sent.
    for method, path in (
        ("GET", "/v1/subjects/"),
        ("POST", "/v1/subjects/"),
        ("GET", "/v1/health/"),
    ):
        response = client.request(
            method, path, headers={"Host": "evil.example"}, follow_redirects=False
        )
        assert "location" not in response.headers
        body = assert_error(response, 404, "not_found")
        assert path.rstrip("/") in body["message"]
    assert "try" not in assert_error(client.get("//"), 404, "not_found")["message"]
    assert client.get("/v1/health").status_code == 200


def test_a_repeated_content_type_cannot_choose_the_larger_limit(client: TestClient) -> None:
    # FastAPI parses by the first Content-Type; the guard must limit by the same one.
    body = json.dumps({"name": "Ada", "metadata": {"notes": "x" * MAX_JSON_BODY_BYTES}})
    refused = client.post(
        "/v1/subjects",
        content=body,
        headers=[
            ("content-type", "application/json"),
            ("content-type", "multipart/form-data; boundary=b"),
        ],
    )
    assert_error(refused, 413, "payload_too_large")


def test_an_unexpected_error_is_answered_and_not_raised_on(client: TestClient) -> None:
    """A re-raised error made uvicorn log it twice and close the connection."""

    def boom() -> None:
        raise RuntimeError("a bug")

    client.app.add_api_route("/boom", boom)  # type: ignore[attr-defined]
    # TestClient raises whatever escapes the app; the guard now answers it instead.
    error = assert_error(client.get("/boom"), 500, "internal_error")
    assert error["message"] == "Internal server error." and "a bug" not in str(error)
    assert client.get("/v1/health").status_code == 200
    assert _counter(client.get("/metrics").text, "GET", "/boom", 500) == 1


def test_an_unreachable_database_is_a_503_to_retry_not_a_bug(client: TestClient) -> None:
    from sqlalchemy.exc import OperationalError

    def database_down() -> None:
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))

    client.app.add_api_route("/database-down", database_down)  # type: ignore[attr-defined]
    error = assert_error(client.get("/database-down"), 503, "database_unavailable")
    assert error["message"] == "The database is unavailable; retry shortly."
    assert "SELECT" not in str(error)


def test_the_upload_limit_follows_the_route_behind_a_root_path(tmp_path: Path) -> None:
    """uvicorn --root-path /face puts the prefix in front of every path; the route under it
    is still an upload route (a 2 MB upload was refused with 413)."""
    import asyncio

    from app.api.middleware import GuardAndMeasure
    from app.api.upload_routes import find_upload_routes
    from app.config import Settings
    from app.main import create_app
    from app.metrics import Metrics
    from app.security import KeyRing

    reached: list[str] = []

    async def app(scope: object, receive: object, send: object) -> None:
        reached.append("app")

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    uploads = find_upload_routes(create_app(Settings(data_dir=tmp_path)).routes)
    guard = GuardAndMeasure(app, Metrics(), 10**8, KeyRing.parse(""), uploads=uploads)

    def status(path: str, root_path: str = "") -> object:
        reached.clear()
        sent.clear()
        headers = [
            (b"content-type", b"multipart/form-data; boundary=b"),
            (b"content-length", str(2 * MAX_JSON_BODY_BYTES).encode()),
        ]
        scope = {
            "type": "http",
            "method": "POST",
            "path": root_path + path,
            "root_path": root_path,
            "headers": headers,
        }
        asyncio.run(guard(scope, receive, send))  # type: ignore[arg-type]
        return sent[0]["status"] if sent else "passed"

    for path in ("/v1/detect", "/v1/subjects/abc/faces", "/v1/verify"):
        assert status(path) == "passed"
        assert status(path, root_path="/face") == "passed"
    assert status("/v1/subjects", root_path="/face") == 413


def test_a_compressed_body_is_refused_not_misread(client: TestClient) -> None:
    body = gzip.compress(b'{"name": "Ada"}')
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    refused = client.post("/v1/subjects", content=body, headers=headers)
    assert "gzip" in assert_error(refused, 415, "unsupported_media_type")["message"]
    plain = client.post(
        "/v1/subjects", json={"name": "Ada"}, headers={"Content-Encoding": "identity"}
    )
    assert plain.status_code == 201, plain.text


def test_an_upload_to_a_path_with_a_trailing_slash_gets_the_404_that_names_it(
    client: TestClient,
) -> None:
    """An ordinary 2 MB photo sent to /v1/verify/ was told 413 (the JSON limit), hiding
    the real mistake, which the 404 names."""
    photo = ("photo.jpg", b"\xff" * 2_000_000, "image/jpeg")
    for path in ("/v1/verify/", "/v1/identify/", "/v1/subjects/abc/faces/"):
        body = assert_error(client.post(path, files={"image": photo}), 404, "not_found")
        assert path.rstrip("/") in body["message"]


def test_the_root_path_is_taken_off_as_the_router_takes_it_off() -> None:
    """Only a root that ends at a "/" of the path: "/apiv1/detect" is not under "/api"."""
    from app.api.middleware import _route_path

    assert _route_path({"path": "/api/v1/detect", "root_path": "/api"}) == "/v1/detect"
    assert _route_path({"path": "/apiv1/detect", "root_path": "/api"}) == "/apiv1/detect"
    assert _route_path({"path": "/api", "root_path": "/api"}) == ""
    assert _route_path({"path": "/v1/detect", "root_path": ""}) == "/v1/detect"

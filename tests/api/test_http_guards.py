"""The request guards and HTTP metrics of app/api/middleware.py."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

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
    # Room for one file of 1,000 bytes plus 1,000,000 bytes of form fields.
    client = make_client(max_upload_bytes=1000, max_files_per_request=1)
    body = b"x" * 1_001_001
    refused = client.post(
        "/v1/verify",
        content=body,
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert_error(refused, 413, "payload_too_large")
    assert "1001000 bytes" in refused.json()["error"]["message"]
    # Refusals never reach a route, and the service keeps serving.
    assert client.get("/v1/health").status_code == 200
    assert "/v1/verify" not in client.get("/metrics").text

"""Error answers: one shape with `details` always present, Allow on 405, a 401 challenge."""

from __future__ import annotations

import warnings
from typing import Any

from fastapi.testclient import TestClient
from PIL import Image

from tests.api.conftest import ClientFactory, assert_error, jpeg_bytes, new_subject

KEYS = "admin:adm-secret-123,client:cli-secret-456"


def plain_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """An error with nothing to add carries `details` as an explicit null."""
    error = assert_error(response, status, code)
    assert set(error) == {"code", "message", "details"}, error
    assert error["details"] is None
    return error


def test_a_405_names_every_method_the_path_takes(client: TestClient) -> None:
    subject = new_subject(client, "Ada")
    # GET and POST /v1/subjects are two routes: Starlette named only the first it met.
    for method, path, allowed in (
        ("DELETE", "/v1/subjects", "GET, POST"),
        ("PUT", f"/v1/subjects/{subject}", "GET, PATCH, DELETE"),
        ("POST", "/v1/health", "GET, HEAD"),
        ("GET", "/v1/verify", "POST"),
        ("GET", "/v1/admin/index/rebuild", "POST"),
    ):
        response = client.request(method, path)
        plain_error(response, 405, "method_not_allowed")
        assert response.headers["allow"] == allowed, (method, path)
    # Each method it names is one the path takes.
    assert client.get("/v1/subjects").status_code == 200
    assert client.patch(f"/v1/subjects/{subject}", json={"name": "Ada L."}).status_code == 200


def test_a_401_says_how_to_authenticate(make_client: ClientFactory) -> None:
    client = make_client(api_keys=KEYS)
    challenge = 'ApiKey header="X-API-Key"'
    # Refused by the route's own check (no body), and by the guard before the body is read.
    for response in (
        client.get("/v1/subjects"),
        client.get("/v1/subjects", headers={"X-API-Key": "wrong"}),
        client.post("/v1/subjects", json={"name": "Ada"}),
        client.post("/v1/admin/index/rebuild"),
    ):
        plain_error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == challenge
    # A key of the wrong role is not asked to authenticate again.
    forbidden = client.post("/v1/admin/index/rebuild", headers={"X-API-Key": "cli-secret-456"})
    plain_error(forbidden, 403, "forbidden")
    assert "www-authenticate" not in forbidden.headers
    ok = client.get("/v1/subjects", headers={"X-API-Key": "cli-secret-456"})
    assert ok.status_code == 200 and "www-authenticate" not in ok.headers


def test_every_error_carries_details_even_when_null(client: TestClient) -> None:
    subject = new_subject(client, "Ada")
    plain_error(client.get("/v1/nowhere"), 404, "not_found")
    plain_error(client.delete("/v1/subjects"), 405, "method_not_allowed")
    empty = {"image": ("empty.jpg", b"")}
    plain_error(client.post("/v1/detect", files=empty), 422, "invalid_image")
    text = {"image": ("notes.txt", b"just some words, not an image at all")}
    plain_error(client.post("/v1/detect", files=text), 415, "unsupported_media_type")
    blank = {"image": ("blank.jpg", jpeg_bytes(Image.new("RGB", (200, 200), "grey")))}
    plain_error(client.post("/v1/identify", files=blank), 422, "no_face")
    unenrolled = client.post("/v1/verify", data={"subject_id": subject}, files=blank)
    plain_error(unenrolled, 422, "subject_has_no_faces")
    # An error with something to add still carries it.
    pair = client.post("/v1/verify", files={**blank, "image2": blank["image"]})
    assert assert_error(pair, 422, "no_face")["details"] == {"upload": "image"}


def test_the_openapi_error_schema_names_details(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert set(schemas["ErrorBody"]["properties"]) == {"code", "message", "details"}


def test_health_answers_head_and_the_schema_builds_without_warnings(client: TestClient) -> None:
    for path in ("/v1/health", "/v1/ready"):
        head = client.head(path)
        assert head.status_code == 200 and head.content == b""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a duplicate operationId is a UserWarning
        client.app.openapi_schema = None  # type: ignore[attr-defined]
        schema = client.get("/openapi.json").json()
    assert list(schema["paths"]["/v1/health"]) == ["get"]


def test_every_invalid_request_lists_its_problems_one_way(
    client: TestClient, package_images: Any
) -> None:
    """details of invalid_request is a list of {loc, msg, type}, whatever refused it: some
    answered a dict (a repeated image, a fine-tune's device) or null (verify without a
    reference, too many files, a NUL in the path) before."""
    subject = new_subject(client, "Ada")
    yao = (package_images / "yaoming.jpg").read_bytes()
    refusals = {
        "validation": client.post("/v1/subjects", json={"name": None}),
        "neither reference": client.post("/v1/verify", files={"image": ("a.jpg", yao)}),
        "both references": client.post(
            "/v1/verify",
            data={"subject_id": subject},
            files={"image": ("a.jpg", yao), "image2": ("b.jpg", yao)},
        ),
        "too many files": client.post(
            f"/v1/subjects/{subject}/faces",
            files=[("files", (f"{n}.jpg", b"x")) for n in range(21)],
        ),
        "repeated image": client.post(
            f"/v1/subjects/{subject}/faces",
            files=[("files", ("a.jpg", yao)), ("files", ("b.jpg", yao))],
        ),
        "NUL in the path": client.get("/v1/subjects/a%00b"),
        "bad cursor": client.get("/v1/subjects", params={"after": "nonsense"}),
        "unknown form field": client.post(
            "/v1/verify", data={"subjectid": subject}, files={"image": ("a.jpg", yao)}
        ),
        "unknown device": client.post("/v1/admin/finetune", json={"device": "cuda:99"}),
    }
    for what, response in refusals.items():
        details = assert_error(response, 422, "invalid_request")["details"]
        assert isinstance(details, list) and details, (what, details)
        for problem in details:
            assert set(problem) == {"loc", "msg", "type"}, (what, problem)
            assert isinstance(problem["loc"], list) and problem["loc"][0] in {
                "body",
                "query",
                "path",
            }, (what, problem)
            assert problem["msg"] and problem["type"], (what, problem)

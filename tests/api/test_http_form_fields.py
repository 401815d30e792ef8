"""Form fields a route does not declare, or sends twice, are refused (app/api/form_guard.py)."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from fastapi import params
from fastapi.testclient import TestClient
from PIL import Image

from tests.api.conftest import api_routes, assert_error, enrol, jpeg_bytes, upload


def refused(response: Any, name: str, kind: str) -> str:
    error = assert_error(response, 422, "invalid_request")
    assert {"loc": ["body", name], "type": kind} in [
        {"loc": problem["loc"], "type": problem["type"]} for problem in error["details"]
    ], error
    message: str = error["message"]
    return message


def test_a_misspelt_field_is_refused_not_ignored(
    client: TestClient, yao: str, package_images: Path
) -> None:
    """`treshold` was ignored, and the request decided at the default threshold."""
    probe = {"image": ("y.jpg", (package_images / "yaoming.jpg").read_bytes())}
    response = client.post("/v1/verify", data={"subject_id": yao, "treshold": "0.99"}, files=probe)
    message = refused(response, "treshold", "extra_forbidden")
    assert "treshold is not a form field of this endpoint" in message
    assert "form fields it takes: face, image, image2, subject_id, threshold" in message
    top = client.post("/v1/identify", data={"topk": "1"}, files=probe)
    assert "topk is not a form field" in refused(top, "topk", "extra_forbidden")


def test_a_field_sent_twice_is_refused_not_last_wins(
    client: TestClient, yao: str, package_images: Path
) -> None:
    yao_bytes = (package_images / "yaoming.jpg").read_bytes()
    gdp = (package_images / "gdp.jpg").read_bytes()
    # The second threshold used to replace the first: -0.5 accepted anyone.
    twice = {"subject_id": yao, "threshold": ["0.99", "-0.5"]}
    response = client.post("/v1/verify", data=twice, files={"image": ("g.jpg", gdp)})
    message = refused(response, "threshold", "repeated_field")
    assert "threshold was sent 2 times; this endpoint takes one" in message
    # A second image used to replace the first without a word.
    two_images = [("image", ("y.jpg", yao_bytes)), ("image", ("g.jpg", gdp))]
    for path in ("/v1/verify", "/v1/identify", "/v1/detect"):
        data = {"subject_id": yao} if path == "/v1/verify" else {}
        answer = client.post(path, data=data, files=two_images)
        refused(answer, "image", "repeated_field")
    # One of each still works.
    ok = client.post("/v1/verify", data={"subject_id": yao}, files={"image": ("y.jpg", yao_bytes)})
    assert ok.status_code == 200, ok.text
    assert ok.json()["verified"] is True


def test_a_list_field_may_repeat_and_an_unknown_one_is_refused_before_enrolling(
    client: TestClient, yao: str, package_images: Path
) -> None:
    before = client.get(f"/v1/subjects/{yao}/faces").json()["faces"]
    players = (package_images / "players.jpg").read_bytes()
    files = [("files", upload("p.jpg", players)), ("file", upload("y.jpg", b"x"))]
    response = client.post(f"/v1/subjects/{yao}/faces", files=files)
    refused(response, "file", "extra_forbidden")
    assert client.get(f"/v1/subjects/{yao}/faces").json()["faces"] == before
    # `files` is a list: two parts are two images.
    yao_face = Image.open(package_images / "yaoming.jpg")
    answer = enrol(
        client, yao, ("a.png", _encoded(yao_face, "PNG")), ("b.jpg", jpeg_bytes(yao_face, 80))
    )
    assert answer.status_code == 201, answer.text
    assert len(client.get(f"/v1/subjects/{yao}/faces").json()["faces"]) == len(before) + 2


def _encoded(image: Image.Image, kind: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=kind)
    return buffer.getvalue()


def test_every_form_route_refuses_an_unknown_field(client: TestClient) -> None:
    """Each route that reads a form checks its fields before acting: a router added
    without the check would ignore them again."""
    checked: list[str] = []
    for route in api_routes(client):
        body = route.body_field
        if body is None or not isinstance(body.field_info, params.Form):
            continue
        path = re.sub(r"{[^}]+}", "x", route.path)
        for method in route.methods:
            response = client.request(method, path, files={"zz": ("z.txt", b"z")})
            refused(response, "zz", "extra_forbidden")
            checked.append(f"{method} {route.path}")
    assert set(checked) == {
        "POST /v1/subjects/{subject_id}/faces",
        "POST /v1/verify",
        "POST /v1/identify",
        "POST /v1/detect",
    }

"""A body in another media type than its route reads is a 415 (app/api/content_type.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import Form
from fastapi.testclient import TestClient

from app.api.body_limits import MAX_JSON_BODY_BYTES
from app.api.deps import ClientKey
from tests.api.conftest import ClientFactory, api_routes, assert_error, enrol, new_subject

JSON_TAKEN = "This endpoint takes a JSON body (Content-Type: application/json)"


def refused(response: object, message: str) -> dict[str, object]:
    error = assert_error(response, 415, "unsupported_media_type")
    assert error["message"] == message, error
    return error


def outcome(response: Any) -> tuple[int, str | None]:
    """The status and error code of an answer: calibrate's depends on the gallery."""
    error = response.json().get("error") or {}
    return response.status_code, error.get("code")


def note(text: Annotated[str, Form()]) -> dict[str, str]:
    """A route some later change could add, with form fields and no file."""
    return {"text": text}


def test_json_endpoints_refuse_json_sent_as_another_type(client: TestClient, yao: str) -> None:
    """It was a 422 "Input should be a valid dictionary": FastAPI reads only JSON types as JSON."""
    body = json.dumps({"name": "Ada"}).encode()
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x"):
        media = kind.split(";")[0]
        created = client.post("/v1/subjects", content=body, headers={"Content-Type": kind})
        error = refused(created, f"{JSON_TAKEN}, not {media}.")
        assert error["details"] == {"expected": ["application/json"], "received": media}
        patched = client.patch(f"/v1/subjects/{yao}", content=body, headers={"Content-Type": kind})
        refused(patched, f"{JSON_TAKEN}, not {media}.")
    # A body without a Content-Type, and one sent chunked, without a Content-Length.
    bare = client.post("/v1/subjects", content=body)
    refused(bare, f"{JSON_TAKEN}, not a body without a Content-Type.")
    chunked = client.post("/v1/subjects", content=iter([body]), headers={"Content-Type": "text/x"})
    refused(chunked, f"{JSON_TAKEN}, not text/x.")
    # Nothing was created or renamed.
    assert client.get("/v1/subjects").json()["total"] == 1
    assert client.get(f"/v1/subjects/{yao}").json()["name"] == "Yao Ming"
    # JSON with parameters, in any case, and +json types still are JSON.
    charset = {"Content-Type": "Application/JSON; charset=utf-8"}
    assert client.post("/v1/subjects", content=body, headers=charset).status_code == 201
    merge = {"Content-Type": "application/merge-patch+json"}
    renamed = client.patch(f"/v1/subjects/{yao}", content=b'{"name": "Yao"}', headers=merge)
    assert renamed.status_code == 200 and renamed.json()["name"] == "Yao", renamed.text


def test_json_in_utf16_or_utf32_is_refused_as_the_readme_says(client: TestClient, yao: str) -> None:
    """json.loads reads UTF-16 and UTF-32, and subjects were created from them (a contract
    audit); JSON between systems is UTF-8 (RFC 8259), and the README promised 400."""
    text = '{"name": "Wide"}'
    headers = {"Content-Type": "application/json; charset=utf-8"}
    for encoding in ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"):
        created = client.post("/v1/subjects", content=text.encode(encoding), headers=headers)
        error = assert_error(created, 400, "bad_request")
        assert "not UTF-8" in error["message"], encoding
        patched = client.patch(
            f"/v1/subjects/{yao}", content=text.encode(encoding), headers=headers
        )
        assert_error(patched, 400, "bad_request")
    assert client.get("/v1/subjects").json()["total"] == 1
    # UTF-8 with a byte-order mark is UTF-8: RFC 8259 lets a parser ignore the mark.
    marked = client.post("/v1/subjects", content=text.encode("utf-8-sig"), headers=headers)
    assert marked.status_code == 201 and marked.json()["name"] == "Wide"


def test_upload_endpoints_name_the_form_they_take(
    client: TestClient, yao: str, package_images: Path
) -> None:
    """It was a 422 about a missing field: a form parser finds no fields in other types."""
    photo = (package_images / "yaoming.jpg").read_bytes()
    fields = {
        "/v1/verify": "image",
        "/v1/identify": "image",
        "/v1/detect": "image",
        f"/v1/subjects/{yao}/faces": "files",
    }
    for path, field in fields.items():
        taken = f"This endpoint takes multipart/form-data with a field named {field}"
        as_json = client.post(path, json={field: "yao.jpg", "subject_id": yao})
        error = refused(as_json, f"{taken}, not application/json.")
        assert error["details"] == {
            "expected": ["multipart/form-data"],
            "received": "application/json",
        }
        raw = client.post(path, content=photo, headers={"Content-Type": "image/jpeg"})
        refused(raw, f"{taken}, not image/jpeg.")
        form = client.post(path, data={"subject_id": yao})  # urlencoded: no room for a file
        refused(form, f"{taken}, not application/x-www-form-urlencoded.")
    assert len(client.get(f"/v1/subjects/{yao}/faces").json()["faces"]) == 1
    # As multipart they are read.
    upload = {"image": ("y.jpg", photo)}
    same = client.post("/v1/verify", data={"subject_id": yao}, files=upload)
    assert same.status_code == 200 and same.json()["verified"] is True, same.text


def test_an_upload_in_another_type_is_the_same_415_whatever_its_size(
    client: TestClient, shared_faces: Path, package_images: Path
) -> None:
    """A 2.2 MB photo sent raw (curl --data-binary) was told 413, the limit of JSON bodies,
    where a small one was told which form the route takes."""
    big = (shared_faces / "deepface" / "img1.jpg").read_bytes()
    small = (package_images / "yaoming.jpg").read_bytes()
    assert len(big) > MAX_JSON_BODY_BYTES > len(small)
    subject = new_subject(client, "Ada")
    fields = {
        "/v1/verify": "image",
        "/v1/identify": "image",
        "/v1/detect": "image",
        f"/v1/subjects/{subject}/faces": "files",
    }
    for path, field in fields.items():
        taken = f"This endpoint takes multipart/form-data with a field named {field}"
        for photo in (small, big):
            for kind in ("application/octet-stream", "application/x-www-form-urlencoded"):
                sent = client.post(path, content=photo, headers={"Content-Type": kind})
                error = refused(sent, f"{taken}, not {kind}.")
                assert error["details"] == {"expected": ["multipart/form-data"], "received": kind}
            refused(
                client.post(path, content=photo), f"{taken}, not a body without a Content-Type."
            )
            # Chunked, without a Content-Length: a form parser read it all, up to the limit.
            form = {"Content-Type": "application/x-www-form-urlencoded"}
            streamed = client.post(path, content=iter([photo]), headers=form)
            refused(streamed, f"{taken}, not application/x-www-form-urlencoded.")
    assert client.get(f"/v1/subjects/{subject}/faces").json()["faces"] == []


def test_the_key_is_checked_before_an_uploads_media_type(
    make_client: ClientFactory, shared_faces: Path, package_images: Path
) -> None:
    """As for a small photo, a large one without a valid key is a 401, and one over the rate
    limit a 429: its 415 spends a token, as the small one's does."""
    client = make_client(
        api_keys="client:cli-secret-456,client:cli-other-789", rate_limit=0.001, rate_limit_burst=1
    )
    big = (shared_faces / "deepface" / "img1.jpg").read_bytes()
    small = (package_images / "yaoming.jpg").read_bytes()
    raw = {"Content-Type": "application/octet-stream"}
    for photo in (small, big):
        assert_error(client.post("/v1/detect", content=photo, headers=raw), 401, "unauthorized")
        wrong = {**raw, "X-API-Key": "not-a-key"}
        assert_error(client.post("/v1/detect", content=photo, headers=wrong), 401, "unauthorized")
    taken = "This endpoint takes multipart/form-data with a field named image"
    mine, other = {**raw, "X-API-Key": "cli-secret-456"}, {**raw, "X-API-Key": "cli-other-789"}
    refused(
        client.post("/v1/detect", content=big, headers=mine), f"{taken}, not {raw['Content-Type']}."
    )
    refused(
        client.post("/v1/detect", content=small, headers=other),
        f"{taken}, not {raw['Content-Type']}.",
    )
    for photo in (small, big):
        for key in (mine, other):
            over = client.post("/v1/detect", content=photo, headers=key)
            assert_error(over, 429, "rate_limited")


def test_admin_bodies_are_json_and_optional(
    client: TestClient, yao: str, package_images: Path
) -> None:
    params = b'{"target_far": 0.01}'
    text = {"Content-Type": "text/plain"}
    refused(
        client.post("/v1/admin/calibrate", content=params, headers=text),
        f"{JSON_TAKEN}, not text/plain.",
    )
    refused(
        client.post("/v1/admin/finetune", content=b"{}", headers=text),
        f"{JSON_TAKEN}, not text/plain.",
    )
    assert client.get("/v1/admin/jobs").json()["jobs"] == []
    # No body at all (curl -X POST), or an empty one whatever its type (curl -d ''): there is
    # nothing to misread, and the defaults apply, as for an empty JSON object.
    team = ("gdp.jpg", (package_images / "gdp.jpg").read_bytes())
    assert enrol(client, new_subject(client, "Speaker"), team, face="largest").status_code == 201
    defaults = outcome(client.post("/v1/admin/calibrate", json={}))
    assert defaults[0] != 415
    assert outcome(client.post("/v1/admin/calibrate")) == defaults
    assert outcome(client.post("/v1/admin/calibrate", content=b"", headers=text)) == defaults
    # An empty chunked body, as clients streaming from an iterator send: no body either.
    streamed = client.post("/v1/admin/calibrate", content=iter([b""]))
    assert streamed.request.headers.get("transfer-encoding") == "chunked"
    assert outcome(streamed) == defaults
    # A chunked body that is not empty is still checked.
    assert outcome(client.post("/v1/admin/calibrate", content=iter([b"{}"]))) == (
        415,
        "unsupported_media_type",
    )
    typed = {"Content-Type": "application/json; charset=utf-8"}
    asked = outcome(client.post("/v1/admin/calibrate", json=json.loads(params)))
    assert outcome(client.post("/v1/admin/calibrate", content=params, headers=typed)) == asked


def test_the_key_is_checked_before_the_media_type(make_client: ClientFactory) -> None:
    client = make_client(api_keys="admin:adm-secret-123,client:cli-secret-456")
    text = {"Content-Type": "text/plain"}
    calibrate = "/v1/admin/calibrate"
    assert_error(client.post(calibrate, content=b"{}", headers=text), 401, "unauthorized")
    as_client = {**text, "X-API-Key": "cli-secret-456"}
    assert_error(client.post(calibrate, content=b"{}", headers=as_client), 403, "forbidden")
    as_admin = {**text, "X-API-Key": "adm-secret-123"}
    refused(
        client.post(calibrate, content=b"{}", headers=as_admin), f"{JSON_TAKEN}, not text/plain."
    )


def test_the_expected_type_follows_the_route(client: TestClient) -> None:
    """Read from the route's body parameters: a route added later with form fields and no
    file takes either form encoding, and nothing else."""
    client.app.add_api_route(  # type: ignore[attr-defined]
        "/notes", note, methods=["POST"], dependencies=[ClientKey]
    )
    assert client.post("/notes", data={"text": "hi"}).json() == {"text": "hi"}
    assert client.post("/notes", files={"text": (None, b"hi")}).json() == {"text": "hi"}
    error = refused(
        client.post("/notes", json={"text": "hi"}),
        "This endpoint takes multipart/form-data or application/x-www-form-urlencoded,"
        " not application/json.",
    )
    assert error["details"] == {
        "expected": ["multipart/form-data", "application/x-www-form-urlencoded"],
        "received": "application/json",
    }


def test_every_route_with_a_body_checks_its_media_type(client: TestClient) -> None:
    """Each route that reads a body refuses one of another type before acting: a router
    added without the check would answer 422 about fields again."""
    checked: list[str] = []
    for route in api_routes(client):
        if route.body_field is None:
            continue
        path = re.sub(r"{[^}]+}", "x", route.path)
        for method in route.methods:
            response = client.request(
                method, path, content=b"\x00", headers={"Content-Type": "a/b"}
            )
            error = assert_error(response, 415, "unsupported_media_type")
            assert error["message"].endswith(", not a/b."), (method, path)
            checked.append(f"{method} {route.path}")
    assert set(checked) >= {
        "POST /v1/subjects",
        "PATCH /v1/subjects/{subject_id}",
        "POST /v1/subjects/{subject_id}/faces",
        "POST /v1/verify",
        "POST /v1/identify",
        "POST /v1/detect",
        "POST /v1/admin/calibrate",
        "POST /v1/admin/finetune",
    }
    assert client.get("/v1/admin/jobs").json()["jobs"] == []

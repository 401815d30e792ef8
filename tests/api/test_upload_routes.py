"""The upload routes of app/api/upload_routes.py, and the body limits the guard gives them."""

from __future__ import annotations

import asyncio
import io
import json
import re
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, File, Form, UploadFile
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import BaseModel

from app.api.body_limits import FORM_ALLOWANCE_BYTES, MAX_JSON_BODY_BYTES
from app.api.routes import health
from app.api.upload_routes import UploadRoute, find_upload_routes
from app.config import Settings
from app.main import create_app
from tests.api.conftest import api_routes


def _table(uploads: tuple[UploadRoute, ...]) -> dict[tuple[str, str], int | None]:
    return {(route.path, method): route.files for route in uploads for method in route.methods}


def _limit(app: Any, method: str, path: str) -> int:
    """The limit the app's guard puts on a multipart body sent to `path`, read from the 413
    that it answers to a body declared far larger than any limit."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [
        (b"content-type", b"multipart/form-data; boundary=b"),
        (b"content-length", str(10**12).encode()),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413, sent
    message = json.loads(sent[1]["body"])["error"]["message"]
    found = re.fullmatch(r"Request body exceeds (\d+) bytes\.", message)
    assert found is not None, message
    return int(found.group(1))


def test_the_service_upload_routes_keep_their_limits(tmp_path: Path) -> None:
    """Read from the routes, the table is the one that was kept by hand: enrolment takes
    FACE_MAX_FILES_PER_REQUEST files, verify two, identify and detect one; every other
    route, and every other method on these paths, keeps the JSON limit."""
    app = create_app(Settings(data_dir=tmp_path, max_upload_bytes=100_000, max_files_per_request=5))
    assert _table(find_upload_routes(app.routes)) == {
        ("/v1/subjects/{subject_id}/faces", "POST"): None,
        ("/v1/verify", "POST"): 2,
        ("/v1/identify", "POST"): 1,
        ("/v1/detect", "POST"): 1,
    }

    files_by_route = {
        ("/v1/subjects/abc/faces", "POST"): 5,
        ("/v1/verify", "POST"): 2,
        ("/v1/identify", "POST"): 1,
        ("/v1/detect", "POST"): 1,
    }
    routes = api_routes(TestClient(app))  # not entered: no lifespan, no models
    requests = {
        (re.sub(r"\{[^}]+\}", "abc", route.path_format), method)
        for route in routes
        for method in route.methods or ()
    }
    assert set(files_by_route) <= requests and len(requests) > 20
    for path, method in sorted(requests):
        files = files_by_route.get((path, method))
        expected = MAX_JSON_BODY_BYTES if files is None else 100_000 * files + FORM_ALLOWANCE_BYTES
        assert _limit(app, method, path) == expected, (method, path)


def test_a_new_upload_route_gets_the_upload_limit_without_a_list_to_update(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, package_images: Path
) -> None:
    """An upload route added to the service's routers, and to nothing else: the guard
    refused every upload to it above the JSON limit, as the hand-kept list lacked it."""

    async def take(photo: Annotated[UploadFile, File()]) -> dict[str, int]:
        return {"bytes": len(await photo.read())}

    router = APIRouter()
    router.include_router(health.router)
    router.add_api_route("/v1/test-only/upload", take, methods=["POST"])
    monkeypatch.setattr(health, "router", router)
    settings = Settings(data_dir=tmp_path)
    app = create_app(settings)

    buffer = io.BytesIO()
    Image.open(package_images / "players.jpg").save(buffer, format="PNG")
    photo = buffer.getvalue()
    assert len(photo) > MAX_JSON_BODY_BYTES
    client = TestClient(app)  # not entered: the route needs no state
    response = client.post("/v1/test-only/upload", files={"photo": ("players.png", photo)})
    assert response.status_code == 200, response.text
    assert response.json() == {"bytes": len(photo)}
    limit = settings.max_upload_bytes + FORM_ALLOWANCE_BYTES
    assert _limit(app, "POST", "/v1/test-only/upload") == limit


class _Note(BaseModel):
    text: str


def _scan(scan: Annotated[UploadFile, File()]) -> UploadFile:
    return scan


def test_files_are_counted_as_fastapi_reads_them() -> None:
    """One per file field, a list meaning the per-request maximum, files taken by a
    dependency counted too; form-only and JSON routes are not upload routes."""

    async def pair(
        front: Annotated[UploadFile, File()],
        back: Annotated[bytes, File()],
        note: Annotated[str, Form()] = "",
    ) -> None:
        return None

    async def album(photos: Annotated[list[UploadFile] | None, File()] = None) -> None:
        return None

    async def scanned(scan: Annotated[UploadFile, Depends(_scan)]) -> None:
        return None

    async def form_only(name: Annotated[str, Form()]) -> None:
        return None

    async def json_body(note: _Note) -> None:
        return None

    async def attachments() -> None:
        return None

    router = APIRouter(prefix="/albums/{album_id}")
    router.add_api_route("/pair", pair, methods=["POST", "PUT"])
    router.add_api_route("/photos", album, methods=["POST"])
    router.add_api_route("/scan", scanned, methods=["POST"])
    router.add_api_route("/name", form_only, methods=["POST"])
    router.add_api_route("/note", json_body, methods=["POST"])
    extra = APIRouter()
    extra.add_api_route("/attachments", attachments, methods=["POST"])
    app = FastAPI()
    app.include_router(router, prefix="/v2")
    # A file taken by a dependency of the inclusion, not of the route's own signature.
    app.include_router(extra, dependencies=[Depends(_scan)])

    uploads = find_upload_routes(app.routes)
    assert _table(uploads) == {
        ("/v2/albums/{album_id}/pair", "POST"): 2,
        ("/v2/albums/{album_id}/pair", "PUT"): 2,
        ("/v2/albums/{album_id}/photos", "POST"): None,
        ("/v2/albums/{album_id}/scan", "POST"): 1,
        ("/attachments", "POST"): 1,
    }
    photos = next(route for route in uploads if route.path.endswith("/photos"))
    assert photos.matches("POST", "/v2/albums/a1/photos")
    assert not photos.matches("GET", "/v2/albums/a1/photos")
    assert not photos.matches("POST", "/albums/a1/photos")  # the inclusion's prefix counts
    assert not photos.matches("POST", "/v2/albums/a1/photos/")

"""Apps on real SQLite files in tmp folders, sharing the session's loaded models."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from PIL import Image

from app.config import Settings
from app.main import create_app

ClientFactory = Callable[..., TestClient]


def wait_ready(client: TestClient, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get("/v1/ready")
        if response.status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError(f"service not ready: {response.json()}")


def open_client(data_dir: Path, models: Any, **overrides: Any) -> TestClient:
    defaults: dict[str, Any] = {
        "embedder": "arcface-mbf",
        "device": "cpu",
        "index_save_interval_s": 3600,
    }
    settings = Settings(data_dir=data_dir, **(defaults | overrides))
    client = TestClient(create_app(settings, models))
    client.__enter__()
    wait_ready(client)
    return client


@pytest.fixture
def make_client(tmp_path: Path, models: Any) -> Iterator[ClientFactory]:
    """A factory, so a test can restart the app on the same data folder."""
    opened: list[TestClient] = []

    def factory(**overrides: Any) -> TestClient:
        client = open_client(tmp_path / "data", models, **overrides)
        opened.append(client)
        return client

    yield factory
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: ClientFactory) -> TestClient:
    return make_client()


@pytest.fixture
def yao(client: TestClient, package_images: Path) -> str:
    """A subject with yaoming.jpg enrolled."""
    subject = new_subject(client, "Yao Ming")
    response = enrol(client, subject, ("yao.jpg", (package_images / "yaoming.jpg").read_bytes()))
    assert response.status_code == 201, response.text
    return subject


def jpeg_bytes(image: Image.Image, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def upload(name: str, data: bytes) -> tuple[str, bytes, str]:
    return (name, data, "application/octet-stream")


def new_subject(client: TestClient, name: str) -> str:
    response = client.post("/v1/subjects", json={"name": name})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def enrol(client: TestClient, subject_id: str, *files: tuple[str, bytes], **params: str) -> Any:
    return client.post(
        f"/v1/subjects/{subject_id}/faces",
        files=[("files", upload(name, data)) for name, data in files],
        params=params,
    )


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert "Traceback" not in response.text
    error: dict[str, Any] = body["error"]
    return error


def api_routes(client: TestClient) -> list[APIRoute]:
    """Every FastAPI route of the client's app, those of included routers too."""
    found: list[APIRoute] = []
    routes = list(client.app.routes)  # type: ignore[attr-defined]
    while routes:
        route = routes.pop()
        included = getattr(route, "original_router", None)  # FastAPI's included routers
        if included is not None:
            routes.extend(included.routes)
        if isinstance(route, APIRoute):  # not /docs, /openapi.json: Starlette's own
            found.append(route)
    return found

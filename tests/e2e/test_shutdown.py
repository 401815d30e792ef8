"""SIGTERM lets running requests finish, and the index saved on the way out holds them."""

from __future__ import annotations

import io
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e


def _pixels_in_flight(client: httpx.Client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("face_image_pixels_in_flight "):
            return float(line.split()[1])
    raise AssertionError("face_image_pixels_in_flight missing from /metrics")


def _large_copies(photo: Path, count: int) -> list[bytes]:
    """`count` distinct ~27 MP JPEGs of one face: slow enough to still be running at SIGTERM."""
    image = Image.open(photo).convert("RGB")
    large = image.resize((image.width * 20, image.height * 20), Image.Resampling.BILINEAR)
    copies = []
    for quality in range(90, 90 - count, -1):
        buffer = io.BytesIO()
        large.save(buffer, "JPEG", quality=quality)
        copies.append(buffer.getvalue())
    return copies


def test_sigterm_finishes_a_running_enrolment_and_saves_it(
    server: Server, package_images: Path
) -> None:
    files = [
        ("files", (f"y{i}.jpg", data))
        for i, data in enumerate(_large_copies(package_images / "yaoming.jpg", 3))
    ]
    client = server.start()
    subject = client.post("/v1/subjects", json={"name": "Yao Ming"}).json()["id"]
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(
            httpx.post, f"{server.url}/v1/subjects/{subject}/faces", files=files, timeout=120
        )
        deadline = time.monotonic() + 60
        while _pixels_in_flight(client) == 0:  # admitted and decoding: inside the service
            assert not running.done(), running.result().text
            assert time.monotonic() < deadline, "the enrolment never started"
            time.sleep(0.02)
        server.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        response = running.result(timeout=120)
    assert response.status_code == 201, response.text
    assert len(response.json()["faces"]) == 3
    assert server.process is not None
    assert server.process.wait(timeout=60) in (0, -signal.SIGTERM)
    server.process = None

    client = server.start()
    info = client.get("/v1/info").json()
    assert (info["faces"], info["index_size"], info["index_how"]) == (3, 3, "loaded"), info
    # Saved with the drained enrolment's faces: loaded as it was, nothing to reconcile.
    assert "loaded, 3 vectors (+0 / -0 reconciled)" in server.log.read_text()
    assert client.get(f"/v1/subjects/{subject}").json()["face_count"] == 3

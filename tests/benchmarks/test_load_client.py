"""The load client (benchmarks/load.py) against a small real HTTP server: what it sends,
and how it counts answers and failures."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from benchmarks.load import run_load
from benchmarks.ports import free_port


@pytest.fixture
def server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An aiohttp server on a free port: /ok answers 200, /refuse 422; every multipart body
    it receives is recorded."""
    received: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        form = await request.post()
        image = form["image"]
        assert isinstance(image, web.FileField)
        received.append(
            {
                "path": request.path,
                "filename": image.filename,
                "content_type": image.content_type,
                "bytes": image.file.read(),
                "fields": {k: v for k, v in form.items() if isinstance(v, str)},
            }
        )
        if request.path == "/ok":
            return web.json_response({"ok": True})
        return web.json_response({"error": {"code": "low_quality"}}, status=422)

    app = web.Application()
    app.router.add_post("/ok", handle)
    app.router.add_post("/refuse", handle)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    port = free_port()
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", received
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.run_until_complete(runner.cleanup())
        loop.close()


def test_sends_the_form_and_times_each_answer(server: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = server

    def make(client: int, i: int) -> tuple[str, dict[str, Any], dict[str, str]]:
        files = {"image": ("probe.jpg", bytes([client, i % 256]), "image/jpeg")}
        return "/ok", files, {"subject_id": f"s{client}"}

    result = run_load(url, make, clients=3, duration_s=0.3)

    assert result.errors == 0
    assert len(result.latencies_s) == len(received) > 3
    assert all(0 < latency < 5 for latency in result.latencies_s)
    assert {r["fields"]["subject_id"] for r in received} == {"s0", "s1", "s2"}
    first = next(r for r in received if r["fields"]["subject_id"] == "s1")
    assert (first["filename"], first["content_type"], first["bytes"]) == (
        "probe.jpg",
        "image/jpeg",
        bytes([1, 0]),
    )
    assert result.summary()["requests"] == len(received)


def test_counts_refusals_and_lost_connections_as_errors(
    server: tuple[str, list[dict[str, Any]]],
) -> None:
    url, _ = server

    def refused(client: int, i: int) -> tuple[str, dict[str, Any], dict[str, str]]:
        return "/refuse", {"image": ("a.jpg", b"x", "image/jpeg")}, {}

    result = run_load(url, refused, clients=1, duration_s=0.1)
    assert result.errors > 0 and not result.latencies_s
    assert result.error_samples[0].startswith("422: ") and "low_quality" in result.error_samples[0]

    nobody = f"http://127.0.0.1:{free_port()}"
    result = run_load(nobody, refused, clients=1, duration_s=0.05)
    assert result.errors > 0 and not result.latencies_s
    assert result.error_samples[0].startswith("ClientConnectorError")

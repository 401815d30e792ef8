"""Concurrent uploads wait for the pixel budget; none is lost and none holds it after."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.api.conftest import ClientFactory


def test_requests_beyond_the_pixel_budget_wait_their_turn_and_all_answer(
    make_client: ClientFactory, package_images: Path
) -> None:
    # A budget of one pixel: every request runs alone, admitted in arrival order.
    client = make_client(max_pixels_in_flight=1)
    players = ("players.jpg", (package_images / "players.jpg").read_bytes())
    yao = ("yao.jpg", (package_images / "yaoming.jpg").read_bytes())

    def call(i: int) -> int:
        path = ("/v1/detect", "/v1/identify")[i % 2]
        image = (players, yao)[i // 2 % 2]
        return client.post(path, files={"image": image}).status_code

    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(call, range(12)))
    assert statuses == [200] * 12
    budget = client.app.state.face.pixels  # type: ignore[attr-defined]
    assert (budget.in_use, budget.holders) == (0, 0)
    metrics = client.get("/metrics").text
    assert "face_image_pixels_in_flight 0.0" in metrics  # the gauge follows the budget
    assert "face_pixel_budget_waits_total" in metrics
    assert budget.limit == 1
    # The default: twice the largest image accepted.
    assert make_client().app.state.face.pixels.limit == 80_000_000  # type: ignore[attr-defined]

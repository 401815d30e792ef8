"""POST /v1/admin/calibrate on a gallery with one photo under two subjects: a threshold of 1.0
that accepts nobody is refused unless forced, and forced it serves with its warnings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import assert_error, enrol, new_subject, open_client

CALIBRATE, CALIBRATION = "/v1/admin/calibrate", "/v1/admin/calibration"
PEOPLE = ("amy", "bernadette", "howard", "leonard", "penny", "raj", "sheldon", "stuart")
TARGETS = {"target_far": 0.05, "identify_target_far": 0.1}


def photo(shared_faces: Path, person: str, n: int) -> tuple[str, bytes]:
    name = f"{person}{n}.png"
    return name, (shared_faces / "faceapi_js" / person / name).read_bytes()


@pytest.fixture(scope="module")
def polluted(
    tmp_path_factory: pytest.TempPathFactory, models: Any, shared_faces: Path
) -> Iterator[tuple[TestClient, list[str]]]:
    """Eight people with two photos each (8 genuine pairs), and the first photo of four of
    them enrolled again under a second subject: impostor pairs of one photo, scoring 1.0.
    Yields the client and the duplicate subjects."""
    client = open_client(tmp_path_factory.mktemp("polluted") / "data", models)
    for person in PEOPLE:
        subject = new_subject(client, person)
        response = enrol(
            client, subject, photo(shared_faces, person, 1), photo(shared_faces, person, 2)
        )
        assert response.status_code == 201, response.text
    duplicates = []
    for person in PEOPLE[:4]:
        duplicates.append(new_subject(client, f"{person} again"))
        assert enrol(client, duplicates[-1], photo(shared_faces, person, 1)).status_code == 201
    yield client, duplicates
    client.__exit__(None, None, None)


def identified(client: TestClient, shared_faces: Path) -> Any:
    """Who identify finds in amy3.png, a photo of Amy that is not enrolled."""
    response = client.post("/v1/identify", files={"image": photo(shared_faces, "amy", 3)})
    assert response.status_code == 200, response.text
    return response.json()["faces"][0]["match"]


def test_a_threshold_no_genuine_face_reaches_is_refused_unforced(
    polluted: tuple[TestClient, list[str]], shared_faces: Path
) -> None:
    client, _ = polluted
    serving = client.get("/v1/info").json()["thresholds"]
    assert identified(client, shared_faces) is not None  # the default threshold finds Amy

    error = assert_error(client.post(CALIBRATE, json=TARGETS), 422, "calibration_degenerate")
    warnings = error["details"]["warnings"]
    # Verify's target of 0.05 lets 9 of 182 impostor pairs through, room for the 4 pairs of
    # one photo; identify's 0.0087 per comparison has none, and is pushed to the top.
    assert warnings and all(warning.startswith("identify: ") for warning in warnings)
    assert any("threshold 1.0000 is the top of the cosine scale" in w for w in warnings)
    assert any("above all 8 genuine scores" in w and "accepts no genuine" in w for w in warnings)
    # A photo under two names scores 1.0 in bf16, which a threshold of 1.0 lets through,
    # but 0.99999994 in fp32 (CPUs without bf16), which it does not: only bf16 passes them.
    excess = [w for w in warnings if "pass it, over 2x the 0.00874 per score its target" in w]
    state = client.app.state.face  # type: ignore[attr-defined]
    bf16 = state.require_runtime().pipeline.embedder.precision_name == "bf16"
    assert len(excess) == (1 if bf16 else 0), warnings
    assert "delete the faces enrolled under more than one subject" in error["message"]
    assert '"force": true' in error["message"]
    # The reliability counts come along, as in a calibration_unreliable refusal.
    assert error["details"]["identify"]["gallery_size"] == 12
    assert error["details"]["verify"]["scores"] == 182

    # Nothing stored: the thresholds serving stay, and Amy is still found.
    assert_error(client.get(CALIBRATION), 404, "calibration_not_found")
    assert client.get("/v1/info").json()["thresholds"] == serving
    assert identified(client, shared_faces) is not None


def test_forced_it_serves_with_its_warnings_until_the_gallery_is_cleaned(
    polluted: tuple[TestClient, list[str]], shared_faces: Path
) -> None:
    client, duplicates = polluted
    # The duplicates pass even a threshold of 1.0: no note may say that no score passes,
    # as one did for a verify target below the gallery's resolution.
    strict = client.post(CALIBRATE, json={**TARGETS, "target_far": 0.0001, "force": True})
    assert strict.json()["calibration"]["verify_accepts"] > 0, strict.json()
    assert not any("may pass" in note for note in strict.json()["notes"]), strict.json()
    forced = client.post(CALIBRATE, json={**TARGETS, "force": True})
    assert forced.status_code == 200, forced.text
    body = forced.json()
    stored = body["calibration"]
    assert stored["identify_threshold"] == 1.0
    assert body["warnings"] == stored["warnings"] != []
    assert (
        "Stored anyway, as forced, with its warnings: a degenerate threshold serves."
        in (body["notes"])
    )
    # The genuine pairs: identify rejects every one, verify (not degenerate) few.
    assert body["identify_frr_measured"] == 1.0
    assert body["verify_frr_measured"] < 0.5
    assert client.get(CALIBRATION).json() == stored  # warnings kept with it
    assert identified(client, shared_faces) is None  # Amy is a stranger now

    # The remedy the refusal names: without the duplicates the gallery calibrates cleanly.
    for subject in duplicates:
        assert client.delete(f"/v1/subjects/{subject}").status_code == 204
    clean = client.post(CALIBRATE, json={**TARGETS, "force": True})  # too few scores to be reliable
    assert clean.status_code == 200, clean.text
    assert clean.json()["warnings"] == clean.json()["calibration"]["warnings"] == []
    assert clean.json()["identify_frr_measured"] < 1.0
    assert identified(client, shared_faces) is not None

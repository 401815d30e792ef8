"""POST /v1/admin/calibrate on a real gallery: the FAR holds, and the thresholds serve at once
when the gallery can measure it (or when forced); otherwise nothing changes."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from scipy.stats import beta
from sqlalchemy import select

from app.gallery import calibrations_repo
from app.gallery.orm import Embedding, Face, StoredCalibration
from app.services.calibration import CalibrationStore
from tests.api.conftest import (
    ClientFactory,
    assert_error,
    enrol,
    jpeg_bytes,
    new_subject,
    open_client,
)
from tests.calibrations import store_for

ADMIN, CLIENT = "adm-secret-123", "cli-secret-456"
KEYS = f"admin:{ADMIN},client:{CLIENT}"
CALIBRATE, CALIBRATION = "/v1/admin/calibrate", "/v1/admin/calibration"
EPS = 1e-6


def photo(package_images: Path, name: str) -> tuple[str, bytes]:
    return (name, (package_images / name).read_bytes())


def enrol_players(client: TestClient, package_images: Path) -> list[str]:
    """One subject per face of players.jpg that passes the quality gate, cut out of the photo."""
    detected = client.post("/v1/detect", files={"image": photo(package_images, "players.jpg")})
    image = Image.open(io.BytesIO(photo(package_images, "players.jpg")[1]))
    subjects = []
    for n, face in enumerate(f for f in detected.json()["faces"] if f["quality"]["passed"]):
        x1, y1, x2, y2 = face["box"]
        margin = (x2 - x1) / 2  # small enough that no neighbour fits in the cut-out
        box = (max(0, x1 - margin), max(0, y1 - margin), x2 + margin, y2 + margin)
        subject = new_subject(client, f"player {n}")
        crop = ("player.jpg", jpeg_bytes(image.crop(tuple(round(v) for v in box))))
        if enrol(client, subject, crop, face="center").status_code == 201:
            subjects.append(subject)
    return subjects


@pytest.fixture(scope="module")
def gallery(
    tmp_path_factory: pytest.TempPathFactory, models: Any, package_images: Path
) -> Iterator[tuple[TestClient, str]]:
    """Players as strangers to each other, and Yao Ming with a second photo: one genuine pair."""
    client = open_client(tmp_path_factory.mktemp("calibrate") / "data", models, api_keys=KEYS)
    client.headers["X-API-Key"] = ADMIN
    players = enrol_players(client, package_images)
    assert len(players) >= 8, f"only {len(players)} player faces enrolled"
    found = client.post("/v1/identify", files={"image": photo(package_images, "yaoming.jpg")})
    yao = found.json()["faces"][0]["candidates"][0]["subject_id"]
    assert enrol(client, yao, photo(package_images, "yaoming.jpg")).status_code == 201
    yield client, yao
    client.__exit__(None, None, None)


def stored_gallery(client: TestClient) -> tuple[np.ndarray, np.ndarray]:
    """The serving model's vectors and subject labels, read straight from the database."""
    state = client.app.state.face  # type: ignore[attr-defined]
    query = (
        select(Embedding.vector, Face.subject_id)
        .join(Face, Face.id == Embedding.face_id)
        .where(Embedding.model == state.runtime.model_version)
    )
    with state.sessions() as session:
        rows = session.execute(query).all()
    vectors = np.stack([np.frombuffer(vector, dtype="<f4") for vector, _ in rows])
    return vectors.astype(np.float64), np.array([subject for _, subject in rows])


def test_thresholds_hold_their_far_on_the_gallery_and_serve_at_once(
    gallery: tuple[TestClient, str], package_images: Path
) -> None:
    client, yao = gallery
    # Some 135 impostor pairs cannot measure 0.05 (about 200 are needed): forced.
    targets = {"target_far": 0.05, "identify_target_far": 0.1, "force": True}
    response = client.post(CALIBRATE, json=targets)
    assert response.status_code == 200, response.text
    body = response.json()
    stored = body["calibration"]
    assert (stored["source"], stored["pairs"], stored["verify_far"]) == ("gallery", None, 0.05)
    assert stored["method"].startswith("impostor scores adjusted for gallery size")

    vectors, labels = stored_gallery(client)
    similarity = vectors @ vectors.T
    i, j = np.triu_indices(len(labels), k=1)
    different = labels[i] != labels[j]
    impostors = similarity[i[different], j[different]]
    subjects = np.unique(labels)
    assert (body["faces"], body["subjects"], stored["gallery_size"]) == (
        len(labels),
        subjects.size,
        subjects.size,
    )
    assert body["genuine_pairs"] == 1 and body["impostor_pairs"] == impostors.size
    assert stored["impostors"] == body["impostor_pairs_total"] == impostors.size
    # The service scores in float32 like live requests; float64 here may differ in the last bits.
    assert np.mean(impostors >= stored["verify_threshold"] + EPS) <= 0.05
    assert body["verify_far_measured"] <= 0.05

    # Identify: each face against every other subject's best face, at N = subjects.
    best = np.stack([similarity[:, labels == s].max(axis=1) for s in subjects], axis=1)
    per_subject = best[labels[:, None] != subjects[None, :]]
    per_comparison = 1 - 0.9 ** (1 / subjects.size)
    assert body["identify_scores"] == stored["identify_scores"] == per_subject.size
    assert body["identify_per_comparison_far"] == pytest.approx(per_comparison)
    assert np.mean(per_subject >= stored["identify_threshold"] + EPS) <= per_comparison
    assert stored["identify_threshold"] >= stored["verify_threshold"]
    assert body["reliable"] is stored["reliable"] is False
    assert any("impostor scores cannot measure" in n for n in body["notes"])
    assert "Stored anyway, as forced: these FARs are targets, not measured." in body["notes"]
    assert body["warnings"] == stored["warnings"] == []  # unreliable, but not degenerate

    # The FARs stated: the targets, but no lower than the 95% upper bound of the share of
    # scores passing: face pairs for verify, each face's best score per other subject for
    # identify (over N subjects).
    verify_accepts, identify_accepts = stored["verify_accepts"], stored["identify_accepts"]
    threshold = stored["verify_threshold"]
    assert np.sum(impostors >= threshold + EPS) <= verify_accepts
    assert verify_accepts <= np.sum(impostors >= threshold - EPS)
    threshold = stored["identify_threshold"]
    assert np.sum(per_subject >= threshold + EPS) <= identify_accepts
    assert identify_accepts <= np.sum(per_subject >= threshold - EPS)
    # Each over as many independent scores as they count for: those of one subject are
    # correlated (clustered_rate.py), so a few subjects' scores count as far fewer.
    verify_effect = stored["verify_design_effect"]
    identify_effect = stored["identify_design_effect"]
    assert verify_effect > 1 and identify_effect > 1
    n, m = impostors.size / verify_effect, per_subject.size / identify_effect
    verify_hits, identify_hits = verify_accepts / verify_effect, identify_accepts / identify_effect
    verify_far = max(0.05, beta.ppf(0.95, verify_hits + 1, n - verify_hits))
    per_bound = beta.ppf(0.95, identify_hits + 1, m - identify_hits)
    identify_far = max(0.1, 1 - (1 - per_bound) ** subjects.size)
    assert body["identify_far_estimated"] == pytest.approx(identify_far, rel=1e-2)
    active = body["active"]
    assert active["verify"] == stored["verify_threshold"]
    assert active["verify_far"] == pytest.approx(verify_far, rel=1e-2)
    assert active["identify"] == stored["identify_threshold"]
    assert active["identify_far"] == pytest.approx(identify_far, rel=1e-2)
    # A FAR stated over twice its target is said so in the answer (16 subjects).
    said = [note for note in body["notes"] if "over twice the target" in note]
    assert len(said) == (active["verify_far"] > 0.1) + (active["identify_far"] > 0.2) >= 1
    assert all("cannot vouch for it" in note and "16 subjects" in note for note in said)
    assert client.get("/v1/info").json()["thresholds"] == active
    assert active["source"].endswith("from gallery")
    assert client.get(CALIBRATION).json() == stored  # unreliable, there too

    verified = client.post(
        "/v1/verify", data={"subject_id": yao}, files={"image": photo(package_images, "gdp.jpg")}
    ).json()
    # Against a subject's k faces a stranger has k chances: 1 - (1 - FAR)^k.
    faces = client.get(f"/v1/subjects/{yao}").json()["face_count"]
    assert faces == 2
    assert verified["threshold"] == stored["verify_threshold"]
    assert verified["estimated_far"] == pytest.approx(1 - (1 - active["verify_far"]) ** 2, 1e-2)
    assert verified["estimated_far"] >= 1 - (1 - active["verify_far"]) ** 2
    identified = client.post("/v1/identify", files={"image": photo(package_images, "gdp.jpg")})
    assert identified.json()["threshold"] == stored["identify_threshold"]
    assert identified.json()["estimated_far"] == active["identify_far"]

    # A fixed seed: the same gallery gives the same thresholds.
    again = client.post(CALIBRATE, json=targets).json()
    assert again["calibration"]["verify_threshold"] == stored["verify_threshold"]
    assert again["calibration"]["identify_threshold"] == stored["identify_threshold"]


def test_only_the_admin_key_may_calibrate(gallery: tuple[TestClient, str]) -> None:
    client, _ = gallery
    for key, status, code in ((CLIENT, 403, "forbidden"), ("", 401, "unauthorized")):
        headers = {"X-API-Key": key}
        assert_error(client.post(CALIBRATE, json={}, headers=headers), status, code)
        assert_error(client.get(CALIBRATION, headers=headers), status, code)
        assert_error(client.delete(CALIBRATION, headers=headers), status, code)


@pytest.mark.parametrize(
    "body",
    [
        {"target_far": 0},
        {"target_far": 1},
        {"target_far": -0.1},
        {"target_far": "often"},
        {"identify_target_far": 1.5},
        {"target_far": 0.01, "gallery_size": 5},
        # Below 1e-9: 1e-309 overflowed 1/FAR and 5e-324 underflowed to 0 per comparison,
        # each a 500 after the calibration had been stored.
        {"target_far": 1e-309},
        {"target_far": 5e-324},
        {"target_far": 9.9e-10},
        {"target_far": 0.01, "identify_target_far": 1e-322},
        # Loose types were coerced: "yes" forced an unreliable calibration to be stored.
        {"target_far": 0.01, "force": "yes"},
        {"target_far": 0.01, "force": 1},
        {"target_far": "0.01"},
    ],
)
def test_bad_targets_are_invalid_requests(gallery: tuple[TestClient, str], body: Any) -> None:
    client, _ = gallery
    before = client.get(CALIBRATION).json()
    assert_error(client.post(CALIBRATE, json=body), 422, "invalid_request")
    assert client.get(CALIBRATION).json() == before  # nothing stored


def test_a_nan_target_is_refused_as_not_finite(gallery: tuple[TestClient, str]) -> None:
    """Python's JSON reads NaN; it was refused as "less than 1", which it is not."""
    client, _ = gallery
    sent = client.post(
        CALIBRATE, content=b'{"target_far": NaN}', headers={"Content-Type": "application/json"}
    )
    assert "finite number" in json.dumps(assert_error(sent, 422, "invalid_request")["details"])


def test_the_smallest_target_far_is_valid_but_unmeasurable(gallery: tuple[TestClient, str]) -> None:
    client, _ = gallery
    refused = client.post(CALIBRATE, json={"target_far": 1e-9})
    error = assert_error(refused, 422, "calibration_unreliable")
    assert error["details"]["verify"]["needed"] == 10**10
    response = client.post(CALIBRATE, json={"target_far": 1e-9, "force": True})
    assert response.status_code == 200, response.text
    assert response.json()["calibration"]["identify_far"] == 1e-9


def test_an_unreliable_calibration_is_refused_and_the_serving_one_stays(
    gallery: tuple[TestClient, str],
) -> None:
    client, _ = gallery
    forced = client.post(CALIBRATE, json={"target_far": 0.01, "force": True})
    assert forced.status_code == 200, forced.text
    state = client.app.state.face  # type: ignore[attr-defined]
    store, version = CalibrationStore(state.sessions), state.runtime.model_version
    before = (store.load(version), store.stamp(version))
    serving = client.get("/v1/info").json()["thresholds"]

    refused = client.post(CALIBRATE, json={"target_far": 0.001, "identify_target_far": 0.01})
    error = assert_error(refused, 422, "calibration_unreliable")
    verify, identify = error["details"]["verify"], error["details"]["identify"]
    impostors = forced.json()["impostor_pairs"]
    assert (verify["reliable"], verify["scores"], verify["needed"]) == (False, impostors, 10_000)
    assert (identify["reliable"], identify["scores"]) == (False, forced.json()["identify_scores"])
    assert identify["gallery_size"] == forced.json()["subjects"]
    # The message says how many there were, how many are needed, and what to do.
    message = error["message"]
    assert f"verify: {impostors} impostor scores cannot measure a FAR of 0.001" in message
    assert "about 10000 are needed" in message
    assert "enrol faces of more subjects" in message
    assert f"target_far >= {verify['smallest_measurable_far']:g}" in message
    assert f"identify_target_far >= {identify['smallest_measurable_far']:g}" in message
    assert '"force": true' in message

    # Nothing was stored, and the forced calibration still serves.
    assert (store.load(version), store.stamp(version)) == before
    assert client.get(CALIBRATION).json() == forced.json()["calibration"]
    assert client.get("/v1/info").json()["thresholds"] == serving


def test_the_smallest_targets_a_refusal_names_serve_without_force(
    gallery: tuple[TestClient, str],
) -> None:
    client, _ = gallery
    details = client.post(CALIBRATE, json={"target_far": 0.01}).json()["error"]["details"]
    smallest = {
        "target_far": details["verify"]["smallest_measurable_far"],
        "identify_target_far": details["identify"]["smallest_measurable_far"],
    }
    # A hair smaller is refused: they are the smallest the gallery can measure.
    for name, far in smallest.items():
        tighter = client.post(CALIBRATE, json={**smallest, name: far / 1.01})
        error = assert_error(tighter, 422, "calibration_unreliable")
        assert [error["details"][n]["reliable"] for n in ("verify", "identify")] == [
            name != "target_far",
            name == "target_far",
        ]

    response = client.post(CALIBRATE, json=smallest)
    assert response.status_code == 200, response.text
    body = response.json()
    stored = body["calibration"]
    assert body["reliable"] is stored["reliable"] is True
    assert not any("unreliable" in note or "forced" in note for note in body["notes"])
    assert client.get(CALIBRATION).json() == stored
    active = client.get("/v1/info").json()["thresholds"]
    assert (active["verify"], active["identify"]) == (
        stored["verify_threshold"],
        stored["identify_threshold"],
    )


def test_too_little_data_then_a_tiny_gallery_under_a_settings_override(
    make_client: ClientFactory, package_images: Path
) -> None:
    client = make_client(verify_threshold=0.5)
    assert_error(client.get(CALIBRATION), 404, "calibration_not_found")
    error = assert_error(client.post(CALIBRATE), 422, "insufficient_calibration_data")
    assert (error["details"]["subjects"], error["details"]["faces"]) == (0, 0)
    yao = new_subject(client, "Yao Ming")
    assert enrol(client, yao, photo(package_images, "yaoming.jpg")).status_code == 201
    error = assert_error(client.post(CALIBRATE), 422, "insufficient_calibration_data")
    assert (error["details"]["subjects"], error["details"]["faces"]) == (1, 1)

    other = new_subject(client, "GDP speaker")
    assert enrol(client, other, photo(package_images, "gdp.jpg"), face="largest").status_code == 201
    # The default target FAR 1e-3 on a single impostor pair: no target below 1 is measurable,
    # so only more subjects, or force, can help; nothing is stored.
    error = assert_error(client.post(CALIBRATE), 422, "calibration_unreliable")
    assert error["details"]["verify"]["scores"] == 1
    assert error["details"]["verify"]["smallest_measurable_far"] is None
    assert "enrol faces of more subjects, or send" in error["message"]
    assert "larger FAR" not in error["message"]
    assert_error(client.get(CALIBRATION), 404, "calibration_not_found")
    serving = client.get("/v1/info").json()["thresholds"]["source"]
    assert serving == "verify: settings; identify: embedder default"

    body = client.post(CALIBRATE, json={"force": True}).json()
    stored = body["calibration"]
    assert (stored["verify_far"], stored["identify_far"], stored["impostors"]) == (0.001, 0.001, 1)
    assert body["reliable"] is stored["reliable"] is False
    assert any("No impostor pair may pass" in note for note in body["notes"])
    assert any("FACE_VERIFY_THRESHOLD" in note for note in body["notes"])
    # The setting still wins for verify; identify takes the new calibration.
    assert (body["active"]["verify"], body["active"]["verify_far"]) == (0.5, None)
    assert body["active"]["identify"] == stored["identify_threshold"]

    # An unwanted calibration is undone: the embedder's default serves again at once, and
    # other models' calibrations stay.
    store = CalibrationStore(client.app.state.face.sessions)  # type: ignore[attr-defined]
    other_model = store.load(stored["model_version"])
    assert other_model is not None
    store.save(other_model.model_copy(update={"model_version": "m@x"}))
    removed = client.delete(CALIBRATION)
    assert removed.status_code == 200 and removed.json() == stored
    default = client.app.state.face.runtime.pipeline.embedder.default_thresholds  # type: ignore[attr-defined]
    active = client.get("/v1/info").json()["thresholds"]
    assert (active["identify"], active["identify_far"]) == (default.identify, None)
    assert store.load(stored["model_version"]) is None and store.load("m@x") is not None
    assert_error(client.delete(CALIBRATION), 404, "calibration_not_found")


def test_an_older_releases_calibration_file_is_imported_at_start(
    make_client: ClientFactory, models: Any, tmp_path: Path, package_images: Path
) -> None:
    version = models.embedder.version
    old = {
        "model_version": version,
        "verify_threshold": 0.31,
        "verify_far": 0.001,
        "identify_threshold": 0.36,
        "identify_far": 0.01,
        "gallery_size": 20,
        "method": "stranger set",
        "pairs": "/photos/pairs.csv",
        "impostors": 5000,
        "created_at": "2026-11-26T10:00:00Z",
    }
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "calibration.json").write_text(json.dumps({version: old}))
    client = make_client()
    # In the database now, where every process reads it; the file is kept, renamed.
    assert not (tmp_path / "data" / "calibration.json").exists()
    assert len(list((tmp_path / "data").glob("calibration.json.imported-*"))) == 1
    stored = client.get(CALIBRATION).json()
    assert (stored["source"], stored["pairs"], stored["verify_threshold"]) == (
        "pairs",
        "/photos/pairs.csv",
        0.31,
    )
    assert stored["warnings"] == []  # not checked when it was stored
    image = photo(package_images, "yaoming.jpg")
    pair = client.post("/v1/verify", files={"image": image, "image2": image}).json()
    # No accept counts in the old file: as many as the target allowed, 5 of 5000, whose
    # 95% upper bound is stated.
    assert (pair["threshold"], pair["estimated_far"]) == (0.31, 0.00211)


def test_a_calibration_stored_by_the_command_serves_without_a_restart(
    make_client: ClientFactory, models: Any, package_images: Path
) -> None:
    from app.services.calibration import Calibration

    client = make_client(finetune_poll_interval_s=0.1)
    before = client.get("/v1/info").json()["thresholds"]
    settings = client.app.state.face.settings  # type: ignore[attr-defined]
    # What `python -m app calibrate` does from another process while the service runs.
    store_for(settings).save(
        Calibration(
            model_version=models.embedder.version,
            verify_threshold=0.42,
            verify_far=0.01,
            identify_threshold=0.47,
            identify_far=0.02,
            gallery_size=3,
            method="stranger set",
            pairs=Path("pairs.csv"),
            impostors=10_000,
            # 95% upper bounds 0.0096 and 0.0063, below the targets: the targets stand.
            verify_accepts=80,
            identify_accepts=50,
        )
    )
    deadline = time.monotonic() + 20
    while (now := client.get("/v1/info").json()["thresholds"]) == before:
        assert time.monotonic() < deadline, "the stored calibration never served"
        time.sleep(0.05)
    assert (now["verify"], now["verify_far"]) == (0.42, 0.01)
    # Stated for the gallery as it is: empty, so N = 1, not the 3 faces calibrated for.
    assert (now["identify"], now["identify_far_gallery_size"]) == (0.47, 1)
    assert now["identify_far"] == 0.00672  # 1 - 0.98^(1/3), rounded up
    assert now["identify_far_method"] == "stranger set"

    # As the gallery grows, the watcher re-states it (every 30 s; here at once).
    from app.services.promotion import ModelWatcher

    yao = Image.open(package_images / "yaoming.jpg")
    subject = new_subject(client, "yao")
    mirrored = ("mirrored.jpg", jpeg_bytes(yao.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    assert enrol(client, subject, photo(package_images, "yaoming.jpg"), mirrored).status_code == 201
    ModelWatcher(client.app.state.face)._follow_gallery(models.embedder.version, every_s=0)  # type: ignore[attr-defined]
    grown = client.get("/v1/info").json()["thresholds"]
    assert (grown["identify_far_gallery_size"], grown["identify_far"]) == (2, 0.0134)


def test_a_broken_calibration_file_does_not_stop_the_watcher(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    from app.services.promotion import ModelWatcher

    client = make_client()
    state = client.app.state.face  # type: ignore[attr-defined]
    before = client.get("/v1/info").json()["thresholds"]
    (state.settings.data_dir / "calibration.json").write_text('{"garbage": 1}')
    ModelWatcher(state)._follow_gallery(state.runtime.model_version, every_s=0)
    assert "cannot re-state identify's FAR" in caplog.text
    assert client.get("/v1/info").json()["thresholds"] == before  # still serving


def test_an_unreadable_calibration_at_start_pauses_decisions_until_set_aside(
    make_client: ClientFactory, tmp_path: Path, package_images: Path
) -> None:
    """It used to leave the whole service not ready, and no admin route could fix it."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "calibration.json").write_text('{"arcface-mbf@9cc6e4a75f0e": {')
    client = make_client()
    ready = client.get("/v1/ready")  # 200: enrolment and the repair routes stay reachable
    assert ready.status_code == 200
    assert "calibration cannot be read" in ready.json()["paused"]
    assert client.get("/v1/info").json()["thresholds"] is None  # no thresholds decide
    # Enrolment and the rest serve; verify and identify decide nothing on default thresholds.
    yao = new_subject(client, "Yao")
    assert enrol(client, yao, photo(package_images, "yaoming.jpg")).status_code == 201
    probe = {"image": photo(package_images, "yaoming.jpg")}
    paused = client.post("/v1/verify", data={"subject_id": yao}, files=probe)
    assert "paused" in assert_error(paused, 503, "model_unavailable")["message"]
    assert str(data) not in paused.text  # no file paths to clients
    assert_error(client.post("/v1/identify", files=probe), 503, "model_unavailable")

    # DELETE sets the file aside (kept for inspection) and the defaults serve.
    deleted = assert_error(client.delete(CALIBRATION), 404, "calibration_not_found")
    assert "set aside" in deleted["message"]
    [aside] = data.glob("calibration.json.unreadable-*")
    assert aside.read_text() == '{"arcface-mbf@9cc6e4a75f0e": {'
    assert not (data / "calibration.json").exists()
    assert client.get("/v1/ready").json() == {"ready": True, "reason": None, "paused": None}
    verdict = client.post("/v1/verify", data={"subject_id": yao}, files=probe)
    assert verdict.status_code == 200 and verdict.json()["verified"] is True

    # A file broken while serving: a calibration refused as unreliable leaves it be, and a
    # new one sets it aside and replaces it.
    enrol_players(client, package_images)
    (data / "calibration.json").write_text("[]")
    refused = client.post(CALIBRATE, json={"target_far": 0.05})
    assert_error(refused, 422, "calibration_unreliable")
    assert (data / "calibration.json").read_text() == "[]"
    assert len(list(data.glob("calibration.json.unreadable-*"))) == 1
    calibrated = client.post(CALIBRATE, json={"target_far": 0.05, "force": True})
    assert calibrated.status_code == 200, calibrated.text
    assert any("set aside" in note for note in calibrated.json()["notes"])
    assert len(list(data.glob("calibration.json.unreadable-*"))) == 2
    assert client.get(CALIBRATION).json()["verify_far"] == 0.05


def test_a_calibration_file_fixed_by_hand_resumes_decisions(
    make_client: ClientFactory, tmp_path: Path, package_images: Path
) -> None:
    from app.services.promotion import ModelWatcher

    data = tmp_path / "data"
    data.mkdir()
    (data / "calibration.json").write_text("{broken")
    client = make_client()
    state = client.app.state.face  # type: ignore[attr-defined]
    watcher = ModelWatcher(state)
    watcher._follow_calibration(state.runtime)  # still broken: stays paused
    assert client.get("/v1/ready").json()["paused"] is not None
    (data / "calibration.json").write_text("{}")  # fixed: no calibration at all
    watcher._follow_calibration(state.runtime)
    assert client.get("/v1/ready").json()["paused"] is None
    assert client.get("/v1/info").json()["thresholds"]["source"] == "embedder default"


def test_a_model_swap_meeting_an_unreadable_calibration_fails_and_keeps_serving(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    """Only start-up pauses decisions; a swap (ModelWatcher.swap) keeps the model serving
    with the thresholds it has, as before."""
    from app.errors import ModelError
    from app.services.loaded_models import Models
    from app.services.runtime import build_runtime

    client = make_client()
    state = client.app.state.face  # type: ignore[attr-defined]
    models = Models(
        detector=state.runtime.pipeline.detector, embedder=state.runtime.pipeline.embedder
    )
    (tmp_path / "data" / "calibration.json").write_text("{broken")
    with pytest.raises(ModelError, match="unreadable"):
        build_runtime(state.settings, state.sessions, models)
    paused = build_runtime(state.settings, state.sessions, models, pause_on_bad_calibration=True)
    assert paused.calibration_error is not None


def count_builds(monkeypatch: pytest.MonkeyPatch, state: Any) -> list[int]:
    """A list that grows by one with each runtime a model watcher builds for a swap on
    `state`'s settings (others may be live in this process: a module's client)."""
    from app.services import promotion

    builds: list[int] = []
    build = promotion.build_runtime

    def counted_build(settings: Any, *args: Any, **kwargs: Any) -> Any:
        if settings is state.settings:
            builds.append(1)
        return build(settings, *args, **kwargs)

    monkeypatch.setattr(promotion, "build_runtime", counted_build)
    return builds


def want_version(monkeypatch: pytest.MonkeyPatch, state: Any, row: Any, embedder: Any) -> None:
    """Make `row` the version `state`'s service should serve, with `embedder` as its model,
    for this service alone: another app live in this process (a module's client) ticks too,
    and must go on serving what it serves."""
    from app.services import active_model, promotion

    for module in (promotion, active_model):
        real_desired, real_load = module.desired_version, module.load_version

        def desired(session: Any, settings: Any, *rest: Any, _real: Any = real_desired) -> Any:
            return row if settings is state.settings else _real(session, settings, *rest)

        def load(settings: Any, *rest: Any, _real: Any = real_load) -> Any:
            return embedder if settings is state.settings else _real(settings, *rest)

        monkeypatch.setattr(module, "desired_version", desired)
        monkeypatch.setattr(module, "load_version", load)


def test_a_swap_failing_on_the_calibration_waits_for_the_file_to_change(
    make_client: ClientFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each try embeds the gallery and builds the new model's index: not every tick."""
    from types import SimpleNamespace

    from app.services import promotion

    # The service's own watcher would tick too (every second by default) and count builds
    # of its own: only the ticks below may run.
    client = make_client(finetune_poll_interval_s=3600)
    state = client.app.state.face  # type: ignore[attr-defined]
    serving = state.runtime.model_version
    promoted = SimpleNamespace(id="promoted-version", activated_at=None)
    want_version(monkeypatch, state, promoted, state.runtime.pipeline.embedder)
    builds = count_builds(monkeypatch, state)
    watcher = promotion.ModelWatcher(state)
    calibration = tmp_path / "data" / "calibration.json"
    calibration.write_text("{broken")
    watcher.tick()  # fails, logged; the model serving stays
    watcher.tick()
    watcher.tick()
    assert len(builds) == 1
    assert state.runtime.model_version == serving
    calibration.write_text("{}")  # fixed by hand
    watcher.tick()
    assert len(builds) == 2


def break_row(state: Any, version: str) -> None:
    """A calibration row edited by hand into one that does not validate."""
    with state.sessions.begin() as session:
        row = session.get(StoredCalibration, version)
        row.body = {**row.body, "verify_accepts": row.body["impostors"] + 1}


def test_an_unreadable_row_at_start_pauses_decisions_until_deleted(
    make_client: ClientFactory, package_images: Path
) -> None:
    from tests.unit.services.test_calibration import make_calibration

    client = make_client()
    state = client.app.state.face  # type: ignore[attr-defined]
    version = state.runtime.model_version
    store = CalibrationStore(state.sessions)
    store.save(make_calibration(version))
    store.save(make_calibration("other-model@1"))
    break_row(state, version)
    client.__exit__(None, None, None)

    client = make_client()  # a restart
    state = client.app.state.face  # type: ignore[attr-defined]
    paused = client.get("/v1/ready").json()["paused"]
    assert "calibration cannot be read (the stored one" in paused
    probe = {
        "image": photo(package_images, "yaoming.jpg"),
        "image2": photo(package_images, "yaoming.jpg"),
    }
    assert_error(client.post("/v1/verify", files=probe), 503, "model_unavailable")
    assert_error(client.get(CALIBRATION), 503, "model_unavailable")

    deleted = assert_error(client.delete(CALIBRATION), 404, "calibration_not_found")
    assert "could not be read, so it was deleted" in deleted["message"]
    assert client.get("/v1/ready").json()["paused"] is None
    assert client.post("/v1/verify", files=probe).json()["verified"] is True
    assert client.get("/v1/info").json()["thresholds"]["source"] == "embedder default"
    assert store.load("other-model@1") is not None  # other models' calibrations stay


def test_a_row_broken_while_serving_keeps_what_serves(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    from app.services.promotion import ModelWatcher
    from tests.unit.services.test_calibration import make_calibration

    client = make_client()
    state = client.app.state.face  # type: ignore[attr-defined]
    CalibrationStore(state.sessions).save(make_calibration(state.runtime.model_version, 0.41))
    watcher = ModelWatcher(state)
    watcher._follow_calibration(state.runtime)
    serving = client.get("/v1/info").json()["thresholds"]
    assert serving["verify"] == 0.41
    break_row(state, state.runtime.model_version)
    watcher._follow_calibration(state.runtime)
    assert "calibration changed but cannot be read" in caplog.text
    assert client.get("/v1/info").json()["thresholds"] == serving
    assert client.get("/v1/ready").json()["paused"] is None


def test_processes_sharing_a_database_serve_one_calibration(
    tmp_path: Path, models: Any, package_images: Path
) -> None:
    check_processes_share_one_calibration(
        f"sqlite:///{tmp_path / 'shared.db'}", tmp_path, models, package_images
    )


def check_processes_share_one_calibration(
    database_url: str, folders: Path, models: Any, package_images: Path
) -> None:
    """The body, shared with the PostgreSQL suite. Each process has its own data folder; a
    calibration stored through one process's admin endpoint serves on the others from their
    watchers' next tick, and so does its deletion (it used to live in each data folder).
    So does one a newer release stores in the same format with a field added (a rolling
    upgrade): read without that field."""
    shared = {"database_url": database_url, "finetune_poll_interval_s": 0.1}
    first = open_client(folders / "first", models, **shared)
    second = open_client(folders / "second", models, **shared)

    def served(client: TestClient, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The thresholds `client` serves once they are `wanted`: its watcher's next tick."""
        deadline = time.monotonic() + 30
        while not wanted(thresholds := client.get("/v1/info").json()["thresholds"]):
            assert time.monotonic() < deadline, f"the change never reached it: {thresholds}"
            time.sleep(0.05)
        return thresholds

    try:
        enrol_players(first, package_images)
        default = second.get("/v1/info").json()["thresholds"]
        calibrated = first.post(CALIBRATE, json={"target_far": 0.05, "force": True})
        assert calibrated.status_code == 200, calibrated.text
        stored = calibrated.json()["calibration"]
        now = served(second, lambda thresholds: thresholds != default)
        assert (now["verify"], now["identify"]) == (
            stored["verify_threshold"],
            stored["identify_threshold"],
        )
        assert second.get(CALIBRATION).json() == stored

        state = first.app.state.face  # type: ignore[attr-defined]
        version = state.runtime.model_version
        with state.sessions.begin() as session:
            row = calibrations_repo.get(session, version)
            assert row is not None and "format" not in row  # format 1, as the last release wrote
            newer = {**row, "verify_threshold": row["verify_threshold"] + 0.01, "added": [1]}
            calibrations_repo.put(session, version, newer)
        for client in (first, second):
            served(client, lambda thresholds: thresholds["verify"] == newer["verify_threshold"])
        assert second.get(CALIBRATION).json() == {
            **stored,
            "verify_threshold": newer["verify_threshold"],
        }

        assert second.delete(CALIBRATION).status_code == 200
        served(first, lambda thresholds: thresholds["source"] == "embedder default")
    finally:
        first.__exit__(None, None, None)
        second.__exit__(None, None, None)


def test_a_swap_failing_on_the_wanted_models_row_is_retried_once_it_is_fixed(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watcher follows the serving model's row; a swap that failed on the row of the
    model it was to serve waited, before, for a change of that one, which never came."""
    import copy
    from types import SimpleNamespace

    from app.services import active_model, promotion
    from tests.unit.services.test_calibration import make_calibration

    client = make_client(finetune_poll_interval_s=3600)  # only the ticks below run
    state = client.app.state.face  # type: ignore[attr-defined]
    serving = state.runtime.model_version
    wanted = copy.copy(state.runtime.pipeline.embedder)
    wanted.version = "arcface-mbf@promoted0000"
    row = SimpleNamespace(id=wanted.version, activated_at=None)
    want_version(monkeypatch, state, row, wanted)
    real_register = active_model.register_packaged

    def register(session: Any, settings: Any, *rest: Any) -> Any:
        return None if settings is state.settings else real_register(session, settings, *rest)

    monkeypatch.setattr(active_model, "register_packaged", register)
    monkeypatch.setattr(promotion.ModelWatcher, "_still_wanted", lambda *args: True)
    builds = count_builds(monkeypatch, state)
    store = CalibrationStore(state.sessions)
    store.save(make_calibration(wanted.version, 0.4))
    break_row(state, wanted.version)
    watcher = promotion.ModelWatcher(state)
    watcher.tick()  # fails on the row; the model serving stays
    watcher.tick()
    assert len(builds) == 1 and state.runtime.model_version == serving
    store.save(make_calibration(wanted.version, 0.4))  # fixed: `python -m app calibrate`
    watcher.tick()
    assert len(builds) == 2 and state.runtime.model_version == wanted.version
    assert state.runtime.thresholds.verify == 0.4


def test_one_processes_broken_old_file_is_set_aside_and_the_shared_row_stays(
    tmp_path: Path, models: Any, package_images: Path
) -> None:
    """A process that starts on its own unreadable calibration.json pauses; DELETE sets
    that file aside and no more: the row every process serves stays, and now serves here."""
    from tests.unit.services.test_calibration import make_calibration

    shared = {"database_url": f"sqlite:///{tmp_path / 'shared.db'}"}
    first = open_client(tmp_path / "first", models, **shared)
    version = first.app.state.face.runtime.model_version  # type: ignore[attr-defined]
    store = CalibrationStore(first.app.state.face.sessions)  # type: ignore[attr-defined]
    store.save(make_calibration(version, 0.37))
    (tmp_path / "second").mkdir()
    (tmp_path / "second" / "calibration.json").write_text("{broken")
    second = open_client(tmp_path / "second", models, **shared)
    try:
        assert second.get("/v1/ready").json()["paused"] is not None
        deleted = assert_error(second.delete(CALIBRATION), 404, "calibration_not_found")
        assert "set aside" in deleted["message"] and "stored in the database" in deleted["message"]
        assert store.load(version) is not None
        assert second.get("/v1/ready").json()["paused"] is None
        assert second.get("/v1/info").json()["thresholds"]["verify"] == 0.37
    finally:
        first.__exit__(None, None, None)
        second.__exit__(None, None, None)

"""A process that cannot load the model another process made active takes no faces."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from app.config import Settings
from app.errors import ModelError
from app.gallery import models_repo
from app.main import create_app
from app.services import promotion
from app.services.promotion import ModelWatcher
from app.state import AppState
from tests.api.conftest import assert_error, enrol, new_subject

TUNED = "arcface-mbf@00000000feed"


def test_a_process_without_the_active_models_weights_steps_aside_until_it_has_them(
    client: TestClient, package_images: Path
) -> None:
    """An audit ran two processes on one PostgreSQL database, each with its own
    FACE_MODELS_DIR. One promoted a fine-tuned model; the other could not load it, kept
    enrolling under the old version and stayed ready, so the first never saw those faces
    (verify there: 422 subject_has_no_faces)."""
    state: AppState = client.app.state.face  # type: ignore[attr-defined]
    serving = state.require_runtime().model_version
    yao = new_subject(client, "Yao Ming")
    photo = ("yao.jpg", (package_images / "yaoming.jpg").read_bytes())
    assert enrol(client, yao, photo).status_code == 201
    _activate_unloadable(state)  # as another process's promotion leaves it
    watcher = ModelWatcher(state)
    watcher.tick()
    assert state.require_runtime().model_version == serving
    assert state.model_error is not None and TUNED in state.model_error

    ready = client.get("/v1/ready")
    assert ready.status_code == 503 and "cannot serve the active model" in ready.json()["reason"]
    info = client.get("/v1/info").json()  # a monitor reading it is not told otherwise
    assert (info["ready"], info["model_version"], info["thresholds"]) == (False, serving, None)
    error = assert_error(
        enrol(client, yao, ("again.jpg", photo[1] + b"")), 503, "model_unavailable"
    )
    assert "cannot serve the active model" in error["message"]
    verify = client.post("/v1/verify", data={"subject_id": yao}, files={"image": photo})
    assert_error(verify, 503, "model_unavailable")
    assert_error(client.post("/v1/identify", files={"image": photo}), 503, "model_unavailable")
    assert client.post("/v1/detect", files={"image": photo}).status_code == 200  # no embedder
    # Nor does it calibrate, forget a calibration or fine-tune the version it still holds,
    # which is no longer the active one (a review), or show that version's calibration as
    # the one that serves.
    for refused in (
        client.get("/v1/admin/calibration"),
        client.post("/v1/admin/calibrate", json={"force": True}),
        client.delete("/v1/admin/calibration"),
        client.post("/v1/admin/finetune", json={}),
    ):
        assert_error(refused, 503, "model_unavailable")

    with state.sessions.begin() as s:  # the model it serves is made active again
        models_repo.activate(s, serving)
    watcher.tick()
    assert state.model_error is None
    assert client.get("/v1/ready").status_code == 200
    assert client.get("/v1/info").json()["ready"] is True
    verify = client.post("/v1/verify", data={"subject_id": yao}, files={"image": photo})
    assert verify.status_code == 200 and verify.json()["verified"]


def _activate_unloadable(state: AppState) -> None:
    """Activate a fine-tuned version whose checkpoint this host does not have."""
    serving = state.require_runtime().model_version
    with state.sessions.begin() as s:
        models_repo.ensure_model(
            s,
            TUNED,
            "arcface-mbf",
            "f" * 64,
            weights_path=Path("finetuned/elsewhere/weights.pt"),
            base_version=serving,
        )
        models_repo.activate(s, TUNED)


def test_a_process_started_without_the_active_models_weights_is_never_ready(
    make_client: Any, tmp_path: Path, models: Any, package_images: Path
) -> None:
    """Until the watcher's first tick it enrolled under the packaged version (a review)."""
    first = make_client()
    _activate_unloadable(first.app.state.face)
    first.__exit__(None, None, None)
    settings = Settings(
        data_dir=tmp_path / "data",
        embedder="arcface-mbf",
        device="cpu",
        finetune_poll_interval_s=3600,  # no watcher tick: start-up alone must say it
    )
    with TestClient(create_app(settings, models)) as client:
        deadline = time.monotonic() + 60
        while (ready := client.get("/v1/ready")).json()["reason"] == "models are still loading":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert ready.status_code == 503
        assert f"cannot serve the active model (cannot load {TUNED}" in ready.json()["reason"]
        yao = new_subject(client, "Yao Ming")
        photo = ("yao.jpg", (package_images / "yaoming.jpg").read_bytes())
        assert_error(enrol(client, yao, photo), 503, "model_unavailable")


def test_a_model_every_process_fails_to_serve_leaves_the_serving_one_in_place(
    client: TestClient, package_images: Path, monkeypatch: Any
) -> None:
    """A failure every process meets (the new model's calibration unreadable, say) must
    not take the whole fleet out: each keeps serving the model it serves (a review)."""
    state: AppState = client.app.state.face  # type: ignore[attr-defined]
    embedder = state.require_runtime().pipeline.embedder
    _activate_unloadable(state)
    monkeypatch.setattr(promotion, "load_version", lambda *_: embedder)

    def unreadable(*_: object) -> None:
        raise ModelError("the stored calibration of the new version is unreadable")

    watcher = ModelWatcher(state)
    monkeypatch.setattr(watcher, "swap", unreadable)
    watcher.tick()
    assert state.model_error is None
    assert client.get("/v1/ready").status_code == 200
    yao = new_subject(client, "Yao Ming")
    photo = ("yao.jpg", (package_images / "yaoming.jpg").read_bytes())
    assert enrol(client, yao, photo).status_code == 201

"""A process that cannot load the model another process made active takes no faces."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from app.gallery import models_repo
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
    with state.sessions.begin() as s:  # as another process's promotion leaves it
        models_repo.ensure_model(
            s,
            TUNED,
            "arcface-mbf",
            "f" * 64,
            weights_path=Path("finetuned/elsewhere/weights.pt"),
            base_version=serving,
        )
        models_repo.activate(s, TUNED)
    watcher = ModelWatcher(state)
    watcher.tick()
    assert state.require_runtime().model_version == serving
    assert state.model_error is not None and TUNED in state.model_error

    ready = client.get("/v1/ready")
    assert ready.status_code == 503 and "cannot serve the active model" in ready.json()["reason"]
    error = assert_error(
        enrol(client, yao, ("again.jpg", photo[1] + b"")), 503, "model_unavailable"
    )
    assert "cannot serve the active model" in error["message"]
    verify = client.post("/v1/verify", data={"subject_id": yao}, files={"image": photo})
    assert_error(verify, 503, "model_unavailable")
    assert_error(client.post("/v1/identify", files={"image": photo}), 503, "model_unavailable")
    assert client.post("/v1/detect", files={"image": photo}).status_code == 200  # no embedder

    with state.sessions.begin() as s:  # the model it serves is made active again
        models_repo.activate(s, serving)
    watcher.tick()
    assert state.model_error is None
    assert client.get("/v1/ready").status_code == 200
    verify = client.post("/v1/verify", data={"subject_id": yao}, files={"image": photo})
    assert verify.status_code == 200 and verify.json()["verified"]

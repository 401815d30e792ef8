"""DELETE /v1/admin/models/{id}: a version goes with its files, unless something needs it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.gallery import embeddings_repo, jobs_repo, models_repo
from app.gallery.orm import Embedding, ModelVersion
from app.index import index_path
from app.services.calibration import METHOD_GALLERY_ADJUSTED, Calibration, CalibrationStore
from app.services.model_index import save_index
from tests.api.conftest import ClientFactory as AppFactory
from tests.api.conftest import assert_error, enrol, new_subject
from tests.api.finetune.conftest import (
    PROBED,
    QUICK_JOB,
    ClientFactory,
    Gallery,
    identify,
    wait_for_job,
    wait_serving,
)

OTHER = "facenet-vggface2@000000000000"  # another model's calibration entry, kept


def calibration(version: str) -> Calibration:
    return Calibration(
        model_version=version,
        verify_threshold=0.35,
        verify_far=0.001,
        identify_threshold=0.4,
        identify_far=0.01,
        gallery_size=24,
        method=METHOD_GALLERY_ADJUSTED,
        source="gallery",
        impostors=1000,
    )


def state_of(client: TestClient) -> Any:
    return client.app.state.face  # type: ignore[attr-defined]


def traces(client: TestClient, version: str, checkpoint: str) -> dict[str, object]:
    """What the service holds of `version`: row, vectors and files."""
    settings = state_of(client).settings
    with state_of(client).sessions() as session:
        row = session.get(ModelVersion, version)
        query = select(func.count()).select_from(Embedding).where(Embedding.model == version)
        vectors = int(session.scalar(query) or 0)
    saved = index_path(settings.index_dir, version, settings.index_type)
    return {
        "row": row is not None,
        "vectors": vectors,
        "checkpoint": (settings.models_dir / checkpoint).exists(),
        "calibration": CalibrationStore(state_of(client).sessions).load(version) is not None,
        "index": saved.exists(),
    }


def refused(client: TestClient, version: str, reason: str) -> dict[str, Any]:
    error = assert_error(client.delete(f"/v1/admin/models/{version}"), 409, "model_in_use")
    assert error["details"]["model_id"] == version and error["details"]["reason"] == reason
    return error


def test_a_version_nothing_needs_is_deleted_and_the_service_answers_on(
    finetune_client: ClientFactory, gallery: Gallery
) -> None:
    client = finetune_client()
    base = client.get("/v1/info").json()["model_version"]
    accepted = client.post("/v1/admin/finetune", json=QUICK_JOB | {"force": True})
    job = wait_for_job(client, accepted.json()["job_id"], ("succeeded", "failed"))
    assert job["state"] == "succeeded", job["error"]
    tuned, checkpoint = job["result"]["model_id"], job["result"]["checkpoint"]
    wait_serving(client, tuned)
    state = state_of(client)
    with state.write_lock:
        save_index(state.settings, state.runtime.index)  # its on-disk index
    store = CalibrationStore(state.sessions)
    store.save(calibration(tuned))
    store.save(calibration(OTHER))
    kept = traces(client, tuned, checkpoint)
    assert kept == {
        "row": True,
        "vectors": gallery.faces,
        "checkpoint": True,
        "calibration": True,
        "index": True,
    }

    # Each refusal deletes nothing.
    refused(client, tuned, "active")
    refused(client, base, "packaged")
    assert traces(client, tuned, checkpoint) == kept

    # Rolled back but still serving (the swap has not happened yet): refused too.
    client.__exit__(None, None, None)
    client = finetune_client(finetune_poll_interval_s=3600)
    assert client.post(f"/v1/admin/models/{base}/activate").status_code == 202
    refused(client, tuned, "serving")
    assert traces(client, tuned, checkpoint) == kept

    client.__exit__(None, None, None)
    client = finetune_client()  # start-up serves the active model: the base
    assert client.get("/v1/info").json()["model_version"] == base
    derived = "arcface-mbf@dddddddddddd"
    with state_of(client).sessions.begin() as session:
        weights = Path("finetuned/none/weights.pt")
        models_repo.ensure_model(
            session, derived, "arcface-mbf", "d" * 64, weights_path=weights, base_version=tuned
        )
        queued = jobs_repo.create_job(session, QUICK_JOB).id
    assert refused(client, tuned, "job_active")["details"]["job_id"] == queued
    with state_of(client).sessions.begin() as session:
        jobs_repo.finish_job(session, queued, jobs_repo.FAILED, error="never ran")
    assert refused(client, tuned, "has_derived_versions")["details"]["derived"] == [derived]
    assert client.delete(f"/v1/admin/models/{derived}").status_code == 200
    assert traces(client, tuned, checkpoint) == kept

    deleted = client.delete(f"/v1/admin/models/{tuned}")
    assert deleted.status_code == 200, deleted.text
    body = deleted.json()
    assert body["id"] == tuned and body["base_version"] == base and body["job_id"] == job["id"]
    assert body["embeddings"] == gallery.faces and not body["active"] and not body["serving"]
    assert traces(client, tuned, checkpoint) == {
        "row": False,
        "vectors": 0,
        "checkpoint": False,
        "calibration": False,
        "index": False,
    }
    assert CalibrationStore(state_of(client).sessions).load(OTHER) is not None
    assert [m["id"] for m in client.get("/v1/admin/models").json()["models"]] == [base]
    assert_error(client.delete(f"/v1/admin/models/{tuned}"), 404, "model_not_found")

    for restarted in (False, True):
        if restarted:
            client.__exit__(None, None, None)
            client = finetune_client()
            assert client.get("/v1/info").json()["model_version"] == base
        for identity in PROBED:
            match = identify(client, gallery.probes[identity])
            assert match is not None and match["subject_id"] == gallery.subjects[identity]
        probe = gallery.probes["penny"]
        verified = client.post(
            "/v1/verify",
            data={"subject_id": gallery.subjects["penny"]},
            files={"image": (probe.name, probe.read_bytes())},
        )
        assert verified.status_code == 200 and verified.json()["verified"], verified.text


def test_unknown_versions_404_and_no_file_outside_finetuned_is_deleted(
    make_client: AppFactory, tmp_path: Path
) -> None:
    models_dir = tmp_path / "models"
    client = make_client(models_dir=models_dir)
    assert_error(client.delete("/v1/admin/models/nope@1"), 404, "model_not_found")
    packaged = client.get("/v1/info").json()["model_version"]
    refused(client, packaged, "packaged")

    outside = tmp_path / "outside" / "weights.pt"
    pretrained = models_dir / "pretrained" / "weights.onnx"
    inside = models_dir / "finetuned" / "job-1" / "weights.pt"
    for path in (outside, pretrained, inside):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"weights")
    named = {
        "arcface-mbf@000000000001": Path("../outside/weights.pt"),
        "arcface-mbf@000000000002": Path("finetuned/../pretrained/weights.onnx"),
        "arcface-mbf@000000000003": Path("finetuned/job-1/weights.pt"),
    }
    with state_of(client).sessions.begin() as session:
        for version, weights in named.items():
            models_repo.ensure_model(
                session, version, "arcface-mbf", "0" * 64, weights_path=weights
            )
    for version in named:
        assert client.delete(f"/v1/admin/models/{version}").status_code == 200
    assert outside.exists() and pretrained.exists()
    assert not inside.parent.exists() and (models_dir / "finetuned").is_dir()
    assert [m["id"] for m in client.get("/v1/admin/models").json()["models"]] == [packaged]


def test_deleting_a_version_needs_the_admin_key(make_client: AppFactory, tmp_path: Path) -> None:
    client = make_client(api_keys="admin:root-key,client:app-key", models_dir=tmp_path / "m")
    path = "/v1/admin/models/arcface-mbf@000000000001"
    assert_error(client.delete(path), 401, "unauthorized")
    assert_error(client.delete(path, headers={"X-API-Key": "app-key"}), 403, "forbidden")
    assert_error(client.delete(path, headers={"X-API-Key": "root-key"}), 404, "model_not_found")


def test_a_swap_to_a_version_deleted_while_it_was_built_is_dropped(
    make_client: AppFactory, tmp_path: Path, package_images: Path
) -> None:
    # Activate B; the watcher starts building it (minutes on a big gallery). Meanwhile the
    # admin activates the base again and deletes B. The build's last step must not serve B,
    # and the vectors it wrote for B after the delete must go.
    client = make_client(models_dir=tmp_path / "models", finetune_poll_interval_s=3600)
    from app.services.promotion import ModelWatcher

    state = state_of(client)
    base = client.get("/v1/info").json()["model_version"]
    subject = new_subject(client, "yao")
    yao = ("yao.jpg", (package_images / "yaoming.jpg").read_bytes())
    face_id = int(enrol(client, subject, yao).json()["faces"][0]["id"])
    built = "arcface-mbf@bbbbbbbbbbbb"
    with state.sessions.begin() as session:
        weights = Path("finetuned/job-b/weights.pt")
        models_repo.ensure_model(session, built, "arcface-mbf", "b" * 64, weights_path=weights)
        models_repo.activate(session, built)
    watcher = ModelWatcher(state)
    assert watcher._still_wanted(built, "arcface-mbf")

    with state.sessions.begin() as session:
        models_repo.activate(session, base)
    assert client.delete(f"/v1/admin/models/{built}").status_code == 200
    with state.sessions.begin() as session:  # what the build wrote after the delete
        embeddings_repo.add_embeddings(session, built, [face_id], np.ones((1, 512), np.float32))
    assert not watcher._still_wanted(built, "arcface-mbf")
    assert traces(client, built, "finetuned/job-b")["vectors"] == 0
    assert client.get("/v1/info").json()["model_version"] == base

"""A real fine-tune of arcface-mbf through the API: promotion, re-embedding, swap, rollback."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.gallery.orm import Embedding
from app.pipeline.embedders import create_embedder
from app.training.checkpoints import load_checkpoint
from tests.api.finetune.conftest import (
    PROBED,
    QUICK_JOB,
    ClientFactory,
    Gallery,
    identify,
    wait_for_job,
    wait_serving,
)


def stored_vectors(client: TestClient, version: str) -> int:
    with client.app.state.face.sessions() as session:  # type: ignore[attr-defined]
        query = select(func.count()).select_from(Embedding).where(Embedding.model == version)
        return int(session.scalar(query) or 0)


def assert_probes_identified(client: TestClient, gallery: Gallery) -> None:
    for identity in PROBED:
        match = identify(client, gallery.probes[identity])
        assert match is not None and match["subject_id"] == gallery.subjects[identity], identity


def test_forced_finetune_promotes_reembeds_and_rolls_back(
    finetune_client: ClientFactory, gallery: Gallery, external_pairs: Path, shared_faces: Path
) -> None:
    settings = {
        "finetune_external_pairs": external_pairs,
        "finetune_external_root": shared_faces,
    }
    client = finetune_client(**settings)
    base = client.get("/v1/info").json()["model_version"]
    assert_probes_identified(client, gallery)

    accepted = client.post("/v1/admin/finetune", json=QUICK_JOB | {"force": True})
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["effective_batch_size"] == 16
    job = wait_for_job(client, accepted.json()["job_id"], ("succeeded", "failed"))
    assert job["state"] == "succeeded", job["error"]

    training = [b["progress"] for b in job["seen"] if b["progress"]["phase"] == "training"]
    assert training and all(p["effective_batch_size"] in (0, 16) for p in training)
    progress, result = job["progress"], job["result"]
    assert progress["step"] == progress["total_steps"] > 0 and progress["loss"] is not None
    assert result["promotion"]["promote"] and result["promotion"]["rule"] == "forced"
    for metrics in (result["validation"], result["external"]):
        for when in ("before", "after"):
            assert 0.0 <= metrics[when]["roc_auc"] <= 1.0 and metrics[when]["impostor"] > 0
    assert result["reembedded"] == gallery.faces and result["dataset"]["subjects"] == 8

    # The checkpoint verifies, loads, and carries what produced it.
    models_dir = client.app.state.face.settings.models_dir  # type: ignore[attr-defined]
    state_dict, metadata = load_checkpoint(models_dir / result["checkpoint"])
    assert metadata["base_model"] == base and metadata["hyperparameters"]["epochs"] == 1
    tuned = result["model_id"]
    reloaded = create_embedder(
        "arcface-mbf",
        models_dir,
        client.app.state.face.runtime.pipeline.embedder.device,  # type: ignore[attr-defined]
        weights_path=models_dir / result["checkpoint"] / "weights.pt",
        expected_sha256=metadata["sha256"],
    )
    assert reloaded.version == tuned and len(state_dict) > 0

    info = wait_serving(client, tuned)
    assert info["index_size"] == gallery.faces == stored_vectors(client, tuned)
    assert_probes_identified(client, gallery)

    listed = {m["id"]: m for m in client.get("/v1/admin/models").json()["models"]}
    assert set(listed) == {base, tuned}
    assert listed[tuned]["active"] and listed[tuned]["serving"] and not listed[base]["active"]
    assert listed[tuned]["metrics"]["validation"]["after"]["pairs"] > 0
    assert listed[tuned]["base_version"] == base and listed[base]["weights_path"] is None

    # A restart serves the promoted model straight from its checkpoint.
    client.__exit__(None, None, None)
    client = finetune_client(**settings)
    assert client.get("/v1/info").json()["model_version"] == tuned

    # A job that changes no weight yields the serving model's own version: nothing is
    # promoted, and the serving model's vectors stay (a cancel or failure used to delete
    # them all as the job's "new" ones).
    still = {"learning_rate": 1e-300, "force": True}
    accepted = client.post("/v1/admin/finetune", json=QUICK_JOB | still)
    assert accepted.status_code == 202, accepted.text
    job = wait_for_job(client, accepted.json()["job_id"], ("succeeded", "failed"))
    assert job["state"] == "succeeded", job["error"]
    assert job["result"]["promotion"]["rule"] == "weights_unchanged"
    assert job["result"]["promotion"]["reason"] == "training left the weights as they were"
    assert not job["result"]["promotion"]["promote"] and job["result"]["model_id"] is None
    assert stored_vectors(client, tuned) == gallery.faces
    assert client.get("/v1/info").json()["model_version"] == tuned
    listed = {m["id"] for m in client.get("/v1/admin/models").json()["models"]}
    assert listed == {base, tuned}

    rollback = client.post(f"/v1/admin/models/{base}/activate")
    assert rollback.status_code == 202, rollback.text
    info = wait_serving(client, base)
    assert info["index_size"] == gallery.faces
    assert_probes_identified(client, gallery)


def test_identify_keeps_answering_through_promotion(
    finetune_client: ClientFactory, gallery: Gallery
) -> None:
    client = finetune_client()
    base = client.get("/v1/info").json()["model_version"]
    probe, subject = gallery.probes["penny"], gallery.subjects["penny"]
    answers: list[tuple[float, str, int, str | None]] = []
    stop = threading.Event()
    reading = threading.Lock()

    def ask() -> None:
        while not stop.is_set():
            with reading:  # the reads, and their times, in one order
                asked = time.monotonic()
                before = client.get("/v1/info").json()["model_version"]
            response = client.post(
                "/v1/identify", files={"image": (probe.name, probe.read_bytes())}
            )
            match: Any = response.json()["faces"][0]["match"] if response.is_success else None
            answers.append((asked, before, response.status_code, match and match["subject_id"]))

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        accepted = client.post("/v1/admin/finetune", json=QUICK_JOB | {"force": True})
        assert accepted.status_code == 202, accepted.text
        job = wait_for_job(client, accepted.json()["job_id"], ("succeeded", "failed"))
        assert job["state"] == "succeeded", job["error"]
        wait_serving(client, job["result"]["model_id"])
        served = len(answers)
        deadline = time.monotonic() + 60
        while len(answers) < served + 4 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    # In the order the threads asked, not the order they finished: one thread's slow answer
    # from before the swap may land after another's from after it.
    answers.sort()
    assert all(status == 200 for _, _, status, _ in answers), answers
    assert all(match == subject for _, _, _, match in answers), answers
    versions = [version for _, version, _, _ in answers]
    assert versions[0] == base and versions[-1] == job["result"]["model_id"]
    # Every request before the swap saw the old model, every one after it the new one.
    switch = versions.index(versions[-1])
    assert set(versions[:switch]) == {base} and set(versions[switch:]) == {versions[-1]}

"""Fine-tuning safety: cancelling, failures, one job at a time, admin-only, bad parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.gallery import jobs_repo
from app.gallery.orm import Embedding, Face
from app.training.split import held_out
from tests.api.conftest import assert_error
from tests.api.finetune.conftest import (
    QUICK_JOB,
    ClientFactory,
    Gallery,
    identify,
    wait_for_job,
)

# Many tiny steps, so the job is still training when it is cancelled.
LONG_JOB = QUICK_JOB | {"epochs": 500, "micro_batch_size": 2, "accumulation_steps": 1}


def versions_in_db(client: Any) -> set[str]:
    with client.app.state.face.sessions() as session:
        return set(session.scalars(select(Embedding.model).distinct()))


def test_cancel_stops_the_job_and_a_second_job_conflicts(
    finetune_client: ClientFactory, tmp_path: Path
) -> None:
    client = finetune_client()
    base = client.get("/v1/info").json()["model_version"]
    job_id = client.post("/v1/admin/finetune", json=LONG_JOB).json()["job_id"]
    running = wait_for_job(client, job_id, ("running",))
    while running["progress"]["step"] < 1:
        running = wait_for_job(client, job_id, ("running",))

    error = assert_error(client.post("/v1/admin/finetune", json=QUICK_JOB), 409, "job_running")
    assert error["details"]["job_id"] == job_id

    cancelling = client.delete(f"/v1/admin/jobs/{job_id}")
    assert cancelling.status_code == 202 and cancelling.json()["state"] == "cancelling"
    job = wait_for_job(client, job_id, ("cancelled", "succeeded", "failed"))
    assert job["state"] == "cancelled" and job["result"] is None
    assert 0 < job["progress"]["step"] < job["progress"]["total_steps"]
    assert_error(client.delete(f"/v1/admin/jobs/{job_id}"), 409, "job_finished")

    assert [m["id"] for m in client.get("/v1/admin/models").json()["models"]] == [base]
    assert versions_in_db(client) == {base}
    assert not (tmp_path / "models" / "finetuned" / job_id).exists()
    assert client.get("/v1/admin/jobs").json()["jobs"][0]["id"] == job_id


def test_a_failing_job_leaves_the_model_and_index_untouched(
    finetune_client: ClientFactory, gallery: Gallery
) -> None:
    client = finetune_client(finetune_fail_after_steps=1)
    before = client.get("/v1/info").json()
    job_id = client.post("/v1/admin/finetune", json=QUICK_JOB | {"force": True}).json()["job_id"]
    job = wait_for_job(client, job_id, ("succeeded", "failed", "cancelled"))
    assert job["state"] == "failed" and "injected failure" in job["error"]

    after = client.get("/v1/info").json()
    assert after["model_version"] == before["model_version"]
    assert after["index_size"] == before["index_size"] == gallery.faces
    assert versions_in_db(client) == {before["model_version"]}
    match = identify(client, gallery.probes["amy"])
    assert match is not None and match["subject_id"] == gallery.subjects["amy"]


@pytest.mark.parametrize("state", ["queued", "running"])
def test_unfinished_jobs_are_interrupted_by_a_restart(
    finetune_client: ClientFactory, state: str
) -> None:
    client = finetune_client()
    with client.app.state.face.sessions.begin() as session:  # type: ignore[attr-defined]
        job_id = jobs_repo.create_job(session, QUICK_JOB).id
        if state == "running":
            jobs_repo.start_job(session, job_id)
    client.__exit__(None, None, None)

    client = finetune_client()
    job = client.get(f"/v1/admin/jobs/{job_id}").json()
    assert job["state"] == "interrupted" and job["finished_at"], job


def test_finetuning_needs_two_subjects_with_two_crops(make_client: Any) -> None:
    client = make_client()
    assert_error(client.post("/v1/admin/finetune", json={}), 422, "insufficient_training_data")


def test_a_split_with_nothing_to_validate_is_refused_before_the_job(
    finetune_client: ClientFactory,
) -> None:
    """It was accepted (202), and the job failed once it had loaded model and gallery."""
    client = finetune_client()
    with client.app.state.face.sessions() as session:  # type: ignore[attr-defined]
        face_ids = list(session.scalars(select(Face.id)))
    # A fraction below every face's hash holds none of them out.
    fraction = 0.5
    while any(held_out(face_id, fraction) for face_id in face_ids):
        fraction /= 2
    body = QUICK_JOB | {"validation_fraction": fraction}
    error = assert_error(
        client.post("/v1/admin/finetune", json=body), 422, "insufficient_training_data"
    )
    assert "holds out 0 faces" in error["message"]
    assert client.get("/v1/admin/jobs").json()["jobs"] == []


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ({"epochs": 0}, "epochs"),
        ({"micro_batch_size": 1}, "micro_batch_size"),
        ({"loss": "softmax"}, "loss"),
        ({"train_layers": "everything"}, "train_layers"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"device": "tpu"}, "device"),
        ({"epochs": 1, "learning_rat": 0.1}, "learning_rat"),
        ({"seed": 2**64}, "seed"),  # torch.manual_seed overflowed after the job started
        # Two faces a micro-batch hold one subject: triplets never had a negative.
        ({"loss": "triplet", "micro_batch_size": 3}, "micro_batch_size >= 4"),
        # Wrong JSON types were converted: "yes" turned the promotion override on.
        ({"force": "yes"}, "force"),
        ({"epochs": True}, "epochs"),
        ({"micro_batch_size": "8"}, "micro_batch_size"),
        ({"validation_fraction": "0.1"}, "validation_fraction"),
        ({"amp": "off"}, "amp"),
    ],
)
def test_invalid_parameters_are_named(
    make_client: Any, body: dict[str, Any], parameter: str
) -> None:
    error = assert_error(
        make_client().post("/v1/admin/finetune", json=body), 422, "invalid_request"
    )
    assert parameter in error["message"]


def test_a_cuda_device_this_machine_lacks_is_refused_before_the_job(
    make_client: Any,
) -> None:
    import torch

    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last, or cuda:0 without any
    error = assert_error(
        make_client().post("/v1/admin/finetune", json={"device": missing}), 422, "invalid_request"
    )
    assert error["message"].startswith(f"device {missing} is not available here")
    assert make_client().get("/v1/admin/jobs").json()["jobs"] == []


def test_finetuning_endpoints_need_the_admin_key(make_client: Any) -> None:
    client = make_client(api_keys="admin:root-key,client:app-key")
    calls = [
        ("post", "/v1/admin/finetune"),
        ("get", "/v1/admin/jobs"),
        ("get", "/v1/admin/jobs/some-job"),
        ("delete", "/v1/admin/jobs/some-job"),
        ("get", "/v1/admin/models"),
        ("post", "/v1/admin/models/arcface-mbf@9cc6e4a75f0e/activate"),
    ]
    for method, path in calls:
        assert_error(client.request(method, path), 401, "unauthorized")
        assert_error(
            client.request(method, path, headers={"X-API-Key": "app-key"}), 403, "forbidden"
        )
    admin = {"X-API-Key": "root-key"}
    assert client.get("/v1/admin/jobs", headers=admin).json() == {"jobs": []}
    assert_error(client.get("/v1/admin/jobs/nope", headers=admin), 404, "job_not_found")
    assert_error(
        client.post("/v1/admin/models/nope/activate", headers=admin), 404, "model_not_found"
    )


def test_jobs_asked_for_before_a_rule_existed_stay_readable(make_client: Any) -> None:
    """Triplet jobs with micro-batches of 2 ran before they were refused: reading them back
    through the request rule made every job route answer 500."""
    client = make_client()
    state = client.app.state.face
    with state.sessions.begin() as session:
        job = jobs_repo.create_job(session, {"loss": "triplet", "micro_batch_size": 2}).id
        jobs_repo.finish_job(session, job, jobs_repo.SUCCEEDED, from_states=("queued",))
    listed = client.get("/v1/admin/jobs")
    assert listed.status_code == 200, listed.text
    assert [j["params"]["micro_batch_size"] for j in listed.json()["jobs"]] == [2]
    assert client.get(f"/v1/admin/jobs/{job}").json()["params"]["loss"] == "triplet"

"""Jobs of other processes: a live one outlives a service start, a dead one gives way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.gallery import embeddings_repo, jobs_repo, models_repo
from app.gallery.orm import Embedding, Face
from app.training.watchdog import STUCK_EXIT_CODE
from tests.api.conftest import assert_error
from tests.api.finetune.conftest import QUICK_JOB, ClientFactory, wait_for_job

# A command-line job as `python -m app finetune` runs it, less the training: the same
# tracker marks it running in this process and beats, and it stops when told to.
STAND_IN = """
import sys, time
from app.gallery import jobs_repo
from app.gallery.db import make_engine, make_session_factory
from app.training.owners import this_process
from app.training.tracker import JobCancelled, JobTracker

sessions = make_session_factory(make_engine(sys.argv[1]))
stuck = sys.argv[2:] == ["stuck"]
slow_cleanup = sys.argv[2:] == ["slow-cleanup"]
with sessions.begin() as session:
    job_id = jobs_repo.create_job(session, {"epochs": 1}, this_process()).id
tracker = JobTracker(sessions, job_id, heartbeat_s=0.2, cancel_grace_s=1.0)
assert tracker.begin()
print(job_id, flush=True)
try:
    while True:  # a long phase, checking whether to stop as training does (unless stuck)
        if not stuck:
            tracker.check()
        time.sleep(0.05)
except JobCancelled:
    if slow_cleanup:  # e.g. deleting a cut promotion's vectors: longer than the grace
        time.sleep(3.0)
    tracker.end(jobs_repo.CANCELLED)
    print("stopped:", jobs_repo.CANCELLED, flush=True)
finally:
    tracker.close()
"""

StandIn = tuple[subprocess.Popen[str], str]


@pytest.fixture
def stand_in() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


def start_stand_in(
    started: list[subprocess.Popen[str]], database_url: str, mode: str = ""
) -> StandIn:
    """A process running a job on the database; returns it and the job id. A `stuck` one
    never checks whether to stop, as if its main thread hung; a `slow-cleanup` one takes
    3 s to end once it has seen a cancel."""
    process = subprocess.Popen(
        [sys.executable, "-c", STAND_IN, database_url, *([mode] if mode else [])],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path.cwd(),
    )
    started.append(process)
    assert process.stdout is not None
    job_id = process.stdout.readline().strip()
    assert job_id, f"the stand-in job did not start (exit code {process.poll()})"
    return process, job_id


def database(tmp_path: Path) -> str:
    """The URL of the gallery copy that `finetune_client` serves."""
    return f"sqlite:///{tmp_path / 'data' / 'faces.db'}"


def kill_9(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def job_of(client: TestClient, job_id: str) -> dict[str, object]:
    response = client.get(f"/v1/admin/jobs/{job_id}")
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_a_command_line_job_outlives_a_service_start_and_ends_with_its_process(
    finetune_client: ClientFactory, stand_in: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    process, job_id = start_stand_in(stand_in, database(tmp_path))
    client = finetune_client()  # its start-up used to mark the job interrupted
    time.sleep(1.0)  # several of the job's checks, each of which would have stopped it
    assert process.poll() is None and job_of(client, job_id)["state"] == "running"
    error = assert_error(client.post("/v1/admin/finetune", json=QUICK_JOB), 409, "job_running")
    assert error["details"]["job_id"] == job_id
    client.__exit__(None, None, None)

    kill_9(process)
    client = finetune_client()
    job = job_of(client, job_id)
    assert job["state"] == "interrupted" and job["finished_at"], job
    assert f"the process that ran it is gone: pid {process.pid} on" in str(job["error"])


def test_a_job_whose_process_was_killed_gives_way_to_a_new_one(
    finetune_client: ClientFactory, stand_in: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    client = finetune_client()
    process, job_id = start_stand_in(stand_in, database(tmp_path))
    assert_error(client.post("/v1/admin/finetune", json=QUICK_JOB), 409, "job_running")
    kill_9(process)

    accepted = client.post("/v1/admin/finetune", json=QUICK_JOB)
    assert accepted.status_code == 202, accepted.text
    job = job_of(client, job_id)
    assert job["state"] == "interrupted" and "is gone" in str(job["error"]), job
    new_job = accepted.json()["job_id"]
    assert client.delete(f"/v1/admin/jobs/{new_job}").status_code == 202
    assert wait_for_job(client, new_job, ("cancelled", "succeeded", "failed"))["state"] == (
        "cancelled"
    )


def test_deleting_an_abandoned_job_ends_it_at_once(
    finetune_client: ClientFactory, stand_in: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    client = finetune_client()
    process, job_id = start_stand_in(stand_in, database(tmp_path))
    kill_9(process)
    # It used to stay `cancelling`, with nothing left to notice, and keep the slot.
    cancelled = client.delete(f"/v1/admin/jobs/{job_id}")
    assert cancelled.status_code == 202, cancelled.text
    body = cancelled.json()
    assert body["state"] == "cancelled" and body["finished_at"], body
    assert "the process that ran it is gone" in body["error"]
    assert_error(client.delete(f"/v1/admin/jobs/{job_id}"), 409, "job_finished")

    # A live job's DELETE still asks it to stop, and it ends cancelled itself.
    process, job_id = start_stand_in(stand_in, database(tmp_path))
    assert client.delete(f"/v1/admin/jobs/{job_id}").json()["state"] == "cancelling"
    assert process.stdout is not None and process.stdout.readline().startswith("stopped")
    assert process.wait(timeout=30) == 0 and job_of(client, job_id)["state"] == "cancelled"


def test_a_cancelled_job_that_never_stops_is_ended_by_its_heartbeat(
    finetune_client: ClientFactory, stand_in: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    """A hung job used to keep the training slot for ever: its heartbeat said it was alive,
    and nothing it never checked could stop it."""
    client = finetune_client()
    process, job_id = start_stand_in(stand_in, database(tmp_path), "stuck")
    assert client.delete(f"/v1/admin/jobs/{job_id}").json()["state"] == "cancelling"
    assert process.wait(timeout=30) == STUCK_EXIT_CODE
    job = job_of(client, job_id)
    assert job["state"] == "cancelled" and job["finished_at"], job
    assert "after it was cancelled; its process was ended" in str(job["error"])
    accepted = client.post("/v1/admin/finetune", json=QUICK_JOB)  # the slot is free
    assert accepted.status_code == 202, accepted.text
    new_job = accepted.json()["job_id"]
    client.delete(f"/v1/admin/jobs/{new_job}")
    wait_for_job(client, new_job, ("cancelled", "succeeded", "failed"))


def test_a_cancelled_job_that_is_cleaning_up_is_left_to_finish(
    finetune_client: ClientFactory, stand_in: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    client = finetune_client()
    process, job_id = start_stand_in(stand_in, database(tmp_path), "slow-cleanup")
    assert client.delete(f"/v1/admin/jobs/{job_id}").json()["state"] == "cancelling"
    assert process.wait(timeout=30) == 0  # past the 1 s grace, yet not ended from outside
    job = job_of(client, job_id)
    assert job["state"] == "cancelled" and job["error"] is None, job


def test_checkpoints_left_by_killed_jobs_are_removed(
    finetune_client: ClientFactory, tmp_path: Path
) -> None:
    client = finetune_client()
    sessions = client.app.state.face.sessions  # type: ignore[attr-defined]
    with sessions.begin() as session:
        killed = jobs_repo.create_job(session, QUICK_JOB).id
        jobs_repo.finish_job(session, killed, jobs_repo.FAILED, error="exited with code -9")
        promoted = jobs_repo.create_job(session, QUICK_JOB).id
        jobs_repo.finish_job(session, promoted, jobs_repo.SUCCEEDED)
        weights = Path("finetuned") / promoted / "weights.pt"
        models_repo.ensure_model(
            session, "arcface-mbf@aaaaaaaaaaaa", "arcface-mbf", "a" * 64, weights_path=weights
        )
        # The killed job had re-embedded the gallery under its version before it died.
        faces = list(session.scalars(select(Face.id)))
        vectors = np.eye(len(faces), 512, dtype=np.float32)
        for version in ("arcface-mbf@aaaaaaaaaaaa", "arcface-mbf@bbbbbbbbbbbb"):
            embeddings_repo.add_embeddings(session, version, faces, vectors)
    client.__exit__(None, None, None)
    finetuned = tmp_path / "models" / "finetuned"
    for job_id, sha in ((killed, "b" * 64), (promoted, "a" * 64)):
        (finetuned / job_id).mkdir(parents=True)
        (finetuned / job_id / "weights.pt").write_bytes(b"14 MB of weights")
        checkpoint = {"embedder": "arcface-mbf", "sha256": sha}
        (finetuned / job_id / "checkpoint.json").write_text(json.dumps(checkpoint))

    client = finetune_client()  # start-up removes what the killed job left
    assert sorted(p.name for p in finetuned.iterdir()) == [promoted]
    with client.app.state.face.sessions() as session:  # type: ignore[attr-defined]
        left = dict(
            session.execute(select(Embedding.model, func.count()).group_by(Embedding.model)).all()
        )
    assert "arcface-mbf@bbbbbbbbbbbb" not in left  # the killed job's vectors went with it
    assert left["arcface-mbf@aaaaaaaaaaaa"] == len(faces)  # a registered model's stay

    # A worker killed mid-promotion, its checkpoint written: reaping it removes the folder.
    job_id = client.post("/v1/admin/finetune", json=QUICK_JOB | {"epochs": 500}).json()["job_id"]
    wait_for_job(client, job_id, ("running",))
    (finetuned / job_id).mkdir()
    (finetuned / job_id / "weights.pt").write_bytes(b"weights")
    with client.app.state.face.sessions() as session:  # type: ignore[attr-defined]
        worker = jobs_repo.get_job(session, job_id).owner_pid
    assert worker is not None and worker != os.getpid()
    os.kill(worker, signal.SIGKILL)
    job = wait_for_job(client, job_id, ("failed", "cancelled", "succeeded"))
    assert job["state"] == "failed" and "exited with code -9" in job["error"]
    deadline = time.monotonic() + 30
    while (finetuned / job_id).exists():
        assert time.monotonic() < deadline, "the killed job's checkpoint stayed"
        time.sleep(0.1)
    assert (finetuned / promoted / "weights.pt").exists()

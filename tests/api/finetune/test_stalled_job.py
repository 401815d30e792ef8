"""A job whose training step hangs ends failed, its process ended, and frees the slot."""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from app.gallery import jobs_repo
from app.training import owners, supervisor, trainer, worker
from app.training.owners import pid_alive
from tests.api.finetune.conftest import QUICK_JOB, ClientFactory, wait_for_job

REAL_JOB_PROCESS = worker.job_process
# Several optimizer steps on the shared gallery, so the hang comes after some progress.
STEPPED_JOB = QUICK_JOB | {"micro_batch_size": 4, "accumulation_steps": 1}
STEPS_BEFORE_THE_HANG = 2


def hang_waiting() -> None:
    """As a deadlocked data loader or a stuck CUDA call: other threads still run."""
    threading.Event().wait()  # nothing will ever set it


def hang_holding_the_gil() -> None:
    """As a C extension spinning without releasing the GIL: no other thread runs."""
    re.match(r"(a*)*b", "a" * 64)  # catastrophic backtracking, in C, for ever


def job_process_with_a_hung_step(settings_data: dict[str, Any], job_id: str) -> None:
    """The training process's entry point, unpickled by reference in the spawned process: a
    real job whose third micro-batch never returns. A hang cannot be had for real on demand;
    the rest of the job is real."""
    hang_after_steps(hang_waiting)
    REAL_JOB_PROCESS(settings_data, job_id)


def job_process_holding_the_gil(settings_data: dict[str, Any], job_id: str) -> None:
    hang_after_steps(hang_holding_the_gil)
    REAL_JOB_PROCESS(settings_data, job_id)


def hang_after_steps(hang: Callable[[], None]) -> None:
    real_train = trainer.train

    def train(model_step: Callable[[Any], Any], *args: Any, **kwargs: Any) -> Any:
        calls = itertools.count()

        def step(batch: Any) -> Any:
            if next(calls) == STEPS_BEFORE_THE_HANG:
                hang()
            return model_step(batch)

        return real_train(step, *args, **kwargs)

    trainer.train = train  # type: ignore[assignment]


def wait_until_training(sessions: Any, job_id: str) -> int:
    """The pid of the job's process, once the job reports that it trains."""
    deadline = time.monotonic() + 120
    while True:
        with sessions() as session:
            row = jobs_repo.get_job(session, job_id)
            if (row.progress or {}).get("phase") == "training" and row.owner_pid is not None:
                return int(row.owner_pid)
        assert time.monotonic() < deadline, "the job never started training"
        time.sleep(0.05)


def wait_until_gone(pid: int) -> None:
    deadline = time.monotonic() + 30
    while pid_alive(pid):
        assert time.monotonic() < deadline, "the hung process was left running"
        time.sleep(0.05)


def test_a_job_whose_step_hangs_ends_failed_and_a_new_one_can_start(
    finetune_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its heartbeat thread kept saying it was alive, so it stayed `running` for ever and no
    other job could start until someone cancelled it, if a cancel could reach it at all."""
    # Longer than loading and splitting take on a busy machine: they report no progress.
    client = finetune_client(finetune_stall_timeout_s=8.0)
    sessions = client.app.state.face.sessions  # type: ignore[attr-defined]
    monkeypatch.setattr(worker, "job_process", job_process_with_a_hung_step)
    accepted = client.post("/v1/admin/finetune", json=STEPPED_JOB)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]

    job = wait_for_job(client, job_id, ("failed", "succeeded", "cancelled"), timeout=120)
    assert job["state"] == "failed", job
    assert re.fullmatch(
        r"stalled: no training step, evaluation or embedding batch finished in \d+ s "
        r"\(FACE_FINETUNE_STALL_TIMEOUT_S=8\); its process was ended",
        job["error"],
    ), job["error"]
    with sessions() as session:
        row = jobs_repo.get_job(session, job_id)
        # It hung in training: loading and evaluating, which report progress, were not
        # taken for a stall.
        phase, pid = row.progress["phase"], row.owner_pid
    assert phase == "training"
    assert pid is not None
    wait_until_gone(pid)  # it records the end, then exits

    monkeypatch.setattr(worker, "job_process", REAL_JOB_PROCESS)
    again = client.post("/v1/admin/finetune", json=STEPPED_JOB)  # the slot is free
    assert again.status_code == 202, again.text
    # Not waited for: the service stops it when the test closes the client.
    assert client.delete(f"/v1/admin/jobs/{again.json()['job_id']}").status_code == 202


def test_a_job_hung_holding_the_gil_is_killed_by_the_service(
    finetune_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its watchdog thread cannot run, nor beat: the service ends the job as abandoned once
    its heartbeat is stale, and kills the process, which used to live on unsupervised."""
    # A heartbeat every 2 s in the job (a quarter of its stall timeout), stale after 6 s
    # once it trains: starting (importing torch) takes longer than that on a busy machine.
    client = finetune_client(finetune_stall_timeout_s=8.0)
    monkeypatch.setattr(supervisor, "SWEEP_INTERVAL_S", 0.2)
    monkeypatch.setattr(worker, "job_process", job_process_holding_the_gil)
    job_id = client.post("/v1/admin/finetune", json=STEPPED_JOB).json()["job_id"]
    sessions = client.app.state.face.sessions  # type: ignore[attr-defined]
    wait_until_training(sessions, job_id)
    monkeypatch.setattr(owners, "STALE_AFTER_S", 6.0)

    job = wait_for_job(client, job_id, ("failed", "succeeded", "cancelled", "interrupted"))
    assert job["state"] == "interrupted" and "no heartbeat from pid" in job["error"], job
    with sessions() as session:
        row = jobs_repo.get_job(session, job_id)
        phase, pid = row.progress["phase"], row.owner_pid
    assert phase == "training" and pid is not None
    wait_until_gone(pid)


def test_a_hung_process_whose_job_was_cancelled_is_killed_too(
    finetune_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelling a job whose heartbeat is stale ends it at once; only a job the service's
    own sweep ended used to have its hung process killed, so this one lived on."""
    client = finetune_client(finetune_stall_timeout_s=8.0)
    monkeypatch.setattr(supervisor, "SWEEP_INTERVAL_S", 0.2)
    monkeypatch.setattr(supervisor, "FINISHED_GRACE_S", 0.5)
    # The sweep finds nothing abandoned: the cancel below ends the job, as it would when it
    # comes before the sweep. The cancel's own check (app.services.finetune) is the real one.
    monkeypatch.setattr(supervisor, "end_abandoned", lambda *args, **kwargs: [])
    monkeypatch.setattr(worker, "job_process", job_process_holding_the_gil)
    job_id = client.post("/v1/admin/finetune", json=STEPPED_JOB).json()["job_id"]
    pid = wait_until_training(client.app.state.face.sessions, job_id)  # type: ignore[attr-defined]
    monkeypatch.setattr(owners, "STALE_AFTER_S", 6.0)
    time.sleep(8.0)  # its heartbeat goes stale: it hangs on its third micro-batch

    cancelled = client.delete(f"/v1/admin/jobs/{job_id}")
    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json()["state"] == "cancelled", cancelled.json()
    wait_until_gone(pid)

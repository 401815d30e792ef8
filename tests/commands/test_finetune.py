"""`python -m app finetune`: parameters from flags, and a real foreground run."""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path

import pytest
import torch
from sqlalchemy.orm import Session, sessionmaker

from app.cli import build_parser
from app.commands import finetune
from app.config import Settings
from app.gallery import jobs_repo, models_repo, repository
from app.pipeline.analyzer import FacePipeline
from app.pipeline.image_io import decode_image
from app.services.recognition import points_of
from app.training import worker
from tests.unit.training.test_admission import store_faces

PEOPLE = ("amy", "penny", "raj")


def enrol_crops(sessions: sessionmaker[Session], pipeline: FacePipeline, root: Path) -> None:
    """Three photos each of three people, stored the way enrolment stores them."""
    with sessions.begin() as session:
        for person in PEOPLE:
            subject = repository.create_subject(session, person).id
            for n in (1, 2, 3):
                image = decode_image(
                    (root / f"faceapi_js/{person}/{person}{n}.png").read_bytes(), 10**8
                )
                face = pipeline.analyze(image)[0]
                crop = pipeline.stored_crop(image, face.face)
                repository.add_face(
                    session,
                    subject,
                    box=list(face.face.box),
                    landmarks=points_of(face.face.landmarks),
                    quality={},
                    image_sha256=f"{person}{n}",
                    crop=crop.png,
                    crop_landmarks=points_of(crop.landmarks),
                    model=pipeline.embedder.version,
                    vector=pipeline.embed([face])[0],
                )


def test_flags_become_job_parameters() -> None:
    args = build_parser().parse_args(
        ["finetune", "--epochs", "2", "--train-layers", "last_block", "--no-amp", "--force"]
    )
    assert (args.epochs, args.train_layers, args.amp, args.force) == (2, "last_block", False, True)
    assert args.micro_batch_size is None  # unset flags keep FinetuneParams' defaults
    with pytest.raises(SystemExit):
        build_parser().parse_args(["finetune", "--loss", "softmax"])


def test_a_foreground_run_promotes_and_prints_the_job(
    settings: Settings,
    sessions: sessionmaker[Session],
    pipeline: FacePipeline,
    shared_faces: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = settings.model_copy(update={"models_dir": tmp_path / "models"})
    enrol_crops(sessions, pipeline, shared_faces)
    args = build_parser().parse_args(
        ["finetune", "--epochs", "1", "--micro-batch-size", "4", "--device", "cpu", "--force"]
    )
    assert finetune.run(args, settings) == 0

    out = capsys.readouterr()
    job = json.loads(out.out)
    assert job["state"] == "succeeded" and job["result"]["promotion"]["rule"] == "forced"
    assert "fine-tuning" in out.err  # the progress bar
    with sessions() as session:
        assert models_repo.active_model(session, "arcface-mbf").id == job["result"]["model_id"]  # type: ignore[union-attr]
        assert models_repo.count_crops_missing(session, job["result"]["model_id"]) == 0

    # One job at a time, even across processes sharing the database.
    with sessions.begin() as session:
        jobs_repo.create_job(session, {})
    assert finetune.run(args, settings) == 1
    assert "job_running: " in capsys.readouterr().err


def test_sigterm_ends_a_foreground_job_as_interrupted(
    settings: Settings,
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """docker stop, systemd and timeout send SIGTERM: the job was left running, and every
    new job was refused until the service restarted."""

    def terminated_mid_job(_settings: Settings, _sessions: object, job_id: str, **_: object) -> str:
        os.kill(os.getpid(), signal.SIGTERM)  # the real signal, through the real handler
        raise AssertionError("SIGTERM did not stop the job")

    store_faces(sessions, [3, 3, 3])  # what the checks before a job ask for
    monkeypatch.setattr(worker, "run_job", terminated_mid_job)
    before = signal.getsignal(signal.SIGTERM)
    args = build_parser().parse_args(["finetune", "--epochs", "1", "--device", "cpu"])
    assert finetune.run(args, settings) == 143
    assert signal.getsignal(signal.SIGTERM) == before  # restored for whoever called run()
    with sessions() as session:
        (job,) = jobs_repo.list_jobs(session)
        assert (job.state, job.error) == ("interrupted", "stopped by SIGTERM")
        assert jobs_repo.active_job(session) is None  # the next job may start


def test_a_job_whose_process_is_gone_does_not_block_the_next(
    settings: Settings,
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A command-line job killed with kill -9 stayed `running`: every later job was refused
    until the service restarted."""
    import subprocess
    import sys

    from app.training.owners import this_host

    store_faces(sessions, [3, 3, 3])
    killed = subprocess.Popen([sys.executable, "-c", "pass"])
    killed.wait()
    with sessions.begin() as session:
        owner = jobs_repo.Owner(this_host(), killed.pid)
        stuck = jobs_repo.create_job(session, {}, owner).id
        jobs_repo.start_job(session, stuck, owner)

    ran: list[str] = []

    def trained(
        _settings: Settings, sessions: sessionmaker[Session], job_id: str, **_: object
    ) -> str:
        ran.append(job_id)
        with sessions.begin() as session:
            jobs_repo.start_job(session, job_id)
            jobs_repo.finish_job(session, job_id, jobs_repo.SUCCEEDED)
        return jobs_repo.SUCCEEDED

    monkeypatch.setattr(worker, "run_job", trained)
    args = build_parser().parse_args(["finetune", "--epochs", "1", "--device", "cpu"])
    assert finetune.run(args, settings) == 0
    assert f"job {stuck} ended: the process that ran it is gone" in capsys.readouterr().err
    with sessions() as session:
        job = jobs_repo.get_job(session, stuck)
        assert job.state == "interrupted" and f"pid {killed.pid}" in str(job.error)
        assert len(ran) == 1 and jobs_repo.get_job(session, ran[0]).state == "succeeded"


def test_a_signal_just_after_the_activation_commit_keeps_the_model(
    settings: Settings,
    sessions: sessionmaker[Session],
    pipeline: FacePipeline,
    shared_faces: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SIGTERM raises SystemExit wherever it lands; landing after the commit that activated
    the model, the cleanup for a failed promotion deleted the active model's files."""
    from app.training.tracker import JobTracker

    settings = settings.model_copy(update={"models_dir": tmp_path / "models"})
    enrol_crops(sessions, pipeline, shared_faces)
    succeed = JobTracker.succeed

    def committed_then_signalled(self: JobTracker, *args: object, **kwargs: object) -> None:
        succeed(self, *args, **kwargs)  # type: ignore[arg-type]
        raise SystemExit(143)

    monkeypatch.setattr(JobTracker, "succeed", committed_then_signalled)
    args = build_parser().parse_args(
        ["finetune", "--epochs", "1", "--micro-batch-size", "4", "--device", "cpu", "--force"]
    )
    assert finetune.run(args, settings) == 143
    with sessions() as session:
        (job,) = jobs_repo.list_jobs(session)
        assert job.state == "succeeded"
        active = models_repo.active_model(session, "arcface-mbf")
        assert active is not None and active.id == job.result["model_id"]
        assert models_repo.count_crops_missing(session, active.id) == 0  # vectors kept
        assert (settings.models_dir / active.weights_path).is_file()  # checkpoint kept


@pytest.mark.parametrize(
    ("faces", "flags", "refusal"),
    [
        ([3, 1], [], "insufficient_training_data: Fine-tuning needs at least two subjects"),
        # Face ids 1-9: none is held out at this fraction, so nothing would be validated.
        ([3, 3, 3], ["--validation-fraction", "0.01"], "holds out 0 faces"),
        ([3, 3, 3], ["--validation-fraction", "0.5"], "invalid_request: validation_fraction 0.5"),
    ],
)
def test_what_the_job_would_fail_for_is_refused_before_it_starts(
    settings: Settings,
    sessions: sessionmaker[Session],
    capsys: pytest.CaptureFixture[str],
    faces: list[int],
    flags: list[str],
    refusal: str,
) -> None:
    """The job used to start, load the model and its gallery, then fail."""
    store_faces(sessions, faces)
    with sessions.begin() as session:  # the serving model was trained holding out 0.25
        trained_by = jobs_repo.create_job(session, {"validation_fraction": 0.25}).id
        jobs_repo.finish_job(session, trained_by, jobs_repo.SUCCEEDED)
        models_repo.ensure_model(
            session, "arcface-mbf@tuned", "arcface-mbf", "1" * 64, job_id=trained_by
        )
        models_repo.activate(session, "arcface-mbf@tuned")
    args = build_parser().parse_args(["finetune", "--device", "cpu", *flags])
    assert finetune.run(args, settings) == 1
    assert refusal in capsys.readouterr().err
    with sessions() as session:
        assert [job.id for job in jobs_repo.list_jobs(session)] == [trained_by]


@pytest.mark.skipif(torch.cuda.is_available(), reason="refused only where CUDA is missing")
def test_a_cuda_device_this_machine_lacks_is_refused_before_the_job(
    settings: Settings, sessions: sessionmaker[Session], capsys: pytest.CaptureFixture[str]
) -> None:
    """The job used to be queued, then fail on the device, with a traceback: a failed row
    for each try, where POST /v1/admin/finetune answers 422."""
    store_faces(sessions, [3, 3, 3])
    args = build_parser().parse_args(["finetune", "--device", "cuda"])
    assert finetune.run(args, settings) == 1
    out = capsys.readouterr()
    assert out.err == (
        "invalid_request: device cuda is not available here; 0 CUDA device(s) found\n"
    )
    assert out.out == ""
    with sessions() as session:
        assert jobs_repo.list_jobs(session) == []


def test_a_job_failing_on_a_service_error_logs_it_without_a_traceback(
    settings: Settings, sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    """A job queued for a device that is gone when it runs: the error's message is the
    whole story, and the command line printed a traceback above the job."""
    with sessions.begin() as session:
        job_id = jobs_repo.create_job(session, {"device": "cuda:99"}).id
    assert worker.run_job(settings, sessions, job_id) == jobs_repo.FAILED
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.getMessage() == (
        f"job {job_id} failed: device 'cuda:99' requested but CUDA is not available"
    )
    assert not record.exc_info  # no traceback


@pytest.mark.parametrize(
    ("signum", "status", "why"),
    [
        (signal.SIGINT, 130, "interrupted from the terminal"),
        (signal.SIGTERM, 143, "stopped by SIGTERM"),
    ],
)
def test_an_interrupted_job_is_printed(
    settings: Settings,
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    signum: int,
    status: int,
    why: str,
) -> None:
    """Ctrl-C and SIGTERM ended the job and the command, which printed nothing."""

    def signalled_mid_job(_settings: Settings, _sessions: object, job_id: str, **_: object) -> str:
        os.kill(os.getpid(), signum)  # the real signal, through the real handlers
        raise AssertionError("the signal did not stop the job")

    store_faces(sessions, [3, 3, 3])
    monkeypatch.setattr(worker, "run_job", signalled_mid_job)
    args = build_parser().parse_args(["finetune", "--epochs", "1", "--device", "cpu"])
    assert finetune.run(args, settings) == status
    out = capsys.readouterr()
    job = json.loads(out.out)
    assert (job["state"], job["error"]) == ("interrupted", why)
    assert out.err.endswith(f"{why}: job {job['id']} ended interrupted\n")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--epochs", "0"], "argument --epochs: must be greater than or equal to 1"),
        (["--learning-rate", "nan"], "argument --learning-rate: must be a finite number"),
        (["--validation-fraction", "1"], "argument --validation-fraction: must be less than 1"),
        (["--device", "gpu"], "argument --device: must be auto, cpu, cuda or cuda:N"),
        (
            ["--loss", "triplet", "--micro-batch-size", "2"],
            "the triplet loss needs micro_batch_size >= 4",
        ),
    ],
)
def test_a_value_out_of_range_is_one_line_naming_the_flag(
    settings: Settings, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    """It was pydantic's dump: 'validation error for FinetuneRequest', a URL, no flag."""
    args = build_parser().parse_args(["finetune", *flags])
    assert finetune.run(args, settings) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"python -m app finetune: error: {message}")
    assert err.count("\n") == 1
    assert not (settings.data_dir / "faces.db").exists()  # refused before the database

"""The training process: runs one fine-tuning job against the service's database."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.errors import FaceServiceError
from app.gallery import jobs_repo
from app.gallery.db import make_engine, make_session_factory
from app.schemas.finetune import FinetuneParams, JobProgress
from app.training.finetune import run_finetune
from app.training.tracker import JobCancelled, JobTracker

log = logging.getLogger(__name__)


def run_job(
    settings: Settings,
    sessions: sessionmaker[Session],
    job_id: str,
    listener: Callable[[JobProgress], None] | None = None,
) -> str:
    """Run a queued job to its end in this process; returns the state it ended in."""
    tracker = JobTracker(
        sessions, job_id, listener, stall_timeout_s=settings.finetune_stall_timeout_s
    )
    if not tracker.begin():
        tracker.end(jobs_repo.CANCELLED)
        with sessions() as session:
            return jobs_repo.state_of(session, job_id)
    try:
        with sessions() as session:
            params = FinetuneParams.model_validate(jobs_repo.get_job(session, job_id).params)
        run_finetune(settings, sessions, params, tracker)
    except JobCancelled:
        log.info("job %s cancelled", job_id)
        tracker.end(jobs_repo.CANCELLED)
        return jobs_repo.CANCELLED
    except Exception as error:
        # A service error (no CUDA, weights missing) says all there is in its message; a
        # traceback, printed by the command line too, is for what nobody anticipated.
        message = error.message if isinstance(error, FaceServiceError) else str(error)
        log.error(
            "job %s failed: %s", job_id, message, exc_info=not isinstance(error, FaceServiceError)
        )
        tracker.end(jobs_repo.FAILED, error=f"{type(error).__name__}: {message}")
        return jobs_repo.FAILED
    finally:
        tracker.close()  # the end is recorded by now, or (SIGTERM) by the caller next
    return jobs_repo.SUCCEEDED


def exit_on_sigterm() -> None:
    """Make SIGTERM (how the service stops a job at shutdown) raise SystemExit, so that
    the job's cleanup runs: a promotion cut short deletes its new vectors and checkpoint.
    Python's default for SIGTERM ends the process with no cleanup at all."""

    def stop(signum: int, _frame: object) -> None:
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def stop_with_parent() -> None:
    """SIGTERM this process (and so its cleanup, above) when the process that spawned it
    ends, however it ends: after a kill -9 of the service, the job went on unsupervised and
    activated its model with no service running. A daemon thread waits on the parent's
    sentinel; prctl(PR_SET_PDEATHSIG) would follow the spawning *thread*, which a thread
    pool may retire at any time."""
    parent = multiprocessing.parent_process()
    if parent is None:  # not spawned (the command line runs jobs in its own process)
        return

    def watch() -> None:
        parent.join()
        log.error("the service process ended; stopping this job")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def job_process(settings_data: dict[str, Any], job_id: str) -> None:
    """Entry point of the spawned process: its own engine on the same database."""
    exit_on_sigterm()
    stop_with_parent()
    settings = Settings.model_validate(settings_data)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s finetune[%(process)d] %(name)s: %(message)s",
    )
    engine = make_engine(settings.resolved_database_url)
    try:
        run_job(settings, make_session_factory(engine), job_id)
    finally:
        engine.dispose()

"""JobSupervisor: the web process's handle on the one training process it may run."""

from __future__ import annotations

import logging
import multiprocessing
import threading
from multiprocessing.process import BaseProcess

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.gallery import jobs_repo

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 10.0


class JobSupervisor:
    """Spawns training processes (spawn, never fork: torch and the web server hold threads)."""

    def __init__(self) -> None:
        # Held while checking for a running job and starting one, so two requests can't both.
        self.lock = threading.RLock()
        self._process: BaseProcess | None = None
        self._job_id: str | None = None

    def spawn(self, settings: Settings, job_id: str) -> None:
        from app.training.worker import job_process

        context = multiprocessing.get_context("spawn")
        process = context.Process(
            target=job_process,
            args=(settings.model_dump(), job_id),
            name=f"finetune-{job_id[:8]}",
            daemon=True,
        )
        process.start()
        self._process, self._job_id = process, job_id
        log.info("job %s started in process %s", job_id, process.pid)

    def reap(self, sessions: sessionmaker[Session]) -> None:
        """Fail the job of a training process that died without recording an outcome."""
        with self.lock:
            process, job_id = self._process, self._job_id
            if process is None or job_id is None or process.is_alive():
                return
            process.join()
            error = f"the training process exited with code {process.exitcode}"
            with sessions.begin() as session:
                if jobs_repo.finish_job(session, job_id, jobs_repo.FAILED, error=error):
                    log.error("job %s: %s", job_id, error)
            process.close()
            self._process = self._job_id = None

    def recover(self, sessions: sessionmaker[Session]) -> None:
        """At start-up: jobs left unfinished by a previous run have no process any more."""
        with sessions.begin() as session:
            count = jobs_repo.interrupt_unfinished(session)
        if count:
            log.warning("%d unfinished fine-tuning job(s) marked interrupted", count)

    def shutdown(self, sessions: sessionmaker[Session]) -> None:
        """Stop a running training process; its job ends interrupted (or cancelled)."""
        with self.lock:
            process, job_id = self._process, self._job_id
            if process is None or job_id is None:
                return
            if process.is_alive():
                process.terminate()
                process.join(SHUTDOWN_GRACE_S)
                if process.is_alive():
                    process.kill()
                    process.join()
            with sessions.begin() as session:
                jobs_repo.interrupt_unfinished(session, job_id)
            process.close()
            self._process = self._job_id = None

"""JobSupervisor, the web process's handle on its training process; and abandoned jobs."""

from __future__ import annotations

import json
import logging
import multiprocessing
import shutil
import threading
import time
from multiprocessing.process import BaseProcess
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.gallery import jobs_repo, models_repo
from app.training.owners import why_abandoned

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 10.0
# How long a training process may outlive its job's end (a cancel, or the abandoned-job
# check run by a request or another service) before it counts as hung and is killed.
FINISHED_GRACE_S = 10.0
# How often a service process looks for abandoned jobs without being asked to.
SWEEP_INTERVAL_S = 10.0


class JobSupervisor:
    """Spawns training processes (spawn, never fork: torch and the web server hold threads)."""

    def __init__(self) -> None:
        # Held while checking for a running job and starting one, so two requests can't both.
        self.lock = threading.RLock()
        self._process: BaseProcess | None = None
        self._job_id: str | None = None
        self._models_dir: Path | None = None  # set by recover(), at start-up
        self._next_sweep = 0.0
        self._over_since: float | None = None  # when its job was first seen ended

    def spawn(self, settings: Settings, job_id: str) -> None:
        from app.training.worker import job_process

        previous = self._process
        if previous is not None and previous.is_alive():
            # Its job was ended (it is the only one that may run); the process never left.
            log.error("job %s: killing its process, still alive, before a new job", self._job_id)
            previous.kill()
            previous.join(SHUTDOWN_GRACE_S)
        self._over_since = None
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
        """Fail the job of a training process that died without recording an outcome, and,
        every SWEEP_INTERVAL_S, end the jobs other processes abandoned."""
        with self.lock:
            process, job_id = self._process, self._job_id
            if process is not None and job_id is not None and not process.is_alive():
                process.join()
                error = f"the training process exited with code {process.exitcode}"
                with sessions.begin() as session:
                    # A cancel was asked: the job ends as asked, whatever ended its process.
                    if jobs_repo.finish_job(
                        session,
                        job_id,
                        jobs_repo.CANCELLED,
                        error=error,
                        from_states=(jobs_repo.CANCELLING,),
                    ) or jobs_repo.finish_job(session, job_id, jobs_repo.FAILED, error=error):
                        log.error("job %s: %s", job_id, error)
                process.close()
                self._process = self._job_id = None
                if self._models_dir is not None:  # a kill -9 mid-promotion leaves its checkpoint
                    remove_leftovers(sessions, self._models_dir)
            if self._models_dir is not None and time.monotonic() >= self._next_sweep:
                self._next_sweep = time.monotonic() + SWEEP_INTERVAL_S
                ended = end_abandoned(sessions, self._models_dir)
                self._kill_if_over(sessions, ended)
                # Also what a job no service ran left: a command-line job that its own
                # heartbeat ended (stuck after a cancel) is not abandoned, just ended.
                remove_leftovers(sessions, self._models_dir)

    def _kill_if_over(self, sessions: sessionmaker[Session], ended: list[str]) -> None:
        """Kill the training process if it outlives its job: hung, perhaps holding the GIL,
        which its own watchdog thread then cannot end (SIGKILL: a SIGTERM handler would not
        run either). At once if this sweep ended the job for a stale heartbeat; after
        FINISHED_GRACE_S if something else ended it. The next reap joins it."""
        process, job_id = self._process, self._job_id
        if process is None or job_id is None or not process.is_alive():
            self._over_since = None
            return
        if job_id not in ended:
            try:
                with sessions() as session:
                    over = jobs_repo.state_of(session, job_id) not in jobs_repo.ACTIVE_STATES
            except Exception:  # the database is away, or the row: judge it next sweep
                log.warning("job %s: state not read", job_id, exc_info=True)
                return
            now = time.monotonic()
            if not over or self._over_since is None:
                self._over_since = now if over else None
                return
            if now - self._over_since < FINISHED_GRACE_S:
                return
        log.error("job %s is over but its process %s lives on: killing it", job_id, process.pid)
        process.kill()

    def recover(self, sessions: sessionmaker[Session], models_dir: Path) -> None:
        """At start-up: end the jobs no process runs any more, and remove what they left.

        A job another live process runs or has just queued (a command-line job, another
        service process on the same database) is left to it. Jobs without an owner, from
        before owners were recorded, end as every unfinished job used to.
        """
        self._models_dir = models_dir
        self._next_sweep = time.monotonic() + SWEEP_INTERVAL_S
        end_abandoned(sessions, models_dir, unowned_too=True)
        remove_leftovers(sessions, models_dir)

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


def end_abandoned(
    sessions: sessionmaker[Session],
    models_dir: Path,
    job_id: str | None = None,
    unowned_too: bool = False,
) -> list[str]:
    """End the unfinished jobs (or `job_id`) whose process is gone, so that a new job can
    start; then remove what they left in the models folder. Returns the ids ended."""
    ended = []
    with sessions.begin() as session:
        now = jobs_repo.database_now(session)
        for job in jobs_repo.unfinished_jobs(session, job_id):
            why = why_abandoned(job, now, unowned_too)
            if why is not None and jobs_repo.end_abandoned(session, job, why):
                log.warning("fine-tuning job %s (%s) ended: %s", job.id, job.state, why)
                ended.append(job.id)
    if ended:
        remove_leftovers(sessions, models_dir)
    return ended


def remove_leftovers(sessions: sessionmaker[Session], models_dir: Path) -> list[str]:
    """Delete the checkpoint folders of jobs that ended without a model row pointing to
    them (a job killed mid-promotion). A folder of an unfinished job, of a registered
    model, or not named after a job of this database is left alone."""
    from app.training.promote import FINETUNED_DIR  # imports the pipeline: only when used

    root = models_dir / FINETUNED_DIR
    if not root.is_dir():
        return []
    names = [p.name for p in root.iterdir() if p.is_dir() and not p.is_symlink()]
    if not names:
        return []
    with sessions() as session:
        leftovers = jobs_repo.ended_without_model(session, names, FINETUNED_DIR)
    for name in leftovers:
        _forget_vectors(sessions, root / name)
        shutil.rmtree(root / name, ignore_errors=True)
        log.warning("removed %s: its job ended without promoting it", root / name)
    return leftovers


def _forget_vectors(sessions: sessionmaker[Session], folder: Path) -> None:
    """Delete the vectors a job killed mid-promotion wrote under its new version (about
    2 KB a face), named by its checkpoint; never those of a version that has a model row."""
    from app.training.checkpoints import METADATA_FILE  # imports torch: only when used

    try:
        metadata = json.loads((folder / METADATA_FILE).read_text())
        version = f"{metadata['embedder']}@{metadata['sha256'][:12]}"
    except (OSError, ValueError, KeyError, TypeError):
        return  # killed before its checkpoint was complete: it wrote no vectors
    with sessions.begin() as session:
        models_repo.discard_unregistered(session, version)

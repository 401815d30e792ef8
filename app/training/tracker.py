"""JobTracker: a fine-tuning job's progress and cancellation, kept in its database row."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.gallery import jobs_repo
from app.schemas.finetune import JobProgress, JobResult
from app.training.loop import Progress
from app.training.owners import this_process
from app.training.watchdog import CANCEL_GRACE_S, HEARTBEAT_INTERVAL_S, JobWatchdog

# At most this often a progress row is written or the job's state read back.
WRITE_INTERVAL_S = 0.25
CHECK_INTERVAL_S = 0.25


class JobCancelled(Exception):
    """The job was asked to stop (DELETE), or no longer belongs to this process."""


class JobTracker:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        job_id: str,
        listener: Callable[[JobProgress], None] | None = None,
        heartbeat_s: float = HEARTBEAT_INTERVAL_S,
        cancel_grace_s: float = CANCEL_GRACE_S,
        stall_timeout_s: float = 0.0,
    ) -> None:
        self.sessions = sessions
        self.job_id = job_id
        self.progress = JobProgress()
        # Seconds expected after training (evaluation, re-embedding), for the ETA.
        self.tail_estimate_s = 0.0
        self._listener = listener
        self._started = time.monotonic()
        self._train_started = time.monotonic()
        self._last_write = self._last_check = float("-inf")
        self._stop = False
        # Every update and every stop check is progress: each means a step or batch ended.
        self._watchdog = JobWatchdog(sessions, job_id, heartbeat_s, cancel_grace_s, stall_timeout_s)

    def begin(self) -> bool:
        """Mark the job running, owned by this process, and start its heartbeat; False
        when it was cancelled (or ended) while queued."""
        with self.sessions.begin() as session:
            started = jobs_repo.start_job(session, self.job_id, this_process())
        if started:
            self._watchdog.start()
        return started

    def close(self) -> None:
        """Stop the heartbeat; the job's end is recorded by then, or by whoever stops it."""
        self._watchdog.close()

    def update(self, force: bool = False, **changes: Any) -> None:
        self._watchdog.progressed()
        elapsed = round(time.monotonic() - self._started, 2)
        self.progress = self.progress.model_copy(update=changes | {"elapsed_s": elapsed})
        if self._listener is not None:
            self._listener(self.progress)
        now = time.monotonic()
        if force or now - self._last_write >= WRITE_INTERVAL_S:
            self._last_write = now
            with self.sessions.begin() as session:
                jobs_repo.set_progress(session, self.job_id, self.progress.model_dump())

    def on_train_step(self, progress: Progress, total_steps: int) -> None:
        per_step = (time.monotonic() - self._train_started) / max(progress.step, 1)
        remaining = per_step * (total_steps - progress.step) + self.tail_estimate_s
        self.update(
            force=progress.step == total_steps,
            epoch=progress.epoch + 1,
            step=progress.step,
            total_steps=total_steps,
            # JSON (and PostgreSQL's json type) has no NaN or infinity.
            loss=round(progress.loss, 6) if math.isfinite(progress.loss) else None,
            effective_batch_size=progress.effective_batch_size,
            images_seen=progress.images_seen,
            eta_s=round(remaining, 1),
        )

    def start_training_clock(self) -> None:
        """The ETA divides the time since this call by the steps taken."""
        self._train_started = time.monotonic()

    def should_stop(self) -> bool:
        self._watchdog.progressed()
        now = time.monotonic()
        if not self._stop and now - self._last_check >= CHECK_INTERVAL_S:
            self._last_check = now
            with self.sessions() as session:
                self._stop = jobs_repo.state_of(session, self.job_id) != jobs_repo.RUNNING
            self._watchdog.stopping = self._stop
        return self._stop

    def check(self) -> None:
        if self.should_stop():
            raise JobCancelled(f"job {self.job_id} was cancelled")

    def succeed(self, result: JobResult, within: Callable[[Session], None] | None = None) -> None:
        """Record success, with `within` (e.g. activating the model) in the same transaction."""
        with self.sessions.begin() as session:
            # Claimed by the first write, which holds the row (PostgreSQL) or the database
            # (SQLite) to the commit: a cancel either came first, and this fails, or waits
            # and finds the job ended. A read first left a gap in which a cancel got its
            # 202 and the model was activated anyway.
            claimed = jobs_repo.finish_job(
                session,
                self.job_id,
                jobs_repo.SUCCEEDED,
                result.model_dump(),
                from_states=(jobs_repo.RUNNING,),
            )
            if not claimed:
                raise JobCancelled(f"job {self.job_id} was cancelled")
            if within is not None:
                within(session)  # if it fails, the claim rolls back with it
            jobs_repo.set_progress(session, self.job_id, self.finished_progress())

    def end(self, state: str, error: str | None = None) -> None:
        with self.sessions.begin() as session:
            jobs_repo.set_progress(session, self.job_id, self.finished_progress())
            jobs_repo.finish_job(session, self.job_id, state, error=error)

    def finished_progress(self) -> dict[str, Any]:
        elapsed = round(time.monotonic() - self._started, 2)
        changes = {"phase": "done", "eta_s": 0.0, "elapsed_s": elapsed}
        return self.progress.model_copy(update=changes).model_dump()

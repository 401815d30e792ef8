"""JobTracker: a fine-tuning job's progress and cancellation, kept in its database row."""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.gallery import jobs_repo
from app.schemas.finetune import JobProgress, JobResult
from app.training.loop import Progress
from app.training.owners import this_process

log = logging.getLogger(__name__)

# At most this often a progress row is written or the job's state read back.
WRITE_INTERVAL_S = 0.25
CHECK_INTERVAL_S = 0.25
# How often a running job's heartbeat is written, whatever it is doing. Another process
# ends the job as abandoned once its heartbeat is owners.STALE_AFTER_S (120 s) old.
HEARTBEAT_INTERVAL_S = 10.0
# A job checks for a cancel at least every batch, so one still running this long after it
# was cancelled is stuck (a hung call, a lock never released). Its heartbeat thread then
# records it `cancelled` and ends the process: the training slot must not stay taken by a
# job nothing can stop, with its heartbeat telling everyone that it is alive.
CANCEL_GRACE_S = 60.0
# The exit status of a process ended that way (EX_SOFTWARE), and how long it waits first
# to record the end.
STUCK_EXIT_CODE = 70
STUCK_RECORD_WAIT_S = 10.0


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
        self._heartbeat_s = heartbeat_s
        self._cancel_grace_s = cancel_grace_s
        self._closed = threading.Event()
        self._heart: threading.Thread | None = None

    def begin(self) -> bool:
        """Mark the job running, owned by this process, and start its heartbeat; False
        when it was cancelled (or ended) while queued."""
        with self.sessions.begin() as session:
            started = jobs_repo.start_job(session, self.job_id, this_process())
        if started:
            self._heart = threading.Thread(
                target=self._beat, name=f"heartbeat-{self.job_id[:8]}", daemon=True
            )
            self._heart.start()
        return started

    def close(self) -> None:
        """Stop the heartbeat; the job's end is recorded by then, or by whoever stops it."""
        self._closed.set()
        if self._heart is not None:
            self._heart.join()
            self._heart = None

    def _beat(self) -> None:
        # A thread, not progress writes: evaluating and re-embedding write none for minutes.
        cancelled_at: float | None = None
        while not self._closed.wait(self._heartbeat_s):
            try:
                with self.sessions() as session:
                    cancelling = jobs_repo.state_of(session, self.job_id) == jobs_repo.CANCELLING
            except Exception:  # the database is away; the next beat retries
                log.warning("job %s: job state not read", self.job_id, exc_info=True)
                continue
            # Judged before the beat's write, which a stuck main thread holding the job's
            # row may block. Once the main thread has seen the cancel it is cleaning up
            # (deleting a cut promotion's vectors can take minutes), not stuck.
            if cancelling and not self._stop:
                now = time.monotonic()
                cancelled_at = now if cancelled_at is None else cancelled_at
                if now - cancelled_at >= self._cancel_grace_s and not self._closed.is_set():
                    self._end_stuck(now - cancelled_at)
            else:
                cancelled_at = None
            try:
                with self.sessions.begin() as session:
                    jobs_repo.beat(session, self.job_id)
            except Exception:
                log.warning("job %s: heartbeat not written", self.job_id, exc_info=True)

    def _end_stuck(self, waited_s: float) -> None:
        error = f"still running {waited_s:.0f} s after it was cancelled; its process was ended"
        log.error("job %s: %s", self.job_id, error)
        # On a thread of its own: the stuck main thread may hold a lock this write waits for.
        # Unrecorded, the job still ends: whoever reaps the process or finds it gone.
        recorder = threading.Thread(target=self._record_stuck, args=(error,), daemon=True)
        recorder.start()
        recorder.join(STUCK_RECORD_WAIT_S)
        # Not SystemExit: the main thread is stuck and would never see it. As after a
        # kill -9, the service deletes what a cut-short promotion left.
        os._exit(STUCK_EXIT_CODE)

    def _record_stuck(self, error: str) -> None:
        try:
            with self.sessions.begin() as session:
                jobs_repo.finish_job(
                    session,
                    self.job_id,
                    jobs_repo.CANCELLED,
                    error=error,
                    from_states=(jobs_repo.CANCELLING,),
                )
        except Exception:
            log.exception("job %s: could not record the cancel", self.job_id)

    def update(self, force: bool = False, **changes: Any) -> None:
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
        now = time.monotonic()
        if not self._stop and now - self._last_check >= CHECK_INTERVAL_S:
            self._last_check = now
            with self.sessions() as session:
                self._stop = jobs_repo.state_of(session, self.job_id) != jobs_repo.RUNNING
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

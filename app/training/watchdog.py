"""JobWatchdog: a running job's heartbeat thread, which also ends the job once it is stuck."""

from __future__ import annotations

import logging
import os
import threading
import time

from sqlalchemy.orm import Session, sessionmaker

from app.gallery import jobs_repo

log = logging.getLogger(__name__)

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


class JobWatchdog:
    """Writes a job's heartbeat while its process lives, and ends that process when the job
    is stuck: still running long after a cancel, or without progress for a stall timeout.

    In the job's own process, not the service: it knows each step as it finishes (nothing
    writes batches to the database), it covers `python -m app finetune` too, which no
    service supervises, and os._exit ends a process whose main thread is hung. One hung
    holding the GIL stops this thread too: the supervisor kills it once its beat is stale."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        job_id: str,
        heartbeat_s: float = HEARTBEAT_INTERVAL_S,
        cancel_grace_s: float = CANCEL_GRACE_S,
        stall_timeout_s: float = 0.0,
    ) -> None:
        self.sessions = sessions
        self.job_id = job_id
        # Set once the main thread has seen a cancel: it is cleaning up (deleting a cut
        # promotion's vectors can take minutes), not stuck.
        self.stopping = False
        self._cancel_grace_s = cancel_grace_s
        self._stall_timeout_s = stall_timeout_s
        # A short stall timeout is judged more often than the heartbeat is due.
        self._interval = min(heartbeat_s, stall_timeout_s / 4 or heartbeat_s)
        self._last_progress = time.monotonic()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def progressed(self) -> None:
        """The main thread got somewhere: a step or batch finished, or a phase began."""
        self._last_progress = time.monotonic()

    def start(self) -> None:
        self._last_progress = time.monotonic()
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat-{self.job_id[:8]}", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        # A thread, not progress writes: evaluating and re-embedding write none for minutes.
        cancelled_at: float | None = None
        while not self._closed.wait(self._interval):
            try:
                with self.sessions() as session:
                    state = jobs_repo.state_of(session, self.job_id)
            except Exception:  # the database is away; the next beat retries
                log.warning("job %s: job state not read", self.job_id, exc_info=True)
                continue
            # Judged before the beat's write, which a stuck main thread holding the job's
            # row may block.
            now = time.monotonic()
            if state == jobs_repo.CANCELLING and not self.stopping:
                cancelled_at = now if cancelled_at is None else cancelled_at
                if now - cancelled_at >= self._cancel_grace_s:
                    error = f"still running {now - cancelled_at:.0f} s after it was cancelled"
                    self._end_stuck(error, jobs_repo.CANCELLED, jobs_repo.CANCELLING)
            else:
                cancelled_at = None
            idle = now - self._last_progress
            if state == jobs_repo.RUNNING and 0 < self._stall_timeout_s <= idle:
                error = (
                    f"stalled: no training step, evaluation or embedding batch finished in "
                    f"{idle:.0f} s (FACE_FINETUNE_STALL_TIMEOUT_S={self._stall_timeout_s:g})"
                )
                self._end_stuck(error, jobs_repo.FAILED, jobs_repo.RUNNING)
            try:
                with self.sessions.begin() as session:
                    jobs_repo.beat(session, self.job_id)
            except Exception:
                log.warning("job %s: heartbeat not written", self.job_id, exc_info=True)

    def _end_stuck(self, why: str, state: str, from_state: str) -> None:
        """Record the job ended as `state` and end this process; nothing if the job has
        moved on from `from_state` meanwhile (its main thread ended it, say)."""
        if self._closed.is_set():  # the main thread is done, not stuck
            return
        error = f"{why}; its process was ended"
        log.error("job %s: %s", self.job_id, error)
        # On a thread of its own: the stuck main thread may hold a lock this write waits for.
        # Unrecorded, the job still ends: whoever reaps the process or finds it gone.
        claimed: list[bool] = []
        recorder = threading.Thread(
            target=self._record, args=(error, state, from_state, claimed), daemon=True
        )
        recorder.start()
        recorder.join(STUCK_RECORD_WAIT_S)
        if claimed == [False]:
            log.warning("job %s had already moved on; its process goes on", self.job_id)
            return
        # Not SystemExit: the main thread is stuck and would never see it. As after a
        # kill -9, the service deletes what a cut-short promotion left.
        os._exit(STUCK_EXIT_CODE)

    def _record(self, error: str, state: str, from_state: str, claimed: list[bool]) -> None:
        try:
            with self.sessions.begin() as session:
                ended = jobs_repo.finish_job(
                    session, self.job_id, state, error=error, from_states=(from_state,)
                )
            claimed.append(ended)
        except Exception:
            log.exception("job %s: could not record its end", self.job_id)

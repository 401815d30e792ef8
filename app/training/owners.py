"""Who runs a fine-tuning job: this process as jobs record it, and whether an owner is gone."""

from __future__ import annotations

import os
import socket
from datetime import datetime
from pathlib import Path

from app.gallery import jobs_repo
from app.gallery.orm import Job

# A job whose heartbeat (written every tracker.HEARTBEAT_INTERVAL_S, 10 s) is older than
# this has lost its process, wherever that ran: twelve beats missed, so a busy database or
# a few seconds of clock skew between SQLite hosts never end a live job.
STALE_AFTER_S = 120.0


def this_host() -> str:
    """This machine as jobs record it: its name and, where /proc tells it, its PID
    namespace. A container that shares the host's name (host networking) has pids of its
    own, and must not read another namespace's live job as one whose pid has gone."""
    try:
        return f"{socket.gethostname()} {os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return socket.gethostname()


def this_process() -> jobs_repo.Owner:
    return jobs_repo.Owner(this_host(), os.getpid())


def pid_alive(pid: int) -> bool:
    """Whether `pid` is a process of this host that has not ended (a zombie has)."""
    if pid <= 0:  # os.kill would signal a whole process group
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc: trust the signal
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def why_abandoned(job: Job, now: datetime, unowned_too: bool = False) -> str | None:
    """Why no process runs `job` any more, or None while its owner may still run it.

    `unowned_too`: a job with no owner (written before owners were) counts as abandoned;
    only start-up says so, as it said of every unfinished job before."""
    if job.owner_host is None or job.owner_pid is None:
        return "the service stopped mid-job" if unowned_too else None
    gone = "the process that " + ("queued" if job.state == jobs_repo.QUEUED else "ran")
    where = f"pid {job.owner_pid} on {job.owner_host}"
    if job.owner_host == this_host() and not pid_alive(job.owner_pid):
        return f"{gone} it is gone: {where} has exited"
    age = (now - job.heartbeat_at).total_seconds() if job.heartbeat_at else float("inf")
    if age > STALE_AFTER_S:
        return f"{gone} it is gone: no heartbeat from {where} for {age:.0f} s"
    return None

"""Processes under /proc, for tests that check children start, die and leave nothing behind."""

from __future__ import annotations

import time
from pathlib import Path


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, parent = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except OSError:
            continue
        if int(parent) == pid and state != "Z":
            found.append(int(stat.parent.name))
    return found


def wait_exited(pids: list[int], timeout: float = 15.0) -> list[int]:
    """The pids still running (not exited, not zombies) after up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    running = pids
    while running and time.monotonic() < deadline:
        time.sleep(0.1)
        running = [pid for pid in running if is_running(pid)]
    return running


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def is_running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False

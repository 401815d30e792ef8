"""SIGTERM, as the service sends it at shutdown, lets a job's cleanup run."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

CHILD = """
import sys, time
from pathlib import Path
from app.training.worker import exit_on_sigterm
exit_on_sigterm()
marker = Path(sys.argv[1])
marker.with_suffix(".started").touch()
try:
    while True:
        time.sleep(0.05)
except BaseException:  # what a promotion does to delete its new vectors and checkpoint
    marker.write_text("cleaned up")
    raise
"""


def test_sigterm_runs_the_cleanup(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(marker)], cwd=Path.cwd())
    deadline = time.monotonic() + 60
    while not marker.with_suffix(".started").exists():
        assert time.monotonic() < deadline and child.poll() is None
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=30) == 128 + signal.SIGTERM
    assert marker.read_text() == "cleaned up"


CHILD_MODULE = """
import time
from pathlib import Path


def run(marker):
    from app.training.worker import exit_on_sigterm, stop_with_parent

    exit_on_sigterm()
    stop_with_parent()
    Path(marker + ".started").touch()
    try:
        while True:
            time.sleep(0.05)
    except BaseException:
        Path(marker).write_text("cleaned up")
        raise
"""

PARENT = """
import multiprocessing, os, sys, time
sys.path.insert(0, sys.argv[2])
import childmod

if __name__ == "__main__":
    child = multiprocessing.get_context("spawn").Process(target=childmod.run, args=(sys.argv[1],))
    child.start()
    print(child.pid, flush=True)
    deadline = time.monotonic() + 60
    while not os.path.exists(sys.argv[1] + ".started") and time.monotonic() < deadline:
        time.sleep(0.05)
    os._exit(0)  # as after a kill -9: no cleanup, no join, no signal to the child
"""


def _running(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\\tZ" not in status  # a zombie has ended; its new parent may never reap it


def test_a_job_process_stops_when_the_service_process_dies(tmp_path: Path) -> None:
    """After a kill -9 of the service, the spawned job went on unsupervised and activated
    its model with no service running."""
    (tmp_path / "childmod.py").write_text(CHILD_MODULE)
    marker = str(tmp_path / "marker")
    parent = subprocess.run(
        [sys.executable, "-c", PARENT, marker, str(tmp_path)],
        cwd=Path.cwd(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert parent.returncode == 0, parent.stderr
    child = int(parent.stdout)
    deadline = time.monotonic() + 30
    while _running(child):
        assert time.monotonic() < deadline, "the job process outlived its parent"
        time.sleep(0.05)
    assert Path(marker).read_text() == "cleaned up"

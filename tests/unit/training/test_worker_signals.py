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

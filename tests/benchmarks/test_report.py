"""What every benchmark result records about the run: here, which code ran."""

from __future__ import annotations

import subprocess
from pathlib import Path

from benchmarks.report import machine

REPO = Path(__file__).resolve().parents[2]


def test_results_name_the_commit_that_ran() -> None:
    """index_sync.json timed a fingerprint query that a later commit changed, and nothing
    in the file said which code it measured."""
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    commit = machine()["commit"]
    assert commit in (head, head + "+changes")

"""Ctrl-C's one line and exit status for `python -m app`, while it loads or runs a command."""

from __future__ import annotations

import sys
from collections.abc import Sequence

# 128 + SIGINT, as a shell reports a command Ctrl-C ended.
INTERRUPTED = 130


def report_interrupt(arguments: Sequence[str]) -> int:
    """Say on stderr that `python -m app <command>` was interrupted, and return the status
    to exit with. Light on purpose: app/__main__.py imports it before anything slow."""
    command = next((arg for arg in arguments if not arg.startswith("-")), None)
    print(f"python -m app{f' {command}' if command else ''}: interrupted", file=sys.stderr)
    return INTERRUPTED

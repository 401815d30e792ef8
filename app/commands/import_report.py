"""The import's report rows, its summary and exit status, and what stops it midway."""

from __future__ import annotations

import os
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from app.commands.gallery_client import ServiceError

REPORT_COLUMNS = ("path", "subject", "status", "code", "message", "face_id")
INTERRUPTED = 130  # the shell's status for a command ended by Ctrl-C (128 + SIGINT)

Status = Literal["enrolled", "skipped", "rejected", "error"]


@dataclass(frozen=True)
class ReportRow:
    path: str
    subject: str
    status: Status
    code: str = ""
    message: str = ""
    face_id: int | None = None

    def cells(self) -> list[str]:
        face_id = "" if self.face_id is None else str(self.face_id)
        return [self.path, self.subject, self.status, self.code, self.message, face_id]


@dataclass
class ImportSummary:
    report: Path
    counts: Counter[str] = field(default_factory=Counter)  # status -> files
    problems: Counter[str] = field(default_factory=Counter)  # code of rejected/error -> files
    stopped: bool = False  # by the service: unreachable, or it refused the key
    interrupted: bool = False  # by Ctrl-C

    def add(self, row: ReportRow) -> None:
        self.counts[row.status] += 1
        if row.status in ("rejected", "error"):
            self.problems[row.code] += 1

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return INTERRUPTED
        return 1 if self.counts["error"] or self.stopped else 0

    def describe(self) -> str:
        counts = ", ".join(f"{self.counts[s]} {s}" for s in get_args(Status))
        problems = ", ".join(f"{code} {n}" for code, n in self.problems.most_common())
        report = shown(str(self.report))
        return f"{counts}" + (f" ({problems})" if problems else "") + f"; report: {report}"


class Stop:
    """Once set, the import starts no new work: the service could not be reached or refused
    the key (`error`), or the user pressed Ctrl-C (`interrupted`). Any thread may set it;
    interrupt() takes no lock, so a signal handler may call it."""

    def __init__(self) -> None:
        self.error: ServiceError | None = None
        self.interrupted = False
        self._lock = threading.Lock()

    def fail(self, error: ServiceError) -> None:
        with self._lock:
            if self.error is None:
                self.error = error

    def interrupt(self) -> None:
        self.interrupted = True

    @property
    def reason(self) -> str | None:
        """The message of a file not attempted; None while the import goes on."""
        if self.interrupted:
            return "The import was interrupted (Ctrl-C) before this file."
        if self.error is None:
            return None
        if self.error.refused_access:
            why = f"the service refused the API key ({self.error.code})"
        else:
            why = f"the service could not be reached ({self.error.message})"
        return f"The import stopped before this file: {why}."


class ImportStopped(ServiceError):
    """The import stopped midway; raised once the report covers every file (`summary`)."""

    def __init__(self, cause: ServiceError, summary: ImportSummary) -> None:
        super().__init__(cause.status, cause.code, cause.message)
        self.summary = summary


def shown(text: str) -> str:
    """`text` as UTF-8 can hold it: the bytes of a name that is not UTF-8, which Python holds
    as surrogate escapes, become \\xNN."""
    return os.fsencode(text).decode("utf-8", "backslashreplace")

"""The `after` cursors of the subject and face listings: where the last page ended."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime, timedelta

from app.errors import InvalidRequest, problem
from app.gallery.orm import Subject
from app.schemas.common import MAX_SQL_INT

# Subject ids are UUIDs (36 characters); a cursor of another listing or shape is refused.
_SUBJECT_ID_MAX = 36


def _refused() -> InvalidRequest:
    why = "not a cursor of this listing; pass a page's next_after"
    return InvalidRequest(
        f"Invalid request: after ({why}).", [problem(["query", "after"], why, "cursor_invalid")]
    )


def subject_cursor(subject: Subject) -> str:
    """Opaque: the place of `subject` in the listing's order (created_at, id). Unlike an
    offset it still points after that subject when rows before it are deleted."""
    raw = f"{subject.created_at.astimezone(UTC).isoformat()}|{subject.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def read_subject_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, subject_id = raw.split("|", 1)
        created = datetime.fromisoformat(stamp)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise _refused() from None
    # As subject_cursor writes them: in UTC (another offset near the calendar's ends
    # overflowed when the database layer converted it), and an id of printable ASCII (a NUL
    # is an error on PostgreSQL, which cannot store one).
    if created.utcoffset() != timedelta(0):
        raise _refused()
    if not (0 < len(subject_id) <= _SUBJECT_ID_MAX and subject_id.isascii()):
        raise _refused()
    if not subject_id.isprintable():
        raise _refused()
    return created, subject_id


def face_cursor(face_id: int) -> str:
    return str(face_id)


def read_face_cursor(cursor: str) -> int:
    # ASCII digits only: int() would also take "+1", " 1", "1_0" and other scripts' digits.
    if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > len(str(MAX_SQL_INT)):
        raise _refused()
    face_id = int(cursor)
    if face_id > MAX_SQL_INT:
        raise _refused()
    return face_id

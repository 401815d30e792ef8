"""The listings' `after` cursors: what they encode, and which strings they refuse."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import pytest

from app.errors import InvalidRequest
from app.gallery.orm import Subject
from app.services.page_cursors import (
    face_cursor,
    read_face_cursor,
    read_subject_cursor,
    subject_cursor,
)


def test_a_subject_cursor_holds_its_place_in_utc() -> None:
    berlin = timezone(timedelta(hours=1))
    subject = Subject(id="0" * 36, name="x", created_at=datetime(2026, 1, 2, 3, 4, 5, 6, berlin))
    cursor = subject_cursor(subject)
    assert cursor.isascii() and "=" not in cursor and len(cursor) < 200
    created, subject_id = read_subject_cursor(cursor)
    assert subject_id == "0" * 36
    assert created == datetime(2026, 1, 2, 2, 4, 5, 6, UTC) and created.utcoffset() == timedelta(0)


@pytest.mark.parametrize("cursor", ["", "!", "YQ", "MjAyNi0wMS0wMnw", "MjAyNi0wMS0wMnxh"])
def test_a_subject_cursor_without_a_zone_time_or_id_is_refused(cursor: str) -> None:
    # "YQ": "a"; then "2026-01-02|" without an id, then "2026-01-02|a" with a naive date.
    with pytest.raises(InvalidRequest) as refused:
        read_subject_cursor(cursor)
    assert refused.value.details == [
        {
            "loc": ["query", "after"],
            "msg": refused.value.details[0]["msg"],
            "type": "cursor_invalid",
        }
    ]


@pytest.mark.parametrize(
    "raw",
    [
        "9999-12-31T23:59:59-05:00|x",  # UTC would be past the calendar: a 500 (a review)
        "0001-01-01T00:00:00+05:00|x",
        "2026-01-01T00:00:00+00:00|\x00",  # PostgreSQL cannot hold a NUL: a 500 there
        "2026-01-01T00:00:00+00:00|\u00e9",
        "2026-01-01T00:00:00+00:00|" + "a" * 37,
    ],
)
def test_a_subject_cursor_not_written_by_this_service_is_refused(raw: str) -> None:
    cursor = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
    with pytest.raises(InvalidRequest):
        read_subject_cursor(cursor)


def test_a_face_cursor_is_the_last_id_in_ascii_digits() -> None:
    assert read_face_cursor(face_cursor(42)) == 42
    assert read_face_cursor(str(2**63 - 1)) == 2**63 - 1
    for cursor in ["", "-1", "+1", "4_2", "\uff14", str(2**63), "1" * 40]:
        with pytest.raises(InvalidRequest):
            read_face_cursor(cursor)

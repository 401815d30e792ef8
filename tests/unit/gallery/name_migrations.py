"""Subjects as a gallery stored them before a name-folding migration, for its tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sqlalchemy import Connection, text


def insert_subjects(
    connection: Connection, stored: Mapping[str, str], fold: Callable[[str], str], with_face: str
) -> None:
    """Subjects `stored` (id -> name) with their names folded by `fold`, as the revision
    before the one tested folded them, and one face under `with_face`."""
    for subject_id, name in stored.items():
        connection.execute(
            text(
                "INSERT INTO subjects (id, name, name_folded, metadata, created_at, updated_at) "
                "VALUES (:id, :name, :folded, '{}', '2026-01-01', '2026-01-01')"
            ),
            {"id": subject_id, "name": name, "folded": fold(name)},
        )
    connection.execute(
        text(
            "INSERT INTO faces (subject_id, box, landmarks, quality, image_sha256, created_at) "
            "VALUES (:subject, '[0, 0, 1, 1]', '[]', '{}', :sha, '2026-01-01')"
        ),
        {"subject": with_face, "sha": "0" * 64},
    )


def stored_folds(connection: Connection) -> dict[str, str]:
    return dict(connection.execute(text("SELECT id, name_folded FROM subjects")).all())

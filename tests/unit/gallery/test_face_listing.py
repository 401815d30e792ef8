"""Listing a subject's faces: pages in id order with a total, and never the stored crops."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, event, inspect, select
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import Session, sessionmaker

from app.gallery import repository as repo
from app.gallery.orm import Face

Enrol = Callable[..., Face]
CROP = b"\x89PNG" + bytes(50_000)  # about the size of a stored crop
READS_CROP = re.compile(r"\bfaces\.crop\b")  # the column, not crop_landmarks


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL sent on `engine` while the block runs."""
    sent: list[str] = []

    def record(*args: Any) -> None:
        sent.append(args[2])  # conn, cursor, statement, ...

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_pages_come_in_id_order_with_the_total(
    session_factory: sessionmaker[Session], enrol: Enrol
) -> None:
    with session_factory.begin() as s:
        ada = repo.create_subject(s, "Ada", {}).id
        bob = repo.create_subject(s, "Bob", {}).id
        empty = repo.create_subject(s, "Eve", {}).id
        # Interleaved with another subject's, so ada's ids are not contiguous.
        ids = []
        for i in range(5):
            ids.append(enrol(s, ada, sha=f"{i:064x}").id)
            enrol(s, bob, sha=f"{i:064x}")

    with session_factory() as s:
        pages = [repo.list_faces(s, ada, 2, offset) for offset in (0, 2, 4, 6)]
        assert [total for _, total in pages] == [5, 5, 5, 5]
        assert [[f.id for f in faces] for faces, _ in pages] == [ids[:2], ids[2:4], ids[4:], []]
        assert [f.id for f in repo.list_faces(s, ada, 1000, 0)[0]] == ids
        assert repo.list_faces(s, empty, 10, 0) == ([], 0)


def test_listing_never_reads_the_crops(
    engine: Engine, session_factory: sessionmaker[Session], enrol: Enrol
) -> None:
    with session_factory.begin() as s:
        ada = repo.create_subject(s, "Ada", {}).id
        for i in range(3):
            enrol(s, ada, sha=f"{i:064x}", crop=CROP)

    with session_factory() as s, statements(engine) as sent:
        faces, total = repo.list_faces(s, ada, 10, 0)
        assert total == 3
        # What the listing shows is there; the crop was not read, and is not read later.
        assert all(f.box and f.landmarks and f.quality and f.image_sha256 for f in faces)
        assert all("crop" in inspect(f).unloaded for f in faces)
        with pytest.raises(InvalidRequestError):
            _ = faces[0].crop
    assert sent and not [sql for sql in sent if READS_CROP.search(sql)], sent
    # The crops are still stored, for re-embedding and fine-tuning.
    with session_factory() as s:
        crops = select(Face.crop).where(Face.crop.is_not(None)).order_by(Face.id)
        assert list(s.scalars(crops)) == [CROP] * 3


def test_deleting_a_face_does_not_read_its_crop(
    engine: Engine, session_factory: sessionmaker[Session], enrol: Enrol
) -> None:
    with session_factory.begin() as s:
        ada = repo.create_subject(s, "Ada", {}).id
        face_id = enrol(s, ada, crop=CROP).id

    with session_factory.begin() as s, statements(engine) as sent:
        repo.delete_face(s, ada, face_id)
    assert any(sql.startswith("DELETE FROM faces") for sql in sent), sent
    assert not [sql for sql in sent if READS_CROP.search(sql)], sent
    with session_factory() as s:
        assert repo.list_faces(s, ada, 10, 0) == ([], 0)

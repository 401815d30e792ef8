from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from app.errors import FaceNotFound, SubjectNotFound
from app.gallery import embeddings_repo
from app.gallery import repository as repo
from app.gallery.orm import Face, Subject
from app.services.page_cursors import read_subject_cursor, subject_cursor

OTHER_MODEL = "arcface-mbf@finetuned-1"
Vectors = Callable[[], np.ndarray]
Enrol = Callable[..., Face]


def raw_count(s: Session, table: str) -> int:
    return int(s.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_subject_crud(session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as s:
        subject = repo.create_subject(s, "Ada Lovelace", {"team": "math"})
    assert len(subject.id) == 36

    with session_factory.begin() as s:
        updated = repo.update_subject(s, subject.id, name="Ada King")
        assert updated.metadata_ == {"team": "math"}  # untouched when not given
        repo.update_subject(s, subject.id, metadata={"team": "engines"})

    with session_factory() as s:
        stored = repo.get_subject(s, subject.id)
        assert (stored.name, stored.metadata_) == ("Ada King", {"team": "engines"})
        assert stored.updated_at >= stored.created_at

    with session_factory.begin() as s:
        assert repo.delete_subject(s, subject.id) == []
    with session_factory() as s, pytest.raises(SubjectNotFound):
        repo.get_subject(s, subject.id)


def test_an_update_racing_a_delete_finds_no_subject(
    session_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite the read takes no lock: a delete committed between it and the UPDATE
    used to surface as StaleDataError, a 500."""
    with session_factory.begin() as s:
        subject = repo.create_subject(s, "Ada")
    read = repo.get_subject

    def read_then_deleted(s: Session, subject_id: str, lock: bool = False) -> Subject:
        found = read(s, subject_id, lock)
        with session_factory.begin() as other:
            other.execute(text("DELETE FROM subjects WHERE id = :id"), {"id": subject_id})
        return found

    monkeypatch.setattr(repo, "get_subject", read_then_deleted)
    with pytest.raises(SubjectNotFound), session_factory.begin() as s:
        repo.update_subject(s, subject.id, name="Ada King")


def test_unknown_subject_raises_everywhere(session: Session, enrol: Enrol) -> None:
    with pytest.raises(SubjectNotFound):
        repo.update_subject(session, "missing", name="x")
    with pytest.raises(SubjectNotFound):
        repo.delete_subject(session, "missing")
    with pytest.raises(SubjectNotFound):
        repo.list_faces(session, "missing", 10, 0)
    with pytest.raises(SubjectNotFound):
        repo.delete_face(session, "missing", 1)
    with pytest.raises(SubjectNotFound):
        enrol(session, "missing")


def test_list_subjects_paginates_and_filters_by_name(session: Session) -> None:
    names = ["Alice", "alicia", "Bob", "MALICE", "Carol", "50%_off"]
    ids = [repo.create_subject(session, n, {}).id for n in names]

    page, total = repo.list_subjects(session, limit=2, offset=0)
    assert total == 6 and [p.id for p, _ in page] == ids[:2]
    page, total = repo.list_subjects(session, limit=2, offset=4)
    assert total == 6 and [p.id for p, _ in page] == ids[4:]
    page, total = repo.list_subjects(session, limit=2, offset=10)
    assert total == 6 and page == []

    page, total = repo.list_subjects(session, limit=10, offset=0, name="ALIC")
    assert total == 3 and {p.name for p, _ in page} == {"Alice", "alicia", "MALICE"}
    page, total = repo.list_subjects(session, limit=1, offset=1, name="alic")
    assert total == 3 and [p.name for p, _ in page] == ["alicia"]
    # LIKE wildcards in the filter match literally.
    assert repo.list_subjects(session, limit=10, offset=0, name="%")[1] == 1
    assert repo.list_subjects(session, limit=10, offset=0, name="0%_")[1] == 1
    assert repo.list_subjects(session, limit=10, offset=0, name="a_i")[1] == 0


def test_a_page_after_a_cursor_follows_the_listing_order_ties_included(
    session_factory: sessionmaker[Session],
) -> None:
    # Also run on PostgreSQL: the cursor's timestamp must compare equal to the stored one.
    same_moment = datetime(2026, 11, 28, 21, 0, 0, 123456, tzinfo=UTC)
    with session_factory.begin() as s:
        for name in ["a", "b", "c", "d"]:
            repo.create_subject(s, name, {}).created_at = same_moment
        repo.create_subject(s, "later", {}).created_at = same_moment + timedelta(microseconds=1)
    with session_factory() as s:
        everyone = [subject for subject, _ in repo.list_subjects(s, 10, 0)[0]]
        assert sorted(x.id for x in everyone[:4]) == [x.id for x in everyone[:4]]  # id breaks ties
        seen = []
        for place in everyone:
            after = read_subject_cursor(subject_cursor(place))
            page, total = repo.list_subjects(s, 10, 0, after=after)
            assert total == 5
            # The same moment in another zone: compared through the column's type, in UTC.
            elsewhere = (after[0].astimezone(timezone(timedelta(hours=-3))), after[1])
            assert repo.list_subjects(s, 10, 0, after=elsewhere)[0] == page
            seen.append([x.id for x, _ in page])
    assert seen == [[x.id for x in everyone[i + 1 :]] for i in range(5)]


def test_the_name_filter_ignores_how_an_accent_is_encoded(session: Session) -> None:
    composed = repo.create_subject(session, "Zoë Café", {})
    decomposed = repo.create_subject(session, "Rene\u0301e", {})  # e + U+0301, as macOS sends
    assert (composed.name, decomposed.name) == ("Zoë Café", "Rene\u0301e")  # kept as given

    def found(query: str) -> list[str]:
        return [subject.id for subject, _ in repo.list_subjects(session, 10, 0, query)[0]]

    assert found("Cafe\u0301") == found("CAFÉ") == [composed.id]
    assert found("renée") == found("RENE\u0301E") == [decomposed.id]
    assert found("Cafe") == [composed.id]  # and whether there is one at all
    repo.update_subject(session, decomposed.id, name="Zoe\u0308 Lee")
    assert found("zoë") == [composed.id, decomposed.id]
    assert found("renée") == []


def test_faces_round_trip_and_counts(session: Session, enrol: Enrol) -> None:
    ada = repo.create_subject(session, "Ada", {}).id
    bob = repo.create_subject(session, "Bob", {}).id
    eve = repo.create_subject(session, "Eve", {}).id
    first = enrol(session, ada, sha="a" * 64)
    second = enrol(session, ada, sha="b" * 64, crop=None)
    enrol(session, bob, sha="a" * 64)

    assert isinstance(first.id, int) and second.id > first.id
    faces, total = repo.list_faces(session, ada, 10, 0)
    assert [f.id for f in faces] == [first.id, second.id] and total == 2
    assert faces[0].box == [1.0, 2.0, 3.0, 4.0]
    assert faces[0].landmarks[4] == [4.0, 5.0]
    assert faces[0].quality == {"blur": 120.5, "probability": 0.99}
    assert faces[0].crop == b"png" and faces[0].crop_landmarks is not None
    assert faces[1].crop is None and faces[1].crop_landmarks is None
    assert repo.face_counts(session, [ada, bob, eve]) == {ada: 2, bob: 1, eve: 0}
    page, total = repo.list_subjects(session, limit=2, offset=1)
    assert total == 3 and [(p.id, faces) for p, faces in page] == [(bob, 1), (eve, 0)]
    assert repo.count_faces(session) == 3 and repo.count_subjects(session) == 3
    assert repo.face_with_image(session, ada, "b" * 64) == second.id
    assert repo.face_with_image(session, bob, "b" * 64) is None
    assert repo.subjects_for_faces(session, [first.id, 999]) == {first.id: (ada, "Ada")}


def test_vectors_round_trip_bit_exactly(
    session: Session, enrol: Enrol, unit_vector: Vectors, model: str
) -> None:
    ada = repo.create_subject(session, "Ada", {}).id
    bob = repo.create_subject(session, "Bob", {}).id
    vectors = np.stack([unit_vector() for _ in range(5)])
    owners = [ada, bob, ada, bob, ada]
    face_ids = [enrol(session, o, v).id for o, v in zip(owners, vectors, strict=True)]

    got = embeddings_repo.subject_vectors(session, ada, model)
    assert got.dtype == np.float32 and got.shape == (3, 512)
    assert got.tobytes() == vectors[[0, 2, 4]].tobytes()
    assert embeddings_repo.subject_vectors(session, ada, OTHER_MODEL).shape == (0, 512)

    ids = embeddings_repo.model_face_ids(session, model)
    assert ids.dtype == np.int64 and ids.tolist() == face_ids
    assert embeddings_repo.model_face_ids(session, OTHER_MODEL).tolist() == []
    order = [face_ids[3], face_ids[0], face_ids[4]]
    assert (
        embeddings_repo.vectors_for(session, model, order).tobytes() == vectors[[3, 0, 4]].tobytes()
    )
    with pytest.raises(KeyError):
        embeddings_repo.vectors_for(session, model, [face_ids[0], 10_000])

    batches = list(embeddings_repo.iter_vectors(session, model, batch=2))
    assert [len(ids) for ids, _ in batches] == [2, 2, 1]
    assert np.concatenate([i for i, _ in batches]).tolist() == face_ids
    assert np.concatenate([v for _, v in batches]).tobytes() == vectors.tobytes()


def test_add_face_rejects_a_vector_of_the_wrong_size(session: Session, enrol: Enrol) -> None:
    ada = repo.create_subject(session, "Ada", {}).id
    with pytest.raises(ValueError, match="512"):
        enrol(session, ada, np.zeros(128, np.float32))


def test_delete_subject_cascades_to_faces_and_embeddings(
    session_factory: sessionmaker[Session], enrol: Enrol, unit_vector: Vectors, model: str
) -> None:
    with session_factory.begin() as s:
        ada = repo.create_subject(s, "Ada", {}).id
        bob = repo.create_subject(s, "Bob", {}).id
        ada_faces = [enrol(s, ada).id for _ in range(3)]
        bob_face = enrol(s, bob).id
        embeddings_repo.add_embeddings(s, OTHER_MODEL, ada_faces, np.stack([unit_vector()] * 3))

    with session_factory.begin() as s:
        assert sorted(repo.delete_subject(s, ada)) == ada_faces

    with session_factory() as s:
        assert raw_count(s, "subjects") == 1
        assert raw_count(s, "faces") == 1
        assert raw_count(s, "embeddings") == 1
        assert embeddings_repo.model_face_ids(s, model).tolist() == [bob_face]


def test_deletes_leave_no_stale_rows_in_the_session(session: Session, enrol: Enrol) -> None:
    ada = repo.create_subject(session, "Ada", {}).id
    kept, dropped = enrol(session, ada), enrol(session, ada)  # held, so the session keeps them
    repo.delete_face(session, ada, dropped.id)
    assert session.get(Face, dropped.id) is None
    repo.delete_subject(session, ada)
    # The database cascaded this one, so the ORM never saw it go.
    assert session.get(Face, kept.id) is None


def test_delete_face(session_factory: sessionmaker[Session], enrol: Enrol) -> None:
    with session_factory.begin() as s:
        ada = repo.create_subject(s, "Ada", {}).id
        bob = repo.create_subject(s, "Bob", {}).id
        ada_face = enrol(s, ada).id
        bob_face = enrol(s, bob).id

    with session_factory() as s:
        with pytest.raises(FaceNotFound):
            repo.delete_face(s, ada, bob_face)
        with pytest.raises(FaceNotFound):
            repo.delete_face(s, ada, 10_000)
    with session_factory.begin() as s:
        repo.delete_face(s, ada, ada_face)
    with session_factory() as s:
        assert raw_count(s, "faces") == 1
        assert raw_count(s, "embeddings") == 1
        assert repo.face_counts(s, [ada, bob]) == {ada: 0, bob: 1}


def test_face_ids_are_never_reused(session: Session, enrol: Enrol) -> None:
    # A reused id would inherit a stale vector from an index that missed the delete.
    ada = repo.create_subject(session, "Ada", {}).id
    last = enrol(session, ada).id
    repo.delete_face(session, ada, last)
    assert enrol(session, ada).id > last


def test_add_embeddings_for_a_new_model_and_faces_with_crops(
    session: Session, enrol: Enrol, unit_vector: Vectors, model: str
) -> None:
    ada = repo.create_subject(session, "Ada", {}).id
    with_crop = [enrol(session, ada).id for _ in range(3)]
    enrol(session, ada, crop=None)

    kept = select(Face.id).where(Face.crop.is_not(None)).order_by(Face.id)
    assert list(session.scalars(kept)) == with_crop

    new = np.stack([unit_vector() for _ in with_crop])
    embeddings_repo.add_embeddings(session, OTHER_MODEL, with_crop, new)
    assert embeddings_repo.vectors_for(session, OTHER_MODEL, with_crop).tobytes() == new.tobytes()
    # Running it again (a resumed job) replaces rather than conflicts.
    newer = np.stack([unit_vector() for _ in with_crop])
    embeddings_repo.add_embeddings(session, OTHER_MODEL, with_crop, newer)
    assert embeddings_repo.vectors_for(session, OTHER_MODEL, with_crop).tobytes() == newer.tobytes()
    assert len(embeddings_repo.model_face_ids(session, model)) == 4
    with pytest.raises(ValueError):
        embeddings_repo.add_embeddings(session, OTHER_MODEL, with_crop, new[:2])

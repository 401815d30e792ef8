from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.orm import Session, sessionmaker

from app.gallery import embeddings_repo
from app.gallery import repository as repo
from app.index.faiss_index import FaceIndex
from app.index.reconcile import ReconcileReport, index_path, open_index, rebuild, reconcile

DIM = 512
MODEL = "arcface-mbf@9cc6e4a75f0e"
UnitVectors = Callable[[int], np.ndarray]


def enrol_many(s: Session, subject_id: str, vectors: np.ndarray) -> list[int]:
    return [
        repo.add_face(
            s,
            subject_id,
            box=[0.0, 0.0, 10.0, 10.0],
            landmarks=[[1.0, 1.0]] * 5,
            quality={},
            image_sha256=f"{i:064x}",
            crop=None,
            crop_landmarks=None,
            model=MODEL,
            vector=v,
        ).id
        for i, v in enumerate(vectors)
    ]


def open_from_db(
    s: Session, index_dir: Path, kind: str = "flat", rebuild_tombstoned: bool = True
) -> tuple[FaceIndex, ReconcileReport, str]:
    return open_index(
        index_dir,
        MODEL,
        kind,  # type: ignore[arg-type]
        DIM,
        embeddings_repo.model_face_ids(s, MODEL),
        lambda ids: embeddings_repo.vectors_for(s, MODEL, ids),
        embeddings_repo.iter_vectors(s, MODEL, batch=7),
        rebuild_tombstoned,
    )


def test_index_path_is_a_safe_file_name(tmp_path: Path) -> None:
    path = index_path(tmp_path, "arcface-mbf@9cc6e4a75f0e", "hnsw")
    assert path == tmp_path / "arcface-mbf_9cc6e4a75f0e.hnsw.faiss"
    sneaky = index_path(tmp_path, "../../etc/passwd", "flat")
    assert sneaky.parent == tmp_path and "/" not in sneaky.name


def test_reconcile_adds_faces_committed_before_a_crash(
    session_factory: sessionmaker[Session], unit_vectors: UnitVectors
) -> None:
    vectors = unit_vectors(25)
    with session_factory.begin() as s:
        ada = repo.create_subject(s, "Ada", {}).id
        indexed = enrol_many(s, ada, vectors[:10])
    index = FaceIndex(DIM, MODEL)
    index.add(indexed, vectors[:10])
    with session_factory.begin() as s:  # committed, then the process died before indexing
        lost = enrol_many(s, ada, vectors[10:])

    with session_factory() as s:
        report = reconcile(
            index,
            embeddings_repo.model_face_ids(s, MODEL),
            lambda ids: embeddings_repo.vectors_for(s, MODEL, ids),
            chunk=4,
        )
    assert (report.added, report.removed, report.total) == (15, 0, 25)
    _, ids = index.search(vectors[10:], 1)
    assert ids[:, 0].tolist() == lost


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_reconcile_removes_ids_the_database_lost(
    kind: str, session_factory: sessionmaker[Session], unit_vectors: UnitVectors
) -> None:
    vectors = unit_vectors(6)
    with session_factory.begin() as s:
        ada = repo.create_subject(s, "Ada", {}).id
        face_ids = enrol_many(s, ada, vectors)
    index = rebuild(DIM, MODEL, kind, [(np.array(face_ids), vectors)])  # type: ignore[arg-type]
    with session_factory.begin() as s:  # deleted, then the process died before unindexing
        repo.delete_face(s, ada, face_ids[0])
        repo.delete_face(s, ada, face_ids[3])

    def no_loads(ids: np.ndarray) -> np.ndarray:
        raise AssertionError("nothing should need loading")

    with session_factory() as s:
        report = reconcile(index, embeddings_repo.model_face_ids(s, MODEL), no_loads)
    assert (report.added, report.removed, report.total) == (0, 2, 4)
    assert index.ids().tolist() == [face_ids[i] for i in (1, 2, 4, 5)]


def test_open_index_rebuilds_then_loads(
    tmp_path: Path, session_factory: sessionmaker[Session], unit_vectors: UnitVectors
) -> None:
    vectors = unit_vectors(20)
    with session_factory.begin() as s:
        ada = repo.create_subject(s, "Ada", {}).id
        face_ids = enrol_many(s, ada, vectors)

    with session_factory() as s:
        index, report, how = open_from_db(s, tmp_path)
    assert how == "rebuilt" and index.ids().tolist() == face_ids
    assert (report.added, report.removed, report.total) == (0, 0, 20)
    index.save(index_path(tmp_path, MODEL, "flat"))

    with session_factory.begin() as s:
        extra = enrol_many(s, ada, unit_vectors(1))
    with session_factory() as s:
        index, report, how = open_from_db(s, tmp_path)
    assert how == "loaded" and (report.added, report.total) == (1, 21)
    assert index.ids().tolist() == face_ids + extra


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_open_index_rebuilds_an_index_saved_for_another_database(
    kind: str, tmp_path: Path, unit_vectors: UnitVectors
) -> None:
    """The same face ids in two databases are different faces: an index left by one must
    not serve the other (identify named database A's person for B's photo at 1.0)."""
    from app.gallery.db import make_engine, make_session_factory, migrate

    def database(name: str, count: int) -> tuple[sessionmaker[Session], np.ndarray]:
        engine = make_engine(f"sqlite:///{tmp_path / name}")
        migrate(engine)
        factory, vectors = make_session_factory(engine), unit_vectors(count)
        with factory.begin() as s:
            enrol_many(s, repo.create_subject(s, name, {}).id, vectors)
        return factory, vectors

    (first, _), (second, vectors) = database("a.db", 40), database("b.db", 40)
    with first() as s:
        index, _, how = open_from_db(s, tmp_path, kind)
    assert how == "rebuilt"
    index.save(index_path(tmp_path, MODEL, kind))
    with first() as s:  # its own database: loaded as saved
        assert open_from_db(s, tmp_path, kind)[2] == "loaded"
    with second() as s:  # ids 1..40 again, other vectors: rebuilt
        index, report, how = open_from_db(s, tmp_path, kind)
    assert how == "rebuilt" and report.total == 40
    assert np.array_equal(index.stored(index.ids()), vectors)


def test_open_index_rebuilds_a_file_from_another_model(
    tmp_path: Path, session_factory: sessionmaker[Session], unit_vectors: UnitVectors
) -> None:
    with session_factory.begin() as s:
        enrol_many(s, repo.create_subject(s, "Ada", {}).id, unit_vectors(3))
    path = index_path(tmp_path, MODEL, "flat")
    FaceIndex(DIM, MODEL).save(path)
    meta = json.loads(path.with_name(path.name + ".json").read_text())
    path.with_name(path.name + ".json").write_text(json.dumps({**meta, "model_version": "x"}))

    with session_factory() as s:
        index, report, how = open_from_db(s, tmp_path)
    assert how == "rebuilt" and len(index) == 3 and report.total == 3


def test_open_index_rebuilds_an_hnsw_index_full_of_tombstones(
    tmp_path: Path, session_factory: sessionmaker[Session], unit_vectors: UnitVectors
) -> None:
    vectors = unit_vectors(10)
    with session_factory.begin() as s:
        ada = repo.create_subject(s, "Ada", {}).id
        face_ids = enrol_many(s, ada, vectors)
    stale = rebuild(DIM, MODEL, "hnsw", [(np.array(face_ids), vectors)])
    stale.remove(face_ids[:2])
    stale.save(index_path(tmp_path, MODEL, "hnsw"))
    with session_factory.begin() as s:
        for face_id in face_ids[:2]:
            repo.delete_face(s, ada, face_id)

    with session_factory() as s:
        index, _, how = open_from_db(s, tmp_path, "hnsw")
    assert how == "rebuilt" and not index.needs_rebuild
    assert index.ids().tolist() == face_ids[2:]

    # With background rebuilds the service loads it as it is and serves at once.
    with session_factory() as s:
        index, report, how = open_from_db(s, tmp_path, "hnsw", rebuild_tombstoned=False)
    assert how == "loaded" and index.needs_rebuild and report.removed == 0
    assert index.ids().tolist() == face_ids[2:]

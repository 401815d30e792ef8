"""Model versions: which one is active, and which faces lack a version's vectors."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from app.gallery import embeddings_repo, models_repo, repository, training_faces_repo

BASE, TUNED = "arcface-mbf@9cc6e4a75f0e", "arcface-mbf@0123456789ab"


def test_the_latest_activation_wins(session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as s:
        models_repo.ensure_model(s, BASE, "arcface-mbf", "9" * 64)
        models_repo.ensure_model(
            s, TUNED, "arcface-mbf", "0" * 64, weights_path=Path("finetuned/j/weights.pt")
        )
        models_repo.ensure_model(s, "facenet-vggface2@1", "facenet-vggface2", "1" * 64)
        assert models_repo.active_model(s, "arcface-mbf") is None
        models_repo.activate(s, TUNED)
        models_repo.activate(s, "facenet-vggface2@1")
        assert models_repo.active_model(s, "arcface-mbf").id == TUNED  # type: ignore[union-attr]
        time.sleep(0.001)
        models_repo.activate(s, BASE)  # rollback
        assert models_repo.active_model(s, "arcface-mbf").id == BASE  # type: ignore[union-attr]
        again = models_repo.ensure_model(s, TUNED, "arcface-mbf", "f" * 64)
        assert again.sha256 == "0" * 64 and again.weights_path == "finetuned/j/weights.pt"


def test_crops_missing_a_version(
    session_factory: sessionmaker[Session], enrol: Callable[..., Any]
) -> None:
    with session_factory.begin() as s:
        ada = repository.create_subject(s, "Ada").id
        bob = repository.create_subject(s, "Bob").id
        with_crop = [enrol(s, ada).id, enrol(s, ada).id, enrol(s, bob).id]
        enrol(s, bob, crop=None)
        embeddings_repo.add_embeddings(s, TUNED, with_crop[:1], np.zeros((1, 512), np.float32))
    with session_factory() as s:
        missing = models_repo.crops_missing(s, TUNED)
        assert [row[0] for row in missing] == with_crop[1:]
        assert models_repo.count_crops_missing(s, TUNED) == 2
        assert models_repo.crops_missing(s, TUNED, after=with_crop[1])[0][0] == with_crop[2]
        assert models_repo.count_without_crop(s) == 1
        with training_faces_repo.trainable_faces(s, batch=1) as rows:
            trainable = sorted(rows)
        assert trainable == [(face_id, ada) for face_id in with_crop[:2]]  # Bob has one crop
        assert training_faces_repo.count_trainable_subjects(s) == 1
        assert models_repo.embedding_counts(s)[TUNED] == 1
        assert len(training_faces_repo.subject_crops(s)) == 3
    with session_factory.begin() as s:
        models_repo.delete_embeddings(s, TUNED)
        assert TUNED not in models_repo.embedding_counts(s)

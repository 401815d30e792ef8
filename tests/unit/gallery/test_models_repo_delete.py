"""Deleting a model version's row and vectors, and finding the versions derived from it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy.orm import Session, sessionmaker

from app.errors import ModelNotFound
from app.gallery import embeddings_repo, jobs_repo, models_repo, repository

BASE, TUNED, CHILD = "arcface-mbf@9cc6e4a75f0e", "arcface-mbf@0123456789ab", "arcface-mbf@c"
WEIGHTS = Path("finetuned/j/weights.pt")


def test_delete_model_takes_its_vectors_and_row_only(
    session_factory: sessionmaker[Session], enrol: Callable[..., Any]
) -> None:
    with session_factory.begin() as s:
        models_repo.ensure_model(s, BASE, "arcface-mbf", "9" * 64)
        models_repo.ensure_model(
            s, TUNED, "arcface-mbf", "0" * 64, weights_path=WEIGHTS, base_version=BASE
        )
        models_repo.ensure_model(
            s, CHILD, "arcface-mbf", "c" * 64, weights_path=WEIGHTS, base_version=TUNED
        )
        ada = repository.create_subject(s, "Ada").id
        faces = [enrol(s, ada, model=BASE).id for _ in range(3)]
        embeddings_repo.add_embeddings(s, TUNED, faces, np.eye(3, 512, dtype=np.float32))
    with session_factory() as s:
        assert models_repo.derived_versions(s, BASE) == [TUNED]
        assert models_repo.derived_versions(s, TUNED) == [CHILD]
        assert models_repo.derived_versions(s, CHILD) == []
    with session_factory.begin() as s:
        assert not models_repo.delete_unneeded(s, TUNED)  # CHILD derives from it
        assert models_repo.embedding_counts(s) == {BASE: 3, TUNED: 3}
        assert models_repo.delete_unneeded(s, CHILD)
        assert models_repo.delete_unneeded(s, TUNED)
    with session_factory() as s:
        assert models_repo.find_model(s, TUNED) is None
        assert models_repo.embedding_counts(s) == {BASE: 3}
        assert models_repo.derived_versions(s, BASE) == []
        assert not models_repo.delete_unneeded(s, TUNED)  # gone already
        with pytest.raises(ModelNotFound) as raised:
            models_repo.activate(s, TUNED)
        assert raised.value.details == {"model_id": TUNED}


def test_the_delete_statement_itself_refuses_what_something_needs(
    session_factory: sessionmaker[Session],
) -> None:
    """The checks a caller ran may be stale; the DELETE's own condition is not."""
    with session_factory.begin() as s:
        models_repo.ensure_model(s, BASE, "arcface-mbf", "9" * 64)  # packaged
        models_repo.ensure_model(s, TUNED, "arcface-mbf", "0" * 64, weights_path=WEIGHTS)
        models_repo.ensure_model(s, "facenet-vggface2@1", "facenet-vggface2", "1" * 64)
    with session_factory.begin() as s:
        assert not models_repo.delete_unneeded(s, BASE)
        models_repo.activate(s, TUNED)
        time.sleep(0.001)
        models_repo.activate(s, "facenet-vggface2@1")  # another embedder's activation
    with session_factory.begin() as s:
        assert not models_repo.delete_unneeded(s, TUNED)  # active
        time.sleep(0.001)
        models_repo.activate(s, BASE)  # rolled back: TUNED is activated, but not the latest
        job = jobs_repo.create_job(s, {})
    with session_factory.begin() as s:
        assert not models_repo.delete_unneeded(s, TUNED)  # a job may train from it
        jobs_repo.finish_job(s, job.id, jobs_repo.FAILED, error="never ran")
    with session_factory.begin() as s:
        assert models_repo.delete_unneeded(s, TUNED)
    with session_factory() as s:
        assert [m.id for m in models_repo.list_models(s)] == [BASE, "facenet-vggface2@1"]
        assert models_repo.active_model(s, "arcface-mbf").id == BASE  # type: ignore[union-attr]

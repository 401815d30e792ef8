"""Deleting a model version's row and vectors, and finding the versions derived from it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy.orm import Session, sessionmaker

from app.errors import ModelNotFound
from app.gallery import embeddings_repo, models_repo, repository

BASE, TUNED, CHILD = "arcface-mbf@9cc6e4a75f0e", "arcface-mbf@0123456789ab", "arcface-mbf@c"


def test_delete_model_takes_its_vectors_and_row_only(
    session_factory: sessionmaker[Session], enrol: Callable[..., Any]
) -> None:
    weights = Path("finetuned/j/weights.pt")
    with session_factory.begin() as s:
        models_repo.ensure_model(s, BASE, "arcface-mbf", "9" * 64)
        models_repo.ensure_model(
            s, TUNED, "arcface-mbf", "0" * 64, weights_path=weights, base_version=BASE
        )
        models_repo.ensure_model(s, CHILD, "arcface-mbf", "c" * 64, base_version=TUNED)
        ada = repository.create_subject(s, "Ada").id
        faces = [enrol(s, ada, model=BASE).id for _ in range(3)]
        embeddings_repo.add_embeddings(s, TUNED, faces, np.eye(3, 512, dtype=np.float32))
    with session_factory() as s:
        assert models_repo.derived_versions(s, BASE) == [TUNED]
        assert models_repo.derived_versions(s, TUNED) == [CHILD]
        assert models_repo.derived_versions(s, CHILD) == []
    with session_factory.begin() as s:
        models_repo.delete_model(s, models_repo.get_model_for_update(s, TUNED))
    with session_factory() as s:
        assert models_repo.find_model(s, TUNED) is None
        assert models_repo.embedding_counts(s) == {BASE: 3}
        assert models_repo.derived_versions(s, BASE) == []
        with pytest.raises(ModelNotFound) as raised:
            models_repo.get_model_for_update(s, TUNED)
        assert raised.value.details == {"model_id": TUNED}

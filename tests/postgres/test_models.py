"""Deleting a model version on PostgreSQL, where requests race under READ COMMITTED."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import open_client
from tests.api.finetune.test_model_deletion_races import (
    activation_between_the_checks_and_the_delete,
    delete_between_the_read_and_the_activation,
    two_deletes_at_once,
)

# Collected again here, where the `db_url` fixture names a PostgreSQL database.
from tests.unit.gallery.test_models_repo_delete import (  # noqa: F401
    test_delete_model_takes_its_vectors_and_row_only,
    test_the_delete_statement_itself_refuses_what_something_needs,
)


@pytest.fixture
def client(db_url: str, tmp_path: Path, models: Any) -> Iterator[TestClient]:
    opened = open_client(
        tmp_path / "data",
        models,
        database_url=db_url,
        models_dir=tmp_path / "models",
        finetune_poll_interval_s=3600,
    )
    yield opened
    opened.__exit__(None, None, None)


@pytest.mark.parametrize(
    "race",
    [
        activation_between_the_checks_and_the_delete,
        delete_between_the_read_and_the_activation,
        two_deletes_at_once,
    ],
)
def test_deletes_and_activations_racing(
    client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
    race: Callable[[TestClient, pytest.MonkeyPatch], None],
) -> None:
    race(client, monkeypatch)

"""Deleting a version while another request activates or deletes it: the database decides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.gallery import models_repo
from app.services import model_removal, models_admin
from app.state import AppState
from tests.api.conftest import ClientFactory, assert_error

TUNED = "arcface-mbf@7777777777aa"
WEIGHTS = Path("finetuned/job-race/weights.pt")


def state_of(client: TestClient) -> AppState:
    return client.app.state.face  # type: ignore[attr-defined,no-any-return]


def add_tuned(state: AppState) -> Path:
    """A fine-tuned version nothing needs yet, with its checkpoint folder; the folder."""
    weights = state.settings.models_dir / WEIGHTS
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"weights")
    with state.sessions.begin() as session:
        models_repo.ensure_model(session, TUNED, "arcface-mbf", "7" * 64, weights_path=WEIGHTS)
    return weights.parent


def active_version(state: AppState) -> str | None:
    with state.sessions() as session:
        row = models_repo.active_model(session, "arcface-mbf")
        return None if row is None else row.id


def activation_between_the_checks_and_the_delete(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The delete found the version unneeded; before its DELETE, another request (or
    process) activates it. The delete must then be refused, not take an active model."""
    state = state_of(client)
    folder = add_tuned(state)
    checks = model_removal.refuse_deletion
    activated: list[Any] = []

    def then_activate(*args: Any) -> None:
        checks(*args)
        if not activated:  # the other request, once
            activated.append(models_admin.activate_model(state, TUNED))

    monkeypatch.setattr(model_removal, "refuse_deletion", then_activate)
    error = assert_error(client.delete(f"/v1/admin/models/{TUNED}"), 409, "model_in_use")
    assert error["details"] == {"model_id": TUNED, "reason": "active"}
    assert activated[0].active and active_version(state) == TUNED
    assert folder.is_dir()
    with state.sessions() as session:
        assert models_repo.find_model(session, TUNED) is not None


def delete_between_the_read_and_the_activation(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An activation read the row; another request deletes it before the activation writes.
    The activation answers 404, as it would a moment later, not 500."""
    state = state_of(client)
    folder = add_tuned(state)
    activate = models_repo.activate
    deleted: list[Any] = []

    def delete_first(session: Any, version: str) -> Any:
        deleted.append(models_admin.delete_model(state, version))
        return activate(session, version)

    monkeypatch.setattr(models_repo, "activate", delete_first)
    response = client.post(f"/v1/admin/models/{TUNED}/activate")
    assert assert_error(response, 404, "model_not_found")["details"] == {"model_id": TUNED}
    assert deleted[0].id == TUNED and not folder.exists()
    assert active_version(state) is None  # the packaged weights stay active
    with state.sessions() as session:
        assert models_repo.find_model(session, TUNED) is None


def two_deletes_at_once(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process deletes the version between this one's checks and its DELETE: this
    one answers 404 (the version is gone), not a record of a deletion it did not do."""
    state = state_of(client)
    add_tuned(state)
    checks = model_removal.refuse_deletion

    def then_another_process_deletes(*args: Any) -> None:
        checks(*args)
        with state.sessions.begin() as other:
            assert models_repo.delete_unneeded(other, TUNED)

    monkeypatch.setattr(model_removal, "refuse_deletion", then_another_process_deletes)
    assert_error(client.delete(f"/v1/admin/models/{TUNED}"), 404, "model_not_found")


def test_an_activation_between_the_checks_and_the_delete_wins(
    make_client: ClientFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(models_dir=tmp_path / "models", finetune_poll_interval_s=3600)
    activation_between_the_checks_and_the_delete(client, monkeypatch)


def test_a_delete_between_an_activations_read_and_write_makes_it_404(
    make_client: ClientFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(models_dir=tmp_path / "models", finetune_poll_interval_s=3600)
    delete_between_the_read_and_the_activation(client, monkeypatch)


def test_of_two_deletes_at_once_one_deletes_and_the_other_404s(
    make_client: ClientFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(models_dir=tmp_path / "models", finetune_poll_interval_s=3600)
    two_deletes_at_once(client, monkeypatch)

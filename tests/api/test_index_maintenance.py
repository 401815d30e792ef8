"""Index rebuilds: they build beside the serving index, catch up with concurrent writes,
and run by themselves once deletes leave an hnsw index too many tombstones."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.gallery import embeddings_repo
from app.services.maintenance import rebuild_active_index
from app.state import AppState
from tests.api.conftest import ClientFactory, enrol, new_subject


def state_of(client: TestClient) -> AppState:
    state: AppState = client.app.state.face  # type: ignore[attr-defined]
    return state


def enrolled(client: TestClient, photo: bytes, count: int) -> list[str]:
    """`count` subjects with one face each (the same photo: duplicates are per subject)."""
    subjects = []
    for i in range(count):
        subject = new_subject(client, f"person {i}")
        assert enrol(client, subject, ("face.jpg", photo)).status_code == 201
        subjects.append(subject)
    return subjects


def db_face_ids(state: AppState) -> list[int]:
    runtime = state.require_runtime()
    with state.sessions() as session:
        return sorted(embeddings_repo.model_face_ids(session, runtime.model_version).tolist())


def test_rebuild_catches_up_with_writes_made_while_it_builds(
    client: TestClient, package_images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photo = (package_images / "yaoming.jpg").read_bytes()
    first, second, third = enrolled(client, photo, 3)
    state = state_of(client)
    old_index = state.require_runtime().index
    snapshot = embeddings_repo.iter_vectors
    late: list[str] = []

    def iter_vectors_with_concurrent_writes(*args: Any, **kwargs: Any) -> Iterator[Any]:
        # The build reads its snapshot first; these requests commit while it builds, and
        # must not wait for it: the rebuild holds no write lock until it swaps indexes.
        batches = list(snapshot(*args, **kwargs))
        late.extend(enrolled(client, photo, 1))
        assert client.delete(f"/v1/subjects/{second}").status_code == 204
        yield from batches

    monkeypatch.setattr(embeddings_repo, "iter_vectors", iter_vectors_with_concurrent_writes)
    done = rebuild_active_index(state)

    index = state.require_runtime().index
    assert index is not old_index
    assert done.previous_size == done.size == 3  # +1 enrolled, -1 deleted meanwhile
    assert sorted(index.ids().tolist()) == db_face_ids(state)
    found = client.post("/v1/identify", files={"image": ("probe.jpg", photo)}).json()
    matched = {c["subject_id"] for face in found["faces"] for c in face["candidates"]}
    assert {first, third, late[0]} <= matched and second not in matched


def test_tombstoned_hnsw_index_is_rebuilt_in_the_background(
    make_client: ClientFactory, package_images: Path
) -> None:
    client = make_client(index_type="hnsw", index_save_interval_s=0.2)
    photo = (package_images / "yaoming.jpg").read_bytes()
    subjects = enrolled(client, photo, 8)
    state = state_of(client)
    old_index = state.require_runtime().index
    for subject in subjects[:2]:  # 2 of 8 tombstoned: past the 10% limit
        assert client.delete(f"/v1/subjects/{subject}").status_code == 204
    assert old_index.needs_rebuild

    # One delete is already past the limit (1 of 8), so a rebuild may start between the two
    # and take the second delete as a tombstone of its own: then another rebuild follows.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        index = state.require_runtime().index
        if index is not old_index and not index.needs_rebuild:
            break
        time.sleep(0.05)
    index = state.require_runtime().index
    assert index is not old_index and not index.needs_rebuild
    assert sorted(index.ids().tolist()) == db_face_ids(state)
    found = client.post(
        "/v1/identify", files={"image": ("probe.jpg", photo)}, data={"top_k": "10"}
    ).json()
    assert {c["subject_id"] for c in found["faces"][0]["candidates"]} == set(subjects[2:])


def test_a_failed_periodic_save_is_logged_and_retried(
    make_client: ClientFactory, package_images: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(index_save_interval_s=0.1)
    state = state_of(client)
    index_dir = state.settings.index_dir

    def wait_saved(count: int) -> None:
        # The sidecar, not index_dirty: a save clears the flag when it starts, not when
        # its files are in place.
        deadline = time.monotonic() + 10
        while True:
            sidecars = list(index_dir.glob("*.json")) if index_dir.is_dir() else []
            if sidecars and json.loads(sidecars[0].read_text())["count"] == count:
                return
            assert time.monotonic() < deadline, f"no save of {count} faces"
            time.sleep(0.05)

    photo = (package_images / "yaoming.jpg").read_bytes()
    enrolled(client, photo, 1)
    wait_saved(1)
    # The folder becomes a file: saves fail, as on a full or read-only disk.
    with state.write_lock:  # not while a save is writing into it
        index_dir.rename(index_dir.with_name("index-away"))
        index_dir.write_text("not a folder")
    enrolled(client, photo, 1)  # a second subject
    deadline = time.monotonic() + 10
    while "saving the index failed" not in caplog.text:
        assert time.monotonic() < deadline, "the failure was never logged"
        time.sleep(0.05)
    with state.write_lock:
        assert state.index_dirty  # still owed to the disk
        index_dir.unlink()
        index_dir.with_name("index-away").rename(index_dir)
    wait_saved(2)  # a later tick saves it

"""Several service processes on one database: each index takes in the others' writes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.services import index_sync
from app.services.index_sync import sync_index
from app.state import AppState
from tests.api.conftest import enrol, jpeg_bytes, new_subject, open_client

Opener = Any  # (folder, **settings) -> TestClient


def state_of(client: TestClient) -> AppState:
    state: AppState = client.app.state.face  # type: ignore[attr-defined]
    return state


def matches(client: TestClient, images: Path) -> list[str]:
    players = (images / "players.jpg").read_bytes()
    response = client.post("/v1/identify", files={"image": ("players.jpg", players)})
    assert response.status_code == 200, response.text
    return [face["match"]["subject_id"] for face in response.json()["faces"] if face["match"]]


def synced_metric(client: TestClient, change: str) -> float:
    prefix = f'face_index_synced_faces_total{{change="{change}"}} '
    lines = [line for line in client.get("/metrics").text.splitlines() if line.startswith(prefix)]
    return float(lines[0].split()[-1]) if lines else 0.0


def check_index_sync(open_app: Opener, images: Path) -> None:
    """The body, shared with the PostgreSQL suite."""
    writer = open_app("writer")
    reader = open_app("reader", index_sync_interval_s=0)  # synced by hand below
    yao = new_subject(writer, "Yao Ming")
    assert enrol(writer, yao, ("yao.jpg", (images / "yaoming.jpg").read_bytes())).status_code == 201
    assert matches(reader, images) == []  # its index learned of the face only at start-up

    report = sync_index(state_of(reader))
    assert report is not None and (report.added, report.removed, report.total) == (1, 0, 1)
    assert matches(reader, images) == [yao]
    assert reader.get("/v1/info").json()["index_size"] == 1
    assert synced_metric(reader, "added") == 1
    assert sync_index(state_of(reader)) is None  # the fingerprints agree: nothing read

    (face,) = writer.get(f"/v1/subjects/{yao}/faces").json()["faces"]
    assert writer.delete(f"/v1/subjects/{yao}/faces/{face['id']}").status_code == 204
    report = sync_index(state_of(reader))
    assert report is not None and (report.added, report.removed, report.total) == (0, 1, 0)
    assert synced_metric(reader, "removed") == 1


@pytest.fixture
def open_app(tmp_path: Path, models: Any) -> Iterator[Opener]:
    opened: list[TestClient] = []
    url = f"sqlite:///{tmp_path / 'shared.db'}"

    def factory(folder: str, **settings: Any) -> TestClient:
        client = open_client(tmp_path / folder, models, database_url=url, **settings)
        opened.append(client)
        return client

    yield factory
    for client in opened:
        client.__exit__(None, None, None)


def test_an_index_takes_in_what_another_process_enrolled_and_deleted(
    open_app: Opener, package_images: Path
) -> None:
    check_index_sync(open_app, package_images)


def test_the_model_watcher_syncs_every_interval(open_app: Opener, package_images: Path) -> None:
    writer = open_app("writer")
    reader = open_app("reader", index_sync_interval_s=0.2, finetune_poll_interval_s=0.1)
    yao = new_subject(writer, "Yao Ming")
    assert (
        enrol(writer, yao, ("y.jpg", (package_images / "yaoming.jpg").read_bytes())).status_code
        == 201
    )
    deadline = time.monotonic() + 20
    while reader.get("/v1/info").json()["index_size"] != 1:
        assert time.monotonic() < deadline, "the reader's index never took in the face"
        time.sleep(0.1)
    assert matches(reader, package_images) == [yao]


def test_a_full_sync_repairs_what_equal_fingerprints_hide(
    open_app: Opener, package_images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL, ids committed out of order can leave (count, sum, max) equal while the
    sets differ; every FULL_SYNC_EVERY-th sync compares the ids anyway."""
    reader = open_app("reader", index_sync_interval_s=0.001)
    photo = ("yaoming.jpg", (package_images / "yaoming.jpg").read_bytes())
    for name in ("Yao Ming", "Yao Ming again"):  # one photo may serve two subjects
        assert enrol(reader, new_subject(reader, name), photo).status_code == 201
    state = state_of(reader)
    index = state.require_runtime().index
    index.remove(index.ids()[:1])  # lost, as a face another process enrolled could be
    monkeypatch.setattr(
        index_sync.embeddings_repo, "fingerprint", lambda *_: index_sync.index_fingerprint(index)
    )
    monkeypatch.setattr(index_sync, "FULL_SYNC_EVERY", 2)
    monkeypatch.setattr(index_sync, "SYNC_CHUNK", 1)
    follower = index_sync.IndexFollower(state)
    time.sleep(0.01)
    assert follower.tick() is None  # the fingerprints agree
    time.sleep(0.01)
    report = follower.tick()
    assert report is not None and (report.added, report.total) == (1, 2)


def test_faces_deleted_through_another_process_cannot_hide_faces_it_enrolled(
    open_app: Opener, package_images: Path
) -> None:
    """Ids n+1 and n+2 still in the reader's index, deleted through the writer, had the
    same count, sum and maximum as ids n and n+3 the writer enrolled: the reader missed
    them until the full comparison, ten intervals later (an audit, on PostgreSQL)."""
    writer = open_app("writer")
    reader = open_app("reader", index_sync_interval_s=0)  # synced by hand below
    yao = Image.open(package_images / "yaoming.jpg")
    photos = [("yao.jpg", jpeg_bytes(yao, quality)) for quality in (90, 91, 92, 93, 94)]

    def enrolled(client: TestClient, name: str, *files: tuple[str, bytes]) -> str:
        subject = new_subject(client, name)
        assert enrol(client, subject, *files).status_code == 201
        return subject

    enrolled(writer, "P", photos[0])  # face n: not in the reader's index
    q = enrolled(reader, "Q", photos[1], photos[2])  # n+1, n+2: in it
    enrolled(writer, "R", photos[3])  # n+3: not in it
    assert writer.delete(f"/v1/subjects/{q}").status_code == 204  # n+1, n+2 gone
    enrolled(reader, "T", photos[4])  # n+4: in both
    report = sync_index(state_of(reader))
    assert report is not None and (report.added, report.removed, report.total) == (2, 2, 3)
    assert sync_index(state_of(reader)) is None

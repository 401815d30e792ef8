"""The service on PostgreSQL: enrol, verify, identify, delete, rebuild, concurrent enrolment."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageOps

from app.gallery import embeddings_repo, repository
from app.gallery.db import make_engine, make_session_factory
from tests.api.conftest import assert_error, enrol, jpeg_bytes, new_subject, open_client
from tests.api.test_index_sync import check_index_sync
from tests.api.test_subjects import (
    test_a_subject_cursor_that_is_not_one_is_refused as check_cursor_refused,
)
from tests.api.test_subjects import (
    test_name_filter_ignores_case_beyond_ascii as check_name_filter,
)
from tests.api.test_subjects import (
    test_nul_characters_are_refused_and_the_service_keeps_serving as check_nul_refused,
)

OpenApp = Callable[[str], TestClient]


@pytest.fixture
def open_app(db_url: str, tmp_path: Path, models: Any) -> Iterator[OpenApp]:
    """Opens the app on the test database with the named data folder (where its index lives)."""
    opened: list[TestClient] = []

    def factory(folder: str) -> TestClient:
        client = open_client(tmp_path / folder, models, database_url=db_url)
        opened.append(client)
        return client

    yield factory
    for client in opened:
        client.__exit__(None, None, None)


def identified(client: TestClient, images: Path) -> list[str]:
    players = (images / "players.jpg").read_bytes()
    response = client.post("/v1/identify", files={"image": ("players.jpg", players)})
    assert response.status_code == 200, response.text
    return [face["match"]["subject_id"] for face in response.json()["faces"] if face["match"]]


def test_enrol_verify_identify_rebuild_and_delete(open_app: OpenApp, package_images: Path) -> None:
    client = open_app("data")
    yao = new_subject(client, "Yao Ming")
    patched = client.patch(f"/v1/subjects/{yao}", json={"metadata": {"team": "Rockets", "n": 11}})
    assert patched.json()["metadata"] == {"team": "Rockets", "n": 11}
    # The server's time zone is not UTC; timestamps still come back in UTC.
    assert datetime.fromisoformat(patched.json()["updated_at"]).utcoffset() == timedelta(0)

    photo = ("yao.jpg", (package_images / "yaoming.jpg").read_bytes())
    assert enrol(client, yao, photo).status_code == 201
    assert_error(enrol(client, yao, photo), 409, "duplicate_image")
    verdict = client.post("/v1/verify", data={"subject_id": yao}, files={"image": photo}).json()
    assert verdict["verified"] and verdict["similarity"] > 0.99
    assert identified(client, package_images) == [yao]

    rebuilt = client.post("/v1/admin/index/rebuild").json()
    assert (rebuilt["previous_size"], rebuilt["size"]) == (1, 1)
    assert identified(client, package_images) == [yao]

    # A second process with an empty data folder builds its index from the database.
    other = open_app("other-data")
    info = other.get("/v1/info").json()
    assert (info["index_how"], info["index_size"], info["faces"]) == ("rebuilt", 1, 1)
    assert identified(other, package_images) == [yao]

    (face,) = client.get(f"/v1/subjects/{yao}/faces").json()["faces"]
    assert client.delete(f"/v1/subjects/{yao}/faces/{face['id']}").status_code == 204
    assert client.delete(f"/v1/subjects/{yao}").status_code == 204
    assert_error(client.get(f"/v1/subjects/{yao}"), 404, "subject_not_found")
    info = client.get("/v1/info").json()
    assert (info["subjects"], info["faces"], info["index_size"]) == (0, 0, 0)
    # The other process still indexes the face, but never answers with a deleted subject.
    assert identified(other, package_images) == []


def test_concurrent_enrolments_all_land_in_the_database_and_the_index(
    open_app: OpenApp, package_images: Path, db_url: str
) -> None:
    client = open_app("data")
    photo = Image.open(package_images / "yaoming.jpg")
    # Distinct bytes (and so distinct faces), each to its own subject, all at once.
    variants = [jpeg_bytes(photo, quality) for quality in (95, 90, 85)]
    variants += [jpeg_bytes(ImageOps.mirror(photo), quality) for quality in (95, 90, 85)]

    def enrol_one(number: int) -> int:
        subject = new_subject(client, f"person {number}")
        response = enrol(client, subject, (f"{number}.jpg", variants[number]))
        return response.status_code

    with ThreadPoolExecutor(len(variants)) as pool:
        assert list(pool.map(enrol_one, range(len(variants)))) == [201] * len(variants)

    info = client.get("/v1/info").json()
    engine = make_engine(db_url)
    try:
        with make_session_factory(engine)() as s:
            stored = embeddings_repo.model_face_ids(s, info["model_version"])
            assert repository.count_subjects(s) == len(variants)
    finally:
        engine.dispose()
    assert info["faces"] == info["index_size"] == len(stored) == len(variants)


def test_nul_characters_get_the_same_422_as_on_sqlite(open_app: OpenApp) -> None:
    check_nul_refused(open_app("nul"))


def test_a_made_up_subject_cursor_gets_the_same_422_as_on_sqlite(open_app: OpenApp) -> None:
    check_cursor_refused(open_app("cursor"))


def test_the_name_filter_folds_case_as_on_sqlite(open_app: OpenApp) -> None:
    # The test server's locale is C, where PostgreSQL's ILIKE folds ASCII only.
    check_name_filter(open_app("data"))


def test_a_delete_by_another_process_mid_write_is_a_404_not_a_500(
    open_app: OpenApp, db_url: str, package_images: Path
) -> None:
    """Another process deletes the subject in a transaction that commits while this one
    writes under it: the write waits for it and reports the subject gone."""
    import threading
    import time

    from sqlalchemy import text

    client = open_app("data")
    photo = ("yao.jpg", (package_images / "yaoming.jpg").read_bytes())
    other = make_engine(db_url)
    try:
        for write in ("enrol", "patch"):
            subject = new_subject(client, "Yao Ming")
            deleting = threading.Event()

            def delete_slowly(subject_id: str = subject, started: Any = deleting) -> None:
                with other.begin() as connection:
                    connection.execute(
                        text("DELETE FROM subjects WHERE id = :id"), {"id": subject_id}
                    )
                    started.set()
                    time.sleep(1.5)  # committed while the service's write waits on the row

            deleter = threading.Thread(target=delete_slowly)
            deleter.start()
            assert deleting.wait(10)
            if write == "enrol":
                response = enrol(client, subject, photo)
            else:
                response = client.patch(f"/v1/subjects/{subject}", json={"name": "Yao"})
            deleter.join()
            assert_error(response, 404, "subject_not_found")
        assert client.get("/v1/subjects").json()["total"] == 0
        assert client.get("/v1/info").json()["index_size"] == 0
    finally:
        other.dispose()


def test_each_process_index_takes_in_the_others_writes(
    db_url: str, tmp_path: Path, models: Any, package_images: Path
) -> None:
    opened: list[TestClient] = []

    def factory(folder: str, **settings: Any) -> TestClient:
        client = open_client(tmp_path / folder, models, database_url=db_url, **settings)
        opened.append(client)
        return client

    try:
        check_index_sync(factory, package_images)
    finally:
        for client in opened:
            client.__exit__(None, None, None)

"""GET /v1/subjects/{id}/faces: pages in id order with a total, without reading the crops."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageOps
from sqlalchemy import event

from app.schemas.common import MAX_SQL_INT
from tests.api.conftest import assert_error, enrol, jpeg_bytes, new_subject


@pytest.fixture
def three_faces(client: TestClient, package_images: Path) -> tuple[str, list[int]]:
    """A subject with three real faces enrolled, and their ids."""
    subject = new_subject(client, "Yao Ming")
    photo = Image.open(package_images / "yaoming.jpg")
    files = [
        ("a.jpg", (package_images / "yaoming.jpg").read_bytes()),
        ("b.jpg", jpeg_bytes(ImageOps.mirror(photo))),
        ("c.jpg", jpeg_bytes(photo.rotate(3))),
    ]
    response = enrol(client, subject, *files)
    assert response.status_code == 201, response.text
    return subject, [face["id"] for face in response.json()["faces"]]


@contextmanager
def listing_statements(client: TestClient) -> Iterator[list[str]]:
    """The face-listing SELECTs the app sends while the block runs (those that read boxes:
    other queries, e.g. a background task's, are left out)."""
    engine = client.app.state.face.engine  # type: ignore[attr-defined]
    sent: list[str] = []

    def record(*args: Any) -> None:
        statement: str = args[2]  # conn, cursor, statement, ...
        if "faces.box" in statement.split("FROM", 1)[0]:
            sent.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_faces_are_listed_a_page_at_a_time_in_id_order(
    client: TestClient, three_faces: tuple[str, list[int]]
) -> None:
    subject, ids = three_faces
    url = f"/v1/subjects/{subject}/faces"
    everything = client.get(url).json()
    # Without parameters, every face (up to the largest page), as before paging.
    assert [f["id"] for f in everything["faces"]] == sorted(ids)
    assert (everything["total"], everything["limit"], everything["offset"]) == (3, 1000, 0)

    seen: list[int] = []
    for offset in (0, 2, 4):
        page = client.get(url, params={"limit": 2, "offset": offset})
        assert page.status_code == 200, page.text
        body = page.json()
        assert (body["total"], body["limit"], body["offset"]) == (3, 2, offset)
        seen += [face["id"] for face in body["faces"]]
    assert seen == sorted(ids)
    # A page holds what the whole listing holds for those faces.
    assert client.get(url, params={"limit": 1, "offset": 1}).json()["faces"] == [
        everything["faces"][1]
    ]


def test_listing_does_not_read_the_stored_crops(
    client: TestClient, three_faces: tuple[str, list[int]]
) -> None:
    subject, _ = three_faces
    with listing_statements(client) as sent:
        listed = client.get(f"/v1/subjects/{subject}/faces")
    assert listed.status_code == 200 and listed.json()["total"] == 3
    assert sent, "the listing query was not seen"
    assert not [sql for sql in sent if re.search(r"\bfaces\.crop\b", sql)], sent  # not _landmarks


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 1001},
        {"limit": "ten"},
        {"offset": -1},
        {"offset": MAX_SQL_INT + 1},
    ],
)
def test_out_of_range_parameters_are_refused_as_on_subjects(
    client: TestClient, yao: str, params: dict[str, Any]
) -> None:
    faces = assert_error(
        client.get(f"/v1/subjects/{yao}/faces", params=params), 422, "invalid_request"
    )
    subjects = assert_error(client.get("/v1/subjects", params=params), 422, "invalid_request")
    assert faces == subjects


def test_unknown_and_repeated_parameters_are_refused_as_on_subjects(
    client: TestClient, yao: str
) -> None:
    url = f"/v1/subjects/{yao}/faces"
    unknown = assert_error(client.get(url, params={"page": 2}), 422, "invalid_request")
    assert unknown["details"] == [
        {
            "loc": ["query", "page"],
            "msg": "page is not a query parameter of this endpoint",
            "type": "extra_forbidden",
        }
    ]
    assert unknown["message"].endswith("(query parameters it takes: after, limit, offset).")
    on_subjects = assert_error(
        client.get("/v1/subjects", params={"page": 2}), 422, "invalid_request"
    )
    assert on_subjects["details"] == unknown["details"]

    repeated = assert_error(client.get(f"{url}?limit=1&limit=2"), 422, "invalid_request")
    twice = assert_error(client.get("/v1/subjects?limit=1&limit=2"), 422, "invalid_request")
    assert repeated["details"] == twice["details"]
    assert repeated["details"][0]["type"] == "repeated_field"
    # The subject is none the worse: its face is listed.
    assert client.get(url).json()["total"] == 1


def test_a_cursor_continues_where_the_page_ended_when_earlier_faces_are_deleted(
    client: TestClient, three_faces: tuple[str, list[int]]
) -> None:
    subject, ids = three_faces
    url = f"/v1/subjects/{subject}/faces"
    first = client.get(url, params={"limit": 1}).json()
    assert [f["id"] for f in first["faces"]] == [min(ids)]
    assert first["next_after"] == str(min(ids))
    # The face just read is deleted: an offset of 1 would now skip the second face.
    assert client.delete(f"{url}/{min(ids)}").status_code == 204
    skipped = client.get(url, params={"limit": 1, "offset": 1}).json()
    assert [f["id"] for f in skipped["faces"]] == [max(ids)]
    second = client.get(url, params={"limit": 1, "after": first["next_after"]}).json()
    assert [f["id"] for f in second["faces"]] == [sorted(ids)[1]]
    assert second["total"] == 2 and second["next_after"] == str(sorted(ids)[1])
    last = client.get(url, params={"limit": 1, "after": second["next_after"]}).json()
    assert [f["id"] for f in last["faces"]] == [max(ids)] and last["next_after"] is None
    # A page that ends exactly at the last face says so too: no empty page to fetch.
    assert client.get(url, params={"limit": 2}).json()["next_after"] is None


@pytest.mark.parametrize("after", ["", "abc", "+1", " 1", "1_0", "\uff11", "-1", "9" * 20])
def test_a_face_cursor_that_is_not_one_is_refused(client: TestClient, yao: str, after: str) -> None:
    error = assert_error(
        client.get(f"/v1/subjects/{yao}/faces", params={"after": after}), 422, "invalid_request"
    )
    assert error["details"][0]["loc"] == ["query", "after"]
    assert error["message"].startswith("Invalid request: after (")


def test_offset_and_after_together_are_refused(client: TestClient, yao: str) -> None:
    url = f"/v1/subjects/{yao}/faces"
    error = assert_error(
        client.get(url, params={"offset": 1, "after": "1"}), 422, "invalid_request"
    )
    assert error["details"][0]["loc"] == ["query", "offset"]
    assert client.get(url, params={"offset": 0, "after": "0"}).json()["total"] == 1

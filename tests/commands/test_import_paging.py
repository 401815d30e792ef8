"""`python -m app import` resuming into a subject with more faces than one listing page holds."""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, select

from app.commands.gallery_client import GalleryClient
from app.commands.import_faces import import_directory
from app.commands.retry_policy import RetryPolicy
from app.gallery.orm import Face
from tests.api.conftest import enrol, new_subject, open_client

LARGEST_PAGE = 1000  # the API's


def test_a_resumed_import_sees_faces_beyond_the_first_page(
    tmp_path: Path, models: Any, shared_faces: Path
) -> None:
    amy = shared_faces / "faceapi_js" / "amy"
    root = tmp_path / "photos"
    (root / "amy").mkdir(parents=True)
    for n in (1, 2, 3):
        shutil.copyfile(amy / f"amy{n}.png", root / "amy" / f"amy{n}.png")

    client = open_client(tmp_path / "data", models)
    try:
        subject = new_subject(client, "amy")
        first = enrol(client, subject, ("amy2.png", (root / "amy/amy2.png").read_bytes()))
        assert first.status_code == 201, first.text
        # Enrolling a thousand photos would take minutes: the rows between copy a real face's
        # detection data, each under an image hash of its own.
        sessions = client.app.state.face.sessions  # type: ignore[attr-defined]
        with sessions.begin() as s:
            face = s.scalars(select(Face).where(Face.subject_id == subject)).one()
            copied = {"box": face.box, "landmarks": face.landmarks, "quality": face.quality}
            rows = [
                copied | {"subject_id": subject, "image_sha256": f"{i:064x}"}
                for i in range(LARGEST_PAGE - 1)
            ]
            s.execute(insert(Face), rows)
        last = enrol(client, subject, ("amy1.png", (root / "amy/amy1.png").read_bytes()))
        assert last.status_code == 201, last.text
        listed = client.get(f"/v1/subjects/{subject}/faces").json()
        assert listed["total"] == LARGEST_PAGE + 1 and len(listed["faces"]) == LARGEST_PAGE

        uploads: Counter[str] = Counter()
        listings: list[str] = []

        def count(request: httpx.Request) -> None:
            if request.method == "POST" and request.url.path.endswith("/faces"):
                uploads[request.read().split(b'filename="', 1)[1].split(b'"', 1)[0].decode()] += 1
            elif request.url.path.endswith("/faces"):
                listings.append(request.url.query.decode())

        client.event_hooks["request"].append(count)
        summary = import_directory(
            client,
            root,
            face=None,
            workers=1,
            report=tmp_path / "report.csv",
            progress=False,
            retry=RetryPolicy(attempts=3, base_delay_s=0.01),
        )
    finally:
        client.__exit__(None, None, None)

    # amy1's face is on the second page: it is skipped as enrolled, not uploaded again.
    assert summary.counts == {"skipped": 2, "enrolled": 1}
    # The second page is read after the first one's last face, not at an offset.
    assert listings == ["", f"limit={LARGEST_PAGE}&after={listed['next_after']}"]
    assert uploads == {"amy3.png": 1}
    with summary.report.open(newline="") as handle:
        rows = {row["path"]: row for row in csv.DictReader(handle)}
    skipped = rows["amy/amy1.png"]
    assert (skipped["status"], skipped["code"]) == ("skipped", "already_enrolled")
    assert int(skipped["face_id"]) == last.json()["faces"][0]["id"]


def test_a_server_from_before_cursors_is_paged_with_offsets() -> None:
    # A release before next_after existed cannot run here: its answers are replayed.
    faces = [{"id": i, "image_sha256": f"{i:064x}"} for i in range(1, 2502)]
    subjects = [{"id": f"s{i}", "name": "amy", "created_at": "2026-11-28T00:00:00"} for i in (1,)]
    asked: list[dict[str, str]] = []

    def old_server(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        asked.append(params)
        assert "after" not in params
        limit, offset = int(params.get("limit", 1000)), int(params.get("offset", 0))
        if request.url.path == "/v1/subjects":
            page = {"items": subjects[offset : offset + limit], "total": len(subjects)}
            return httpx.Response(200, json=page | {"limit": limit, "offset": offset})
        page = {"faces": faces[offset : offset + limit], "total": len(faces)}
        return httpx.Response(200, json=page | {"limit": limit, "offset": offset})

    transport = httpx.MockTransport(old_server)
    with httpx.Client(transport=transport, base_url="http://old") as http:
        subject = GalleryClient(http, RetryPolicy(attempts=1)).subject("amy")
    assert subject.id == "s1" and len(subject.enrolled) == len(faces)
    assert [p.get("offset") for p in asked] == ["0", None, "1000", "2000"]

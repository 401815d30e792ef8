"""`python -m app import`: real photos enrolled over HTTP into an app on a real SQLite file."""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.cli import main
from app.commands.gallery_client import RetryPolicy, ServiceError
from app.commands.import_faces import ImportSummary, import_directory, scan_directory
from app.config import Settings
from app.main import create_app
from tests.api.conftest import enrol, new_subject, open_client
from tests.e2e.conftest import Server

ClientFactory = Callable[..., TestClient]
FAST_RETRY = RetryPolicy(attempts=3, base_delay_s=0.01)


@pytest.fixture
def make_client(tmp_path: Path, models: Any) -> Iterator[ClientFactory]:
    opened: list[TestClient] = []

    def factory(**overrides: Any) -> TestClient:
        opened.append(open_client(tmp_path / "data", models, **overrides))
        return opened[-1]

    yield factory
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def photos(tmp_path: Path, shared_faces: Path, package_images: Path) -> Path:
    """Six good photos of three people, three bad ones, and files the import must not see."""
    faceapi = shared_faces / "faceapi_js"
    layout = {
        "Yao Ming/yao.jpg": package_images / "yaoming.jpg",
        "amy/amy1.png": faceapi / "amy/amy1.png",
        "amy/amy2.png": faceapi / "amy/amy2.png",
        "amy/AMY3.PNG": faceapi / "amy/amy3.png",
        "amy/.amy4.png": faceapi / "amy/amy4.png",  # hidden
        "leonard/leonard1.png": faceapi / "leonard/leonard1.png",
        "leonard/leonard2.png": faceapi / "leonard/leonard2.png",
        "noface/dog.jpg": shared_faces / "dlib/dog.jpg",  # identity `noface` in the manifest
        "group/players.jpg": package_images / "players.jpg",
        ".trash/amy5.png": faceapi / "amy/amy5.png",  # hidden folder
        "stray.jpg": faceapi / "amy/amy5.png",  # not in a subject folder
    }
    root = tmp_path / "photos"
    for name, source in layout.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, root / name)
    (root / "leonard/notes.jpg").write_text("not a photo at all\n")
    (root / "leonard/notes.txt").write_text("not an image extension\n")
    return root


EXPECTED = {
    "Yao Ming/yao.jpg": ("enrolled", ""),
    "amy/AMY3.PNG": ("enrolled", ""),
    "amy/amy1.png": ("enrolled", ""),
    "amy/amy2.png": ("enrolled", ""),
    "group/players.jpg": ("rejected", "multiple_faces"),
    "leonard/leonard1.png": ("enrolled", ""),
    "leonard/leonard2.png": ("enrolled", ""),
    "leonard/notes.jpg": ("rejected", "unsupported_media_type"),
    "noface/dog.jpg": ("rejected", "no_face"),
}


def run_import(client: httpx.Client, root: Path, **options: Any) -> ImportSummary:
    options = {"face": None, "workers": 2, "report": root.parent / "report.csv"} | options
    return import_directory(client, root, progress=False, retry=FAST_RETRY, **options)


def read_report(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["path", "subject", "status", "code", "message", "face_id"]
        return {row["path"]: row for row in reader}


def subjects_by_name(client: httpx.Client) -> dict[str, dict[str, Any]]:
    items = client.get("/v1/subjects", params={"limit": 1000}).json()["items"]
    return {s["name"]: s for s in items}


def uploaded_name(request: httpx.Request) -> str | None:
    if request.method != "POST" or not request.url.path.endswith("/faces"):
        return None
    return request.read().split(b'filename="', 1)[1].split(b'"', 1)[0].decode()


def count_uploads(client: httpx.Client) -> Counter[str]:
    """Upload attempts per file name, counted as the requests leave the client."""
    uploads: Counter[str] = Counter()

    def hook(request: httpx.Request) -> None:
        if name := uploaded_name(request):
            uploads[name] += 1

    client.event_hooks["request"].append(hook)
    return uploads


def test_scan_keeps_image_files_in_subject_folders(photos: Path) -> None:
    albums = {a.name: [p.name for p in a.files] for a in scan_directory(photos)}
    assert albums == {
        "Yao Ming": ["yao.jpg"],
        "amy": ["AMY3.PNG", "amy1.png", "amy2.png"],
        "group": ["players.jpg"],
        "leonard": ["leonard1.png", "leonard2.png", "notes.jpg"],
        "noface": ["dog.jpg"],
    }


def test_import_enrols_reports_and_resumes(make_client: ClientFactory, photos: Path) -> None:
    client = make_client()
    summary = run_import(client, photos)

    assert summary.counts == {"enrolled": 6, "rejected": 3}
    assert summary.exit_code == 0
    report = read_report(summary.report)
    assert {path: (r["status"], r["code"]) for path, r in report.items()} == EXPECTED
    assert (
        report["noface/dog.jpg"]["message"] == "No face of at least 32 px was found in the image."
    )
    subjects = subjects_by_name(client)
    assert {name: s["face_count"] for name, s in subjects.items()} == {
        "Yao Ming": 1,
        "amy": 3,
        "group": 0,
        "leonard": 2,
        "noface": 0,
    }
    amy = client.get(f"/v1/subjects/{subjects['amy']['id']}/faces").json()["faces"]
    amy_rows = [r for r in report.values() if r["subject"] == "amy"]
    assert sorted(int(r["face_id"]) for r in amy_rows) == sorted(f["id"] for f in amy)

    # A second run uploads only what was rejected, and skips every enrolled photo.
    uploads = count_uploads(client)
    again = run_import(client, photos)
    assert again.counts == {"skipped": 6, "rejected": 3}
    assert set(uploads) == {"players.jpg", "notes.jpg", "dog.jpg"}
    second = read_report(again.report)
    for path, (status, code) in EXPECTED.items():
        if status == "enrolled":
            assert (second[path]["status"], second[path]["code"]) == ("skipped", "already_enrolled")
            assert second[path]["face_id"] == report[path]["face_id"]
        else:
            assert (second[path]["status"], second[path]["code"]) == (status, code)
    assert {n: s["face_count"] for n, s in subjects_by_name(client).items()} == {
        n: s["face_count"] for n, s in subjects.items()
    }
    assert client.get("/v1/info").json()["index_size"] == 6


def test_existing_subject_is_reused_and_duplicates_skipped(
    make_client: ClientFactory, photos: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client()
    oldest = new_subject(client, "amy")
    newer = new_subject(client, "amy")
    decoy = new_subject(client, "Amy Farrah")  # the API's name filter is a substring match
    amy1 = (photos / "amy/amy1.png").read_bytes()
    assert enrol(client, oldest, ("amy1.png", amy1)).status_code == 201
    root = photos.parent / "again"
    (root / "amy").mkdir(parents=True)
    for name in ("amy1.png", "amy2.png"):
        shutil.copyfile(photos / "amy" / name, root / "amy" / name)
    shutil.copyfile(photos / "amy/amy2.png", root / "amy/copy-of-amy2.png")

    summary = run_import(client, root, workers=1)

    report = read_report(summary.report)
    assert {p: (r["status"], r["code"]) for p, r in report.items()} == {
        "amy/amy1.png": ("skipped", "already_enrolled"),
        "amy/amy2.png": ("enrolled", ""),
        "amy/copy-of-amy2.png": ("skipped", "duplicate_image"),
    }
    counts = {s: client.get(f"/v1/subjects/{s}").json()["face_count"] for s in (oldest, newer)}
    assert counts == {oldest: 2, newer: 0}
    assert client.get(f"/v1/subjects/{decoy}").json()["face_count"] == 0
    assert len(subjects_by_name(client)) == 2  # no new subject
    assert "2 subjects are named 'amy'; using the oldest" in caplog.text


def test_face_policy_enrols_the_group_photo(make_client: ClientFactory, photos: Path) -> None:
    client = make_client()
    root = photos.parent / "group-only"
    shutil.copytree(photos / "group", root / "group")
    summary = run_import(client, root, face="largest")
    assert summary.counts == {"enrolled": 1}
    assert subjects_by_name(client)["group"]["face_count"] == 1


def test_connection_errors_are_retried_then_recorded(
    make_client: ClientFactory, photos: Path
) -> None:
    client = make_client()
    uploads = count_uploads(client)

    def drop(request: httpx.Request) -> None:
        name = uploaded_name(request)  # amy1 fails once, amy2 every time
        if (name == "amy1.png" and uploads[name] == 1) or name == "amy2.png":
            raise httpx.ConnectError("connection refused (simulated)", request=request)

    client.event_hooks["request"].append(drop)
    root = photos.parent / "amy-only"
    shutil.copytree(photos / "amy", root / "amy")

    summary = run_import(client, root, workers=1)

    assert uploads == {"AMY3.PNG": 1, "amy1.png": 2, "amy2.png": FAST_RETRY.attempts}
    report = read_report(summary.report)
    assert {p: (r["status"], r["code"]) for p, r in report.items()} == {
        "amy/AMY3.PNG": ("enrolled", ""),
        "amy/amy1.png": ("enrolled", ""),
        "amy/amy2.png": ("error", "connection_error"),
    }
    assert summary.exit_code == 1


def test_a_service_that_never_gets_ready_stops_the_import(tmp_path: Path, photos: Path) -> None:
    settings = Settings(data_dir=tmp_path / "broken", embedder="no-such-model", device="cpu")
    with TestClient(create_app(settings)) as client:
        probes = Counter[str]()
        client.event_hooks["request"].append(lambda request: probes.update([request.url.path]))
        with pytest.raises(ServiceError) as raised:
            run_import(client, photos)
    assert (raised.value.status, raised.value.code) == (503, "not_ready")
    assert "unknown embedder" in raised.value.message
    assert probes == {"/v1/ready": FAST_RETRY.attempts}
    assert not (photos.parent / "report.csv").exists()


def test_a_refused_api_key_stops_the_import(make_client: ClientFactory, photos: Path) -> None:
    client = make_client(api_keys="client:right-key")
    client.headers["X-API-Key"] = "wrong-key"
    with pytest.raises(ServiceError) as raised:
        run_import(client, photos)
    assert (raised.value.status, raised.value.code) == (401, "unauthorized")


@pytest.mark.e2e
def test_cli_imports_into_a_real_server(
    tmp_path: Path, photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = Server(tmp_path / "server", tmp_path / "server.log", FACE_API_KEYS="client:k3y")
    try:
        server.start().close()
        argv = ["import", str(photos), "--url", server.url]

        assert main([*argv, "--api-key", "k3y"]) == 0
        assert "6 enrolled, 0 skipped, 3 rejected, 0 error" in capsys.readouterr().out
        report = read_report(tmp_path / "import-report.csv")  # the default: DIR/../
        assert {p: (r["status"], r["code"]) for p, r in report.items()} == EXPECTED

        assert main([*argv, "--api-key", "wrong"]) == 1
        assert "unauthorized" in capsys.readouterr().err
    finally:
        if server.process is not None:
            server.stop()


def test_scan_takes_every_format_the_service_reads_and_reports_broken_links(
    tmp_path: Path,
) -> None:
    from functools import partial

    from app.commands.import_faces import ReportRow, _import_file

    folder = tmp_path / "photos" / "ada"
    folder.mkdir(parents=True)
    for name in ("a.gif", "b.TIF", "c.tiff", "d.webp", "e.bmp"):
        (folder / name).write_bytes(b"an image, as far as the scan can tell")
    (folder / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    albums = scan_directory(tmp_path / "photos")
    files = [p.name for p in albums[0].files]
    assert files == ["a.gif", "b.TIF", "c.tiff", "d.webp", "e.bmp", "gone.jpg"]

    row = _import_file(None, None, folder / "gone.jpg", None, partial(ReportRow, "gone.jpg", "ada"))  # type: ignore[arg-type]
    assert (row.status, row.code) == ("error", "unreadable")

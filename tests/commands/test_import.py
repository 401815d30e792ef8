"""`python -m app import`: real photos enrolled over HTTP into an app on a real SQLite file."""

from __future__ import annotations

import base64
import csv
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from app.cli import main
from app.commands.gallery_client import ServiceError
from app.commands.import_faces import ImportStopped, import_directory
from app.commands.import_files import scan_directory
from app.commands.import_report import ImportSummary
from app.commands.retry_policy import RetryPolicy, retry_after_s
from app.config import Settings
from app.main import create_app
from benchmarks.ports import free_port
from tests.api.conftest import enrol, new_subject, open_client
from tests.e2e.conftest import REPO, Server
from tests.threaded_server import running

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


@contextmanager
def served(app: Any) -> Iterator[str]:
    """`app` (ASGI) behind a real uvicorn server on a free port, run on a thread of this process
    so that it uses the session's models; yields its URL once it is ready."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running(uvicorn.Config(app, port=port, log_level="warning")):
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/v1/ready").status_code != 200:
            assert time.monotonic() < deadline, "the server is not ready"
            time.sleep(0.05)
        yield url


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
    make_client: ClientFactory, photos: Path
) -> None:
    client = make_client()
    amy = new_subject(client, "amy")
    decoy = new_subject(client, "Amy Farrah")  # the API's name filter is a substring match
    other_case = new_subject(client, "AMY")  # and ignores case
    amy1 = (photos / "amy/amy1.png").read_bytes()
    assert enrol(client, amy, ("amy1.png", amy1)).status_code == 201
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
    counts = {
        s: client.get(f"/v1/subjects/{s}").json()["face_count"] for s in (amy, decoy, other_case)
    }
    assert counts == {amy: 2, decoy: 0, other_case: 0}
    assert len(subjects_by_name(client)) == 3  # no new subject


def test_a_folder_named_in_nfd_finds_the_subject_named_in_nfc(
    make_client: ClientFactory, photos: Path
) -> None:
    """macOS names folders in NFD: "Jose" + U+0301 must not make a second "José"."""
    client = make_client()
    jose = new_subject(client, "Jos\u00e9")
    root = photos.parent / "from-a-mac"
    (root / "Jose\u0301").mkdir(parents=True)
    shutil.copyfile(photos / "amy" / "amy1.png", root / "Jose\u0301" / "amy1.png")
    summary = run_import(client, root, workers=1)
    assert {r["status"] for r in read_report(summary.report).values()} == {"enrolled"}
    assert client.get(f"/v1/subjects/{jose}").json()["face_count"] == 1
    assert list(subjects_by_name(client)) == ["Jos\u00e9"]  # no second subject
    # A new folder's subject is created with its name in NFC.
    (root / "Rene\u0301e").mkdir()
    shutil.copyfile(photos / "amy" / "amy2.png", root / "Rene\u0301e" / "amy2.png")
    run_import(client, root, workers=1)
    assert "Ren\u00e9e" in subjects_by_name(client)


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

    with pytest.raises(ImportStopped) as stopped:  # amy2 was the last file: nothing is left out
        run_import(client, root, workers=1)

    summary = stopped.value.summary
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


def test_ctrl_c_while_waiting_for_the_service_ends_the_wait(photos: Path) -> None:
    """The retries used to run on (about a minute), then overwrite the report."""
    from app.commands.import_faces import Stop

    stop = Stop()
    slow = RetryPolicy(attempts=1000, base_delay_s=0.01)
    with httpx.Client(base_url=f"http://127.0.0.1:{free_port()}") as nobody:
        nobody.event_hooks["request"].append(lambda request: stop.interrupt())
        started = time.monotonic()
        with pytest.raises(ServiceError) as raised:
            import_directory(
                nobody,
                photos,
                face=None,
                workers=1,
                report=photos.parent / "report.csv",
                progress=False,
                retry=slow,
                stop=stop,
            )
    assert raised.value.code == "interrupted" and time.monotonic() - started < 5
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

    from app.commands.album_import import _import_file
    from app.commands.import_report import ReportRow, Stop

    folder = tmp_path / "photos" / "ada"
    folder.mkdir(parents=True)
    for name in ("a.gif", "b.TIF", "c.tiff", "d.webp", "e.bmp"):
        (folder / name).write_bytes(b"an image, as far as the scan can tell")
    (folder / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    albums = scan_directory(tmp_path / "photos")
    files = [p.name for p in albums[0].files]
    assert files == ["a.gif", "b.TIF", "c.tiff", "d.webp", "e.bmp", "gone.jpg"]

    row = _import_file(
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        folder / "gone.jpg",
        None,
        1000,
        partial(ReportRow, "gone.jpg", "ada"),
        Stop(),
    )
    assert (row.status, row.code) == ("error", "not_a_regular_file")


def test_a_name_shared_by_several_subjects_enrols_nothing_in_that_folder(
    make_client: ClientFactory, photos: Path
) -> None:
    client = make_client()
    frank = new_subject(client, "Frank")
    yao = (photos / "Yao Ming/yao.jpg").read_bytes()
    assert enrol(client, frank, ("yao.jpg", yao)).status_code == 201
    root = photos.parent / "gina"
    (root / "Gina").mkdir(parents=True)
    for name in ("amy1.png", "amy2.png"):
        shutil.copyfile(photos / "amy" / name, root / "Gina" / name)
    shutil.copytree(photos / "leonard", root / "leonard")
    first = run_import(client, root)
    assert first.counts == {"enrolled": 4, "rejected": 1}
    gina = subjects_by_name(client)["Gina"]["id"]
    renamed = client.patch(f"/v1/subjects/{frank}", json={"name": "Gina"})
    assert renamed.status_code == 200, renamed.text

    uploads = count_uploads(client)
    summary = run_import(client, root)

    report = read_report(summary.report)
    assert {p: (r["status"], r["code"]) for p, r in report.items()} == {
        "Gina/amy1.png": ("error", "ambiguous_subject"),
        "Gina/amy2.png": ("error", "ambiguous_subject"),
        "leonard/leonard1.png": ("skipped", "already_enrolled"),
        "leonard/leonard2.png": ("skipped", "already_enrolled"),
        "leonard/notes.jpg": ("rejected", "unsupported_media_type"),
    }
    message = report["Gina/amy1.png"]["message"]
    assert f"2 subjects are named 'Gina' (ids {frank}, {gina})" in message
    assert summary.exit_code == 1
    assert set(uploads) == {"notes.jpg"}
    counts = {s: client.get(f"/v1/subjects/{s}").json()["face_count"] for s in (frank, gina)}
    assert counts == {frank: 1, gina: 2}


def test_names_that_are_not_utf8_get_a_row_and_the_import_goes_on(
    make_client: ClientFactory, photos: Path
) -> None:
    client = make_client()
    root = photos.parent / "latin1"
    # Names as `printf 'b\xe9.png'` makes them: Python holds the byte as a surrogate escape.
    bad_file = os.fsdecode(b"b\xe9.png")
    bad_folder = os.fsdecode(b"Jos\xe9")  # sorts first: the folders after it must still be done
    (root / "amy").mkdir(parents=True)
    (root / bad_folder).mkdir()
    shutil.copyfile(photos / "amy/amy1.png", root / "amy/amy1.png")
    shutil.copyfile(photos / "amy/amy2.png", root / "amy" / bad_file)
    shutil.copyfile(photos / "amy/AMY3.PNG", root / bad_folder / "amy3.png")
    shutil.copytree(photos / "Yao Ming", root / "Yao Ming")

    summary = run_import(client, root)

    with summary.report.open(encoding="utf-8", newline="") as handle:  # strict: valid UTF-8
        rows = {r["path"]: r for r in csv.DictReader(handle)}
    assert {p: (r["subject"], r["status"], r["code"]) for p, r in rows.items()} == {
        "Jos\\xe9/amy3.png": ("Jos\\xe9", "error", "name_not_utf8"),
        "Yao Ming/yao.jpg": ("Yao Ming", "enrolled", ""),
        "amy/amy1.png": ("amy", "enrolled", ""),
        "amy/b\\xe9.png": ("amy", "error", "name_not_utf8"),
    }
    assert "not valid UTF-8" in rows["amy/b\\xe9.png"]["message"]
    assert summary.exit_code == 1
    assert {n: s["face_count"] for n, s in subjects_by_name(client).items()} == {
        "Yao Ming": 1,
        "amy": 1,
    }


def test_an_unexpected_failure_is_one_row_not_the_end_of_the_import(
    make_client: ClientFactory, photos: Path
) -> None:
    client = make_client()

    def fail(request: httpx.Request) -> None:  # neither a transport error nor a ServiceError
        if uploaded_name(request) == "amy1.png" or request.url.params.get("name") == "group":
            raise RuntimeError("simulated")

    client.event_hooks["request"].append(fail)

    summary = run_import(client, photos)

    report = read_report(summary.report)
    failed = {"amy/amy1.png", "group/players.jpg"}
    assert {p: (r["status"], r["code"]) for p, r in report.items()} == {
        p: ("error", "unexpected_error") if p in failed else outcome
        for p, outcome in EXPECTED.items()
    }
    assert report["amy/amy1.png"]["message"] == "RuntimeError: simulated"
    assert summary.exit_code == 1


def refuse_listing(monkeypatch: pytest.MonkeyPatch, unreadable: Path) -> None:
    """Listing `unreadable` fails as after chmod 000, which does not stop root (tests may run
    as root)."""
    listdir = Path.iterdir

    def iterdir(folder: Path) -> Iterator[Path]:
        if folder == unreadable:
            raise PermissionError(13, "Permission denied", str(folder))
        yield from listdir(folder)

    monkeypatch.setattr(Path, "iterdir", iterdir)


def test_an_unreadable_folder_gets_a_row_and_the_rest_is_imported(
    make_client: ClientFactory, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refuse_listing(monkeypatch, photos / "amy")
    client = make_client()

    summary = run_import(client, photos)

    report = read_report(summary.report)
    expected = {p: outcome for p, outcome in EXPECTED.items() if not p.startswith("amy/")}
    assert {p: (r["status"], r["code"]) for p, r in report.items()} == expected | {
        "amy": ("error", "unreadable")
    }
    assert report["amy"]["subject"] == "amy"
    assert "Permission denied" in report["amy"]["message"]
    assert summary.exit_code == 1
    assert "amy" not in subjects_by_name(client)


def test_a_dir_that_cannot_be_listed_is_one_line_not_a_traceback(
    photos: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    refuse_listing(monkeypatch, photos)
    assert main(["import", str(photos), "--url", "http://127.0.0.1:9"]) == 1
    assert "import failed: [Errno 13] Permission denied" in capsys.readouterr().err
    assert not (photos.parent / "import-report.csv").exists()


def test_an_unreachable_service_stops_the_import(make_client: ClientFactory, photos: Path) -> None:
    client = make_client()
    sent_while_down: list[str] = []

    def go_down(request: httpx.Request) -> None:  # as if the service died on amy1.png's upload
        if sent_while_down or uploaded_name(request) == "amy1.png":
            sent_while_down.append(request.url.path)
            raise httpx.ConnectError("connection refused (simulated)", request=request)

    client.event_hooks["request"].append(go_down)

    with pytest.raises(ImportStopped) as stopped:
        run_import(client, photos, workers=1)

    assert stopped.value.code == "connection_error"
    assert len(sent_while_down) == FAST_RETRY.attempts  # amy1's tries, then nothing
    summary = stopped.value.summary
    assert summary.exit_code == 1
    report = read_report(summary.report)
    done = {"Yao Ming/yao.jpg": ("enrolled", ""), "amy/AMY3.PNG": ("enrolled", "")}
    assert {p: (r["status"], r["code"]) for p, r in report.items()} == {
        p: done.get(p, ("error", "not_attempted")) for p in EXPECTED
    } | {"amy/amy1.png": ("error", "connection_error")}
    assert "could not be reached" in report["noface/dog.jpg"]["message"]


def start_import(*argv: object) -> subprocess.Popen[str]:
    """`python -m app import ...` in its own process, so that it can be sent Ctrl-C."""
    return subprocess.Popen(
        [sys.executable, "-m", "app", "import", *map(str, argv)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell that starts pytest in the background ignores SIGINT; Ctrl-C must reach it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for_rows(report: Path, process: subprocess.Popen[str], rows: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if report.exists() and len(report.read_text().splitlines()) > rows:  # and the header
            return
        time.sleep(0.005)
    raise AssertionError(f"no {rows} rows in {report}; exit status {process.poll()}")


@pytest.mark.e2e
def test_cli_stops_cleanly_on_ctrl_c_and_when_the_server_dies(tmp_path: Path, photos: Path) -> None:
    server = Server(tmp_path / "server", tmp_path / "server.log")
    report = tmp_path / "import-report.csv"
    try:
        client = server.start()

        # Ctrl-C after the first row: the upload in flight ends and is recorded, none starts.
        process = start_import(photos, "--url", server.url, "--workers", 1)
        wait_for_rows(report, process, 1)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
        assert process.returncode == 130, err
        assert "Traceback" not in err
        rows = read_report(report)
        assert set(rows) == set(EXPECTED)
        codes = Counter(r["code"] for r in rows.values())
        assert codes["not_attempted"] > 0, rows
        assert f"not_attempted {codes['not_attempted']}" in out
        enrolled = [r for r in rows.values() if r["status"] == "enrolled"]
        assert client.get("/v1/info").json()["faces"] == len(enrolled)
        interrupted = next(r for r in rows.values() if r["code"] == "not_attempted")
        assert "interrupted" in interrupted["message"]

        # kill -9 of the service: one request fails after its retries, then nothing is tried.
        report = tmp_path / "second-report.csv"
        process = start_import(photos, "--url", server.url, "--workers", 1, "--report", report)
        wait_for_rows(report, process, 0)
        server.stop(signal.SIGKILL)
        out, err = process.communicate(timeout=120)
        assert process.returncode == 1, err
        assert "Traceback" not in err
        assert "import stopped" in err and "connection_error" in err
        statuses = [(r["status"], r["code"]) for r in read_report(report).values()]
        assert len(statuses) == len(EXPECTED)
        failed = statuses.index(("error", "connection_error"))
        assert set(statuses[failed:]) <= {("error", "connection_error"), ("error", "not_attempted")}
        assert statuses[-1] == ("error", "not_attempted")
    finally:
        if server.process is not None:
            server.stop()


def test_credentials_in_the_url_are_sent_but_never_shown(
    tmp_path: Path,
    models: Any,
    photos: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`--url http://user:password@host` printed them on stderr, and httpx's log lines (at
    DEBUG) held them too; a proxy in front of the service must still get them."""
    settings = Settings(
        data_dir=tmp_path / "data", embedder="arcface-mbf", device="cpu", api_keys="client:k3y"
    )
    app = create_app(settings, models)
    authorizations: list[bytes | None] = []

    async def proxy(scope: Any, receive: Any, send: Any) -> None:  # records, then passes on
        if scope["type"] == "http":
            authorizations.append(dict(scope["headers"]).get(b"authorization"))
        await app(scope, receive, send)

    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")  # an earlier run may have quietened it
    monkeypatch.setenv("FACE_API_KEY", "wrong")  # the import stops: its URL is printed
    with served(proxy) as url:
        secret_url = url.replace("http://", "http://importer:s3cret%40pw@")
        authorizations.clear()  # the readiness probes of served()
        assert main(["import", str(photos), "--url", secret_url]) == 1

    out, err = capsys.readouterr()
    assert err.rstrip().endswith(f"(unauthorized) at {url}")
    assert "HTTP Request: GET" in caplog.text  # httpx did log its requests
    report = (tmp_path / "import-report.csv").read_text()
    for shown_text in (out, err, caplog.text, report):
        assert "s3cret" not in shown_text and "importer" not in shown_text
    basic = b"Basic " + base64.b64encode(b"importer:s3cret@pw")
    assert authorizations and set(authorizations) == {basic}


@pytest.mark.parametrize(
    "url", ["importer:s3cret@127.0.0.1:9", "http://importer:s3cret@127.0.0.1:port/"]
)
def test_a_url_that_is_not_http_is_refused_without_showing_it(
    url: str, photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import", str(photos), "--url", url]) == 2
    err = capsys.readouterr().err
    assert "--url" in err and "s3cret" not in err
    assert not (photos.parent / "import-report.csv").exists()


def test_a_rate_limited_import_waits_and_enrols_everything(
    make_client: ClientFactory, photos: Path
) -> None:
    """429s were errors: against FACE_RATE_LIMIT=5, 115 of 117 files ended `rate_limited`."""
    client = make_client(rate_limit=5.0, rate_limit_burst=2)
    limited: list[float | None] = []

    def hook(response: httpx.Response) -> None:
        if response.status_code == 429:
            response.read()
            limited.append(retry_after_s(response))

    client.event_hooks["response"].append(hook)
    summary = run_import(client, photos, workers=3)

    assert summary.counts == {"enrolled": 6, "rejected": 3}
    report = read_report(summary.report)
    assert {path: (r["status"], r["code"]) for path, r in report.items()} == EXPECTED
    assert limited, "the limit was never reached: the test shows nothing"
    # Once limited, the workers take turns: 23-26 answers were 429s when each worker only
    # waited out its own, 2-4 since.
    assert len(limited) <= 12, len(limited)
    assert all(wait is not None and 0 < wait <= 0.2 for wait in limited)


def test_a_rate_limit_waits_no_longer_than_its_budget(
    make_client: ClientFactory, photos: Path
) -> None:
    client = make_client(rate_limit=0.01, rate_limit_burst=1)  # one request, then 100 s
    hurried = RetryPolicy(attempts=3, base_delay_s=0.01, rate_limited_s=0.3)
    started = time.monotonic()
    summary = import_directory(
        client,
        photos,
        face=None,
        workers=1,
        report=photos.parent / "r.csv",
        progress=False,
        retry=hurried,
    )
    assert time.monotonic() - started < 30  # not the 100 s the service asked for
    assert summary.counts == {"error": 9}
    assert summary.exit_code != 0
    codes = {row["code"] for row in read_report(photos.parent / "r.csv").values()}
    assert codes == {"rate_limited"}


@pytest.mark.parametrize(
    ("body", "header", "expected"),
    [
        ({"error": {"code": "rate_limited", "details": {"retry_after_s": 0.123}}}, "1", 0.123),
        ({"error": {"code": "rate_limited", "details": None}}, "7", 7.0),
        (None, "Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past: now
        (None, "soon", None),
        (None, None, None),
    ],
)
def test_retry_after_reads_the_details_then_the_header(
    body: dict[str, Any] | None, header: str | None, expected: float | None
) -> None:
    headers = {"Retry-After": header} if header else {}
    response = (
        httpx.Response(429, json=body, headers=headers)
        if body
        else httpx.Response(429, headers=headers)
    )
    assert retry_after_s(response) == expected


def test_ctrl_c_ends_a_long_rate_limit_wait(make_client: ClientFactory) -> None:
    """A 429 asking for 100 s was slept through in one piece: Ctrl-C waited it out."""
    from app.commands.gallery_client import GalleryClient

    client = make_client(rate_limit=0.01, rate_limit_burst=1)
    asked_at: list[float] = []
    gallery = GalleryClient(
        client, RetryPolicy(), lambda: bool(asked_at) and time.monotonic() > asked_at[0] + 0.5
    )
    assert gallery.send("GET", "/v1/subjects").status_code == 200  # the one token
    asked_at.append(time.monotonic())
    with pytest.raises(ServiceError) as raised:
        gallery.send("GET", "/v1/subjects")
    assert raised.value.code == "interrupted"
    assert time.monotonic() - asked_at[0] < 5

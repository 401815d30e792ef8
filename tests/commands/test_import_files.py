"""`python -m app import` on what a folder holds besides photos: links, devices, FIFOs, sockets,
files over the upload limit, folder links that lead back to DIR."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.cli import main
from app.config import Settings
from app.main import create_app
from tests.api.conftest import open_client
from tests.commands.test_import import count_uploads, read_report, run_import, served

AMY = "faceapi_js/amy"


@pytest.fixture
def client(tmp_path: Path, models: Any) -> Iterator[TestClient]:
    opened = open_client(tmp_path / "data", models)
    yield opened
    opened.__exit__(None, None, None)


def outcomes(report: Path) -> dict[str, tuple[str, str]]:
    return {p: (r["status"], r["code"]) for p, r in read_report(report).items()}


@contextlib.contextmanager
def writers_for(fifos: list[Path]) -> Iterator[None]:
    """Guards against the bug: should the import open a FIFO, which waits for a writer, one
    comes within a second or two and leaves at once, so that the test fails, not hangs."""
    done = threading.Event()

    def come_and_go() -> None:
        while not done.wait(1.5):
            for fifo in fifos:
                with contextlib.suppress(OSError):  # ENXIO: nobody is reading it, as it should be
                    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    thread = threading.Thread(target=come_and_go, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


@contextlib.contextmanager
def memory_cap(extra_bytes: int) -> Iterator[None]:
    """Guards against the bug: reading /dev/zero whole fails (MemoryError) once this process
    has `extra_bytes` more address space, instead of filling the machine's memory."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    cap = int(status["VmSize"].split()[0]) * 1024 + extra_bytes  # VmSize: 123456 kB
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def test_fifos_sockets_and_broken_links_get_a_row_and_are_never_opened(
    client: TestClient, tmp_path: Path, shared_faces: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A link to a FIFO made the import wait for a writer forever; Ctrl-C could not end it."""
    folder = tmp_path / "photos" / "ada"
    folder.mkdir(parents=True)
    shutil.copyfile(shared_faces / AMY / "amy1.png", folder / "amy1.png")
    os.mkfifo(folder / "pipe.jpg")
    os.mkfifo(tmp_path / "outside.fifo")
    (folder / "pipe-link.jpg").symlink_to(tmp_path / "outside.fifo")
    (folder / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    monkeypatch.chdir(folder)  # a socket's path is limited to about 100 bytes
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind("socket.png")
        uploads = count_uploads(client)
        with writers_for([folder / "pipe.jpg", tmp_path / "outside.fifo"]):
            summary = run_import(client, tmp_path / "photos")

    assert outcomes(summary.report) == {
        "ada/amy1.png": ("enrolled", ""),
        "ada/gone.jpg": ("error", "not_a_regular_file"),
        "ada/pipe-link.jpg": ("error", "not_a_regular_file"),
        "ada/pipe.jpg": ("error", "not_a_regular_file"),
        "ada/socket.png": ("error", "not_a_regular_file"),
    }
    messages = {p: r["message"] for p, r in read_report(summary.report).items()}
    assert messages["ada/gone.jpg"].startswith("The link leads to nothing")
    link = f"The link leads to {tmp_path / 'outside.fifo'}, a FIFO (named pipe), not a regular"
    assert messages["ada/pipe-link.jpg"].startswith(link)
    assert messages["ada/pipe.jpg"].startswith("It is a FIFO (named pipe), not a regular file")
    assert messages["ada/socket.png"].startswith("It is a socket")
    assert uploads == {"amy1.png": 1}
    assert summary.exit_code == 1


def test_a_link_to_a_device_is_never_read(
    client: TestClient, tmp_path: Path, shared_faces: Path
) -> None:
    """`ln -s /dev/zero zero.jpg` took the import past 2 GB of memory in 5 s."""
    folder = tmp_path / "photos" / "ada"
    folder.mkdir(parents=True)
    shutil.copyfile(shared_faces / AMY / "amy1.png", folder / "amy1.png")
    (folder / "zero.jpg").symlink_to("/dev/zero")
    uploads = count_uploads(client)

    with memory_cap(1 << 30):
        summary = run_import(client, tmp_path / "photos")

    assert outcomes(summary.report) == {
        "ada/amy1.png": ("enrolled", ""),
        "ada/zero.jpg": ("error", "not_a_regular_file"),
    }
    message = read_report(summary.report)["ada/zero.jpg"]["message"]
    assert message == (
        "The link leads to /dev/zero, a character device, not a regular file; it was not read."
    )
    assert uploads == {"amy1.png": 1}


def test_a_file_over_the_upload_limit_is_reported_not_sent(
    client: TestClient, tmp_path: Path, shared_faces: Path
) -> None:
    folder = tmp_path / "photos" / "ada"
    folder.mkdir(parents=True)
    photo = (shared_faces / AMY / "amy1.png").read_bytes()
    (folder / "at-the-limit.png").write_bytes(photo)
    (folder / "one-byte-over.png").write_bytes(photo + b"\0")  # still a good PNG
    (folder / "link-over.png").symlink_to(folder / "one-byte-over.png")
    uploads = count_uploads(client)

    summary = run_import(client, tmp_path / "photos", max_file_bytes=len(photo))

    assert outcomes(summary.report) == {
        "ada/at-the-limit.png": ("enrolled", ""),
        "ada/link-over.png": ("rejected", "payload_too_large"),
        "ada/one-byte-over.png": ("rejected", "payload_too_large"),
    }
    message = read_report(summary.report)["ada/one-byte-over.png"]["message"]
    assert message == (
        f"The file is larger than {len(photo)} bytes (FACE_MAX_UPLOAD_BYTES); not uploaded."
    )
    assert uploads == {"at-the-limit.png": 1}
    assert summary.exit_code == 0  # as when the service rejects it


def test_a_file_larger_than_its_size_says_is_read_no_further_than_the_limit(
    client: TestClient, tmp_path: Path
) -> None:
    """Files under /proc say they hold 0 bytes, as does a file that grows after the check.
    /proc/self/pagemap holds 8 bytes for each page of the address space: hundreds of GB."""
    folder = tmp_path / "photos" / "ada"
    folder.mkdir(parents=True)
    (folder / "pagemap.png").symlink_to("/proc/self/pagemap")
    assert (folder / "pagemap.png").stat().st_size == 0
    uploads = count_uploads(client)

    with memory_cap(1 << 30):
        summary = run_import(client, tmp_path / "photos", max_file_bytes=16)

    assert outcomes(summary.report) == {"ada/pagemap.png": ("rejected", "payload_too_large")}
    assert uploads == {}


def test_the_command_takes_the_upload_limit_from_its_settings(
    tmp_path: Path,
    models: Any,
    shared_faces: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """/v1/info does not publish the service's limit: FACE_MAX_UPLOAD_BYTES where the
    command runs says it."""
    folder = tmp_path / "photos" / "ada"
    folder.mkdir(parents=True)
    small, large = (shared_faces / AMY / name for name in ("amy1.png", "amy2.png"))
    shutil.copyfile(small, folder / "small.png")
    shutil.copyfile(large, folder / "large.png")
    assert small.stat().st_size < large.stat().st_size
    service_limit = 10 * large.stat().st_size  # the service would take both
    settings = Settings(
        data_dir=tmp_path / "data",
        embedder="arcface-mbf",
        device="cpu",
        max_upload_bytes=service_limit,
    )
    monkeypatch.setenv("FACE_MAX_UPLOAD_BYTES", str(small.stat().st_size))

    with served(create_app(settings, models)) as url:
        assert main(["import", str(tmp_path / "photos"), "--url", url]) == 0

    assert "1 enrolled, 0 skipped, 1 rejected" in capsys.readouterr().out
    assert outcomes(tmp_path / "import-report.csv") == {
        "ada/large.png": ("rejected", "payload_too_large"),
        "ada/small.png": ("enrolled", ""),
    }


def test_folder_links_are_followed_unless_they_lead_back_to_dir(
    client: TestClient, tmp_path: Path, shared_faces: Path
) -> None:
    """A subject folder that links to DIR or above it is a cycle: listing it took DIR's own
    files (or a whole disk's) for one subject's photos. Links elsewhere are followed."""
    library = tmp_path / "library"
    (library / "Ada").mkdir(parents=True)
    shutil.copyfile(shared_faces / AMY / "amy1.png", library / "Ada" / "amy1.png")
    shutil.copyfile(shared_faces / AMY / "amy3.png", library / "amy3.png")
    root = tmp_path / "photos"
    (root / "amy").mkdir(parents=True)
    shutil.copyfile(shared_faces / AMY / "amy2.png", root / "amy" / "amy2.png")
    (root / "amy" / "amy3.png").symlink_to(library / "amy3.png")  # a file outside DIR
    (root / "Ada").symlink_to(library / "Ada")  # a folder outside DIR
    shutil.copyfile(shared_faces / AMY / "amy4.png", root / "stray.png")  # not a subject's
    (root / "loop").symlink_to(root)
    (root / "up").symlink_to("../..")  # above DIR

    summary = run_import(client, root)

    assert outcomes(summary.report) == {
        "Ada/amy1.png": ("enrolled", ""),
        "amy/amy2.png": ("enrolled", ""),
        "amy/amy3.png": ("enrolled", ""),
        "loop": ("error", "folder_cycle"),
        "up": ("error", "folder_cycle"),
    }
    message = read_report(summary.report)["loop"]["message"]
    assert message == (
        f"The folder is a link to {root.resolve()}, which holds DIR itself; it was not listed."
    )
    subjects = client.get("/v1/subjects").json()["items"]
    assert sorted(s["name"] for s in subjects) == ["Ada", "amy"]

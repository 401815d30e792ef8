"""End to end over real HTTP: enrol, verify, identify, restart, and survive kill -9."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import torch

from app.pipeline.embedders.precision import native_bf16
from tests.e2e.conftest import Server
from tests.processes import wait_exited

pytestmark = pytest.mark.e2e


def enrol(client: httpx.Client, subject: str, name: str, data: bytes) -> httpx.Response:
    return client.post(f"/v1/subjects/{subject}/faces", files=[("files", (name, data))])


def identify_players(client: httpx.Client, images: Path) -> list[tuple[str | None, float]]:
    players = (images / "players.jpg").read_bytes()
    response = client.post("/v1/identify", files={"image": ("p.jpg", players)})
    assert response.status_code == 200, response.text
    return [
        (
            face["match"]["subject_id"] if face["match"] else None,
            face["candidates"][0]["similarity"],
        )
        for face in response.json()["faces"]
    ]


def test_enrol_verify_identify_and_restart(server: Server, package_images: Path) -> None:
    client = server.start()
    yao = client.post("/v1/subjects", json={"name": "Yao Ming"}).json()["id"]
    assert (
        enrol(client, yao, "y.jpg", (package_images / "yaoming.jpg").read_bytes()).status_code
        == 201
    )
    verdict = client.post(
        "/v1/verify",
        data={"subject_id": yao},
        files={"image": ("y.jpg", (package_images / "yaoming.jpg").read_bytes())},
    ).json()
    assert verdict["verified"] is True
    before = identify_players(client, package_images)
    assert [m for m, _ in before if m] == [yao]
    # `serve` bounds a request's headers (FACE_HTTP_MAX_HEADER_BYTES): a 4 MB one is refused
    # as it arrives, as JSON, and the service goes on serving.
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4_000_000)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 431 "), answer
    assert b'"code":"headers_too_large"' in answer.replace(b" ", b"")
    assert client.get("/v1/health").status_code == 200

    assert server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    assert "TorchScript copy to" in server.log.read_text()  # the first start saved its trace
    client = server.start()
    info = client.get("/v1/info").json()
    assert (info["subjects"], info["faces"], info["index_size"]) == (1, 1, 1)
    assert info["index_how"] == "loaded"  # saved on shutdown, not rebuilt
    # The restart loaded that trace: it never converted the network, so the service's
    # process never loaded torchvision (seconds of start-up), which the converters import.
    assert "TorchScript copy from" in server.log.read_text()
    assert server.process is not None
    maps = Path(f"/proc/{server.process.pid}/maps").read_text()
    assert "torch" in maps and "torchvision" not in maps
    # FACE_EMBED_PRECISION=auto: bf16 where this CPU computes it natively.
    assert info["precision"] == ("bf16" if native_bf16(torch.device("cpu")) else "fp32")
    # arcface-mbf's terms, where an operator sees them: /v1/info and the start-up log.
    assert "non-commercial research" in info["licence"]
    assert "arcface-mbf weights are licensed for non-commercial use" in server.log.read_text()
    assert client.get(f"/v1/subjects/{yao}").json()["face_count"] == 1
    assert identify_players(client, package_images) == before
    # Names, face crops and embeddings: readable by the service's user only.
    written = [server.data_dir, *server.data_dir.rglob("*")]
    assert {path.name for path in written} >= {"faces.db", "index"}
    for path in written:
        assert path.stat().st_mode & 0o077 == 0, f"{path} is open to group or others"


def test_kill_9_during_concurrent_enrolment_loses_nothing_acknowledged(
    tmp_path: Path, package_images: Path
) -> None:
    # Save the index every second, so kill -9 leaves a file that lags behind the DB.
    server = Server(tmp_path / "data", tmp_path / "server.log", FACE_INDEX_SAVE_INTERVAL_S="1")
    try:
        client = server.start()
        images = [(package_images / n).read_bytes() for n in ("yaoming.jpg", "gdp.jpg")]
        subjects = [
            client.post("/v1/subjects", json={"name": f"s{i}"}).json()["id"] for i in range(60)
        ]
        acknowledged: dict[int, str] = {}
        lock = threading.Lock()
        enough = threading.Event()

        def worker(i: int) -> None:
            try:
                with httpx.Client(base_url=server.url, timeout=30) as own:
                    response = own.post(
                        f"/v1/subjects/{subjects[i]}/faces",
                        files=[("files", ("x.jpg", images[i % 2]))],
                        params={"face": "largest"},
                    )
            except httpx.TransportError:
                return  # the server died mid-request: not acknowledged
            if response.status_code == 201:
                with lock:
                    acknowledged[response.json()["faces"][0]["id"]] = subjects[i]
                    if len(acknowledged) >= 15:
                        enough.set()

        with ThreadPoolExecutor(6) as pool:
            for i in range(len(subjects)):
                pool.submit(worker, i)
            assert enough.wait(timeout=120), "too few enrolments were acknowledged"
            children = server.child_pids()
            assert server.detection_pid() in children
            assert server.stop(signal.SIGKILL) == -signal.SIGKILL
        # The detection process notices its parent is gone and exits: no orphans.
        assert wait_exited(children) == []
        assert len(acknowledged) < len(subjects), "kill came after the burst; not a real test"

        client = server.start()
        for face_id, subject in acknowledged.items():
            faces = client.get(f"/v1/subjects/{subject}/faces").json()["faces"]
            assert face_id in [f["id"] for f in faces]
        info = client.get("/v1/info").json()
        assert info["faces"] >= len(acknowledged)
        assert info["index_size"] == info["faces"], info
        # Even subjects were enrolled with yaoming.jpg. Some enrolments commit but die
        # before their response, so the best match may be a Yao Ming subject that was
        # never acknowledged: compare against every Yao Ming subject, not only those.
        yao_subjects = set(subjects[0::2])
        matches = {m for m, _ in identify_players(client, package_images) if m}
        assert matches & yao_subjects, "identify finds none of the enrolled Yao Ming subjects"
        assert matches <= yao_subjects, f"a gdp.jpg subject matched a player: {matches}"
        yaoming = images[0]
        for subject in set(acknowledged.values()) & yao_subjects:
            verdict = client.post(
                "/v1/verify",
                data={"subject_id": subject},
                files={"image": ("y.jpg", yaoming)},
            ).json()
            assert verdict["verified"] is True, verdict
    finally:
        if server.process is not None:
            server.process.kill()
            server.process.wait(timeout=30)


def test_the_service_outlives_its_detection_process(server: Server, package_images: Path) -> None:
    client = server.start()
    yaoming = (package_images / "yaoming.jpg").read_bytes()
    subject = client.post("/v1/subjects", json={"name": "Yao Ming"}).json()["id"]
    assert enrol(client, subject, "y.jpg", yaoming).status_code == 201
    child = server.detection_pid()
    os.kill(child, signal.SIGKILL)
    assert wait_exited([child]) == []
    verdicts = []
    for _ in range(3):  # the service restarts the child and retries; or, failing, says 503
        response = client.post(
            "/v1/verify", data={"subject_id": subject}, files={"image": ("y.jpg", yaoming)}
        )
        verdicts.append(response.status_code)
        if response.status_code == 200:
            assert response.json()["verified"] is True
            break
        assert response.json()["error"]["code"] == "model_unavailable", response.text
    assert verdicts[-1] == 200, verdicts
    restarted = server.detection_pid()
    assert restarted != child
    children = server.child_pids()
    server.stop()
    assert wait_exited(children) == []

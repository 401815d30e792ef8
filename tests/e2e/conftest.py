"""A real `python -m app serve` process on a free port and a temp data folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from benchmarks.ports import free_port
from tests.processes import children_of, cmdline

REPO = Path(__file__).resolve().parents[2]


class Server:
    def __init__(self, data_dir: Path, log: Path, **env: str) -> None:
        self.data_dir = data_dir
        self.log = log
        self.env = env
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> httpx.Client:
        env = os.environ | {
            "FACE_DATA_DIR": str(self.data_dir),
            "FACE_EMBEDDER": "arcface-mbf",
            "FACE_DEVICE": "cpu",
            "FACE_TORCH_THREADS": "1",
            "OMP_WAIT_POLICY": "PASSIVE",
            **self.env,
        }
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app", "serve", "--port", str(self.port)],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        client = httpx.Client(base_url=self.url, timeout=60.0)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                if client.get("/v1/ready").status_code == 200:
                    return client
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError("server never became ready:\n" + self.log.read_text()[-3000:])

    def child_pids(self) -> list[int]:
        """Live processes the server started: face detection, multiprocessing's helper."""
        assert self.process is not None
        return children_of(self.process.pid)

    def detection_pid(self) -> int:
        (pid,) = [p for p in self.child_pids() if b"spawn_main" in cmdline(p)]
        return pid

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        code = self.process.wait(timeout=60)
        self.process = None
        return code


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    instance = Server(tmp_path / "data", tmp_path / "server.log")
    yield instance
    if instance.process is not None:
        instance.process.kill()
        instance.process.wait(timeout=30)

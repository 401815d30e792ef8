"""A real `python -m app serve` subprocess on a free port, and a gallery enrolled over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from benchmarks.photos import REPO, Photo
from benchmarks.ports import free_port


class ServiceProcess:
    """Starts the service on `data_dir` with FACE_* `env` overrides; stops it on exit.

    `tree` is the checkout whose code runs: this one, or another (a `git worktree` of an
    older commit) to compare against. FACE_* variables of the caller's environment do not
    reach the service: its settings are the defaults, these and `env` alone (an audit: a
    developer's FACE_BATCH_MAX_WAIT_MS, say, would have changed every row unrecorded). A
    `.env` file in `tree` still does: keep none where benchmarks run."""

    def __init__(
        self, data_dir: Path, env: dict[str, str] | None = None, tree: Path = REPO
    ) -> None:
        if not (tree / "app" / "__main__.py").is_file():
            raise ValueError(f"{tree} holds no app/__main__.py: not a checkout of this service")
        self.data_dir = data_dir
        self.tree = tree
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("FACE_")},
            "OMP_WAIT_POLICY": "PASSIVE",
            "FACE_DATA_DIR": str(data_dir),
            "FACE_EMBEDDER": "arcface-mbf",
            "FACE_DEVICE": "cpu",
            "FACE_API_KEYS": "",
            "FACE_LOG_LEVEL": "WARNING",
            **(env or {}),
        }
        self.started_at = 0.0
        self.listening_s: float | None = None  # until the first HTTP answer, ready or not
        self.ready_s: float | None = None  # until /v1/ready said 200 (GPU warm-up included)
        self._process: subprocess.Popen[bytes] | None = None
        self._log = data_dir / "service.log"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.started_at = time.perf_counter()
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "app", "serve", "--port", str(self.port)],
                cwd=self.tree,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 120.0, poll: float = 0.02) -> float:
        """Seconds from start() until /v1/ready answered 200."""
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=5.0) as http:
            while time.monotonic() < deadline:
                if self._process is not None and self._process.poll() is not None:
                    raise RuntimeError(f"service exited early:\n{self.log_tail()}")
                try:
                    status = http.get("/v1/ready").status_code
                except httpx.TransportError:
                    status = 0
                if status and self.listening_s is None:
                    self.listening_s = time.perf_counter() - self.started_at
                if status == 200:
                    self.ready_s = time.perf_counter() - self.started_at
                    return self.ready_s
                time.sleep(poll)
        raise TimeoutError(f"service not ready after {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def cpu_split(self) -> dict[str, float]:
        """CPU time (user + system, all threads) used so far by the service itself, and by
        its children together (the face detection process): which of them a load saturates."""
        if self._process is None:
            return {"service": 0.0, "children": 0.0}
        return process_tree_cpu_split(self._process.pid)

    def log_tail(self, lines: int = 30) -> str:
        if not self._log.exists():
            return ""
        return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> ServiceProcess:
        self.start()
        self.wait_ready()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def process_tree_cpu_split(root: int) -> dict[str, float]:
    """User + system CPU seconds of a process ("service") and of its live descendants
    together ("children"), from /proc."""
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent pid, CPU seconds)
    for path in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = path.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it exited meanwhile
            continue
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        stats[int(path.parent.name)] = (int(fields[1]), cpu)
    tree = {root}
    while True:
        grown = {pid for pid, (parent, _) in stats.items() if parent in tree} - tree
        if not grown:
            break
        tree |= grown
    children = sum(stats.get(pid, (0, 0.0))[1] for pid in tree - {root})
    return {"service": stats.get(root, (0, 0.0))[1], "children": children}


def enrol_gallery(url: str, photos: list[Photo], subjects: int) -> dict[str, str]:
    """Enrol the first photo of up to `subjects` identities; identity -> subject id."""
    enrolled: dict[str, str] = {}
    with httpx.Client(base_url=url, timeout=60.0) as http:
        for photo in photos:
            if len(enrolled) >= subjects or photo.identity in enrolled:
                continue
            subject = http.post("/v1/subjects", json={"name": photo.identity})
            subject.raise_for_status()
            subject_id = str(subject.json()["id"])
            files = {"files": ("face.jpg", photo.data, "image/jpeg")}
            response = http.post(f"/v1/subjects/{subject_id}/faces", files=files)
            if response.status_code == 201:
                enrolled[photo.identity] = subject_id
            else:  # e.g. a blurry crop fails the quality gate; the subject stays empty
                http.delete(f"/v1/subjects/{subject_id}")
    return enrolled


# Service settings compared by the HTTP benchmarks. "batched" is the shipped CPU default.
# "unbatched" is one inference thread using every core. On a few cores small models gain
# nothing from torch's intra-op threads, so the others run one torch thread per op and
# several inference threads, letting detection, embedding and decoding of different
# requests overlap on the cores; "batched" also lets concurrent requests share detection
# and embedding passes.
CONFIGS: dict[str, dict[str, str]] = {
    "unbatched": {"FACE_INFERENCE_WORKERS": "1", "FACE_BATCH_MAX_SIZE": "1"},
    "threads": {
        "FACE_INFERENCE_WORKERS": "4",
        "FACE_TORCH_THREADS": "1",
        "FACE_BATCH_MAX_SIZE": "1",
    },
    "batched": {
        "FACE_INFERENCE_WORKERS": "16",
        "FACE_TORCH_THREADS": "1",
        "FACE_BATCH_MAX_SIZE": "4",
        "FACE_BATCH_MAX_WAIT_MS": "2",
    },
}
# Batches of up to 8, the CPU's limit before stop 11 (with 8 threads then, as batched-w8 has).
# Interleaved against batches of 4, the same throughput with a longer tail
# (docs/benchmarks.md, section 2).
CONFIGS["batched-8"] = {**CONFIGS["batched"], "FACE_BATCH_MAX_SIZE": "8"}
# The shipped defaults until stop 22: 8 inference threads, so that of 16 clients half wait
# for a thread before the batching lanes (docs/benchmarks.md, section 2).
CONFIGS["batched-w8"] = {**CONFIGS["batched"], "FACE_INFERENCE_WORKERS": "8"}
# The shipped defaults, but embedding in fp32 where auto would pick bf16.
CONFIGS["batched-fp32"] = {**CONFIGS["batched"], "FACE_EMBED_PRECISION": "fp32"}
# The shipped defaults, but detecting in the service process, as before stop 8.
CONFIGS["batched-in-process"] = {**CONFIGS["batched"], "FACE_DETECTION_PROCESS": "false"}
# ... and also running the networks eagerly rather than as TorchScript.
CONFIGS["batched-eager"] = {**CONFIGS["batched-in-process"], "FACE_TORCHSCRIPT": "false"}
# On the first CUDA device: one inference thread (the GPU default until stop 11), and
# micro-batching with 8 threads and batches of up to 8 (the GPU default since; one torch
# thread each, as in every run of section 5, where the default gives each thread its share
# of the cores: 2 on a 16-core host), which ran
# several times slower on an H200 before every CUDA pass went to one device thread, and
# 1.5x faster after it (docs/benchmarks.md, section 5).
CONFIGS["gpu"] = {"FACE_DEVICE": "cuda", "FACE_INFERENCE_WORKERS": "1"}
CONFIGS["gpu-batched"] = {
    **CONFIGS["batched-w8"],
    "FACE_BATCH_MAX_SIZE": "8",
    "FACE_DEVICE": "cuda",
}
# ... and with 16 threads and batches of up to 16, now that every CUDA pass runs on one
# device thread (app/pipeline/device_thread.py).
CONFIGS["gpu-batched-16"] = {
    **CONFIGS["gpu-batched"],
    "FACE_INFERENCE_WORKERS": "16",
    "FACE_BATCH_MAX_SIZE": "16",
}
# gpu-batched, with the networks eager rather than TorchScript.
CONFIGS["gpu-batched-eager"] = {**CONFIGS["gpu-batched"], "FACE_TORCHSCRIPT": "false"}

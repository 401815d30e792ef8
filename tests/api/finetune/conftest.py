"""A gallery of real faces enrolled once through the API, copied for every fine-tuning test."""

from __future__ import annotations

import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import enrol, new_subject, open_client

# face-api.js's eight people: 150 px photos, so MTCNN is quick. Photo 5 of each is held
# back as a probe (bernadette5 holds no detectable face, so she is never probed).
FOLDER = "faceapi_js/"
PROBED = ("amy", "penny", "raj")
# Small enough for a 2-core CI box: head only, one epoch, accumulation over micro-batches.
QUICK_JOB = {
    "epochs": 1,
    "micro_batch_size": 8,
    "accumulation_steps": 2,
    "train_layers": "head",
    "device": "cpu",
}


@dataclass(frozen=True)
class Gallery:
    data_dir: Path
    subjects: dict[str, str]  # identity -> subject id
    probes: dict[str, Path]  # identity -> held-back photo
    faces: int


@pytest.fixture(scope="session")
def gallery(
    tmp_path_factory: pytest.TempPathFactory,
    models: Any,
    manifest: list[dict[str, str]],
    shared_faces: Path,
) -> Gallery:
    by_identity: dict[str, list[str]] = defaultdict(list)
    for row in manifest:
        if row["path"].startswith(FOLDER) and row["identity"] not in ("noface", "multi"):
            by_identity[row["identity"]].append(row["path"])
    root = tmp_path_factory.mktemp("finetune-gallery")
    client = open_client(root / "data", models, models_dir=root / "models")
    subjects, probes, faces = {}, {}, 0
    try:
        for identity, paths in sorted(by_identity.items()):
            assert len(paths) >= 3, identity
            *enrolled, held_back = sorted(paths)
            subjects[identity] = new_subject(client, identity)
            files = [(Path(p).name, (shared_faces / p).read_bytes()) for p in enrolled]
            response = enrol(client, subjects[identity], *files)
            assert response.status_code == 201, response.text
            faces += len(enrolled)
            probes[identity] = shared_faces / held_back
    finally:
        client.__exit__(None, None, None)
    return Gallery(root / "data", subjects, probes, faces)


@pytest.fixture(scope="session")
def external_pairs(
    write_pairs_subset: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The shared pairs among face_recognition's photos: people not in the gallery."""
    path = tmp_path_factory.mktemp("external") / "pairs.csv"
    return write_pairs_subset(lambda photo: photo.startswith("face_recognition/"), path)


ClientFactory = Callable[..., TestClient]


@pytest.fixture
def finetune_client(tmp_path: Path, gallery: Gallery, models: Any) -> Iterator[ClientFactory]:
    """Opens an app on a private copy of the gallery; call again to restart on the same copy."""
    data_dir = tmp_path / "data"
    shutil.copytree(gallery.data_dir, data_dir)
    opened: list[TestClient] = []

    def factory(**overrides: Any) -> TestClient:
        settings = {"models_dir": tmp_path / "models", "finetune_poll_interval_s": 0.2}
        client = open_client(data_dir, models, **(settings | overrides))
        opened.append(client)
        return client

    yield factory
    for client in opened:
        client.__exit__(None, None, None)


def wait_for_job(
    client: TestClient, job_id: str, states: tuple[str, ...], timeout: float = 240.0
) -> dict[str, Any]:
    """Poll the job until its state is one of `states`; every body seen is kept in 'seen'."""
    deadline = time.monotonic() + timeout
    seen: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        response = client.get(f"/v1/admin/jobs/{job_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        seen.append(body)
        if body["state"] in states:
            return body | {"seen": seen}
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never reached {states}: {seen[-1]}")


def wait_serving(client: TestClient, version: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info: dict[str, Any] = client.get("/v1/info").json()
        if info["model_version"] == version:
            return info
        time.sleep(0.1)
    raise AssertionError(f"{version} never served; info says {info['model_version']}")


def identify(client: TestClient, photo: Path) -> dict[str, Any] | None:
    """The match for the one face of `photo`, or None."""
    response = client.post("/v1/identify", files={"image": (photo.name, photo.read_bytes())})
    assert response.status_code == 200, response.text
    faces = response.json()["faces"]
    assert len(faces) == 1, faces
    match: dict[str, Any] | None = faces[0]["match"]
    return match

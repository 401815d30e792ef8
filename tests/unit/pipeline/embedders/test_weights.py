"""Checksums, state_dict reading and fetching weights (from file:// URLs, never the network)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from app.config import REPO_MODELS_DIR
from app.errors import ChecksumMismatch, ModelError
from app.pipeline.embedders import ModelSpec, load_model_specs
from app.pipeline.embedders.weights import (
    fetch_model,
    locate_weights,
    read_state_dict,
    sha256_file,
    verify_file,
)
from tests.durable import Synced, watch_fsync


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    """A 2.5 MiB source file: more than one read chunk."""
    path = tmp_path / "source" / "weights.bin"
    path.parent.mkdir()
    path.write_bytes(bytes(range(256)) * 10_240)
    return path


def _spec_for(payload: Path, sha256: str | None = None) -> ModelSpec:
    spec = load_model_specs(REPO_MODELS_DIR)["facenet-vggface2"]
    return spec.model_copy(
        update={
            "source": payload.as_uri(),
            "sha256": sha256 or sha256_file(payload),
            "size_bytes": payload.stat().st_size,
        }
    )


def test_sha256_file_matches_hashlib(payload: Path) -> None:
    assert sha256_file(payload) == hashlib.sha256(payload.read_bytes()).hexdigest()


def test_verify_file(payload: Path) -> None:
    verify_file(payload, sha256_file(payload))
    with pytest.raises(ChecksumMismatch) as caught:
        verify_file(payload, "f" * 64)
    assert caught.value.details["expected"] == "f" * 64
    assert caught.value.details["actual"] == sha256_file(payload)
    with pytest.raises(ModelError, match="cannot read"):
        verify_file(payload.with_name("absent.bin"), "f" * 64)


def test_fetch_downloads_checks_and_places_the_file(
    tmp_path: Path, payload: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models_dir = tmp_path / "models"
    spec = _spec_for(payload)
    synced = watch_fsync(monkeypatch)
    path = fetch_model(spec, models_dir, progress=False)
    monkeypatch.undo()
    assert path == models_dir / spec.file
    assert path.read_bytes() == payload.read_bytes()
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    # On disk before the rename, and the rename too: a power cut leaves no empty weights.
    assert synced == [Synced(False, path.stat().st_ino), Synced(True, path.parent.stat().st_ino)]


def test_fetch_skips_a_file_already_intact(tmp_path: Path, payload: Path) -> None:
    spec = _spec_for(payload)
    fetch_model(spec, tmp_path, progress=False)
    gone = spec.model_copy(update={"source": (tmp_path / "nowhere.bin").as_uri()})
    assert fetch_model(gone, tmp_path, progress=False).read_bytes() == payload.read_bytes()


def test_fetch_replaces_a_corrupt_file(tmp_path: Path, payload: Path) -> None:
    spec = _spec_for(payload)
    (tmp_path / spec.file).parent.mkdir(parents=True)
    (tmp_path / spec.file).write_bytes(b"truncated")
    assert fetch_model(spec, tmp_path, progress=False).read_bytes() == payload.read_bytes()


def test_fetch_with_wrong_checksum_leaves_nothing(tmp_path: Path, payload: Path) -> None:
    models_dir = tmp_path / "models"
    spec = _spec_for(payload, sha256="0" * 64)
    with pytest.raises(ChecksumMismatch, match="0" * 64):
        fetch_model(spec, models_dir, progress=False)
    assert not any(p.is_file() for p in models_dir.rglob("*"))


def test_fetch_from_unreachable_source_leaves_nothing(tmp_path: Path, payload: Path) -> None:
    spec = _spec_for(payload).model_copy(update={"source": (tmp_path / "absent").as_uri()})
    with pytest.raises(ModelError, match="cannot download"):
        fetch_model(spec, tmp_path / "models", progress=False)
    assert not any(p.is_file() for p in (tmp_path / "models").rglob("*"))


def test_fetch_of_a_package_model_only_verifies_it(tmp_path: Path) -> None:
    spec = load_model_specs(REPO_MODELS_DIR)["arcface-mbf"]
    path = fetch_model(spec, tmp_path, progress=False)
    assert path == locate_weights(spec, tmp_path)
    assert path.parts[-2:] == ("model", "w600k_mbf.onnx")
    assert not any(tmp_path.iterdir())


def test_package_model_of_a_missing_package_is_a_model_error(tmp_path: Path) -> None:
    spec = load_model_specs(REPO_MODELS_DIR)["arcface-mbf"]
    spec = spec.model_copy(update={"package": "no-such-package-here"})
    with pytest.raises(ModelError, match="not installed"):
        locate_weights(spec, tmp_path)


def test_read_state_dict_refuses_what_is_not_one(tmp_path: Path) -> None:
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a state_dict"):
        read_state_dict(tmp_path / "list.pt")
    with pytest.raises(ModelError, match="cannot read"):
        read_state_dict(tmp_path / "junk.pt")

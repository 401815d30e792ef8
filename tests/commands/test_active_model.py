"""The offline commands embed with the model the service serves, fine-tuned or not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from app.commands.file_embeddings import active_embedder
from app.config import Settings
from app.gallery import models_repo
from app.gallery.db import make_engine, make_session_factory, migrate
from app.training.checkpoints import save_checkpoint


def test_a_promoted_model_is_the_one_the_commands_use(
    models: Any, package_images: Path, tmp_path: Path
) -> None:
    settings = Settings(
        embedder="arcface-mbf", device="cpu", data_dir=tmp_path / "data", models_dir=tmp_path / "m"
    )
    packaged = models.embedder
    assert active_embedder(settings, packaged) is packaged  # no database yet
    assert not settings.data_dir.exists(), "looking must not create a database"

    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    sessions = make_session_factory(engine)
    assert active_embedder(settings, packaged) is packaged  # a database, no activation

    # A "fine-tuned" checkpoint: the packaged weights with the last layer scaled.
    state = {k: v.clone() for k, v in packaged.module.state_dict().items()}
    last = [k for k, v in state.items() if v.is_floating_point() and v.ndim == 2][-1]
    state[last] = state[last] * torch.linspace(0.5, 1.5, state[last].shape[0])[:, None]
    info = save_checkpoint(settings.models_dir / "finetuned" / "ft1", state, {})
    version = f"arcface-mbf@{info.sha256[:12]}"  # versions name their weights
    with sessions.begin() as session:
        models_repo.ensure_model(
            session,
            version,
            "arcface-mbf",
            info.sha256,
            weights_path=Path("finetuned/ft1/weights.pt"),
            base_version=packaged.version,
        )
        models_repo.activate(session, version)
    engine.dispose()

    serving = active_embedder(settings, packaged)
    assert serving.version == version
    face = np.asarray(Image.open(package_images / "yaoming.jpg").convert("RGB").resize((112, 112)))
    before, after = packaged.embed([face])[0], serving.embed([face])[0]
    assert float(before @ after) < 0.9999  # really the other weights


def test_a_model_row_cannot_point_outside_the_models_folder(models: Any, tmp_path: Path) -> None:
    from app.errors import ModelError
    from app.gallery.orm import ModelVersion
    from app.services.active_model import load_version

    settings = Settings(embedder="arcface-mbf", device="cpu", models_dir=tmp_path / "m")
    outside = tmp_path / "elsewhere" / "weights.pt"
    outside.parent.mkdir()
    torch.save(models.embedder.module.state_dict(), outside)
    row = ModelVersion(
        id="arcface-mbf@0123456789ab",
        embedder="arcface-mbf",
        sha256="0" * 64,
        weights_path="../elsewhere/weights.pt",
    )
    with pytest.raises(ModelError, match="outside the models folder"):
        load_version(settings, row, torch.device("cpu"))

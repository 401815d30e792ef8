"""Enrolment across a model swap: vectors always come from the model that serves now."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from app.config import Settings
from app.errors import FaceServiceError, NoFace, NotReady
from app.index import FaceIndex
from app.pipeline.align import FACENET_160
from app.pipeline.analyzer import FacePipeline
from app.services import enrolment
from app.services.enrolment import _current_vectors, prepare_enrolment
from app.services.probes import Upload
from app.services.runtime import quality_limits
from app.state import Runtime, Thresholds


@pytest.fixture
def runtime(models: Any) -> Runtime:
    pipeline = FacePipeline(models.detector, models.embedder, quality_limits(Settings()))
    index = FaceIndex(512, models.embedder.version)
    return Runtime(pipeline=pipeline, index=index, thresholds=Thresholds(0.3, 0.4))


def test_vectors_are_recomputed_when_the_model_changed(
    runtime: Runtime, package_images: Path
) -> None:
    upload = Upload("yao.jpg", (package_images / "yaoming.jpg").read_bytes())
    enrolment = prepare_enrolment(runtime.pipeline, Settings(), [upload], None)
    assert enrolment.model_version == runtime.model_version
    assert _current_vectors(runtime, enrolment) is enrolment.vectors

    stale = replace(enrolment, vectors=np.zeros_like(enrolment.vectors), model_version="old@1")
    fresh = _current_vectors(runtime, stale)
    np.testing.assert_allclose(fresh, enrolment.vectors, atol=1e-5)

    other_template = replace(stale, template=FACENET_160)
    with pytest.raises(NotReady):
        _current_vectors(runtime, other_template)


def test_rejected_uploads_leave_no_frames_holding_their_images(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Enrolment reserves one image at a time in the pixel budget, so a rejected upload's
    # decoded image must not live on in its error's traceback until the request ends.
    blank = io.BytesIO()
    Image.new("RGB", (320, 240), "grey").save(blank, format="PNG")
    uploads = [Upload(f"blank{i}.png", blank.getvalue() + bytes([i])) for i in range(3)]
    caught: list[FaceServiceError] = []
    original = enrolment.detached

    def spy(error: FaceServiceError) -> FaceServiceError:
        caught.append(original(error))
        return caught[-1]

    monkeypatch.setattr(enrolment, "detached", spy)
    with pytest.raises(NoFace, match="3 of 3 files rejected"):
        prepare_enrolment(runtime.pipeline, Settings(), uploads, None)
    assert len(caught) == 3
    for error in caught:
        assert error.__traceback__ is None
        assert error.__cause__ is None and error.__context__ is None

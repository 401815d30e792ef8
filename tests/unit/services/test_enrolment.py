"""Enrolment across a model swap: vectors always come from the model that serves now."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.config import Settings
from app.errors import NotReady
from app.index import FaceIndex
from app.pipeline.align import FACENET_160
from app.pipeline.analyzer import FacePipeline
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

"""trace_module: a checked TorchScript copy, or None and the eager module keeps running."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from app.pipeline.detect import FaceDetector
from app.pipeline.torchscript import trace_module
from app.pipeline.types import ImageArray


class SignFlip(nn.Module):
    """Data-dependent control flow: a trace records one branch only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 if float(x.sum()) > 0 else -x


class Words(nn.Module):
    def forward(self, x: torch.Tensor) -> str:
        return "not a tensor"


def test_a_traced_network_matches_the_module() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.PReLU(4), nn.BatchNorm2d(4)).eval()
    examples = [torch.randn(2, 3, 9, 9), torch.randn(1, 3, 12, 7)]
    traced = trace_module(net, examples)
    assert isinstance(traced, torch.jit.ScriptModule)
    x = torch.randn(3, 3, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), net(x), atol=1e-5, rtol=1e-4)


def test_a_trace_that_differs_on_an_example_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    examples = [torch.ones(1, 3), -torch.ones(1, 3)]
    assert trace_module(SignFlip(), examples) is None
    assert "running SignFlip eagerly" in caplog.text


def test_a_network_that_cannot_be_traced_is_refused() -> None:
    assert trace_module(Words(), [torch.ones(1)]) is None


def test_examples_are_required() -> None:
    with pytest.raises(ValueError, match="example"):
        trace_module(nn.Identity(), [])


def test_traced_mtcnn_gives_the_same_faces(
    detector: FaceDetector,
    package_images: Path,
    yaoming: ImageArray,
    load_image: Callable[[Path], ImageArray],
) -> None:
    players = load_image(package_images / "players.jpg")
    eager = FaceDetector(torch.device("cpu"), torchscript=False)
    for net in ("pnet", "rnet", "onet"):
        assert isinstance(getattr(detector._mtcnn, net), torch.jit.ScriptModule)
        assert not isinstance(getattr(eager._mtcnn, net), torch.jit.ScriptModule)
    for image in (players, yaoming):
        traced_faces, eager_faces = detector.detect(image), eager.detect(image)
        assert len(traced_faces) == len(eager_faces) > 0
        for a, b in zip(traced_faces, eager_faces, strict=True):
            np.testing.assert_allclose(a.box, b.box, atol=1e-3)
            np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-3)
            assert a.probability == pytest.approx(b.probability, abs=1e-5)


class _Branchy(torch.nn.Module):
    """Converts a tensor to a Python bool while traced, as onnx2torch's PReLU does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(200):
            x = torch.relu(x) if bool(x.sum() > -1e9) else x
        return x


def test_concurrent_traces_keep_their_warnings_and_the_process_filters() -> None:
    """Each trace used to hide its TracerWarnings with warnings.catch_warnings, which swaps
    the process's filters: two traces at once (a model swap's beside a request's first
    embed) restored each other's, so TracerWarnings reached the log and the process could
    be left with every warning ignored. Its filters are now added once, for good."""
    examples = [torch.ones(2, 8)]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert trace_module(_Branchy().eval(), examples) is not None
        settled = list(warnings.filters)
        with ThreadPoolExecutor(6) as pool:
            traced = list(pool.map(lambda _: trace_module(_Branchy().eval(), examples), range(12)))
        after = list(warnings.filters)
        warnings.warn("a warning of someone else's", UserWarning, stacklevel=1)
    assert all(one is not None for one in traced)
    assert [str(w.message) for w in seen] == ["a warning of someone else's"]
    assert after == settled

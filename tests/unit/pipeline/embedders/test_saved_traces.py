"""The service's saved TorchScript copies: loaded on a restart without building the network,
and only where they fit the weights, precision and versions they were traced with."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from app.config import REPO_MODELS_DIR
from app.pipeline.embedders import Embedder, create_embedder, saved_traces
from app.pipeline.embedders.saved_traces import (
    KEEP_PER_EMBEDDER,
    MAGIC,
    SavedTraces,
    _checked_payload,
    trace_key,
)
from app.pipeline.embedders.weights import sha256_file
from app.pipeline.types import AlignTemplate, ImageArray

AlignFaces = Callable[[str, AlignTemplate], list[ImageArray]]  # the conftest fixture
CPU = torch.device("cpu")
REPO = Path(__file__).resolve().parents[4]


def _serving(saved: SavedTraces, precision: str = "fp32") -> Embedder:
    """As the service loads and freezes its embedder (app/services/runtime.py)."""
    embedder = create_embedder(
        "arcface-mbf", REPO_MODELS_DIR, CPU, precision=precision, saved=saved
    )
    embedder.freeze_for_serving(saved)
    return embedder


def _files(saved: SavedTraces) -> list[Path]:
    return sorted(saved.folder.glob("*.pt"))


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the fp32 copy, traced once for the module's tests."""
    folder = tmp_path_factory.mktemp("seeded") / "torchscript"
    _serving(SavedTraces(folder))
    return folder


@pytest.fixture
def saved(tmp_path: Path, seeded: Path) -> SavedTraces:
    """A service's folder that holds the fp32 copy (a copy of `seeded`)."""
    folder = tmp_path / "cache" / "torchscript"
    shutil.copytree(seeded, folder)
    return SavedTraces(folder)


@pytest.fixture
def empty(tmp_path: Path) -> SavedTraces:
    """A service's folder before its first start."""
    return SavedTraces(tmp_path / "fresh" / "torchscript")


def test_a_restart_loads_the_copy_and_never_builds_the_network(
    empty: SavedTraces, align_faces: AlignFaces, caplog: pytest.LogCaptureFixture
) -> None:
    saved = empty
    first = _serving(saved)
    assert first._module is not None  # no copy yet: converted, traced and saved
    [path] = _files(saved)
    assert path.name.startswith("arcface-mbf-")
    assert path.stat().st_mode & 0o077 == 0  # the service's own, like the rest of its data
    faces = align_faces("players.jpg", first.template)

    caplog.set_level(logging.INFO)
    restarted = _serving(saved)
    assert restarted._module is None  # no ONNX conversion, no trace
    assert "loaded arcface-mbf@" in caplog.text
    np.testing.assert_array_equal(restarted.embed(faces), first.embed(faces))
    # Fine-tuning and evaluation still get the network itself, built when first asked for.
    assert isinstance(restarted.module, torch.nn.Module)
    assert restarted._module is not None
    assert _files(saved) == [path]


def test_the_service_process_imports_no_converter_once_a_copy_is_saved(
    saved: SavedTraces,
) -> None:
    """onnx2torch and facenet-pytorch import torchvision, which imports torch._dynamo: 3.5
    of the 12 s a start took on a 2-core VM. With a saved copy, the service's own process
    (detection runs in a child) imports none of them."""
    code = (
        "import sys, torch\n"
        "import app.main, app.services.runtime\n"  # what `serve` imports
        "from app.config import REPO_MODELS_DIR\n"
        "from app.pipeline.embedders import create_embedder\n"
        "from pathlib import Path\n"
        "from app.pipeline.embedders.saved_traces import SavedTraces\n"
        f"saved = SavedTraces(Path({str(saved.folder)!r}))\n"
        "e = create_embedder('arcface-mbf', REPO_MODELS_DIR, torch.device('cpu'), saved=saved)\n"
        "e.freeze_for_serving(saved)\n"
        "print(e._module is None, sorted(m for m in ('torchvision', 'onnx2torch', 'onnx', "
        "'facenet_pytorch', 'torch._dynamo') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=os.environ | {"PYTHONPATH": str(REPO)},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True []"


def test_each_setup_has_its_own_copy_and_the_least_recently_used_goes(
    saved: SavedTraces,
) -> None:
    fp32 = _serving(saved)
    bf16 = create_embedder("arcface-mbf", REPO_MODELS_DIR, CPU, precision="bf16")
    assert trace_key(bf16)["precision"] == "bf16" != trace_key(fp32)["precision"]
    assert saved.load(bf16) is None  # the fp32 copy does not stand in for it
    tuned = {}
    for digit in "abc":  # as fine-tuned weights would be: a copy each
        embedder = create_embedder("arcface-mbf", REPO_MODELS_DIR, CPU)
        embedder.weights_sha256 = digit * 64
        embedder.freeze_for_serving(saved)
        tuned[digit] = embedder
        if digit == "a":
            assert saved.load(fp32) is not None  # used now: "a" is the least recently used
    assert len(_files(saved)) == KEEP_PER_EMBEDDER == 3
    assert saved.load(tuned["a"]) is None
    assert all(saved.load(e) is not None for e in (fp32, tuned["b"], tuned["c"]))


def test_a_fine_tuned_model_restarts_from_its_copy_without_building_the_packaged_one(
    empty: SavedTraces, tmp_path: Path, align_faces: AlignFaces
) -> None:
    """Reviews: the service loads the packaged weights before it switches to a fine-tuned
    model, and converted the packaged network at every start (imports and all) once its
    copy was gone. It now leaves it unbuilt (build=False) until it serves."""
    saved = empty
    source = create_embedder("arcface-mbf", REPO_MODELS_DIR, CPU)
    checkpoint = tmp_path / "tuned.pt"
    state = {
        k: v * 1.01 if v.is_floating_point() else v for k, v in source.module.state_dict().items()
    }
    torch.save(state, checkpoint)
    sha = sha256_file(checkpoint)

    def start() -> tuple[Embedder, Embedder]:
        packaged = create_embedder("arcface-mbf", REPO_MODELS_DIR, CPU, saved=saved, build=False)
        tuned = create_embedder(
            "arcface-mbf", REPO_MODELS_DIR, CPU, checkpoint, expected_sha256=sha, saved=saved
        )
        tuned.freeze_for_serving(saved)
        return packaged, tuned

    packaged, first = start()
    assert packaged._module is None  # never built: it never served
    faces = align_faces("yaoming.jpg", first.template)
    packaged, again = start()
    assert packaged._module is None and again._module is None
    np.testing.assert_array_equal(again.embed(faces), first.embed(faces))
    assert np.abs(again.embed(faces) - source.embed(faces)).max() > 1e-3


def test_the_service_loads_the_packaged_network_unbuilt(tmp_path: Path) -> None:
    from app.config import Settings
    from app.services.loaded_models import load_models

    settings = Settings(
        data_dir=tmp_path, embedder="arcface-mbf", device="cpu", detection_process=False
    )
    assert load_models(settings, serving=True).embedder._module is None
    assert load_models(settings).embedder._module is not None  # a command's: built at once


def test_a_trace_built_before_freezing_is_saved_too(
    empty: SavedTraces, align_faces: AlignFaces
) -> None:
    """A review: a GPU warm-up, or re-embedding stored crops on a model swap, embeds before
    freeze_for_serving, which then found a runner and saved nothing."""
    saved = empty
    embedder = create_embedder("arcface-mbf", REPO_MODELS_DIR, CPU, saved=saved)
    faces = align_faces("yaoming.jpg", embedder.template)
    before = embedder.embed(faces)  # traces
    embedder.freeze_for_serving(saved)
    restarted = _serving(saved)
    assert restarted._module is None
    np.testing.assert_array_equal(restarted.embed(faces), before)


def test_a_copy_saved_by_other_code_is_not_used(
    saved: SavedTraces, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The key holds a digest of the code that builds and traces networks: an upgrade that
    changes it must not serve the old code's traces."""
    _serving(saved)
    assert trace_key(_serving(saved))["code"] == saved_traces._code_digest()
    monkeypatch.setattr(saved_traces, "_code_digest", lambda: "0" * 64)
    caplog.set_level(logging.INFO)
    assert _serving(saved)._module is not None
    assert "no saved TorchScript copy" in caplog.text


@pytest.mark.parametrize("mode", [0o602, 0o666])
def test_a_copy_every_user_may_write_is_refused(
    mode: int, saved: SavedTraces, caplog: pytest.LogCaptureFixture
) -> None:
    embedder = _serving(saved)
    [path] = _files(saved)
    path.chmod(mode)
    assert saved.load(embedder) is None
    assert "every user may write it" in caplog.text
    # Group-writable is what Kubernetes' fsGroup makes of volume files at every mount: a
    # review found the stricter check turned the copies off there for good.
    path.chmod(0o660)
    assert saved.load(embedder) is not None


def test_the_key_names_the_weights_and_the_versions(saved: SavedTraces) -> None:
    embedder = _serving(saved)
    key = trace_key(embedder)
    assert key["weights_sha256"] == embedder.weights_sha256
    assert key["torch"] == torch.__version__
    assert key["onnx2torch"] not in ("", "-")
    assert key["device"] == "cpu"


def test_a_copy_saved_for_other_weights_is_refused(
    saved: SavedTraces, caplog: pytest.LogCaptureFixture
) -> None:
    embedder = _serving(saved)
    [path] = _files(saved)
    # Fine-tuned weights get a file name of their own; this one is put in its place.
    tuned = create_embedder("arcface-mbf", REPO_MODELS_DIR, CPU)
    tuned.weights_sha256 = "f" * 64
    path.rename(saved._path(tuned.name, trace_key(tuned)))
    assert saved.load(tuned) is None
    assert "saved for another setup" in caplog.text
    assert saved.load(embedder) is None  # its own file is gone


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_copy_is_traced_afresh_and_replaced(
    damage: str, saved: SavedTraces, align_faces: AlignFaces, caplog: pytest.LogCaptureFixture
) -> None:
    first = _serving(saved)
    [path] = _files(saved)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:  # one bit of a weight: torch.jit.load does not check the zip's CRCs
        data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    again = _serving(saved)
    assert "not using the saved TorchScript copy" in caplog.text
    assert again._module is not None  # traced afresh
    faces = align_faces("yaoming.jpg", first.template)
    np.testing.assert_allclose(again.embed(faces), first.embed(faces), atol=1e-6)
    assert saved.load(again) is not None  # and saved again, whole


def test_a_copy_that_gives_other_outputs_is_refused(
    saved: SavedTraces, caplog: pytest.LogCaptureFixture
) -> None:
    """The check output stored with the copy, from when the trace was checked against the
    network: a copy that no longer reproduces it is not used."""
    embedder = _serving(saved)
    [path] = _files(saved)
    example = embedder.trace_examples()[0]
    other = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(example[0].numel(), 512))
    traced = torch.jit.trace(other.eval(), example)  # type: ignore[no-untyped-call]
    # The right key, check output and sha256, around another network.
    extra = {"face_service_key.json": "", "face_service_check.npy": ""}
    torch.jit.load(io.BytesIO(_checked_payload(path.read_bytes())), _extra_files=extra)  # type: ignore[no-untyped-call]
    payload = io.BytesIO()
    torch.jit.save(traced, payload, _extra_files=extra)  # type: ignore[no-untyped-call]
    digest = hashlib.sha256(payload.getvalue()).hexdigest().encode()
    path.write_bytes(MAGIC + digest + b"\n" + payload.getvalue())
    assert saved.load(embedder) is None
    assert "the trace differs from the module" in caplog.text


def test_a_folder_that_cannot_be_written_only_costs_the_trace(
    tmp_path: Path, align_faces: AlignFaces, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the folder should be")
    saved = SavedTraces(blocker / "torchscript")
    embedder = _serving(saved)
    assert "cannot save the TorchScript copy" in caplog.text
    faces = align_faces("yaoming.jpg", embedder.template)
    assert embedder.embed(faces).shape == (len(faces), embedder.embedding_dim)


def test_without_torchscript_nothing_is_saved_or_loaded(saved: SavedTraces) -> None:
    _serving(saved)
    eager = create_embedder("arcface-mbf", REPO_MODELS_DIR, CPU, torchscript=False, saved=saved)
    assert eager._module is not None
    eager.freeze_for_serving(saved)
    assert len(_files(saved)) == 1


def test_saving_and_loading_raise_no_deprecation_warnings(saved: SavedTraces) -> None:
    """torch.jit.save and load warn that they are deprecated; the rehearsal's log showed
    the save's warning in a test whose filters had been reset."""
    embedder = _serving(saved)
    traced = saved.load(embedder)
    assert traced is not None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        saved.store(embedder, traced)
        assert saved.load(embedder) is not None
    assert [str(w.message) for w in caught] == []

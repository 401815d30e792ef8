from __future__ import annotations

import hashlib
import json
import os
import pickle

import pytest
import torch

from app.training.checkpoints import load_checkpoint, save_checkpoint


class RunsCodeWhenUnpickled:
    """Stand-in for a malicious pickle: unpickling it creates a directory."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_round_trip(tmp_path, make_model):
    state = make_model().state_dict()
    info = save_checkpoint(tmp_path / "ckpt", state, {"model": "tiny", "epoch": 3})
    loaded, metadata = load_checkpoint(tmp_path / "ckpt")

    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert metadata["model"] == "tiny" and metadata["epoch"] == 3
    assert (
        metadata["sha256"]
        == info.sha256
        == hashlib.sha256(info.weights_path.read_bytes()).hexdigest()
    )
    assert metadata["file"] == "weights.pt" and metadata["created_at"] == info.created_at
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "checkpoint.json",
        "weights.pt",
    ]


def test_tampered_weights_are_refused(tmp_path, make_model):
    info = save_checkpoint(tmp_path, make_model().state_dict(), {})
    data = bytearray(info.weights_path.read_bytes())
    data[-10] ^= 0xFF
    info.weights_path.write_bytes(bytes(data))

    with pytest.raises(ValueError, match="sha256"):
        load_checkpoint(tmp_path)


def test_pickled_objects_are_refused_even_with_a_matching_sha256(tmp_path):
    marker = tmp_path / "code-ran"
    weights = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2), "payload": RunsCodeWhenUnpickled(str(marker))}, weights)
    sha256 = hashlib.sha256(weights.read_bytes()).hexdigest()
    (tmp_path / "checkpoint.json").write_text(json.dumps({"sha256": sha256, "file": "weights.pt"}))

    with pytest.raises(ValueError, match="more than tensors") as caught:
        load_checkpoint(tmp_path)
    assert isinstance(caught.value.__cause__, pickle.UnpicklingError)
    assert not marker.exists()

    # What weights_only=True prevents: a plain load runs the payload.
    torch.load(weights, weights_only=False)
    assert marker.exists()


def test_reserved_or_unserialisable_metadata_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(tmp_path / "a", {}, {"sha256": "x"})
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path / "b", {}, {"when": object()})
    assert list(tmp_path.iterdir()) == []


def test_file_name_in_metadata_cannot_escape_the_directory(tmp_path):
    save_checkpoint(tmp_path / "ckpt", {}, {})
    path = tmp_path / "ckpt" / "checkpoint.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "file": "../weights.pt"}))
    with pytest.raises(ValueError, match="plain file name"):
        load_checkpoint(tmp_path / "ckpt")


def test_checkpoint_files_are_private_whatever_the_umask(tmp_path, make_model):
    # `finetune` run from a shell keeps the shell's umask, not the service's private one.
    previous = os.umask(0o022)
    try:
        info = save_checkpoint(tmp_path / "ckpt", make_model().state_dict(), {})
    finally:
        os.umask(previous)
    for path in (info.weights_path, info.metadata_path):
        assert path.stat().st_mode & 0o777 == 0o600


def test_a_failed_save_leaves_the_previous_weights_whole_and_no_temp_file(
    tmp_path, make_model, monkeypatch
):
    first = save_checkpoint(tmp_path, make_model(0).state_dict(), {"epoch": 1})
    weights = first.weights_path.read_bytes()

    def replace(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(tmp_path, make_model(1).state_dict(), {"epoch": 2})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.json", "weights.pt"]
    _, metadata = load_checkpoint(tmp_path)
    assert metadata["epoch"] == 1 and first.weights_path.read_bytes() == weights

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

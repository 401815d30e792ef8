"""Embedders' TorchScript copies, kept between starts of the service."""

# A start that finds the copy for its weights loads it (0.3 s, most of it the check's first
# pass) and never builds the network: no ONNX conversion, no trace, and no import of
# onnx2torch or facenet-pytorch, which bring torchvision and torch._dynamo with them (3.5 s
# of start-up on a 2 vCPU VM).
#
# A copy is only used for the exact setup it was traced in: the embedder, its weights'
# sha256, the inference precision, the device type, the versions of torch and the
# converters, and a digest of our code that builds and traces networks (the key, in the
# file name and checked inside the file). Its bytes must match the sha256 it was written
# with (torch does not check its zip members' CRCs: a flipped bit in a weight loads
# silently), it must not be writable by every user, and it must reproduce, on the fixed
# check input, the output it gave when it was saved, right after its trace was checked
# against the network. Anything else (a missing, stale, damaged or
# unreadable file) means tracing afresh, as without a copy. The folder is a cache: deleting
# it is always safe, and backups skip it.

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import io
import json
import logging
import os
import re
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from app.atomic_write import write_atomically
from app.pipeline import torchscript
from app.pipeline.torchscript import check_outputs, quiet_torch_jit

if TYPE_CHECKING:
    from app.pipeline.embedders.base import Embedder

log = logging.getLogger(__name__)

# Bump when what a file holds changes. Changes to the code that builds and traces a network
# need no bump: the key holds a digest of its source files (_code_digest).
FORMAT = 1
# A file is MAGIC, the sha256 of the rest in hex and a newline, then torch.jit.save's zip.
MAGIC = b"face-service torchscript 1\n"
_DIGEST_LENGTH = 64 + 1
_KEY_FILE = "face_service_key.json"
_CHECK_FILE = "face_service_check.npy"
_PACKAGES = ("onnx", "onnx2torch", "facenet-pytorch")
# Copies kept per embedder, the most recently used: the serving model's and the ones before
# it, which a rollback or a change of precision would load again.
KEEP_PER_EMBEDDER = 3


class SavedTraces:
    """The folder of TorchScript copies: each file one embedder's copy for one key."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def load(self, embedder: Embedder) -> torch.jit.ScriptModule | None:
        """The saved copy for `embedder`'s setup, checked; None when there is none that fits."""
        try:
            key = trace_key(embedder)
        except OSError as error:  # the source files unreadable: no key to trust a copy by
            log.warning("not using saved TorchScript copies: %s", error)
            return None
        path = self._path(embedder.name, key)
        if not path.is_file():
            log.info("no saved TorchScript copy of %s for this setup", embedder.version)
            return None
        quiet_torch_jit()
        try:
            data = _read_unless_world_writable(path)
            extra = {_KEY_FILE: "", _CHECK_FILE: ""}
            traced = torch.jit.load(  # type: ignore[no-untyped-call]
                io.BytesIO(_checked_payload(data)), map_location=embedder.device, _extra_files=extra
            )
            if json.loads(extra[_KEY_FILE]) != key:
                raise ValueError("it was saved for another setup")
            expected = np.load(io.BytesIO(_as_bytes(extra[_CHECK_FILE])), allow_pickle=False)
            output = _check_output(traced, embedder)
            check_outputs(torch.from_numpy(expected).to(output.device, output.dtype), output)
        except Exception as error:  # torch.jit.load raises RuntimeError, json ValueError...
            log.warning("not using the saved TorchScript copy %s: %s", path, error)
            return None
        with contextlib.suppress(OSError):  # a read-only folder: the copy still serves
            os.utime(path)  # used: the last to be pruned
        log.info("loaded %s's TorchScript copy from %s", embedder.version, path)
        return traced  # type: ignore[no-any-return]

    def store(self, embedder: Embedder, traced: torch.jit.ScriptModule) -> None:
        """Save `traced` (just traced and checked) for the next start; a copy that cannot be
        saved only costs that start its trace."""
        quiet_torch_jit()  # torch.jit.save warns that it is deprecated, as tracing does
        try:
            key = trace_key(embedder)
            path = self._path(embedder.name, key)
            check = io.BytesIO()
            np.save(check, _check_output(traced, embedder).float().cpu().numpy())
            data = io.BytesIO()
            extra = {_KEY_FILE: json.dumps(key, sort_keys=True), _CHECK_FILE: check.getvalue()}
            torch.jit.save(traced, data, _extra_files=extra)  # type: ignore[no-untyped-call]
            self.folder.mkdir(parents=True, exist_ok=True)
            payload = data.getvalue()
            digest = hashlib.sha256(payload).hexdigest().encode() + b"\n"
            write_atomically(path, MAGIC + digest + payload, private=True)
        except Exception as error:  # a full disk, a read-only folder, a trace that won't save
            log.warning("cannot save the TorchScript copy of %s: %s", embedder.version, error)
            return
        log.info("saved %s's TorchScript copy to %s", embedder.version, self.folder)
        try:
            self._prune(embedder.name)
        except OSError as error:
            log.warning("cannot remove older TorchScript copies in %s: %s", self.folder, error)

    def _path(self, name: str, key: dict[str, str]) -> Path:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
        return self.folder / f"{name}-{digest[:16]}.pt"

    def _prune(self, name: str) -> None:
        """Keep `name`'s KEEP_PER_EMBEDDER most recently used copies, and drop the temp files
        of writes that a crash cut short (one service at a time writes here: serve.lock)."""
        mine = re.compile(rf"\.?{re.escape(name)}-[0-9a-f]{{16}}\.pt(\..*\.tmp)?")
        copies: list[Path] = []
        leftovers: list[Path] = []
        for path in self.folder.iterdir():
            if mine.fullmatch(path.name):
                (leftovers if path.name.endswith(".tmp") else copies).append(path)
        copies.sort(key=lambda path: path.stat().st_mtime, reverse=True)
        for path in leftovers + copies[KEEP_PER_EMBEDDER:]:
            path.unlink(missing_ok=True)


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
        "code": _code_digest(),
    }


@functools.cache
def _code_digest() -> str:
    """The sha256 of the source that builds, converts, loads and traces the networks (this
    package and app/pipeline/torchscript.py): an upgrade that changes any of it traces
    afresh, since it could change the embeddings."""
    package = Path(__file__).parent
    files = sorted(package.glob("*.py")) + [Path(inspect.getfile(torchscript))]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _read_unless_world_writable(path: Path) -> bytes:
    """`path`'s bytes, unless every user may write it: such a file could hold any network.

    Not stricter (this user's own, writable by no group): Kubernetes' fsGroup makes volume
    files group-writable at every mount, and NFS may show them under another uid, which
    would turn the copies off there for good. The data folder as a whole must be the
    service's alone (its database decides who matches whom)."""
    with path.open("rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if mode & 0o002:
            raise PermissionError(f"every user may write it (mode {mode & 0o777:o})")
        return handle.read()


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

"""Embed the faces of many image files once each, for offline evaluation and calibration."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from tqdm import tqdm

from app.commands.import_files import NotUploaded, read_photo
from app.commands.service_db import existing_database
from app.config import Settings
from app.errors import FaceServiceError
from app.evaluation.pair_scores import Embeddings
from app.gallery import models_repo
from app.pipeline.analyzer import AnalyzedFace, FacePipeline
from app.pipeline.embedders import Embedder
from app.pipeline.image_io import decode_image
from app.pipeline.selection import select_face
from app.services.active_model import load_version
from app.services.loaded_models import load_models
from app.services.runtime import configure_threads, quality_limits

# "prominent" is what the service uses when a request allows several faces; it picks
# the subject over a bystander in group photos.
FACE_POLICY = "prominent"


def load_pipeline(settings: Settings, embedder: str | None = None) -> FacePipeline:
    """Load the detector and an embedder (default: the one the settings select), in the
    version the service's database says serves it: a fine-tuned one after a promotion."""
    if embedder is not None:
        settings = settings.model_copy(update={"embedder": embedder})
    configure_threads(settings)
    models = load_models(settings)
    serving = active_embedder(settings, models.embedder)
    return FacePipeline(models.detector, serving, quality_limits(settings))


def active_embedder(settings: Settings, packaged: Embedder) -> Embedder:
    """The version of `packaged`'s embedder that the service's database activated, or
    `packaged` when there is no database or no activation. Reads, never writes."""
    with existing_database(settings) as (session, _):
        if session is None:
            return packaged
        try:
            row = models_repo.active_model(session, packaged.name)
        except SQLAlchemyError:  # a database from before model versions existed
            return packaged
        if row is None or row.id == packaged.version:
            return packaged
        print(f"using {row.id}, the model the service serves", file=sys.stderr)
        return load_version(settings, row, packaged.device)


@dataclass(frozen=True)
class FileEmbeddings:
    """The vectors of some image files, the files that could not be read or decoded, and
    the sha256 of each file read."""

    vectors: Embeddings  # None where no face was found, or the file is in `unreadable`
    unreadable: dict[Path, str]  # path -> why, in the caller's order
    digests: dict[Path, str] = field(default_factory=dict)  # hex; none for a file not read


def embed_files(
    pipeline: FacePipeline,
    paths: Iterable[Path],
    max_pixels: int,
    batch: int = 32,
    progress: bool = True,
    *,
    max_bytes: int,
) -> Embeddings:
    """One unit vector per unique path, or None where no face was detected; a file that
    cannot be read or decoded is a ValueError (see `embed_readable_files` to skip it)."""
    embedded = embed_readable_files(
        pipeline, paths, max_pixels, batch, progress, max_bytes=max_bytes
    )
    if embedded.unreadable:
        path, reason = next(iter(embedded.unreadable.items()))
        raise ValueError(f"{path}: {reason}")
    return embedded.vectors


def embed_readable_files(
    pipeline: FacePipeline,
    paths: Iterable[Path],
    max_pixels: int,
    batch: int = 32,
    progress: bool = True,
    *,
    max_bytes: int,
) -> FileEmbeddings:
    """One unit vector per unique path, or None where no face was detected or the file
    cannot be read or decoded (those are also listed, with the reason, in `unreadable`).

    Files are read as `import` reads a photo: only a regular file, and none over
    `max_bytes` (the service's FACE_MAX_UPLOAD_BYTES), which counts as unreadable.

    Faces are used whether or not they pass the service's quality gate: the evaluation
    measures the model, and the gate is a separate, tunable policy.
    """
    unique = list(dict.fromkeys(paths))
    result: Embeddings = {}
    unreadable: dict[Path, str] = {}
    digests: dict[Path, str] = {}
    pending: list[tuple[Path, AnalyzedFace]] = []

    def flush() -> None:
        if pending:
            vectors = pipeline.embed([face for _, face in pending])
            result.update({path: vectors[i] for i, (path, _) in enumerate(pending)})
            pending.clear()

    # Closed on any way out, Ctrl-C included: a message after it starts on a line of its own.
    with tqdm(unique, desc="embedding", unit="img", disable=not progress, file=sys.stderr) as bar:
        for path in bar:
            try:
                data = _read_photo(path, max_bytes)
                digests[path] = hashlib.sha256(data).hexdigest()
                face = _choose_face(pipeline, data, max_pixels)
            except _Unreadable as exc:
                # One bad file among thousands must not throw away the others' embedding.
                unreadable[path] = str(exc)
                face = None
            if face is None:
                result[path] = None
                continue
            pending.append((path, face))
            if len(pending) >= batch:
                flush()
        flush()
    # Keep the caller's order, which the batching above does not.
    return FileEmbeddings({path: result[path] for path in unique}, unreadable, digests)


class _Unreadable(Exception):
    """The file could not be read, or its bytes are not an image the service decodes."""


def _choose_face(pipeline: FacePipeline, data: bytes, max_pixels: int) -> AnalyzedFace | None:
    try:
        image = decode_image(data, max_pixels)
    except FaceServiceError as exc:
        raise _Unreadable(exc.message) from exc
    except OSError as exc:
        raise _Unreadable(exc.strerror or type(exc).__name__) from exc
    detected = pipeline.detect(image)
    if not detected:
        return None
    chosen = select_face(detected, (image.shape[0], image.shape[1]), FACE_POLICY)
    return pipeline.analyze(image, [detected[chosen]])[0]


def _read_photo(path: Path, max_bytes: int) -> bytes:
    # A path listed by mistake (a 2 GB video, a FIFO, /dev/zero) must cost at most
    # max_bytes of memory and never block, as it does for `import`.
    try:
        return read_photo(path, max_bytes)
    except OSError as exc:
        raise _Unreadable(exc.strerror or type(exc).__name__) from exc
    except NotUploaded as exc:
        if exc.code == "payload_too_large":  # import's message speaks of an upload
            raise _Unreadable(
                f"The file is larger than {max_bytes} bytes (FACE_MAX_UPLOAD_BYTES), "
                "the most the service accepts; it was not decoded."
            ) from exc
        raise _Unreadable(exc.message) from exc


def no_face_paths(embedded: FileEmbeddings) -> list[Path]:
    """The files read and decoded in which no face was found."""
    vectors = embedded.vectors
    return [p for p, v in vectors.items() if v is None and p not in embedded.unreadable]

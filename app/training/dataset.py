"""Training faces from the gallery: aligned crops, a fixed per-face split, batches, augmentation."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session, sessionmaker

from app.errors import InsufficientTrainingData, InvalidImage
from app.gallery import training_faces_repo
from app.pipeline.align import align_face
from app.pipeline.image_io import decode_png
from app.pipeline.types import AlignTemplate, ImageArray

log = logging.getLogger(__name__)

IntArray = npt.NDArray[np.int64]

# Faces of one subject placed next to each other in a batch, so the triplet loss finds a
# positive for each anchor; harmless for the margin heads.
FACES_PER_SUBJECT_IN_BATCH = 2
# Colour jitter: brightness and contrast each scaled by a factor in [1 - J, 1 + J].
JITTER = 0.1


@dataclass(frozen=True)
class GalleryFaces:
    """Aligned crops of every subject with at least two faces, with 0-based subject labels."""

    face_ids: IntArray
    labels: IntArray
    images: list[ImageArray]

    @property
    def subjects(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0


def load_gallery_faces(
    sessions: sessionmaker[Session],
    template: AlignTemplate,
    check: Callable[[], None] | None = None,
) -> GalleryFaces:
    """Every stored crop of a subject with >= 2 of them, re-aligned to the embedder template;
    `check` runs before each page of crops (a cancel raises from it)."""
    by_subject: dict[str, list[tuple[int, ImageArray]]] = defaultdict(list)
    after = -1
    while True:
        if check is not None:
            check()
        with sessions() as session:
            rows = training_faces_repo.subject_crops(session, after)
        if not rows:
            break
        after = rows[-1][0]
        for face_id, subject_id, png, points in rows:
            try:
                crop = decode_png(png)
            except InvalidImage as error:
                log.warning("face %d skipped: %s", face_id, error.message)
                continue
            aligned = align_face(crop, np.asarray(points, dtype=np.float32), template)
            by_subject[subject_id].append((face_id, aligned))
    kept = [faces for faces in by_subject.values() if len(faces) >= 2]
    if len(kept) < 2:
        raise InsufficientTrainingData(
            "Fine-tuning needs at least two subjects with two or more stored face crops each; "
            f"the gallery has {len(kept)}."
        )
    samples = [(i, label, image) for label, faces in enumerate(kept) for i, image in faces]
    return GalleryFaces(
        face_ids=np.array([s[0] for s in samples], dtype=np.int64),
        labels=np.array([s[1] for s in samples], dtype=np.int64),
        images=[s[2] for s in samples],
    )


def epoch_batches(
    train: IntArray, labels: IntArray, micro_batch_size: int, rng: np.random.Generator
) -> list[IntArray]:
    """Equal-size micro-batches covering every training face once (the last one padded).

    A micro-batch larger than the training set shrinks to it: padding up to it would
    repeat the same faces many times over, for that much more compute and no more data.
    """
    chunks: list[IntArray] = []
    for label in np.unique(labels[train]):
        faces = rng.permutation(train[labels[train] == label])
        chunks.extend(np.array_split(faces, -(-len(faces) // FACES_PER_SUBJECT_IN_BATCH)))
    order = np.concatenate([chunks[i] for i in rng.permutation(len(chunks))])
    # Every micro-batch counts equally in the loop's mean, so the last one is filled up
    # from the start of the epoch rather than left short.
    micro_batch_size = min(micro_batch_size, len(order))
    padding = -len(order) % micro_batch_size
    order = np.concatenate([order, np.resize(order, padding)])
    return list(order.reshape(-1, micro_batch_size))


def augment(images: Sequence[ImageArray], rng: np.random.Generator) -> list[ImageArray]:
    """Random horizontal flips and a small brightness/contrast jitter."""
    result: list[ImageArray] = []
    for image in images:
        pixels = image[:, ::-1] if rng.random() < 0.5 else image
        brightness, contrast = rng.uniform(1 - JITTER, 1 + JITTER, size=2)
        mean = float(pixels.mean())
        jittered = (pixels.astype(np.float32) - mean) * contrast + mean * brightness
        result.append(np.clip(np.rint(jittered), 0, 255).astype(np.uint8))
    return result

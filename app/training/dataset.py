"""Training faces from the gallery: aligned crops, a fixed per-face split, batches, augmentation."""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.sparse.csgraph import connected_components
from sqlalchemy.orm import Session, sessionmaker

from app.errors import InsufficientTrainingData, InvalidImage
from app.gallery import models_repo
from app.gallery.orm import Job
from app.pipeline.align import align_face
from app.pipeline.image_io import decode_png
from app.pipeline.types import AlignTemplate, FloatArray, ImageArray
from app.schemas.finetune import FinetuneParams

log = logging.getLogger(__name__)

IntArray = npt.NDArray[np.int64]

# Faces of one subject placed next to each other in a batch, so the triplet loss finds a
# positive for each anchor; harmless for the margin heads.
FACES_PER_SUBJECT_IN_BATCH = 2
# Colour jitter: brightness and contrast each scaled by a factor in [1 - J, 1 + J].
JITTER = 0.1
# Hashed with each face id to place the face in training or validation for good. Changing
# it reshuffles every face, so a later job would validate on faces trained on before.
SPLIT_SALT = b"face-finetune-split/v1:"
# A subject's faces closer than this (cosine, serving model) are one photo resized, mirrored
# or re-saved. Shared set, arcface-mbf: such twins 0.96 and 0.98; distinct photos <= 0.86.
NEAR_DUPLICATE_COSINE = 0.9
DEFAULT_FRACTION: float = FinetuneParams.model_fields["validation_fraction"].default


@dataclass(frozen=True)
class GalleryFaces:
    """Aligned crops of every subject with at least two faces, with 0-based subject labels."""

    face_ids: IntArray
    labels: IntArray
    images: list[ImageArray]

    @property
    def subjects(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0


@dataclass(frozen=True)
class Split:
    train: IntArray  # indices into GalleryFaces
    validation: IntArray
    # Held out by their hash but near-duplicates of a training face: used for neither.
    set_aside: IntArray = field(default_factory=lambda: np.empty(0, dtype=np.int64))


def load_gallery_faces(sessions: sessionmaker[Session], template: AlignTemplate) -> GalleryFaces:
    """Every stored crop of a subject with >= 2 of them, re-aligned to the embedder template."""
    by_subject: dict[str, list[tuple[int, ImageArray]]] = defaultdict(list)
    after = -1
    while True:
        with sessions() as session:
            rows = models_repo.subject_crops(session, after)
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


def held_out(face_id: int, fraction: float) -> bool:
    """Whether `face_id` belongs to validation: its hash, mapped to [0, 1), is below `fraction`.

    The hash depends on the face alone, not on a seed or on the rest of the gallery, so a
    face lands on the same side in every job: one trained on never becomes a probe later.
    """
    digest = hashlib.sha256(SPLIT_SALT + str(face_id).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def near_duplicate_groups(labels: IntArray, vectors: FloatArray) -> IntArray:
    """A group number per face: a subject's faces joined by cosine > NEAR_DUPLICATE_COSINE."""
    groups = np.zeros(len(labels), dtype=np.int64)
    count = 0
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        close = vectors[members] @ vectors[members].T > NEAR_DUPLICATE_COSINE
        found, component = connected_components(close, directed=False)
        groups[members] = component + count
        count += found
    return groups


def split_faces(
    face_ids: IntArray, labels: IntArray, vectors: FloatArray, fraction: float
) -> Split:
    """Train on the faces `held_out` rejects; validate on the rest, near-duplicates aside.

    A held-out face whose near-duplicate group holds a training face is set aside (neither
    trained on nor a probe): training flips faces, so a resized or mirrored twin in training
    is the probe itself. Setting it aside rather than moving the group keeps every face's
    side fixed even as groups change with enrolments or with a fine-tuned serving model.
    """
    held = np.array([held_out(int(i), fraction) for i in face_ids], dtype=bool)
    groups = near_duplicate_groups(labels, vectors)
    has_training_face = np.zeros(int(groups.max()) + 1 if len(groups) else 0, dtype=bool)
    has_training_face[groups[~held]] = True
    validation = held & ~has_training_face[groups]
    split = Split(
        train=np.flatnonzero(~held),
        validation=np.flatnonzero(validation),
        set_aside=np.flatnonzero(held & ~validation),
    )
    subjects = len(np.unique(labels[split.train]))
    if subjects < 2 or len(split.validation) == 0:
        raise InsufficientTrainingData(
            f"With validation_fraction={fraction}, the split holds out {len(split.validation)} "
            f"faces and leaves {subjects} subjects to train on; fine-tuning needs at least one "
            "held-out face and two subjects to train on."
        )
    return split


def training_only(faces: GalleryFaces, split: Split) -> tuple[GalleryFaces, Split]:
    """The training faces alone, labels renumbered over their subjects, all to train on.

    A subject whose faces are all held out would otherwise be a class of the margin head
    with no face to start its centre from.
    """
    _, labels = np.unique(faces.labels[split.train], return_inverse=True)
    kept = GalleryFaces(
        face_ids=faces.face_ids[split.train],
        labels=labels.astype(np.int64),
        images=[faces.images[i] for i in split.train],
    )
    everything = np.arange(len(split.train), dtype=np.int64)
    return kept, Split(train=everything, validation=np.empty(0, dtype=np.int64))


def lineage_validation_fraction(session: Session, version: str) -> float | None:
    """The smallest validation_fraction among the jobs that trained `version` and its bases.

    A face trained on by any of them has a hash at or above that fraction; a larger one now
    would validate on it. None for the packaged weights (no fine-tune in the lineage).
    """
    fractions: list[float] = []
    seen: set[str] = set()
    model = models_repo.find_model(session, version)
    while model is not None and model.id not in seen:
        seen.add(model.id)
        job = session.get(Job, model.job_id) if model.job_id else None
        if job is not None:
            fractions.append(float(job.params.get("validation_fraction", DEFAULT_FRACTION)))
        base = model.base_version
        model = models_repo.find_model(session, base) if base else None
    return min(fractions, default=None)


def validation_pairs(labels: IntArray, validation: IntArray) -> tuple[IntArray, IntArray, IntArray]:
    """(a, b, same): each held-out face `a` against every other face `b`, each pair once.

    Held-out probes against faces trained on mirror how the service is used: a new photo
    checked against an enrolled (and now fine-tuned on) gallery. `a` is always held out,
    so the promotion rule can count outcomes per probe (`evaluate.probe_outcomes`).
    """
    held = np.zeros(len(labels), dtype=bool)
    held[validation] = True
    first: list[IntArray] = []
    second: list[IntArray] = []
    everyone = np.arange(len(labels))
    for i in validation:
        # A held-out partner is paired only from its lower index, so no pair appears twice.
        partners = everyone[(everyone != i) & ~(held & (everyone < i))]
        first.append(np.full(len(partners), i, dtype=np.int64))
        second.append(partners)
    a = np.concatenate(first) if first else np.empty(0, np.int64)
    b = np.concatenate(second) if second else np.empty(0, np.int64)
    return a, b, (labels[a] == labels[b]).astype(np.int64)


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

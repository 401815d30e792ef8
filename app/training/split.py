"""Which faces a fine-tune trains on and which it holds out: a fixed property of each face."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.sparse.csgraph import connected_components
from sqlalchemy.orm import Session

from app.errors import InsufficientTrainingData, InvalidRequest, problem
from app.gallery import models_repo
from app.gallery.orm import Job
from app.pipeline.types import FloatArray
from app.schemas.finetune import FinetuneParams
from app.training.dataset import GalleryFaces, IntArray

# Hashed with each face id to place the face in training or validation for good. Changing
# it reshuffles every face, so a later job would validate on faces trained on before.
SPLIT_SALT = b"face-finetune-split/v1:"
# A subject's faces closer than this (cosine, serving model) are one photo resized, mirrored
# or re-saved. Shared set, arcface-mbf: such twins 0.96 and 0.98; distinct photos <= 0.86.
NEAR_DUPLICATE_COSINE = 0.9
DEFAULT_FRACTION: float = FinetuneParams.model_fields["validation_fraction"].default


@dataclass(frozen=True)
class Split:
    train: IntArray  # indices into GalleryFaces
    validation: IntArray
    # Held out by their hash but near-duplicates of a training face: used for neither.
    set_aside: IntArray = field(default_factory=lambda: np.empty(0, dtype=np.int64))


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
    held = _held_out_mask(face_ids, fraction)
    groups = near_duplicate_groups(labels, vectors)
    has_training_face = np.zeros(int(groups.max()) + 1 if len(groups) else 0, dtype=bool)
    has_training_face[groups[~held]] = True
    validation = held & ~has_training_face[groups]
    split = Split(
        train=np.flatnonzero(~held),
        validation=np.flatnonzero(validation),
        set_aside=np.flatnonzero(held & ~validation),
    )
    refuse_too_few(fraction, len(split.validation), len(np.unique(labels[split.train])))
    return split


def _held_out_mask(face_ids: IntArray, fraction: float) -> npt.NDArray[np.bool_]:
    return np.array([held_out(int(i), fraction) for i in face_ids], dtype=bool)


def refuse_too_few(fraction: float, validation: int, subjects: int) -> None:
    if subjects < 2 or validation == 0:
        raise InsufficientTrainingData(
            f"With validation_fraction={fraction}, the split holds out {validation} "
            f"faces and leaves {subjects} subjects to train on; fine-tuning needs at least one "
            "held-out face and two subjects to train on."
        )


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


def check_fraction(session: Session, version: str, fraction: float) -> None:
    """Refuse a validation_fraction larger than any used to train `version` or its bases:
    the extra held-out faces would be faces one of them trained on."""
    ceiling = lineage_validation_fraction(session, version)
    if ceiling is not None and fraction > ceiling:
        raise InvalidRequest(
            f"validation_fraction {fraction} is larger than {ceiling}, used to fine-tune "
            f"{version} or a model it was fine-tuned from, so validation would include faces "
            f"it trained on. Use at most {ceiling}, or activate the packaged model first.",
            [
                problem(
                    ["body", "validation_fraction"],
                    f"at most {ceiling}, the fraction {version}'s lineage held out",
                    "validation_overlap",
                )
            ],
        )


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

"""The validation split: fixed per face, near-duplicates kept off the validation side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from app.config import Settings
from app.errors import InsufficientTrainingData
from app.gallery import jobs_repo, models_repo
from app.gallery.db import make_engine, make_session_factory, migrate
from app.pipeline.align import align_face
from app.pipeline.analyzer import FacePipeline
from app.pipeline.image_io import decode_image, decode_png
from app.pipeline.selection import select_face
from app.services.runtime import quality_limits
from app.training.dataset import GalleryFaces
from app.training.evaluate import embed_images
from app.training.split import (
    NEAR_DUPLICATE_COSINE,
    Split,
    held_out,
    lineage_validation_fraction,
    near_duplicate_groups,
    split_faces,
    training_only,
)
from app.training.trainer import make_head

HELD = [i for i in range(1, 2000) if held_out(i, 0.25)]
TRAINED = [i for i in range(1, 2000) if not held_out(i, 0.25)]


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def distinct_vectors(n: int, seed: int = 0) -> np.ndarray:
    """Random unit vectors: in 128 dimensions no two come near NEAR_DUPLICATE_COSINE."""
    return unit(np.random.default_rng(seed).standard_normal((n, 128)))


def at_cosine(vector: np.ndarray, cosine: float, seed: int) -> np.ndarray:
    """A unit vector at exactly `cosine` from the unit vector `vector`."""
    other = np.random.default_rng(seed).standard_normal(len(vector))
    other -= (other @ vector) * vector
    other /= np.linalg.norm(other)
    return (cosine * vector + np.sqrt(1 - cosine**2) * other).astype(np.float32)


def sides(face_ids: np.ndarray, split: Split) -> dict[str, set[int]]:
    return {
        "train": set(face_ids[split.train].tolist()),
        "validation": set(face_ids[split.validation].tolist()),
        "set_aside": set(face_ids[split.set_aside].tolist()),
    }


def gallery(face_ids: list[int], subjects: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Face ids in a shuffled order, with labels dealt round-robin over `subjects`."""
    ids = np.random.default_rng(seed).permutation(np.array(face_ids, dtype=np.int64))
    return ids, (np.arange(len(ids)) % subjects).astype(np.int64)


def test_held_out_is_a_fixed_share_of_face_ids() -> None:
    assert held_out(42, 0.25) == held_out(42, 0.25)
    assert 0.22 < len(HELD) / 1999 < 0.28
    # A smaller fraction holds out a subset of a larger one's faces.
    assert {i for i in range(1, 2000) if held_out(i, 0.1)} < set(HELD)


def test_a_face_keeps_its_side_whatever_else_is_enrolled() -> None:
    before_ids, before_labels = gallery(list(range(1, 61)), subjects=6, seed=1)
    # Faces deleted, faces and a subject enrolled, every index and label moved.
    later = [i for i in range(1, 91) if i not in (3, 17, 22, 40)]
    after_ids, after_labels = gallery(later, subjects=7, seed=2)
    first = sides(before_ids, split_faces(before_ids, before_labels, distinct_vectors(60), 0.25))
    second = sides(after_ids, split_faces(after_ids, after_labels, distinct_vectors(86, 1), 0.25))
    common = set(before_ids.tolist()) & set(after_ids.tolist())
    for side in ("train", "validation"):
        assert first[side] & common == second[side] & common
    assert first["validation"] and first["train"]


def test_faces_trained_on_by_one_job_are_never_validated_by_a_later_one() -> None:
    """Three chained jobs: enrolments change, and the serving model's vectors change with
    each fine-tune, so the near-duplicate groups form and dissolve between jobs."""
    t, h1, h2 = TRAINED[0], HELD[0], HELD[1]
    base = distinct_vectors(200, seed=5)
    jobs = []
    for job, (count, grouped) in enumerate([(60, False), (80, True), (70, False)]):
        others = range(10 + 10 * job, 10 + 10 * job + count)  # faces come and go
        ids, labels = gallery(sorted({*others, t, h1, h2}), 4, job)
        labels[np.isin(ids, [t, h1, h2])] = 0
        vectors = base[: len(ids)].copy()
        rows = {int(face): int(np.flatnonzero(ids == face)[0]) for face in (t, h1, h2)}
        if grouped:  # h1 and h2 become near-duplicates of a training face: set aside
            vectors[rows[h1]] = at_cosine(vectors[rows[t]], 0.95, seed=1)
            vectors[rows[h2]] = at_cosine(vectors[rows[h1]], 0.95, seed=2)
        jobs.append(sides(ids, split_faces(ids, labels, vectors, 0.25)))
    assert {h1, h2} <= jobs[1]["set_aside"]
    assert {h1, h2} <= jobs[0]["validation"] & jobs[2]["validation"]
    for earlier, job in enumerate(jobs):
        for later in jobs[earlier + 1 :]:
            assert not job["train"] & later["validation"]


@pytest.mark.parametrize(("first", "second", "overlap"), [(0.25, 0.2, False), (0.2, 0.25, True)])
def test_only_a_larger_fraction_validates_on_faces_trained_on(
    first: float, second: float, overlap: bool
) -> None:
    ids, labels = gallery(list(range(1, 201)), subjects=10, seed=0)
    vectors = distinct_vectors(200)
    trained = sides(ids, split_faces(ids, labels, vectors, first))["train"]
    validated = sides(ids, split_faces(ids, labels, vectors, second))["validation"]
    assert bool(trained & validated) == overlap


def test_near_duplicates_are_grouped_within_a_subject_through_chains() -> None:
    vectors = distinct_vectors(6)
    vectors[1] = at_cosine(vectors[0], 0.95, seed=1)
    vectors[2] = at_cosine(vectors[1], 0.95, seed=2)  # about 0.8 from face 0: joined via 1
    vectors[3] = at_cosine(vectors[0], NEAR_DUPLICATE_COSINE - 0.05, seed=3)  # a distinct photo
    vectors[5] = at_cosine(vectors[4], 0.99, seed=4)  # same picture, another subject
    groups = near_duplicate_groups(np.array([0, 0, 0, 0, 1, 2]), vectors)
    assert groups[0] == groups[1] == groups[2]
    assert len({groups[0], groups[3], groups[4], groups[5]}) == 4


def test_a_near_duplicate_group_is_validated_only_when_none_of_it_trains() -> None:
    ids = np.array([TRAINED[0], HELD[0], HELD[1], HELD[2], TRAINED[1], TRAINED[2], HELD[3]])
    labels = np.array([0, 0, 0, 0, 0, 1, 1])
    vectors = distinct_vectors(len(ids))
    vectors[1] = at_cosine(vectors[0], 0.96, seed=1)  # held out, twin of a training face
    vectors[3] = at_cosine(vectors[2], 0.98, seed=2)  # two held-out twins
    got = sides(ids, split_faces(ids, labels, vectors, 0.25))
    assert got["set_aside"] == {HELD[0]}
    assert got["validation"] == {HELD[1], HELD[2], HELD[3]}
    assert got["train"] == {TRAINED[0], TRAINED[1], TRAINED[2]}


def test_a_split_with_nothing_to_validate_or_too_few_subjects_to_train_is_refused() -> None:
    ids, labels = np.array(TRAINED[:6]), np.array([0, 0, 0, 1, 1, 1])
    with pytest.raises(InsufficientTrainingData, match="holds out 0 faces"):
        split_faces(ids, labels, distinct_vectors(6), 0.25)
    ids = np.array([*TRAINED[:3], *HELD[:3]])
    with pytest.raises(InsufficientTrainingData, match="leaves 1 subjects"):
        split_faces(ids, labels, distinct_vectors(6), 0.25)


def test_the_trainer_sees_only_subjects_with_training_faces() -> None:
    """A subject whose faces are all held out was a margin-head class with no face: its
    centre, the mean of no vectors, was NaN."""
    ids = np.array([TRAINED[0], TRAINED[1], HELD[0], HELD[1], TRAINED[2], HELD[2]])
    labels = np.array([0, 0, 1, 1, 2, 2])
    vectors = distinct_vectors(len(ids))
    faces = GalleryFaces(ids, labels, [np.full((2, 2, 3), i, np.uint8) for i in range(6)])
    split = split_faces(ids, labels, vectors, 0.25)
    training, everything = training_only(faces, split)
    assert training.face_ids.tolist() == [TRAINED[0], TRAINED[1], TRAINED[2]]
    assert training.labels.tolist() == [0, 0, 1] and training.images[2][0, 0, 0] == 4
    assert everything.train.tolist() == [0, 1, 2] and len(everything.validation) == 0
    head = make_head("arcface", vectors[split.train], training.labels, torch.device("cpu"))
    assert head is not None and bool(head.weight.isfinite().all())


def test_the_lineage_fraction_is_the_smallest_used_by_the_serving_model_and_its_bases(
    tmp_path: Path,
) -> None:
    engine = make_engine(Settings(data_dir=tmp_path).resolved_database_url)
    migrate(engine)
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        models_repo.ensure_model(session, "m@packaged", "m", "0" * 64)
        base = "m@packaged"
        for version, params in [
            ("m@a", {"validation_fraction": 0.3}),
            ("m@b", {"validation_fraction": 0.2}),
            ("m@c", {}),
        ]:
            job = jobs_repo.create_job(session, params).id
            jobs_repo.finish_job(session, job, jobs_repo.SUCCEEDED)  # one job at a time
            models_repo.ensure_model(session, version, "m", "1" * 64, base_version=base, job_id=job)
            base = version
    with sessions() as session:
        assert lineage_validation_fraction(session, "m@packaged") is None
        assert lineage_validation_fraction(session, "m@unknown") is None
        assert lineage_validation_fraction(session, "m@a") == 0.3
        assert lineage_validation_fraction(session, "m@b") == 0.2
        assert lineage_validation_fraction(session, "m@c") == 0.2  # its own: the default 0.25
    engine.dispose()


# Near-duplicates in the shared set (the audit's pairs), with distinct photos of the same
# people: the first of each pair gets a held-out face id, the second a training one.
TWINS = [
    ("face_recognition/obama_small.jpg", "face_recognition/obama.jpg"),
    ("deepface/img11.jpg", "deepface/img11_reflection.jpg"),
]
OTHERS = [
    "face_recognition/obama1.jpg",
    "face_recognition/obama2.jpg",
    "face_recognition/obama3.jpg",
    "deepface/img1.jpg",
    "deepface/img2.jpg",
    "deepface/img4.jpg",
    "deepface/img7.jpg",
]


def aligned_crop(pipeline: FacePipeline, photo: Path) -> Any:
    """The face as a job sees it: the stored crop, re-aligned to the embedder's template."""
    image = decode_image(photo.read_bytes(), 10**8)
    detected = pipeline.detect(image)
    face = detected[select_face(detected, (image.shape[0], image.shape[1]), "prominent")]
    crop = pipeline.stored_crop(image, face)
    points = np.asarray(crop.landmarks, dtype=np.float32)
    return align_face(decode_png(crop.png), points, pipeline.embedder.template)


def test_the_shared_sets_near_duplicates_stay_off_the_validation_side(
    models: Any, shared_faces: Path
) -> None:
    pipeline = FacePipeline(models.detector, models.embedder, quality_limits(Settings()))
    photos = [*(p for pair in TWINS for p in pair), *OTHERS]
    labels = np.array([0 if "obama" in p else 1 for p in photos])
    crops = [aligned_crop(pipeline, shared_faces / p) for p in photos]
    vectors = embed_images(models.embedder.module, models.embedder, crops)
    groups = near_duplicate_groups(labels, vectors)
    assert groups[0] == groups[1] and groups[2] == groups[3]
    assert len(set(groups.tolist())) == len(photos) - 2  # distinct photos stay apart

    ids = np.array([HELD[0], TRAINED[0], HELD[1], TRAINED[1], HELD[2], *TRAINED[2:8]])
    got = sides(ids, split_faces(ids, labels, vectors, 0.25))
    assert got["set_aside"] == {HELD[0], HELD[1]}  # obama_small.jpg, img11.jpg
    assert got["validation"] == {HELD[2]}

"""Hand-checked gallery scores, and the sample drawn when the pairs exceed the cap."""

from __future__ import annotations

import numpy as np
import pytest

from app.evaluation.gallery_scores import score_gallery

# a1 . a2 = 0.6 (genuine); a1 . b = 0.0 and a2 . b = 0.8 (impostors).
A1, A2, B = [1.0, 0.0], [0.6, 0.8], [0.0, 1.0]


def test_three_faces_of_two_subjects() -> None:
    scores = score_gallery([A1, A2, B], ["a", "a", "b"])
    assert (scores.faces, scores.subjects) == (3, 2)
    assert scores.genuine == pytest.approx([0.6])
    assert sorted(scores.impostor) == pytest.approx([0.0, 0.8])
    # a1 against b: 0.0; a2 against b: 0.8; b against a's best face: max(0.0, 0.8).
    assert sorted(scores.per_subject) == pytest.approx([0.0, 0.8, 0.8])
    assert (scores.genuine_total, scores.impostor_total, scores.per_subject_total) == (1, 2, 3)


def test_subject_order_and_label_type_do_not_matter() -> None:
    interleaved = score_gallery([B, A1, A2], [7, 3, 3])
    assert interleaved.genuine == pytest.approx([0.6])
    assert sorted(interleaved.impostor) == pytest.approx([0.0, 0.8])
    assert sorted(interleaved.per_subject) == pytest.approx([0.0, 0.8, 0.8])


def test_three_subjects_each_face_meets_every_other_subject() -> None:
    c = [-1.0, 0.0]
    scores = score_gallery([A1, A2, B, c], ["a", "a", "b", "c"])
    # a1: b 0.0, c -1.0; a2: b 0.8, c -0.6; b: a 0.8, c 0.0; c: a max(-1, -0.6), b 0.0.
    expected = [0.0, -1.0, 0.8, -0.6, 0.8, 0.0, -0.6, 0.0]
    assert sorted(scores.per_subject) == pytest.approx(sorted(expected))
    assert sorted(scores.impostor) == pytest.approx(sorted([0.0, -1.0, 0.8, -0.6, 0.0]))
    assert scores.impostor_total == 5 and scores.per_subject_total == 8


@pytest.mark.parametrize(
    ("vectors", "subjects", "faces", "count"),
    [(np.empty((0, 2)), [], 0, 0), ([A1, A2], ["a", "a"], 2, 1)],
)
def test_one_subject_or_none_has_no_impostors(
    vectors: object, subjects: list[str], faces: int, count: int
) -> None:
    scores = score_gallery(vectors, subjects)  # type: ignore[arg-type]
    assert (scores.faces, scores.subjects) == (faces, count)
    assert scores.impostor.size == scores.per_subject.size == scores.impostor_total == 0


def test_mismatched_labels_are_refused() -> None:
    with pytest.raises(ValueError, match="one subject per vector"):
        score_gallery([A1, A2], ["a"])


def random_gallery(faces: int, subjects: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    vectors = rng.normal(size=(faces, 16))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), rng.integers(0, subjects, size=faces)


def every_pair(vectors: np.ndarray, labels: np.ndarray, same: bool) -> np.ndarray:
    similarity = vectors.astype(np.float64) @ vectors.T.astype(np.float64)
    i, j = np.triu_indices(len(labels), k=1)
    keep = (labels[i] == labels[j]) == same
    return np.sort(similarity[i[keep], j[keep]])


def test_below_the_cap_every_pair_is_scored_once() -> None:
    vectors, labels = random_gallery(30, 5)
    scores = score_gallery(vectors, labels)
    impostors = every_pair(vectors, labels, same=False)
    assert scores.impostor.size == scores.impostor_total == impostors.size
    assert np.sort(scores.impostor) == pytest.approx(impostors, abs=1e-6)
    assert np.sort(scores.genuine) == pytest.approx(every_pair(vectors, labels, True), abs=1e-6)


def test_above_the_cap_a_fixed_sample_of_distinct_pairs() -> None:
    vectors, labels = random_gallery(60, 6)
    scores = score_gallery(vectors, labels, max_pairs=200, seed=0)
    again = score_gallery(vectors, labels, max_pairs=200, seed=0)
    other = score_gallery(vectors, labels, max_pairs=200, seed=1)
    impostors = every_pair(vectors, labels, same=False)
    assert scores.impostor_total == impostors.size > 200
    # Distinct draws only, so fewer than the cap may come back, never more.
    sampled = scores.impostor
    assert 150 < sampled.size <= 200 and np.unique(sampled).size == sampled.size
    nearest = np.clip(np.searchsorted(impostors, sampled), 1, impostors.size - 1)
    gap = np.minimum(abs(impostors[nearest] - sampled), abs(impostors[nearest - 1] - sampled))
    assert gap.max() < 1e-6  # every sampled score is one of the gallery's impostor pairs
    assert np.array_equal(scores.impostor, again.impostor)
    assert not np.array_equal(np.sort(scores.impostor), np.sort(other.impostor))
    assert scores.per_subject.size <= 200 < scores.per_subject_total

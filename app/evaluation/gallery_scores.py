"""Genuine and impostor cosine scores among a gallery's own faces, sampled when there are many."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MAX_PAIRS = 500_000
# Similarities computed for the face-against-subject scores, and per block of rows.
_MAX_PRODUCTS = 20_000_000
_BLOCK_PRODUCTS = 4_000_000
_PAIR_CHUNK = 8192


@dataclass(frozen=True)
class GalleryScores:
    """Scores among enrolled faces; the totals count every pair before sampling."""

    faces: int
    subjects: int
    # Face pairs of one subject / of two subjects (i < j), each a sample of its total.
    genuine: FloatArray
    genuine_total: int
    impostor: FloatArray
    impostor_total: int
    # One face against another subject's best face: what identify compares a stranger with.
    per_subject: FloatArray
    per_subject_total: int
    # The two subjects (their index in sorted order) behind each impostor and per-subject
    # score, shape (n, 2): scores of one subject are correlated (clustered_rate.py).
    impostor_subjects: IntArray
    per_subject_subjects: IntArray


def score_gallery(
    vectors: npt.ArrayLike,
    subjects: npt.ArrayLike,
    max_pairs: int = MAX_PAIRS,
    seed: int = 0,
) -> GalleryScores:
    """Score the gallery's faces against each other, labelled by their subject.

    `vectors` are unit vectors (n, d), so a dot product is the cosine. Each kind of score
    is capped at `max_pairs`: above it, a uniform sample of distinct pairs (at most the
    cap) drawn with `seed`, so the same gallery always gives the same scores.
    """
    matrix = np.asarray(vectors, dtype=np.float32)
    names, inverse = np.unique(np.asarray(subjects), return_inverse=True)
    if matrix.ndim != 2 or len(matrix) != inverse.size:
        raise ValueError(f"need one subject per vector, got {matrix.shape} and {inverse.size}")
    if max_pairs < 1:
        raise ValueError(f"max_pairs must be >= 1, got {max_pairs}")
    # Faces of one subject side by side: its pairs are then contiguous ranges of columns.
    order = np.argsort(inverse, kind="stable")
    matrix, labels = matrix[order], inverse[order].astype(np.int64)
    sizes = np.bincount(labels, minlength=len(names))
    starts = np.cumsum(sizes) - sizes
    n = len(labels)
    position = np.arange(n, dtype=np.int64)
    block_end = (starts + sizes)[labels]  # per face, one past its subject's last face
    rng = np.random.default_rng(seed)
    genuine_i, genuine_j, genuine_total = _pairs(
        position + 1, block_end - position - 1, max_pairs, rng
    )
    impostor_i, impostor_j, impostor_total = _pairs(block_end, n - block_end, max_pairs, rng)
    per_subject, per_subject_pairs, per_subject_total = _best_of_other_subjects(
        matrix, labels, starts, max_pairs, rng
    )
    return GalleryScores(
        faces=n,
        subjects=len(names),
        genuine=_dot(matrix, genuine_i, genuine_j),
        genuine_total=genuine_total,
        impostor=_dot(matrix, impostor_i, impostor_j),
        impostor_total=impostor_total,
        per_subject=per_subject,
        per_subject_total=per_subject_total,
        impostor_subjects=np.stack([labels[impostor_i], labels[impostor_j]], axis=1),
        per_subject_subjects=per_subject_pairs,
    )


def _pairs(
    first: IntArray, counts: IntArray, cap: int, rng: np.random.Generator
) -> tuple[IntArray, IntArray, int]:
    """Pairs (i, j) with j in [first[i], first[i] + counts[i]): all, or a sample of `cap`.

    Pairs are numbered k = 0..total-1 in (i, j) order and only the chosen numbers are
    turned into indices, so a sample never materialises the full list.
    """
    total = int(counts.sum())
    if total <= cap:
        chosen = np.arange(total, dtype=np.int64)
    else:
        # Distinct draws of uniform numbers: a uniform subset, with memory bounded by cap.
        chosen = np.unique(rng.integers(0, total, size=cap, dtype=np.int64))
    ends = np.cumsum(counts)
    i = np.searchsorted(ends, chosen, side="right").astype(np.int64)
    j = first[i] + chosen - (ends[i] - counts[i])
    return i, j, total


def _dot(matrix: npt.NDArray[np.float32], i: IntArray, j: IntArray) -> FloatArray:
    scores = np.empty(i.size, dtype=np.float64)
    for start in range(0, i.size, _PAIR_CHUNK):
        rows = slice(start, start + _PAIR_CHUNK)
        scores[rows] = np.einsum("ij,ij->i", matrix[i[rows]], matrix[j[rows]])
    return scores


def _best_of_other_subjects(
    matrix: npt.NDArray[np.float32],
    labels: IntArray,
    starts: IntArray,
    cap: int,
    rng: np.random.Generator,
) -> tuple[FloatArray, IntArray, int]:
    """Each (sampled) face's best similarity to every subject but its own, and the two
    subjects of each."""
    n, others = len(labels), len(starts) - 1
    if others < 1:
        return np.empty(0, dtype=np.float64), np.empty((0, 2), dtype=np.int64), 0
    wanted = min(n, max(1, cap // others), max(1, _MAX_PRODUCTS // n))
    rows = np.arange(n) if wanted == n else np.sort(rng.choice(n, size=wanted, replace=False))
    block = max(1, _BLOCK_PRODUCTS // n)
    found: list[FloatArray] = []
    pairs: list[IntArray] = []
    for start in range(0, rows.size, block):
        chunk = rows[start : start + block]
        best = np.maximum.reduceat(matrix[chunk] @ matrix.T, starts, axis=1)
        other = labels[chunk][:, None] != np.arange(others + 1)[None, :]
        found.append(best[other].astype(np.float64))
        face, subject = np.nonzero(other)
        pairs.append(np.stack([labels[chunk][face], subject], axis=1).astype(np.int64))
    return np.concatenate(found), np.concatenate(pairs), n * others

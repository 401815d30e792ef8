"""1:N identification metrics: closed-set rank-k accuracy and open-set DIR at a FAR."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from app.evaluation.far_calibration import (
    MIN_TARGET_FAR,
    calibrate_far,
    far_reliability,
    threshold_for_far,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

STRANGER = -1


def _probes(similarity: npt.ArrayLike, probe_labels: npt.ArrayLike) -> tuple[FloatArray, IntArray]:
    sim = np.asarray(similarity, dtype=np.float64)
    labels = np.asarray(probe_labels).astype(np.int64).ravel()
    if sim.ndim != 2 or sim.shape[0] != labels.size or sim.shape[1] == 0:
        raise ValueError(
            f"need an (n_probes, n_subjects) matrix and n_probes labels, "
            f"got {sim.shape} and {labels.size}"
        )
    if not np.all(np.isfinite(sim)):
        raise ValueError("similarities must be finite")
    if np.any((labels < STRANGER) | (labels >= sim.shape[1])):
        raise ValueError("probe labels must index gallery subjects, or be -1 for strangers")
    return sim, labels


def _true_rank(sim: FloatArray, labels: IntArray) -> IntArray:
    """1-based rank of each probe's true subject; ties with other subjects count against it.

    The pessimistic tie rule keeps a degenerate model (all similarities equal) from
    scoring perfect accuracy.
    """
    true_scores = sim[np.arange(labels.size), labels]
    return np.asarray((sim >= true_scores[:, None]).sum(axis=1), dtype=np.int64)


def rank_k_accuracy(similarity: npt.ArrayLike, probe_labels: npt.ArrayLike, k: int) -> float:
    """Fraction of known probes whose true subject is among the k most similar subjects.

    `similarity` is (n_probes, n_gallery_subjects); `probe_labels` holds the true subject
    index per probe, or -1 for strangers, which closed-set accuracy ignores.
    """
    sim, labels = _probes(similarity, probe_labels)
    if not 1 <= k <= sim.shape[1]:
        raise ValueError(f"k must lie in [1, {sim.shape[1]}], got {k}")
    known = labels != STRANGER
    if not known.any():
        raise ValueError("rank-k accuracy needs at least one probe that is in the gallery")
    return float(np.mean(_true_rank(sim[known], labels[known]) <= k))


def open_set_dir_at_far(
    similarity: npt.ArrayLike, probe_labels: npt.ArrayLike, far: float
) -> dict[str, Any]:
    """Open-set detection-and-identification rate at a stranger false-alarm rate.

    The threshold lets at most `far` of the strangers' best matches through (see
    `calibrate_far`); DIR is the fraction of known probes whose top-1 subject is right
    and scores at least the threshold. `below_resolution` is set when far < 1/strangers;
    `reliable` and `note` apply the rule TAR@FAR uses (`impostors_needed`) to the strangers,
    since a stranger's best match is this rate's impostor.
    """
    sim, labels = _probes(similarity, probe_labels)
    known = labels != STRANGER
    if known.all() or not known.any():
        raise ValueError("open-set evaluation needs both known probes and strangers (-1)")
    cal = calibrate_far(sim[~known].max(axis=1), far)
    reliable, note = far_reliability(cal, far, "strangers", "stranger", "DIR")
    sim_known, labels_known = sim[known], labels[known]
    hits = (_true_rank(sim_known, labels_known) == 1) & (sim_known.max(axis=1) >= cal.threshold)
    return {
        "threshold": cal.threshold,
        "dir": float(np.mean(hits)),
        "far_actual": cal.far_actual,
        "strangers": cal.impostors,
        "known": int(known.sum()),
        "below_resolution": cal.below_resolution,
        "reliable": reliable,
        "note": note,
    }


def per_comparison_far(target_far: float, gallery_size: int) -> float:
    """The single-comparison FAR p at which N independent comparisons give a stranger
    false-alarm rate of target_far: p = 1 - (1 - target_far)^(1/N)."""
    # expm1/log1p keep p accurate when target_far / N is tiny.
    return -math.expm1(math.log1p(-target_far) / gallery_size)


def open_set_threshold(
    impostor_scores_per_subject: npt.ArrayLike,
    gallery_size: int,
    target_far: float,
    noise: float = 0.0,
) -> float:
    """Identify threshold for a stranger false-alarm rate, from single-comparison scores.

    A stranger raises a false alarm when the best of its N = `gallery_size` comparisons
    passes t. If those comparisons are independent, P(max >= t) = 1 - (1 - p(t))^N, so the
    per-comparison FAR to calibrate at is p = 1 - (1 - target_far)^(1/N).

    Independence is an approximation. One probe's comparisons are positively correlated
    (faces of one gallery subject resemble each other; a generic-looking probe is close to
    many people), and positive dependence makes the max less extreme than the model
    predicts. So when N counts face templates and subjects have several faces, the
    threshold is slightly conservative (true false-alarm rate <= target). Conversely, if
    N counts subjects but the search takes the max over each subject's several faces
    while the scores here are single-face comparisons, it is optimistic (true rate above
    target): pass the number of templates actually searched.
    """
    if gallery_size < 1:
        raise ValueError(f"gallery_size must be >= 1, got {gallery_size}")
    if not MIN_TARGET_FAR <= target_far < 1.0:
        raise ValueError(f"a target FAR must lie in [{MIN_TARGET_FAR:g}, 1), got {target_far}")
    return threshold_for_far(
        impostor_scores_per_subject, per_comparison_far(target_far, gallery_size), noise
    )


def no_looser_than_verify(
    identify: float, identify_far: float, verify: float, verify_far: float
) -> float:
    """The identify threshold, raised to verify's when its target is no looser: a stranger
    has a chance per subject, so identify must be the stricter. The two come from different
    scores (each face's best per other subject, against all pairs), and on a small gallery
    identify came out a hair below verify (an audit: 0.26439134 against 0.26439138)."""
    return max(identify, verify) if identify_far <= verify_far else identify

"""Cosine scores of labelled pairs, their error rates, and the no-face and unreadable rules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.evaluation.pairs import Pair
from app.pipeline.types import FloatArray

# One unit vector per image, or None where no face was detected (or it was unreadable).
Embeddings = dict[Path, FloatArray | None]

NO_FACE_RULE = (
    "Pairs where either image has no detectable face, or cannot be read or decoded "
    "(listed under unreadable), are excluded from the metrics and reported separately; "
    "pairs_excluded counts both kinds, and accuracy_counting_failures_as_errors counts "
    "every excluded pair as wrong."
)
UNREADABLE_RULE = (
    "An image that cannot be read or decoded (empty, corrupt, not an image, too large, no "
    "permission) is left out like an image without a face, with the reason."
)


@dataclass(frozen=True)
class ScoredPairs:
    """Cosine scores of the pairs whose images both have a face, and what was left out."""

    scores: npt.NDArray[np.float64]
    labels: npt.NDArray[np.int64]
    excluded_genuine: int
    excluded_impostor: int

    @property
    def excluded(self) -> int:
        return self.excluded_genuine + self.excluded_impostor

    @property
    def impostor_scores(self) -> npt.NDArray[np.float64]:
        impostors: npt.NDArray[np.float64] = self.scores[self.labels == 0]
        return impostors


def score_pairs(pairs: Sequence[Pair], embeddings: Embeddings) -> ScoredPairs:
    """Cosine similarity of each pair with a face on both sides (vectors are unit length)."""
    scores: list[float] = []
    labels: list[int] = []
    excluded = {True: 0, False: 0}
    for pair in pairs:
        a, b = embeddings[pair.path_a], embeddings[pair.path_b]
        if a is None or b is None:
            excluded[pair.same] += 1
            continue
        scores.append(float(np.dot(a.astype(np.float64), b.astype(np.float64))))
        labels.append(int(pair.same))
    return ScoredPairs(
        scores=np.asarray(scores, dtype=np.float64),
        labels=np.asarray(labels, dtype=np.int64),
        excluded_genuine=excluded[True],
        excluded_impostor=excluded[False],
    )


def accuracy_at(scored: ScoredPairs, threshold: float, failures_as_errors: bool = False) -> float:
    """Accuracy at `threshold`; with failures_as_errors every excluded pair counts as wrong."""
    correct = int(np.sum((scored.scores >= threshold) == (scored.labels == 1)))
    total = scored.scores.size + (scored.excluded if failures_as_errors else 0)
    return correct / total if total else 0.0


def rates_at(scored: ScoredPairs, threshold: float) -> dict[str, Any]:
    """False-accept and false-reject rates of the scored pairs at one threshold."""
    accepted = scored.scores >= threshold
    genuine, impostor = scored.labels == 1, scored.labels == 0
    false_accepts, false_rejects = (
        int(np.sum(accepted & impostor)),
        int(np.sum(~accepted & genuine)),
    )
    return {
        "threshold": threshold,
        "far": false_accepts / max(int(impostor.sum()), 1),
        "frr": false_rejects / max(int(genuine.sum()), 1),
        "false_accepts": false_accepts,
        "false_rejects": false_rejects,
        "impostors": int(impostor.sum()),
        "genuine": int(genuine.sum()),
    }


def no_face_summary(
    pairs: Sequence[Pair],
    embeddings: Embeddings,
    scored: ScoredPairs,
    unreadable: Mapping[Path, str],
) -> dict[str, Any]:
    """Images without a face and the pairs left out; `pairs_excluded` includes the pairs
    left out for an unreadable image (see `unreadable_summary`)."""
    missing = sorted(
        str(path)
        for path, vector in embeddings.items()
        if vector is None and path not in unreadable
    )
    return {
        "rule": NO_FACE_RULE,
        "images": len(embeddings),
        "images_without_face": len(missing),
        "paths": missing,
        "pairs": len(pairs),
        "pairs_excluded": scored.excluded,
        "genuine_excluded": scored.excluded_genuine,
        "impostor_excluded": scored.excluded_impostor,
    }


def unreadable_summary(
    unreadable: Mapping[Path, str], pairs: Sequence[Pair] | None = None
) -> dict[str, Any]:
    """The images that could not be read or decoded, by path with the reason, and (given
    `pairs`) how many pairs need one of them."""
    summary: dict[str, Any] = {
        "rule": UNREADABLE_RULE,
        "images": len(unreadable),
        "paths": [{"path": str(p), "reason": why} for p, why in sorted(unreadable.items())],
    }
    if pairs is not None:
        summary["pairs_excluded"] = sum(
            1 for pair in pairs if pair.path_a in unreadable or pair.path_b in unreadable
        )
    return summary

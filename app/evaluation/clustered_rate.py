"""How far impostor scores of few people overstate their evidence: a rate's design effect.

A FAR measured as k of n impostor scores has a 95% bound (Clopper-Pearson) that treats the n
scores as independent trials. They are not: every score of a pair of look-alike people is
high at once, and n grows with the square of the subjects while the evidence grows with the
subjects. An audit (2026-11-28) calibrated on galleries of 12 of the 25 shared people and
probed with the other 13: the stated "95% bound" was below the rate strangers met in about a
third of 200 splits. Resampling whole subjects (a subjects bootstrap) measures how much the
rate really varies; divided by the binomial variance it gives the design effect D, and the
bound is then taken on n / D scores with k / D accepts (Kish's effective sample size).

In the same simulation (100 random splits of 12 gallery people each, targets 0.05/0.3,
0.01/0.1 and 0.01/0.05 for verify/identify), the stated FAR fell below the strangers' rate
in 4, 6 and 10 splits for verify and 4, 9 and 8 for identify, against 25-35% of splits
before. D came out at 6-14 there: those scores count as a sixth or less of their number.
Part of each miss is the noise of the strangers' rate itself (about 60 photos a split).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from app.evaluation.pairs import Pair

ROUNDS = 400
# Below this many people a subjects bootstrap measures nothing (two show no variance at all;
# one more person with a single photo made 2,500 scores of two people count as 200): each
# pair of people then counts as one trial, however many photos they have.
MIN_SUBJECTS = 10
# Below this many accepts their clustering cannot be seen: that of the top MIN_ACCEPTS
# scores, the tail nearest the threshold, stands in.
MIN_ACCEPTS = 5
SEED = 0


def design_effect(
    scores: npt.ArrayLike,
    subjects: npt.ArrayLike,
    threshold: float,
    noise: float = 0.0,
    rounds: int = ROUNDS,
    seed: int = SEED,
) -> float:
    """The design effect (>= 1) of the share of `scores` at or above `threshold` - `noise`.

    `subjects` is an (n, 2) array: the two subjects (any hashable labels) each impostor
    score compares. Each round draws as many subjects as there are, with replacement, and
    weighs a score by how often both of its subjects were drawn."""
    values = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(subjects)
    if labels.shape != (values.size, 2):
        raise ValueError(f"need two subjects per score, got {labels.shape} for {values.size}")
    names, index = np.unique(labels.ravel(), return_inverse=True)
    if values.size < 2:
        return 1.0
    # Scores and accepts summed per pair of subjects: a round then costs one step per pair
    # of subjects, not per score (500,000 of them on a large gallery).
    low, high = np.sort(index.reshape(-1, 2), axis=1).T
    pairs, which = np.unique(low * names.size + high, return_inverse=True)
    if names.size < MIN_SUBJECTS:
        return values.size / pairs.size
    hits = (values >= threshold - noise).astype(np.float64)
    if hits.sum() < MIN_ACCEPTS <= values.size:
        # Too few accepts to show how they cluster: measure the top MIN_ACCEPTS scores'
        # clustering instead, the tail nearest the threshold.
        hits = (values >= np.sort(values)[-MIN_ACCEPTS]).astype(np.float64)
    first, second = np.divmod(pairs, names.size)
    counts = np.bincount(which, minlength=pairs.size).astype(np.float64)
    passed = np.bincount(which, weights=hits, minlength=pairs.size)
    rng = np.random.default_rng(seed)
    rates = np.empty(rounds)
    for round_ in range(rounds):
        drawn = np.bincount(rng.integers(0, names.size, names.size), minlength=names.size)
        weight = (drawn[first] * drawn[second]).astype(np.float64)
        total = weight @ counts
        rates[round_] = weight @ passed / total if total else np.nan
    kept = np.isfinite(rates)
    if kept.sum() < 2:
        return 1.0
    rate = float(hits.mean())
    if not 0 < rate < 1:
        return 1.0
    effect = float(np.var(rates[kept])) / (rate * (1 - rate) / values.size)
    # A score's weight is the product of two draw counts, whose variance is about 3, not
    # the 1 of a draw count: resampling subjects alone inflates the variance of scores that
    # owe nothing to their subjects about 3-fold (measured 1.7-3.5 on such scores). That
    # much is taken off, so that independent scores count about one each.
    draws = 2 - 1 / names.size  # E[w^2] of a multinomial draw count w
    inflation = draws**2 - 1
    # Never fewer than one independent score.
    return min(float(values.size), max(1.0, effect - (inflation - 1)))


def impostor_identities(
    pairs: Sequence[Pair], embeddings: Mapping[Path, object | None]
) -> npt.NDArray[np.int64]:
    """The two people behind each impostor pair that `score_pairs` scores, in its order:
    photos joined by genuine pairs (same=1) are one person, each other photo its own. A
    pairs file names no identities; a person whose photos no genuine pair joins counts as
    several, which understates the design effect, never overstates it."""
    parent: dict[Path, Path] = {}

    def root(path: Path) -> Path:
        parent.setdefault(path, path)
        while parent[path] != path:
            parent[path] = parent[parent[path]]
            path = parent[path]
        return path

    for pair in pairs:
        if pair.same:
            parent[root(pair.path_a)] = root(pair.path_b)
    people: dict[Path, int] = {}
    found = [
        [people.setdefault(root(path), len(people)) for path in (pair.path_a, pair.path_b)]
        for pair in pairs
        if not pair.same
        and embeddings[pair.path_a] is not None
        and embeddings[pair.path_b] is not None
    ]
    return np.asarray(found, dtype=np.int64).reshape(-1, 2)

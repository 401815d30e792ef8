"""The design effect of a rate measured on impostor scores that share subjects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.evaluation.clustered_rate import design_effect, impostor_identities
from app.evaluation.pair_scores import score_pairs
from app.evaluation.pairs import Pair
from app.services.far_bounds import far_upper_bound, vouched_far


def _all_pairs(subjects: int, faces: int) -> np.ndarray:
    """Subject labels of every impostor face pair of a gallery: (n, 2)."""
    labels = np.repeat(np.arange(subjects), faces)
    first, second = np.triu_indices(labels.size, k=1)
    keep = labels[first] != labels[second]
    return np.stack([labels[first][keep], labels[second][keep]], axis=1)


def test_scores_that_owe_nothing_to_their_subjects_count_one_each() -> None:
    pairs = _all_pairs(40, 3)
    scores = np.random.default_rng(0).normal(0.0, 0.1, len(pairs))
    threshold = float(np.quantile(scores, 0.95))
    assert 1.0 <= design_effect(scores, pairs, threshold) < 2


def test_a_look_alike_pair_of_subjects_counts_for_far_less_than_its_scores() -> None:
    """12 subjects with 4 faces each: the scores between subjects 0 and 1 are all high,
    the rest low. The 16 accepts come from one pair of people, not from 16 chances."""
    pairs = _all_pairs(12, 4)
    rng = np.random.default_rng(1)
    scores = rng.normal(0.0, 0.05, len(pairs))
    look_alike = (pairs[:, 0] == 0) & (pairs[:, 1] == 1)
    scores[look_alike] = 0.5
    effect = design_effect(scores, pairs, 0.4)
    assert effect > 5
    accepts, n = int(look_alike.sum()), len(pairs)
    assert accepts == 16
    # The bound on the scores as they count is far above the one on them as independent.
    assert far_upper_bound(accepts, n, design_effect=effect) > 2 * far_upper_bound(accepts, n)
    assert vouched_far(0.01, n, accepts=accepts, design_effect=effect) > vouched_far(
        0.01, n, accepts=accepts
    )


def test_with_few_accepts_the_top_scores_clustering_stands_in() -> None:
    """Too few accepts have no variance worth measuring: the clustering of the top scores,
    the tail nearest the threshold, stands in for theirs."""
    pairs = _all_pairs(12, 4)
    rng = np.random.default_rng(2)
    scores = rng.normal(0.0, 0.05, len(pairs))
    look_alike = (pairs[:, 0] == 0) & (pairs[:, 1] == 1)
    scores[look_alike] = 0.5 + rng.normal(0.0, 0.01, int(look_alike.sum()))
    assert design_effect(scores, pairs, 2.0) > 5  # nothing reaches 2.0
    # Five hits among 12 subjects make a noisy estimate: 1.0-1.96 over 20 seeds.
    independent = np.random.default_rng(0).normal(0.0, 0.1, len(pairs))
    assert design_effect(independent, pairs, 2.0) < 2.5


def test_a_design_effect_of_one_changes_no_bound() -> None:
    assert far_upper_bound(5, 541, design_effect=1.0) == far_upper_bound(5, 541)
    assert far_upper_bound(0, 541, design_effect=0.5) == far_upper_bound(0, 541)  # never < 1
    assert vouched_far(0.01, 541, accepts=5, design_effect=None) == 0.0194


def test_scores_of_two_people_count_as_one_trial() -> None:
    """Resampling two subjects shows no variance, and gave D = 1: the smallest FAR stated
    for the gallery whose scores are the most alike (a review, 2026-11-28)."""
    assert design_effect([0.1], [[0, 1]], 0.0) == 1.0
    two = _all_pairs(2, 50)
    scores = np.random.default_rng(3).normal(0.0, 0.1, len(two))
    assert design_effect(scores, two, 0.2) == len(two) == 2500
    # Under MIN_SUBJECTS people, each pair of people counts as one trial: a third person
    # with one photo made those 2,500 scores count as 200 (a second review).
    labels = np.repeat([0, 1, 2], [50, 50, 1])
    first, second = np.triu_indices(labels.size, k=1)
    keep = labels[first] != labels[second]
    three = np.stack([labels[first][keep], labels[second][keep]], axis=1)
    scores = np.random.default_rng(3).normal(0.0, 0.1, len(three))
    assert design_effect(scores, three, 0.2) == len(three) / 3
    with pytest.raises(ValueError, match="two subjects per score"):
        design_effect([0.1, 0.2], [[0, 1]], 0.0)


def test_a_design_effect_that_is_not_finite_vouches_for_nothing() -> None:
    assert far_upper_bound(3, 4000, design_effect=float("inf")) == 1.0
    assert far_upper_bound(3, 4000, design_effect=float("nan")) == 1.0


def test_people_behind_impostor_pairs_are_joined_by_the_genuine_pairs() -> None:
    a1, a2, b1, c1, d1 = (Path(name) for name in ("a1", "a2", "b1", "c1", "d1"))
    pairs = [
        Pair(a1, a2, True),  # a1 and a2 are one person
        Pair(a1, b1, False),
        Pair(a2, b1, False),
        Pair(c1, d1, False),  # d1 has no face: not scored
        Pair(a2, c1, False),
    ]
    vector = np.ones(2) / np.sqrt(2)
    embeddings = {a1: vector, a2: vector, b1: vector, c1: vector, d1: None}
    people = impostor_identities(pairs, embeddings)
    assert len(people) == score_pairs(pairs, embeddings).impostor_scores.size == 3
    a, b, c = people[0][0], people[0][1], people[2][1]
    assert people.tolist() == [[a, b], [a, b], [a, c]]
    assert len({a, b, c}) == 3

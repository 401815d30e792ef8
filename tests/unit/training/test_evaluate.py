"""Pair metrics, per-probe outcomes and the promotion rule."""

from __future__ import annotations

import numpy as np
import pytest

from app.schemas.finetune import BeforeAfter, PairMetrics
from app.training import evaluate
from app.training.evaluate import decide_promotion, pair_metrics
from app.training.probes import ProbeChange, ProbeOutcomes, probe_change, probe_outcomes
from app.training.split import validation_pairs
from app.training.tracker import JobCancelled


def metrics(
    tar: float, auc: float = 0.99, genuine: int = 200, reliable: bool = True
) -> PairMetrics:
    return PairMetrics(
        pairs=genuine + 1000,
        genuine=genuine,
        impostor=1000 if reliable else 150,
        accuracy=0.9,
        roc_auc=auc,
        tar_at_far=tar,
        tar_reliable=reliable,
    )


def change(before: PairMetrics, after: PairMetrics) -> BeforeAfter:
    return BeforeAfter(before=before, after=after)


def probes(total: int, gained: int, lost: int = 0) -> ProbeChange:
    """`total` probes: `lost` verified only before, `gained` only after, the rest both times."""
    before = np.ones(total, dtype=bool)
    after = np.ones(total, dtype=bool)
    after[:lost] = False
    before[lost : lost + gained] = False
    ids = np.arange(total, dtype=np.int64)
    return probe_change(ProbeOutcomes(ids, before), ProbeOutcomes(ids, after))


def scored_pairs(
    verified: list[bool], genuine_per_probe: int = 3, impostors: int = 1200
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(scores, same, first, second) of hand-made validation pairs: probe p is face p, with
    `genuine_per_probe` genuine pairs against training faces, all 0.8 (accepted at FAR=1e-2)
    if verified[p] and all 0.2 otherwise; impostor scores spread over [-0.4, 0.4]."""
    n = len(verified)
    first = np.r_[np.repeat(np.arange(n), genuine_per_probe), np.arange(impostors) % n]
    second = n + np.arange(len(first))  # each pair's other face is a training face
    genuine = np.repeat(np.where(verified, 0.8, 0.2), genuine_per_probe)
    scores = np.r_[genuine, np.linspace(-0.4, 0.4, impostors)]
    same = np.r_[np.ones(len(genuine)), np.zeros(impostors)].astype(np.int64)
    return scores, same, first.astype(np.int64), second.astype(np.int64)


def decide_on_scores(
    verified_before: list[bool], verified_after: list[bool]
) -> tuple[BeforeAfter, ProbeChange]:
    before_scores, same, first, second = scored_pairs(verified_before)
    after_scores = scored_pairs(verified_after)[0]
    validation = change(pair_metrics(before_scores, same), pair_metrics(after_scores, same))
    outcomes = [probe_outcomes(s, same, first, second) for s in (before_scores, after_scores)]
    return validation, probe_change(*outcomes)


def test_one_probe_gained_over_several_correlated_pairs_does_not_promote() -> None:
    # The audit's case: one held-out photo newly accepted against each of its training
    # faces. Pair-level TAR rises 3.3 points and 3 genuine pairs, which the old rule
    # (1 point and 2 pairs) promoted; it is one face.
    validation, gain = decide_on_scores([False] + [True] * 29, [True] * 30)
    assert validation.after is not None
    assert 100 * (validation.after.tar_at_far - validation.before.tar_at_far) > 3
    assert (gain.probes, gain.before, gain.after, gain.gained, gain.lost) == (30, 29, 30, 1, 0)
    decision = decide_promotion(validation, None, tolerance_points=0.5, force=False, probes=gain)
    assert (decision.promote, decision.rule) == (False, "validation_not_improved")
    assert "held-out faces verified 29 -> 30 of 30 (+1 -0, sign test p=0.5)" in decision.reason


def test_a_gain_spread_over_many_probes_promotes() -> None:
    validation, gain = decide_on_scores([False] * 8 + [True] * 22, [True] * 30)
    assert (gain.gained, gain.lost) == (8, 0) and gain.p_value == pytest.approx(0.5**8)
    decision = decide_promotion(validation, None, tolerance_points=0.5, force=False, probes=gain)
    assert (decision.promote, decision.rule) == (True, "validation_improved")


def test_a_probe_is_verified_by_its_best_genuine_score() -> None:
    scores, same, first, second = scored_pairs([False, True, True])
    scores[1] = 0.9  # probe 0: one of its three genuine pairs passes the threshold
    outcome = probe_outcomes(scores, same, first, second)
    assert outcome.probes.tolist() == [0, 1, 2] and outcome.verified.all()


def test_a_genuine_pair_of_two_held_out_faces_counts_for_both() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1], dtype=np.int64)
    first, second, same = validation_pairs(labels, np.array([1, 2, 4], dtype=np.int64))
    # Impostors at -0.5, so the threshold sits just above it; genuine pairs lie below it,
    # except the pair of held-out faces 1 and 2, listed once (as 1's).
    scores = np.where(same == 1, -0.9, -0.5)
    scores[(first == 1) & (second == 2)] = 0.9
    outcome = probe_outcomes(scores, same, first, second)
    assert outcome.probes.tolist() == [1, 2, 4]
    assert outcome.verified.tolist() == [True, True, False]


def test_probe_change_needs_the_same_probes() -> None:
    with pytest.raises(ValueError, match="same probes"):
        probe_change(
            ProbeOutcomes(np.array([0, 1]), np.array([True, False])),
            ProbeOutcomes(np.array([0, 2]), np.array([True, True])),
        )


@pytest.mark.parametrize(
    ("gained", "lost", "promote"),
    [
        (4, 0, False),  # p = 0.0625
        (5, 0, True),  # p = 0.031: the smallest gain the test calls significant
        (9, 4, False),  # 5 more probes, but p = 0.13: as many flips either way as not
        (9, 2, True),  # p = 0.033
    ],
)
def test_the_gain_must_be_significant(gained: int, lost: int, promote: bool) -> None:
    decision = decide_promotion(
        change(metrics(0.90), metrics(0.95)), None, 0.5, False, probes(40, gained, lost)
    )
    expected = "validation_improved" if promote else "validation_not_improved"
    assert (decision.promote, decision.rule) == (promote, expected)


def test_the_gain_must_be_min_gain_probes_even_at_a_looser_significance(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(evaluate, "SIGNIFICANCE", 0.5)
    short = decide_promotion(change(metrics(0.9), metrics(0.95)), None, 0.5, False, probes(40, 4))
    assert (short.promote, short.rule) == (False, "validation_not_improved")
    assert "at least 5 more held-out faces" in short.reason
    enough = decide_promotion(change(metrics(0.9), metrics(0.95)), None, 0.5, False, probes(40, 5))
    assert enough.promote


def test_too_few_probes_are_unmeasurable_unless_forced() -> None:
    validation = change(metrics(0.80), metrics(0.99))
    few = decide_promotion(validation, None, 0.5, False, probes(19, gained=8))
    assert (few.promote, few.rule) == (False, "validation_unmeasurable")
    assert "only 19 held-out faces" in few.reason
    assert decide_promotion(validation, None, 0.5, False, probes(20, gained=8)).promote
    forced = decide_promotion(validation, None, 0.5, True, probes(19, gained=8))
    assert (forced.promote, forced.rule) == (True, "forced")


def test_without_probe_outcomes_no_gain_is_measurable() -> None:
    decision = decide_promotion(change(metrics(0.5), metrics(0.99)), None, 0.5, False)
    assert (decision.promote, decision.rule) == (False, "validation_unmeasurable")


@pytest.mark.parametrize(
    ("validation", "external", "force", "promote", "rule"),
    [
        (change(metrics(0.90), metrics(0.95)), None, False, True, "validation_improved"),
        # Too few impostors to measure FAR=1e-2: no gain counts.
        (
            change(metrics(0.50, reliable=False), metrics(0.95, reliable=False)),
            None,
            False,
            False,
            "validation_unmeasurable",
        ),
        (
            change(metrics(0.90), metrics(0.95)),
            change(metrics(0.950), metrics(0.946)),
            False,
            True,
            "validation_improved",
        ),
        (
            change(metrics(0.90), metrics(0.95)),
            change(metrics(0.95), metrics(0.94)),
            False,
            False,
            "external_dropped",
        ),
        (
            change(metrics(0.95), metrics(0.90)),
            change(metrics(0.95), metrics(0.5)),
            True,
            True,
            "forced",
        ),
    ],
)
def test_promotion_rule(
    validation: BeforeAfter, external: BeforeAfter | None, force: bool, promote: bool, rule: str
) -> None:
    decision = decide_promotion(validation, external, 0.5, force, probes(40, gained=8))
    assert (decision.promote, decision.rule) == (promote, rule)
    assert "validation TAR@FAR" in decision.reason and "genuine pairs" in decision.reason


def test_pair_metrics_of_perfectly_separated_scores() -> None:
    scores = np.r_[np.linspace(0.6, 0.9, 20), np.linspace(-0.2, 0.3, 200)]
    labels = np.r_[np.ones(20), np.zeros(200)].astype(np.int64)
    result = pair_metrics(scores, labels, excluded=3)
    assert (result.pairs, result.genuine, result.impostor, result.excluded_pairs) == (
        220,
        20,
        200,
        3,
    )
    assert result.accuracy == result.roc_auc == result.tar_at_far == 1.0
    assert result.tar_reliable is False  # 200 impostors cannot measure FAR=1e-2 reliably


def test_embedding_the_gallery_checks_for_a_cancel_before_every_batch(models) -> None:  # type: ignore[no-untyped-def]
    """Evaluating a large gallery took minutes with no check: a cancel waited them out."""
    crops = [np.zeros((112, 112, 3), dtype=np.uint8)] * (evaluate.EMBED_BATCH + 1)
    checks: list[int] = []

    def check() -> None:
        checks.append(len(checks))
        if len(checks) == 2:
            raise JobCancelled("cancelled")

    with pytest.raises(JobCancelled):
        evaluate.embed_images(models.embedder.module, models.embedder, crops, check)
    assert len(checks) == 2  # before the first batch, and before the second, which it stopped
    vectors = evaluate.embed_images(models.embedder.module, models.embedder, crops[:3])
    assert vectors.shape == (3, models.embedder.embedding_dim)

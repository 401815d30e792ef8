"""Pair metrics and the promotion rule."""

from __future__ import annotations

import numpy as np
import pytest

from app.schemas.finetune import BeforeAfter, PairMetrics
from app.training.evaluate import decide_promotion, pair_metrics


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


@pytest.mark.parametrize(
    ("validation", "external", "force", "promote", "rule"),
    [
        (change(metrics(0.90), metrics(0.95)), None, False, True, "validation_improved"),
        # An AUC tie-break, or one more genuine pair, is noise, not "measurably better".
        (
            change(metrics(0.90, 0.98), metrics(0.90, 0.99)),
            None,
            False,
            False,
            "validation_not_improved",
        ),
        (change(metrics(0.900), metrics(0.905)), None, False, False, "validation_not_improved"),
        # 1.5 points but a single pair of 60: below MIN_GAIN_PAIRS.
        (
            change(metrics(0.9, genuine=60), metrics(0.9 + 1 / 60, genuine=60)),
            None,
            False,
            False,
            "validation_not_improved",
        ),
        (change(metrics(0.90), metrics(0.90)), None, False, False, "validation_not_improved"),
        (change(metrics(0.95), metrics(0.90, 1.0)), None, False, False, "validation_not_improved"),
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
    decision = decide_promotion(validation, external, tolerance_points=0.5, force=force)
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

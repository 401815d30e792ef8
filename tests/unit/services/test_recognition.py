"""Identify's decision: on the score as searched, not the rounded one it shows."""

from __future__ import annotations

from app.schemas.recognition import Candidate
from app.services.recognition import best_match


def _ranked(*scores: float) -> list[tuple[float, Candidate]]:
    return [
        (s, Candidate(subject_id=f"s{i}", name=f"n{i}", similarity=round(s, 6)))
        for i, s in enumerate(scores)
    ]


def test_a_score_just_below_the_threshold_is_no_match_though_it_rounds_up_to_it() -> None:
    # A calibrated threshold sits just above the highest impostor score (audit, stop 13):
    # 0.30607575 shows as 0.306076, which reaches 0.30607576, but the score itself does not.
    ranked = _ranked(0.30607575, 0.2)
    assert ranked[0][1].similarity >= 0.30607576
    assert best_match(ranked, 0.30607576) is None
    assert best_match(ranked, 0.30607575) == ranked[0][1]  # equal to the threshold: a match


def test_no_candidates_no_match() -> None:
    assert best_match([], 0.0) is None

"""Turns: once a rate limit is met, every worker holds, then they take turns apart."""

from __future__ import annotations

import pytest

from app.commands.retry_policy import Turns


def test_turns_are_free_until_a_429_then_spaced_by_its_wait() -> None:
    turns = Turns()
    assert turns.claim() == 0.0 and turns.claim() == 0.0  # no limit met: no waiting
    turns.record(0.5)
    assert turns.claim() == pytest.approx(0.5, abs=0.05)  # everyone holds for the wait
    assert turns.claim() == pytest.approx(1.0, abs=0.05)  # then one a gap apart
    assert turns.claim() == pytest.approx(1.5, abs=0.05)


def test_the_gap_narrows_with_answers_that_are_not_429s() -> None:
    turns = Turns()
    turns.record(0.2)
    for _ in range(400):
        turns.record(None)
    assert turns._gap == 0.0
    ahead = turns.claim()
    assert turns.claim() == pytest.approx(ahead, abs=0.01)  # no spacing any more

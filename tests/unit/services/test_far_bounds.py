"""Stated FARs: the 95% upper bound of what the impostor scores measured, never below target."""

from __future__ import annotations

import pytest
from scipy.stats import binom

from app.services.far_bounds import far_over, far_upper_bound, vouched_far


def test_the_upper_bound_is_the_rate_that_would_let_so_few_through_one_time_in_20() -> None:
    for accepts, impostors in [(0, 1), (0, 541), (5, 541), (2, 100), (1000, 10**6)]:
        bound = far_upper_bound(accepts, impostors)
        assert binom.cdf(accepts, impostors, bound) == pytest.approx(0.05, rel=1e-6)
        assert bound > accepts / impostors
    assert far_upper_bound(0, 541) == pytest.approx(1 - 0.05 ** (1 / 541))  # about 3/n
    assert far_upper_bound(7, 7) == 1.0
    with pytest.raises(ValueError):
        far_upper_bound(8, 7)


def test_a_stated_far_is_no_lower_than_the_scores_can_vouch_for() -> None:
    # None of 5000 through: the bound, 6e-4, is below the target, which stands.
    assert vouched_far(1e-3, 5000, accepts=0) == 1e-3
    # 5 of 5000 through (as many as the target allows): the bound, 0.0021, is stated.
    assert vouched_far(1e-3, 5000) == 0.00211
    assert vouched_far(0.01, 541, accepts=5) == 0.0194  # the shared pairs at 0.01
    assert vouched_far(1e-9, 143) == 0.0208  # 1 - 0.05^(1/143): nothing lower was measured
    # Identify over 50 comparisons: 1 of 5000 through per comparison, bound 9.5e-4.
    assert vouched_far(0.01, 5000, comparisons=50) == 0.0464
    assert vouched_far(0.2, 1) == 0.95  # one score vouches for next to nothing
    assert vouched_far(1e-9, 9) == 0.284  # rounded up: never stated below what was seen
    # Two identical photos under two names pass any threshold: 2 of 100 through.
    assert vouched_far(0.01, 100, accepts=2) == 0.0617


def test_far_over_comparisons() -> None:
    assert far_over(0.01, 1) == 0.01
    assert far_over(0.01, 5) == pytest.approx(1 - 0.99**5)
    assert far_over(1.0, 3) == 1.0

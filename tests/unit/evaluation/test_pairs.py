"""Hand-checked pair scoring: the no-face exclusion rule and accuracy with failures counted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.evaluation.pairs import (
    Embeddings,
    Pair,
    accuracy_at,
    rates_at,
    read_pairs,
    score_pairs,
)

A, B, C, D = (Path(name) for name in "abcd")
# Unit vectors with cosines a.b = 0.8, a.c = 0.6, b.c = 0.48.
EMBEDDINGS: Embeddings = {
    A: np.array([1.0, 0.0, 0.0], dtype=np.float32),
    B: np.array([0.8, 0.6, 0.0], dtype=np.float32),
    C: np.array([0.6, 0.0, 0.8], dtype=np.float32),
    D: None,  # no face
}
PAIRS = [
    Pair(A, B, True),  # 0.80, accepted at 0.5: right
    Pair(A, C, False),  # 0.60, accepted at 0.5: wrong
    Pair(B, C, False),  # 0.48, rejected: right
    Pair(A, D, True),  # excluded (genuine)
    Pair(D, C, False),  # excluded (impostor)
    Pair(D, D, True),  # excluded (genuine)
]


def test_pairs_with_a_faceless_image_are_excluded_and_counted() -> None:
    scored = score_pairs(PAIRS, EMBEDDINGS)
    assert scored.scores == pytest.approx([0.8, 0.6, 0.48])
    assert scored.labels.tolist() == [1, 0, 0]
    assert (scored.excluded_genuine, scored.excluded_impostor, scored.excluded) == (2, 1, 3)
    assert scored.impostor_scores == pytest.approx([0.6, 0.48])


def test_accuracy_with_and_without_counting_failures_as_errors() -> None:
    scored = score_pairs(PAIRS, EMBEDDINGS)
    assert accuracy_at(scored, 0.5) == pytest.approx(2 / 3)
    assert accuracy_at(scored, 0.5, failures_as_errors=True) == pytest.approx(2 / 6)
    assert accuracy_at(scored, 0.7, failures_as_errors=True) == pytest.approx(3 / 6)


def test_rates_at_a_threshold() -> None:
    rates = rates_at(score_pairs(PAIRS, EMBEDDINGS), 0.5)
    assert (rates["far"], rates["frr"]) == (0.5, 0.0)
    assert (rates["false_accepts"], rates["impostors"], rates["genuine"]) == (1, 2, 1)


def test_read_pairs_resolves_paths_and_checks_labels(tmp_path: Path) -> None:
    csv = tmp_path / "pairs.csv"
    csv.write_text("path_a,path_b,same\nx/1.jpg,x/2.jpg,1\nx/1.jpg,y/1.jpg,0\n")
    assert read_pairs(csv, tmp_path) == [
        Pair(tmp_path / "x/1.jpg", tmp_path / "x/2.jpg", True),
        Pair(tmp_path / "x/1.jpg", tmp_path / "y/1.jpg", False),
    ]
    csv.write_text("path_a,path_b,same\nx/1.jpg,x/2.jpg,maybe\n")
    with pytest.raises(ValueError, match="pairs.csv:2"):
        read_pairs(csv, tmp_path)
    csv.write_text("a,b\n")
    with pytest.raises(ValueError, match="path_a"):
        read_pairs(csv, tmp_path)


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("x/1.jpg,x/2.jpg", "lacks same"),
        ("x/1.jpg", "lacks path_b, same"),
        (",x/2.jpg,1", "lacks path_a"),
        ("x/1,a.jpg,x/2.jpg,1", "has more than 3 fields"),  # a comma in a path, unquoted
    ],
)
def test_a_malformed_row_is_named_not_a_crash(tmp_path: Path, row: str, problem: str) -> None:
    csv = tmp_path / "pairs.csv"
    csv.write_text(f"path_a,path_b,same\nx/1.jpg,x/2.jpg,1\n{row}\n")
    with pytest.raises(ValueError, match=rf"pairs.csv:3: the row {problem}"):
        read_pairs(csv, tmp_path)

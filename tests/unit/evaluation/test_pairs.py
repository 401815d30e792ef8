"""Hand-checked pair reading and scoring: duplicates, self-pairs, no-face and unreadable rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.evaluation.pair_scores import (
    Embeddings,
    accuracy_at,
    no_face_summary,
    rates_at,
    score_pairs,
    unreadable_summary,
)
from app.evaluation.pairs import Pair, dropped_summary, read_pairs, read_pairs_file

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


def _write(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "pairs.csv"
    path.write_text("path_a,path_b,same\n" + "".join(f"{row}\n" for row in rows))
    return path


def test_duplicates_in_either_order_and_self_pairs_are_dropped_by_line(tmp_path: Path) -> None:
    csv = _write(
        tmp_path,
        "x/1.jpg,x/2.jpg,1",  # line 2: kept
        "x/1.jpg,y/1.jpg,0",  # line 3: kept
        "x/1.jpg,x/2.jpg,true",  # line 4: repeats line 2
        "y/1.jpg,x/1.jpg,0",  # line 5: line 3 reversed
        "x/1.jpg,x/1.jpg,1",  # line 6: an image with itself
        "./y/1.jpg,y//1.jpg,1",  # line 7: the same path spelled twice
        "x/../y/1.jpg,y/1.jpg,1",  # line 8: and once more, through ..
        "z/../x/2.jpg,x/1.jpg,1",  # line 9: line 2 reversed, through ..
    )
    pairs_file = read_pairs_file(csv, tmp_path)
    assert pairs_file.pairs == [
        Pair(tmp_path / "x/1.jpg", tmp_path / "x/2.jpg", True),
        Pair(tmp_path / "x/1.jpg", tmp_path / "y/1.jpg", False),
    ]
    assert read_pairs(csv, tmp_path) == pairs_file.pairs
    assert [(r.line, r.repeats_line) for r in pairs_file.duplicates] == [(4, 2), (5, 3), (9, 2)]
    assert [(r.line, r.path_a) for r in pairs_file.self_pairs] == [
        (6, tmp_path / "x/1.jpg"),
        (7, tmp_path / "y/1.jpg"),
        (8, tmp_path / "y/1.jpg"),
    ]
    summary = dropped_summary(pairs_file)
    assert (summary["rows"], summary["duplicates"], summary["self_pairs"]) == (8, 3, 3)
    assert summary["duplicate_rows"][1] == {
        "line": 5,
        "repeats_line": 3,
        "path_a": str(tmp_path / "y/1.jpg"),
        "path_b": str(tmp_path / "x/1.jpg"),
    }
    assert summary["self_pair_rows"][0] == {"line": 6, "path": str(tmp_path / "x/1.jpg")}
    assert "dropped" in summary["rule"]


def test_a_file_without_duplicates_drops_nothing(tmp_path: Path) -> None:
    pairs_file = read_pairs_file(_write(tmp_path, "a.jpg,b.jpg,1", "a.jpg,c.jpg,0"), tmp_path)
    assert len(pairs_file.pairs) == pairs_file.rows == 2
    assert pairs_file.duplicates == pairs_file.self_pairs == []


@pytest.mark.parametrize("repeat", ["x/1.jpg,x/2.jpg,0", "x/2.jpg,x/1.jpg,false"])
def test_a_pair_labelled_both_ways_refuses_the_file_naming_both_lines(
    tmp_path: Path, repeat: str
) -> None:
    csv = _write(tmp_path, "x/1.jpg,x/2.jpg,1", "x/1.jpg,x/2.jpg,1", "x/3.jpg,x/2.jpg,0", repeat)
    with pytest.raises(ValueError, match=r"pairs.csv:5: .* same=0 here and same=1 on line 2"):
        read_pairs_file(csv, tmp_path)


def test_line_numbers_count_blank_lines(tmp_path: Path) -> None:
    csv = tmp_path / "pairs.csv"
    csv.write_text("path_a,path_b,same\na.jpg,b.jpg,1\n\na.jpg,b.jpg,1\n\nc.jpg,c.jpg,0\n")
    pairs_file = read_pairs_file(csv, tmp_path)
    assert [r.line for r in pairs_file.duplicates + pairs_file.self_pairs] == [4, 6]


def test_a_file_of_self_pairs_holds_no_pairs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="holds no pairs of two different images"):
        read_pairs_file(_write(tmp_path, "a.jpg,a.jpg,1"), tmp_path)
    with pytest.raises(ValueError, match="holds no pairs$"):
        read_pairs_file(_write(tmp_path), tmp_path)


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    csv = tmp_path / "pairs.csv"
    csv.write_bytes(b"\xef\xbb\xbfpath_a,path_b,same\r\nx/1.jpg,x/2.jpg,1\r\n")
    assert read_pairs(csv, tmp_path) == [Pair(tmp_path / "x/1.jpg", tmp_path / "x/2.jpg", True)]


def test_unreadable_images_are_excluded_like_faceless_ones_but_counted_apart() -> None:
    # D is unreadable, E (no face) is not: both are None among the embeddings.
    E = Path("e")
    embeddings: Embeddings = {**EMBEDDINGS, E: None}
    pairs = [*PAIRS, Pair(A, E, False)]
    unreadable = {D: "empty file"}
    scored = score_pairs(pairs, embeddings)
    no_face = no_face_summary(pairs, embeddings, scored, unreadable)
    assert (no_face["images"], no_face["images_without_face"], no_face["paths"]) == (5, 1, ["e"])
    assert (no_face["pairs"], no_face["pairs_excluded"]) == (7, 4)
    summary = unreadable_summary(unreadable, pairs)
    assert summary["paths"] == [{"path": "d", "reason": "empty file"}]
    assert (summary["images"], summary["pairs_excluded"]) == (1, 3)
    assert "pairs_excluded" not in unreadable_summary(unreadable)


@pytest.mark.parametrize(
    ("data", "where"),
    [
        # Excel's plain "CSV" on Windows: Latin-1, é on the second line.
        ("path_a,path_b,same\nclé.jpg,b.jpg,1\n".encode("latin-1"), ":2: byte 0xe9"),
        # A BOM is valid UTF-8: it must not shift the line the bad byte is found on.
        (b"\xef\xbb\xbfpath_a,path_b,same\na.jpg,b.jpg,1\nb.jpg,c\xe9.jpg,0\n", ":3: byte 0xe9"),
        ("path_a,path_b,same\na.jpg,b.jpg,1\n".encode("utf-16"), ":1: byte 0xff"),
        (bytes(range(256)) * 4, ":2: byte 0x80"),  # one newline (0x0a) before 0x80
        # Read in 64 KiB chunks: an é split across the first boundary is no error, and the
        # bad byte past it is found on its own line.
        (
            b"path_a,path_b,same\n" + b"a" * (65536 - 20) + "é\n".encode() + b"b\xff\n",
            ":3: byte 0xff",
        ),
    ],
)
def test_a_file_that_is_not_utf8_is_named_with_its_line(
    tmp_path: Path, data: bytes, where: str
) -> None:
    csv = tmp_path / "pairs.csv"
    csv.write_bytes(data)
    with pytest.raises(ValueError) as refused:
        read_pairs_file(csv, tmp_path)
    assert str(refused.value) == (
        f"{csv}{where}: not UTF-8 text (saved as Latin-1 or UTF-16, or not a CSV at all?); "
        "save it as CSV UTF-8"
    )


def test_a_field_too_long_for_csv_is_a_clean_error(tmp_path: Path) -> None:
    """csv refuses fields over 128 KiB with its own error, which was a traceback."""
    csv = tmp_path / "pairs.csv"
    csv.write_text("path_a,path_b,same\n" + "a" * 200_000 + ".jpg,b.jpg,1\n")
    with pytest.raises(ValueError, match=f"^{csv}: not a pairs file: field larger than"):
        read_pairs_file(csv, tmp_path)

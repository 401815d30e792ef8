"""Labelled image pairs: read the CSV, each pair once, and say which rows were dropped."""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.evaluation.csv_checks import not_utf8, refuse_repeated_columns

DROP_RULE = (
    "A row that repeats an earlier pair, in the same or the reverse order, is dropped and the "
    "first kept; a row that pairs an image with itself is dropped. Counted twice, a pair "
    "weighs double and can land in both the training and the test folds of the k-fold "
    "accuracy; an image against itself scores 1.0. A pair labelled both same=1 and same=0 "
    "is a contradiction: the file is refused."
)

_COLUMNS = ("path_a", "path_b", "same")
_LABELS = {"1": True, "0": False, "true": True, "false": False}


@dataclass(frozen=True)
class Pair:
    path_a: Path
    path_b: Path
    same: bool


@dataclass(frozen=True)
class DroppedRow:
    """A row of a pairs file left out before scoring (see DROP_RULE)."""

    line: int
    path_a: Path
    path_b: Path
    repeats_line: int | None  # the row of the same pair kept instead; None for a self-pair


@dataclass(frozen=True)
class PairsFile:
    """The distinct pairs of a pairs file, in file order, and the rows dropped to get them."""

    pairs: list[Pair]
    duplicates: list[DroppedRow]
    self_pairs: list[DroppedRow]

    @property
    def rows(self) -> int:
        return len(self.pairs) + len(self.duplicates) + len(self.self_pairs)


def read_pairs(csv_path: Path, root: Path) -> list[Pair]:
    """The distinct pairs of a path_a,path_b,same CSV (see `read_pairs_file`)."""
    return read_pairs_file(csv_path, root).pairs


def read_pairs_file(csv_path: Path, root: Path) -> PairsFile:
    """Pairs from a path_a,path_b,same CSV, relative paths taken from `root`; see DROP_RULE."""
    try:
        rows = _read_rows(csv_path, root)
    except UnicodeDecodeError as exc:
        raise not_utf8(csv_path) from exc
    except csv.Error as exc:  # e.g. a field over csv's 128 KiB limit
        raise ValueError(f"{csv_path}: not a pairs file: {exc}") from exc
    pairs_file = _distinct(rows, csv_path)
    if not pairs_file.pairs:
        pairs_of = " of two different images" if rows else ""
        raise ValueError(f"{csv_path} holds no pairs{pairs_of}")
    return pairs_file


def _read_rows(csv_path: Path, root: Path) -> list[tuple[int, Pair]]:
    """Each row of the file as (its line, its pair); raises on a row that is not one."""
    # utf-8-sig: Excel's "CSV UTF-8" starts with a byte-order mark, which would otherwise
    # become part of the first column's name.
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{csv_path} lacks the column(s) {', '.join(missing)}")
        refuse_repeated_columns(csv_path, reader.fieldnames or [], _COLUMNS)
        rows = []
        for row in reader:
            line = reader.line_num  # not a count of rows: DictReader skips blank lines
            # A short row leaves its last fields None; a long one puts the extras under None.
            empty = [c for c in _COLUMNS if not (row[c] or "").strip()]
            if empty or None in row:
                problem = f"lacks {', '.join(empty)}" if empty else "has more than 3 fields"
                raise ValueError(f"{csv_path}:{line}: the row {problem}")
            label = _LABELS.get(row["same"].strip().lower())
            if label is None:
                raise ValueError(f"{csv_path}:{line}: same must be 1 or 0, got {row['same']!r}")
            # Normalised, so that a/./b.jpg and x/../a/b.jpg are known for one file.
            path_a, path_b = (
                Path(os.path.normpath(root / row[c].strip())) for c in ("path_a", "path_b")
            )
            pair = Pair(path_a, path_b, label)
            rows.append((line, pair))
    return rows


def identical_impostors(pairs: Sequence[Pair], digests: Mapping[Path, str]) -> list[Pair]:
    """The impostor pairs (same=0) whose two files have one sha256: a photo and its copy,
    labelled as two people, score about 1.0 and pass any threshold."""
    return [
        pair
        for pair in pairs
        if not pair.same
        and pair.path_a in digests
        and digests[pair.path_a] == digests.get(pair.path_b)
    ]


def _distinct(rows: Sequence[tuple[int, Pair]], csv_path: Path) -> PairsFile:
    first: dict[frozenset[Path], tuple[int, bool]] = {}  # the pair, either order -> its row
    pairs: list[Pair] = []
    duplicates: list[DroppedRow] = []
    self_pairs: list[DroppedRow] = []
    for line, pair in rows:
        if pair.path_a == pair.path_b:
            self_pairs.append(DroppedRow(line, pair.path_a, pair.path_b, None))
            continue
        key = frozenset((pair.path_a, pair.path_b))
        if key not in first:
            first[key] = (line, pair.same)
            pairs.append(pair)
            continue
        earlier, same = first[key]
        if same != pair.same:
            raise ValueError(
                f"{csv_path}:{line}: {pair.path_a} and {pair.path_b} are labelled "
                f"same={int(pair.same)} here and same={int(same)} on line {earlier}; "
                "fix one of the two rows"
            )
        duplicates.append(DroppedRow(line, pair.path_a, pair.path_b, earlier))
    return PairsFile(pairs, duplicates, self_pairs)


def dropped_summary(pairs_file: PairsFile) -> dict[str, Any]:
    """The rows DROP_RULE left out, by line, for the JSON report."""
    return {
        "rule": DROP_RULE,
        "rows": pairs_file.rows,
        "duplicates": len(pairs_file.duplicates),
        "duplicate_rows": [
            {
                "line": row.line,
                "repeats_line": row.repeats_line,
                "path_a": str(row.path_a),
                "path_b": str(row.path_b),
            }
            for row in pairs_file.duplicates
        ],
        "self_pairs": len(pairs_file.self_pairs),
        "self_pair_rows": [{"line": r.line, "path": str(r.path_a)} for r in pairs_file.self_pairs],
    }

"""Labelled image pairs: read the CSV (each pair once), score them, apply the no-face rule."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.pipeline.types import FloatArray

# One unit vector per image, or None where no face was detected.
Embeddings = dict[Path, FloatArray | None]

NO_FACE_RULE = (
    "Pairs where either image has no detectable face are excluded from the metrics and "
    "reported separately; accuracy_counting_failures_as_errors counts every excluded pair "
    "as wrong."
)

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


@dataclass(frozen=True)
class ScoredPairs:
    """Cosine scores of the pairs whose images both have a face, and what was left out."""

    scores: npt.NDArray[np.float64]
    labels: npt.NDArray[np.int64]
    excluded_genuine: int
    excluded_impostor: int

    @property
    def excluded(self) -> int:
        return self.excluded_genuine + self.excluded_impostor

    @property
    def impostor_scores(self) -> npt.NDArray[np.float64]:
        impostors: npt.NDArray[np.float64] = self.scores[self.labels == 0]
        return impostors


def read_pairs(csv_path: Path, root: Path) -> list[Pair]:
    """The distinct pairs of a path_a,path_b,same CSV (see `read_pairs_file`)."""
    return read_pairs_file(csv_path, root).pairs


def read_pairs_file(csv_path: Path, root: Path) -> PairsFile:
    """Pairs from a path_a,path_b,same CSV, relative paths taken from `root`; see DROP_RULE."""
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{csv_path} lacks the column(s) {', '.join(missing)}")
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
    pairs_file = _distinct(rows, csv_path)
    if not pairs_file.pairs:
        pairs_of = " of two different images" if rows else ""
        raise ValueError(f"{csv_path} holds no pairs{pairs_of}")
    return pairs_file


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


def score_pairs(pairs: Sequence[Pair], embeddings: Embeddings) -> ScoredPairs:
    """Cosine similarity of each pair with a face on both sides (vectors are unit length)."""
    scores: list[float] = []
    labels: list[int] = []
    excluded = {True: 0, False: 0}
    for pair in pairs:
        a, b = embeddings[pair.path_a], embeddings[pair.path_b]
        if a is None or b is None:
            excluded[pair.same] += 1
            continue
        scores.append(float(np.dot(a.astype(np.float64), b.astype(np.float64))))
        labels.append(int(pair.same))
    return ScoredPairs(
        scores=np.asarray(scores, dtype=np.float64),
        labels=np.asarray(labels, dtype=np.int64),
        excluded_genuine=excluded[True],
        excluded_impostor=excluded[False],
    )


def accuracy_at(scored: ScoredPairs, threshold: float, failures_as_errors: bool = False) -> float:
    """Accuracy at `threshold`; with failures_as_errors every excluded pair counts as wrong."""
    correct = int(np.sum((scored.scores >= threshold) == (scored.labels == 1)))
    total = scored.scores.size + (scored.excluded if failures_as_errors else 0)
    return correct / total if total else 0.0


def rates_at(scored: ScoredPairs, threshold: float) -> dict[str, Any]:
    """False-accept and false-reject rates of the scored pairs at one threshold."""
    accepted = scored.scores >= threshold
    genuine, impostor = scored.labels == 1, scored.labels == 0
    false_accepts, false_rejects = (
        int(np.sum(accepted & impostor)),
        int(np.sum(~accepted & genuine)),
    )
    return {
        "threshold": threshold,
        "far": false_accepts / max(int(impostor.sum()), 1),
        "frr": false_rejects / max(int(genuine.sum()), 1),
        "false_accepts": false_accepts,
        "false_rejects": false_rejects,
        "impostors": int(impostor.sum()),
        "genuine": int(genuine.sum()),
    }


def no_face_summary(
    pairs: Sequence[Pair], embeddings: Embeddings, scored: ScoredPairs
) -> dict[str, Any]:
    missing = sorted(str(path) for path, vector in embeddings.items() if vector is None)
    return {
        "rule": NO_FACE_RULE,
        "images": len(embeddings),
        "images_without_face": len(missing),
        "paths": missing,
        "pairs": len(pairs),
        "pairs_excluded": scored.excluded,
        "genuine_excluded": scored.excluded_genuine,
        "impostor_excluded": scored.excluded_impostor,
    }

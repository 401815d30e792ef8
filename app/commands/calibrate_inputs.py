"""What `calibrate` checks before any model loads, so that a bad input fails in seconds."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from app.commands.evaluate_inputs import argument_problem, require_files
from app.evaluation.pairs import Pair

# A billion faces: more than one machine's index holds, and far below the ~1e308 at which
# the gallery size, as a float, overflows the per-comparison FAR (a traceback, not an error).
MAX_GALLERY_SIZE = 10**9


def gallery_count(text: str) -> int:
    """--gallery-size: a count of faces in [1, MAX_GALLERY_SIZE]."""
    value = int(text)  # a ValueError is argparse's "invalid int value"
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    if value > MAX_GALLERY_SIZE:  # not echoed: it may run to hundreds of digits
        raise argparse.ArgumentTypeError(f"must be at most {MAX_GALLERY_SIZE}")
    return value


gallery_count.__name__ = "int"


def path_problem(args: argparse.Namespace) -> str | None:
    """What makes --pairs or --root unusable (missing, a folder, a FIFO), or None: evaluate's
    checks, so that both commands refuse one input with one message."""
    as_evaluate = argparse.Namespace(
        identify=False, pairs=args.pairs, manifest=None, root=args.root, out=None
    )
    return argument_problem(as_evaluate)


def require_photos(pairs: list[Pair], source: Path) -> None:
    """Refuse pairs naming a photo that is missing or not a file, as evaluate does: one
    left out as unreadable still let a calibration be stored, and a FIFO or /dev/zero
    would have been read forever."""
    require_files([path for pair in pairs for path in (pair.path_a, pair.path_b)], source)


def frr_text(rates: dict[str, Any]) -> str:
    """The FRR as the report prints it: with no genuine pair there is none to measure."""
    if not rates["genuine"]:
        return "FRR n/a (no genuine pairs)"
    return f"FRR {rates['frr']:.4f} on the genuine pairs"

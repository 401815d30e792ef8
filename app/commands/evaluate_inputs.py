"""What `evaluate` checks before any model loads, so that a bad input fails in seconds."""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from app.commands.gallery_split import read_labelled
from app.evaluation.pair_scores import Embeddings, ScoredPairs
from app.evaluation.pairs import Pair, PairsFile, read_pairs_file


def argument_problem(args: argparse.Namespace) -> str | None:
    """What makes the arguments unusable together, or None; values are checked by argparse."""
    if args.identify == (args.pairs is not None):
        return "pass exactly one of --pairs (verification) or --identify"
    if args.manifest is not None and not args.identify:
        return "--manifest lists photos for --identify; verification reads them from --pairs"
    for name, path, kind in (
        ("pairs", args.pairs, "file"),
        ("manifest", args.manifest, "file"),
        ("root", args.root, "folder"),
    ):
        if path is not None and not path.exists():
            return f"--{name} {path} does not exist"
        if path is not None and not (path.is_file() if kind == "file" else path.is_dir()):
            return f"--{name} {path} is not a {kind}"
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        return f"--out {args.out} is not a folder"
    return None


def read_source(args: argparse.Namespace) -> PairsFile | dict[str, list[Path]]:
    """The pairs, or the labelled photos, to evaluate, once every photo they name is found."""
    if args.identify:
        labelled = read_labelled(args.root, args.manifest)
        photos = [path for paths in labelled.values() for path in paths]
        require_files(photos, args.manifest or args.root)
        if all(len(paths) <= args.gallery_per_subject for paths in labelled.values()):
            # split_gallery says so too, but only after every photo is embedded.
            raise ValueError(
                f"no identity in {args.manifest or args.root} has more than "
                f"{args.gallery_per_subject} photo(s): none is left to probe the gallery "
                "(add photos, or lower --gallery-per-subject if above 1)"
            )
        return labelled
    pairs_file = read_pairs_file(args.pairs, args.root)
    require_files([p for pair in pairs_file.pairs for p in (pair.path_a, pair.path_b)], args.pairs)
    if len({pair.same for pair in pairs_file.pairs}) < 2:
        # The metrics need both (verification_report says so too, but only after the
        # embedding, where no-face pairs can still remove one kind).
        raise ValueError("need both genuine (1) and impostor (0) pairs")
    return pairs_file


def require_writable_folder(out: Path) -> None:
    """Make the output folder `out` and write a file in it, now rather than after minutes
    of embedding: a ValueError when it cannot be made or written (read-only, no permission,
    a file in its path)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".evaluate-check.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ValueError(f"cannot write to the output folder {out}: {reason}") from exc


def require_files(paths: Iterable[Path], source: Path) -> None:
    """Refuse, naming the first ten, when any of `paths` is not an existing file: found
    now, not when the embedding reaches it and throws away the work done so far."""
    missing = [str(path) for path in dict.fromkeys(paths) if not path.is_file()]
    if missing:
        raise ValueError(
            f"{len(missing)} photo(s) named in {source} are missing or not files: "
            + first_items(missing)
        )


def at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)  # a ValueError is argparse's "invalid int value"
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = "int"
    return parse


def rate(zero: bool, smallest: float = 0.0) -> Callable[[str], float]:
    """A fraction in [0, 1) when `zero` is allowed, else in (0, 1); in [smallest, 1) when
    `smallest` is above 0."""

    def parse(text: str) -> float:
        value = float(text)
        if smallest > 0.0:
            ok, interval = smallest <= value < 1.0, f"[{smallest:g}, 1)"
        elif zero:
            ok, interval = 0.0 <= value < 1.0, "[0, 1)"
        else:
            ok, interval = 0.0 < value < 1.0, "(0, 1)"
        if not ok:
            raise argparse.ArgumentTypeError(f"must lie in {interval}, got {text}")
        return value

    parse.__name__ = "float"
    return parse


def finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def first_items(items: list[str], shown: int = 10) -> str:
    """Up to `shown` items, then how many more: a long list in one readable line."""
    more = f", and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def require_both_kinds(
    pairs: list[Pair], scored: ScoredPairs, embeddings: Embeddings, unreadable: dict[Path, str]
) -> None:
    """Refuse, saying why, when images without a face or unreadable ones took away every
    genuine or every impostor pair: the metrics compare the two kinds."""
    for same, kind in ((True, "genuine (same=1)"), (False, "impostor (same=0)")):
        if (scored.labels == int(same)).any():
            continue
        lost = [pair for pair in pairs if pair.same == same]
        images = dict.fromkeys(path for pair in lost for path in (pair.path_a, pair.path_b))
        no_face = [str(p) for p in images if embeddings[p] is None and p not in unreadable]
        bad = [f"{p} ({unreadable[p]})" for p in images if p in unreadable]
        to_bad = sum(1 for pair in lost if pair.path_a in unreadable or pair.path_b in unreadable)
        raise ValueError(
            f"no {kind} pair left to score, and the metrics need both kinds: all {len(lost)} "
            f"were left out, {len(lost) - to_bad} for an image without a face and {to_bad} "
            f"for an unreadable image. No face in: {first_items(no_face) or 'none'}; "
            f"unreadable: {first_items(bad) or 'none'}"
        )

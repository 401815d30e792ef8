"""Labelled photos for identification tests, split into gallery, known probes and strangers."""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from app.commands.import_files import IMAGE_SUFFIXES
from app.evaluation.csv_checks import not_utf8, refuse_repeated_columns

# Manifest labels that name no single person.
SPECIAL_LABELS = frozenset({"noface", "multi"})
DEFAULT_STRANGER_FRACTION = 0.2

SPLIT_RULE = (
    "Photos without a detectable face are dropped first. Per identity, photos are sorted by "
    "path; the first k go to the gallery and the rest are known probes. Identities with k "
    "or fewer photos cannot have a probe and become strangers (all their photos are "
    "stranger probes). Of the others, a fraction is also held out as strangers: identities "
    "ordered by the SHA-256 of their label, the first round(fraction * count) taken, at "
    "least one left enrolled. A probe's similarity to a subject is the maximum cosine "
    "over that subject's gallery photos."
)


@dataclass(frozen=True)
class Split:
    gallery: dict[str, list[Path]]  # subject -> enrolled photos, subjects sorted by label
    probes: list[tuple[Path, str]]  # known probes and their subject
    strangers: list[tuple[Path, str]]  # stranger probes and their (unenrolled) identity
    too_few_photos: list[str]
    held_out: list[str]


def read_labelled(root: Path, manifest: Path | None) -> dict[str, list[Path]]:
    """identity -> sorted photo paths, from a path,identity manifest or root/<identity>/*."""
    photos: dict[str, list[Path]] = {}
    if manifest is not None:
        for path, identity in _manifest_labels(root, manifest).items():
            if identity not in SPECIAL_LABELS:
                photos.setdefault(identity, []).append(path)
    else:
        # Hidden entries (.DS_Store, .thumbnails/) are never photos of a person.
        for folder in sorted(
            p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
        ):
            files = [
                p
                for p in folder.iterdir()
                if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
            ]
            if files:
                photos[folder.name] = files
    if not photos:
        raise ValueError(f"no labelled photos found under {root}")
    return {identity: sorted(set(paths)) for identity, paths in sorted(photos.items())}


def _manifest_labels(root: Path, manifest: Path) -> dict[Path, str]:
    """photo -> its label, each photo once; a row that lacks a field, has too many, or
    labels a photo already labelled otherwise refuses the file, naming its line.

    A photo with two labels would be enrolled for one person and probed as another (or as
    a stranger), which corrupts the open-set figures without any sign.
    """
    try:
        labels = _read_manifest(root, manifest)
    except UnicodeDecodeError as exc:
        raise not_utf8(manifest) from exc
    except csv.Error as exc:  # e.g. a field over csv's 128 KiB limit
        raise ValueError(f"{manifest}: not a manifest: {exc}") from exc
    return {path: identity for path, (identity, _) in labels.items()}


def _read_manifest(root: Path, manifest: Path) -> dict[Path, tuple[str, int]]:
    labels: dict[Path, tuple[str, int]] = {}  # photo -> its label and the line it is on
    # utf-8-sig: Excel's "CSV UTF-8" starts with a byte-order mark.
    with manifest.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        if not {"path", "identity"} <= set(fields):
            raise ValueError(f"{manifest} needs the columns path and identity")
        refuse_repeated_columns(manifest, fields, ("path", "identity"))
        for row in reader:
            line = reader.line_num  # not a count of rows: DictReader skips blank lines
            # An empty path would name --root itself, and an empty identity no one.
            # A short row leaves its last fields None; a long one puts the extras under None.
            empty = [c for c in ("path", "identity") if not (row[c] or "").strip()]
            if empty or None in row:
                problem = (
                    f"lacks {', '.join(empty)}" if empty else f"has more than {len(fields)} fields"
                )
                raise ValueError(f"{manifest}:{line}: the row {problem}")
            # Normalised, so that a/./b.jpg and x/../a/b.jpg are known for one file.
            path = Path(os.path.normpath(root / row["path"].strip()))
            identity = row["identity"].strip()
            earlier = labels.setdefault(path, (identity, line))
            if earlier[0] != identity:
                raise ValueError(
                    f"{manifest}:{line}: {path} is labelled {identity!r} here and "
                    f"{earlier[0]!r} on line {earlier[1]}; fix one of the two rows"
                )
    return labels


def split_gallery(
    photos: Mapping[str, Sequence[Path]], per_subject: int, stranger_fraction: float
) -> Split:
    """Deterministic split; see SPLIT_RULE."""
    if per_subject < 1:
        raise ValueError(f"gallery photos per subject must be >= 1, got {per_subject}")
    if not 0.0 <= stranger_fraction < 1.0:
        raise ValueError(f"stranger fraction must lie in [0, 1), got {stranger_fraction}")
    ordered = {identity: sorted(paths) for identity, paths in photos.items() if paths}
    too_few = sorted(i for i, paths in ordered.items() if len(paths) <= per_subject)
    eligible = sorted(i for i in ordered if i not in too_few)
    if not eligible:
        raise ValueError(f"no identity has more than {per_subject} photos with a face")
    # A hash order is stable across runs and machines, and unrelated to how labels are
    # spelled, so the held-out people are not all from one source or one letter.
    by_hash = sorted(eligible, key=lambda i: hashlib.sha256(i.encode()).hexdigest())
    count = min(round(stranger_fraction * len(eligible)), len(eligible) - 1)
    held_out = sorted(by_hash[:count])
    enrolled = [i for i in eligible if i not in held_out]
    return Split(
        gallery={i: list(ordered[i][:per_subject]) for i in enrolled},
        probes=[(path, i) for i in enrolled for path in ordered[i][per_subject:]],
        strangers=[(path, i) for i in sorted(too_few + held_out) for path in ordered[i]],
        too_few_photos=too_few,
        held_out=held_out,
    )


def copies_of_gallery_photos(split: Split, digests: Mapping[Path, str]) -> list[tuple[Path, Path]]:
    """(probe, gallery photo) for each probe, known or stranger, whose file has the sha256
    of a gallery photo: it scores about 1.0 against the photo it copies."""
    enrolled: dict[str, Path] = {}
    for photos in split.gallery.values():
        for path in photos:
            if path in digests:
                enrolled.setdefault(digests[path], path)
    return [
        (path, enrolled[digests[path]])
        for path, _ in split.probes + split.strangers
        if path in digests and digests[path] in enrolled
    ]

"""`evaluate --identify`: closed-set rank-k and open-set DIR on a gallery split of local photos."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.commands.evaluate_summary import copied_probe_warnings, unreadable_lines
from app.commands.file_embeddings import embed_readable_files, no_face_paths
from app.commands.gallery_split import (
    DEFAULT_STRANGER_FRACTION,
    SPLIT_RULE,
    copies_of_gallery_photos,
    split_gallery,
)
from app.evaluation.identification import STRANGER, open_set_dir_at_far, rank_k_accuracy
from app.evaluation.pair_scores import unreadable_summary
from app.pipeline.analyzer import FacePipeline
from app.pipeline.types import FloatArray

__all__ = ["DEFAULT_STRANGER_FRACTION", "evaluate", "subject_similarity", "summary"]

Matrix = npt.NDArray[np.float64]


def subject_similarity(
    probes: Sequence[FloatArray], gallery: Sequence[Sequence[FloatArray]]
) -> Matrix:
    """(n_probes, n_subjects): each probe's best cosine over each subject's gallery faces."""
    probe_matrix = np.asarray(probes, dtype=np.float64)
    columns = [
        (probe_matrix @ np.asarray(faces, dtype=np.float64).T).max(axis=1) for faces in gallery
    ]
    return np.stack(columns, axis=1)


def evaluate(
    pipeline: FacePipeline,
    labelled: Mapping[str, Sequence[Path]],
    args: argparse.Namespace,
    max_pixels: int,
    max_bytes: int,
) -> dict[str, Any]:
    """The report for `labelled` photos (identity -> paths, as `read_labelled` gives them)."""
    paths = [path for photos in labelled.values() for path in photos]
    embedded = embed_readable_files(
        pipeline, paths, max_pixels, batch=args.batch, max_bytes=max_bytes
    )
    embeddings = embedded.vectors  # None for an unreadable photo too: left out alike
    with_face = {
        i: [p for p in photos if embeddings[p] is not None] for i, photos in labelled.items()
    }
    split = split_gallery(with_face, args.gallery_per_subject, args.stranger_fraction)
    subjects = list(split.gallery)
    column = {subject: j for j, subject in enumerate(subjects)}
    probes = split.probes + split.strangers
    similarity = subject_similarity(
        [_vector(embeddings[path]) for path, _ in probes],
        [[_vector(embeddings[path]) for path in split.gallery[s]] for s in subjects],
    )
    labels = np.array(
        [column[s] for _, s in split.probes] + [STRANGER] * len(split.strangers), dtype=np.int64
    )
    missing = no_face_paths(embedded)
    report: dict[str, Any] = {
        "root": str(args.root),
        "manifest": None if args.manifest is None else str(args.manifest),
        "split_rule": SPLIT_RULE,
        "gallery_per_subject": args.gallery_per_subject,
        "stranger_fraction": args.stranger_fraction,
        "subjects": len(subjects),
        "gallery_faces": sum(len(photos) for photos in split.gallery.values()),
        "known_probes": len(split.probes),
        "stranger_probes": len(split.strangers),
        "stranger_identities": sorted({i for _, i in split.strangers}),
        "too_few_photos": split.too_few_photos,
        "held_out": split.held_out,
        "no_face": {
            "rule": "Photos without a detectable face, or that cannot be read or decoded "
            "(listed under unreadable), are left out of the split.",
            "images": len(embeddings),
            "images_without_face": len(missing),
            "paths": sorted(str(p) for p in missing),
            "identities_lost": sorted(i for i, photos in with_face.items() if not photos),
        },
        "unreadable": unreadable_summary(embedded.unreadable),
        # The split always leaves at least one enrolled subject with a probe.
        "rank_1": rank_k_accuracy(similarity, labels, 1),
        "rank_5": rank_k_accuracy(similarity, labels, 5) if len(subjects) >= 5 else None,
        "open_set": None,
        "at_threshold": [rates_at(similarity, labels, t) for t in args.threshold],
        "warnings": copied_probe_warnings(copies_of_gallery_photos(split, embedded.digests)),
    }
    if split.strangers:
        report["open_set"] = {
            "far_target": args.far,
            **open_set_dir_at_far(similarity, labels, args.far),
        }
    return report


def _vector(vector: FloatArray | None) -> FloatArray:
    # The split only keeps photos with a face, so a None here is a bug, not bad data.
    assert vector is not None
    return vector


def rates_at(similarity: Matrix, labels: npt.NDArray[np.int64], threshold: float) -> dict[str, Any]:
    """What identify would answer at `threshold`: top-1 subject if its score reaches it."""
    best, top = similarity.max(axis=1), similarity.argmax(axis=1)
    accepted, stranger = best >= threshold, labels == STRANGER
    known = ~stranger
    correct = accepted & known & (top == labels)
    return {
        "threshold": threshold,
        "stranger_false_accept_rate": _share(accepted & stranger, stranger),
        "stranger_false_accepts": int(np.sum(accepted & stranger)),
        "strangers": int(stranger.sum()),
        "dir": _share(correct, known),
        "misidentified": int(np.sum(accepted & known & (top != labels))),
        "rejected_known": int(np.sum(~accepted & known)),
        "known": int(known.sum()),
    }


def _share(hits: npt.NDArray[np.bool_], of: npt.NDArray[np.bool_]) -> float | None:
    return float(hits.sum() / of.sum()) if of.any() else None


def summary(report: dict[str, Any]) -> str:
    no_face = report["no_face"]
    lines = [
        f"{report['model_version']}: {report['subjects']} subjects "
        f"({report['gallery_faces']} gallery faces), {report['known_probes']} known probes, "
        f"{report['stranger_probes']} stranger probes from {len(report['stranger_identities'])} "
        f"identities; {report['seconds']} s on {report['device']}",
        f"  no face in {no_face['images_without_face']} of {no_face['images']} images, "
        f"{report['unreadable']['images']} unreadable (left out)",
        *unreadable_lines(report["unreadable"]),
        f"  rank-1 {_fmt(report['rank_1'])}, rank-5 {_fmt(report['rank_5'])}",
    ]
    if (open_set := report["open_set"]) is not None:
        lines.append(
            f"  open-set DIR@FAR={open_set['far_target']:g}: {open_set['dir']:.4f} at threshold "
            f"{open_set['threshold']:.4f} (stranger FAR {open_set['far_actual']:.4f} of "
            f"{open_set['strangers']}; reliable: {open_set['reliable']}, below resolution: "
            f"{open_set['below_resolution']}). {open_set['note']}"
        )
    for rates in report["at_threshold"]:
        lines.append(
            f"  at threshold {rates['threshold']:.4f}: strangers matched "
            f"{rates['stranger_false_accepts']}/{rates['strangers']}, DIR {_fmt(rates['dir'])}, "
            f"misidentified {rates['misidentified']}, rejected {rates['rejected_known']} "
            f"of {rates['known']} known"
        )
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"

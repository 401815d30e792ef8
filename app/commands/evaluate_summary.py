"""The printed summaries of `evaluate`'s verification report, its unreadable images and warnings."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.commands.evaluate_inputs import first_items
from app.evaluation.pairs import Pair


def verification_summary(report: dict[str, Any]) -> str:
    no_face = report["no_face"]
    lines = [
        f"{report['model_version']}: {report['pairs']} scored pairs ({report['genuine']} genuine, "
        f"{report['impostor']} impostor), {report['seconds']} s on {report['device']}",
        _kfold_line(report),
        f"  best threshold {report['best_threshold']:.4f}: accuracy "
        f"{report['accuracy_at_best_threshold']:.4f}, counting no-face pairs as errors "
        f"{report['accuracy_counting_failures_as_errors']:.4f}",
        f"  ROC AUC {report['roc_auc']:.4f}; EER {report['eer']:.4f} "
        f"at threshold {report['eer_threshold']:.4f}",
    ]
    for point in report["tar_at_far"]:
        lines.append(
            f"  TAR@FAR={point['far_target']:g}: {point['tar']:.4f} (threshold "
            f"{point['threshold']:.4f}, FAR {point['far_actual']:.4f}). {point['note']}"
        )
    lines.append(_dropped_line(report["dropped_rows"]))
    lines.append(
        f"  no face in {no_face['images_without_face']} of {no_face['images']} images, "
        f"{report['unreadable']['images']} unreadable; "
        f"{no_face['pairs_excluded']} of {no_face['pairs']} pairs excluded "
        f"({no_face['genuine_excluded']} genuine, {no_face['impostor_excluded']} impostor)"
    )
    lines.extend(unreadable_lines(report["unreadable"]))
    lines.append(f"  rule: {no_face['rule']}")
    for rates in report["at_threshold"]:
        lines.append(
            f"  at threshold {rates['threshold']:.4f}: FAR {rates['far']:.4f} "
            f"({rates['false_accepts']}/{rates['impostors']}), FRR {rates['frr']:.4f} "
            f"({rates['false_rejects']}/{rates['genuine']})"
        )
    return "\n".join(lines)


def _kfold_line(report: dict[str, Any]) -> str:
    if report["accuracy_mean"] is None:  # too few pairs of a class to fold
        # Here, not at the top: it loads scikit-learn, which `--help` should not wait for.
        from app.evaluation.verification import KFOLD_NEEDS

        return f"  accuracy (k-fold): n/a ({KFOLD_NEEDS})"
    return (
        f"  accuracy ({report['folds']}-fold): {report['accuracy_mean']:.4f} "
        f"+/- {report['accuracy_std']:.4f}"
    )


def _dropped_line(dropped: dict[str, Any]) -> str:
    """The rows DROP_RULE left out, by line, and the rule when any was."""
    if not dropped["duplicates"] and not dropped["self_pairs"]:
        return f"  no duplicate or self-pair among the {dropped['rows']} rows"
    repeats = [f"line {r['line']} repeats {r['repeats_line']}" for r in dropped["duplicate_rows"]]
    selves = [f"line {r['line']}: {r['path']}" for r in dropped["self_pair_rows"]]
    return (
        f"  dropped {dropped['duplicates']} duplicate row(s) "
        f"({first_items(repeats) or 'none'}) and "
        f"{dropped['self_pairs']} self-pair(s) ({first_items(selves) or 'none'}) of "
        f"{dropped['rows']} rows\n  rule: {dropped['rule']}"
    )


def unreadable_lines(unreadable: dict[str, Any]) -> list[str]:
    """The images that could not be read or decoded, by path with the reason; none if none."""
    if not unreadable["images"]:
        return []
    listed = [f"{item['path']} ({item['reason']})" for item in unreadable["paths"]]
    return [
        f"  unreadable, left out: {first_items(listed)}",
        f"  rule: {unreadable['rule']}",
    ]


def identical_copies_warnings(identical: Sequence[Pair]) -> list[str]:
    """A warning for impostor pairs of byte-identical files (see `identical_impostors`),
    none without any: they are labelling mistakes that raise every FAR."""
    if not identical:
        return []
    listed = [f"{pair.path_a} = {pair.path_b}" for pair in identical]
    return [
        f"{len(identical)} impostor pair(s) (same=0) are byte-identical copies of one photo "
        f"(one sha256): {first_items(listed)}. They score about 1.0 and pass any threshold, "
        "which raises the FAR: one photo is not two people, remove those rows."
    ]


def copied_probe_warnings(copies: Sequence[tuple[Path, Path]]) -> list[str]:
    """A warning for probes that are byte-identical copies of gallery photos (see
    `copies_of_gallery_photos`), none without any."""
    if not copies:
        return []
    listed = [f"{probe} = {enrolled}" for probe, enrolled in copies]
    return [
        f"{len(copies)} probe photo(s) are byte-identical copies of a gallery photo (one "
        f"sha256): {first_items(listed)}. A copy scores about 1.0 against the photo enrolled: "
        "under the same identity it inflates rank-1 and DIR, under another it is a labelling "
        "mistake. Keep one copy of each photo."
    ]

"""What `python -m app calibrate` prints about the thresholds it found, stored or not."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.commands.calibrate_inputs import frr_text
from app.commands.evaluate_summary import unreadable_lines
from app.evaluation.far_calibration import FarCalibration
from app.evaluation.identification import per_comparison_far
from app.evaluation.pair_scores import ScoredPairs, rates_at, unreadable_summary
from app.services.calibration import Calibration
from app.services.calibration_reliability import FarCheck, reliability_notes
from app.services.far_bounds import stated_identify_far, stated_verify_far


@dataclass(frozen=True)
class Report:
    """What the report says besides the calibration and its scores."""

    unreadable: dict[Path, str]  # the files that could not be read, and why
    no_face: dict[str, Any]  # pair_scores.no_face_summary
    why: str  # where the gallery size came from
    will: str  # "will" when it is stored, "would" when refused
    checks: tuple[FarCheck, FarCheck]


def print_report(
    args: argparse.Namespace,
    calibration: Calibration,
    scored: ScoredPairs,
    verify: FarCalibration,
    report: Report,
) -> None:
    impostors = scored.impostor_scores
    identify, identify_far = calibration.identify_threshold, calibration.identify_far
    gallery, will = calibration.gallery_size, report.will
    rates = rates_at(scored, verify.threshold)
    resolution = 1 / impostors.size
    per_comparison = per_comparison_far(identify_far, gallery)
    print(f"calibrated {calibration.model_version} on {args.pairs}")
    print(
        f"  pairs: {scored.scores.size} scored ({rates['genuine']} genuine, {impostors.size} "
        f"impostor); {report.no_face['pairs_excluded']} excluded because "
        f"{report.no_face['images_without_face']} image(s) had no face and "
        f"{len(report.unreadable)} could not be read"
    )
    for line in unreadable_lines(unreadable_summary(report.unreadable)):
        print(line)
    print(
        f"  verify threshold {verify.threshold:.4f} for target FAR {args.target_far:g}: "
        f"achieved FAR {verify.far_actual:.4g} ({rates['false_accepts']}/{impostors.size} "
        f"impostor pairs), {frr_text(rates)}"
    )
    stated = stated_verify_far(calibration)
    print(
        f"  responses {will} state verify FAR {stated:g}: the target, or the 95% upper bound of "
        f"{_counted(calibration.verify_accepts, impostors.size, calibration.verify_design_effect)}"
        " where that is higher"
    )
    if verify.below_resolution and not calibration.verify_accepts:  # none sits above 1.0
        print(
            f"  note: target FAR {args.target_far:g} is below the resolution of "
            f"{impostors.size} impostor pairs (1/{impostors.size} = {resolution:.4g}); the "
            "threshold sits just above the highest impostor score and its FAR is unmeasured"
        )
    print(
        f"  identify threshold {identify:.4f} for stranger FAR {identify_far:g} at gallery "
        f"size N={gallery} ({report.why}); per-comparison FAR {per_comparison:.4g}, "
        f"{frr_text(rates_at(scored, identify))}"
    )
    stated = stated_identify_far(calibration, gallery)
    counted = _counted(
        calibration.identify_accepts, impostors.size, calibration.identify_design_effect
    )
    print(
        f"  responses {will} state identify FAR {stated:g} at N={gallery}, and more as the "
        f"gallery grows: 1 - (1 - p)^N, p the 95% upper bound of {counted}"
    )
    if per_comparison < resolution:
        print(
            f"  note: per-comparison FAR {per_comparison:.4g} is below the resolution of the "
            "pairs; the identify threshold sits just above the highest impostor score"
        )
    print(f"  method: {calibration.method}")
    for note in reliability_notes(report.checks, "impostor pairs"):
        print(f"  note: {note}")
    for warning in calibration.warnings:
        print(f"  warning: {warning}")


def _counted(accepts: int | None, scores: int, design_effect: float | None) -> str:
    """`accepts`/`scores`, and as how many independent scores they count."""
    said = f"{accepts}/{scores}"
    if design_effect is not None and design_effect > 1:
        independent = round(scores / design_effect)
        ones = "one" if independent == 1 else "ones"
        said += (
            f" (scores of the same people are correlated: they count as {independent} "
            f"independent {ones}, design effect {design_effect:.3g})"
        )
    return said

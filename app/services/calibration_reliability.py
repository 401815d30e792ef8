"""Whether a calibration's impostor scores can measure its target FARs, and the refusal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.errors import CalibrationUnreliable
from app.evaluation.far_calibration import (
    MIN_EXPECTED_FALSE_ACCEPTS,
    MIN_TARGET_FAR,
    impostors_needed,
)
from app.evaluation.identification import per_comparison_far
from app.schemas.calibration import CalibrationPublic
from app.services.calibration import METHOD_STRANGER_SET, Calibration
from app.services.far_bounds import far_over, round_up


@dataclass(frozen=True)
class FarCheck:
    """One threshold's target FAR against the scores behind it (the evaluation's rule)."""

    name: str  # "verify" or "identify"
    target: float  # the FAR asked for: identify's is a stranger's chance at gallery_size
    per_score: float  # the rate each score measures: identify's target per comparison
    gallery_size: int
    scores: int
    needed: int
    # The smallest target these scores can measure; None when none below 1 can be.
    smallest_target: float | None

    @property
    def reliable(self) -> bool:
        return self.scores >= self.needed

    def sentence(self, scores: str = "impostor scores") -> str:
        rate = f"a FAR of {self.target:.3g}"
        if self.per_score != self.target:
            rate += f" at N={self.gallery_size} ({self.per_score:.3g} per comparison)"
        return (
            f"{self.name}: {self.scores} {scores} cannot measure {rate}; about "
            f"{self.needed} are needed to see about {MIN_EXPECTED_FALSE_ACCEPTS} false accepts"
        )

    def details(self) -> dict[str, Any]:
        return {
            "reliable": self.reliable,
            "target_far": self.target,
            "per_comparison_far": self.per_score,
            "gallery_size": self.gallery_size,
            "scores": self.scores,
            "needed": self.needed,
            "smallest_measurable_far": self.smallest_target,
        }


def far_checks(calibration: Calibration) -> tuple[FarCheck, FarCheck]:
    """Verify's and identify's checks, from what the calibration stores: the same verdict
    for a fresh calibration and for one read back from the file."""
    verify = _check("verify", calibration.verify_far, 1, calibration.impostors, per_n=False)
    # A stranger set's scores are already each stranger's best over the whole gallery.
    identify = _check(
        "identify",
        calibration.identify_far,
        calibration.gallery_size,
        calibration.identify_scores or calibration.impostors,
        per_n=calibration.method != METHOD_STRANGER_SET,
    )
    return verify, identify


def is_reliable(calibration: Calibration) -> bool:
    return all(check.reliable for check in far_checks(calibration))


def public(calibration: Calibration) -> CalibrationPublic:
    """The calibration as the API shows it, with whether its FARs were measurable."""
    return CalibrationPublic.model_validate(
        {**calibration.model_dump(), "reliable": is_reliable(calibration)}
    )


def reliability_notes(checks: tuple[FarCheck, ...], scores: str = "impostor scores") -> list[str]:
    return [
        f"{check.sentence(scores)}, so it is unreliable." for check in checks if not check.reliable
    ]


def gallery_refusal(
    calibration: Calibration, checks: tuple[FarCheck, ...]
) -> CalibrationUnreliable:
    """The error POST /v1/admin/calibrate answers when it will not serve `calibration`."""
    short = "; ".join(check.sentence() for check in checks if not check.reliable)
    todo = advice(
        checks,
        ("target_far", "identify_target_far"),
        "enrol faces of more subjects",
        'send "force": true to serve it anyway, unreliable',
    )
    message = (
        f"Not stored: the gallery is too small to measure the FARs asked for ({short}). "
        f"The thresholds serving now are unchanged. To calibrate, {todo}."
    )
    details: dict[str, Any] = {"model_version": calibration.model_version}
    details.update({check.name: check.details() for check in checks})
    return CalibrationUnreliable(message, details)


def advice(checks: tuple[FarCheck, ...], targets: tuple[str, str], more: str, force: str) -> str:
    """What to do instead: `more` data, each short target raised to the smallest these
    scores can measure (`targets` names verify's and identify's option), or `force`."""
    larger = [
        f"{option} >= {check.smallest_target:g}"
        for check, option in zip(checks, targets, strict=True)
        if not check.reliable and check.smallest_target is not None
    ]
    todo = [more]
    if larger:
        todo.append(f"ask for a larger FAR ({', '.join(larger)})")
    return ", or ".join([*todo, force])


def _check(name: str, target: float, gallery_size: int, scores: int, per_n: bool) -> FarCheck:
    per_score = per_comparison_far(target, gallery_size) if per_n and gallery_size > 1 else target
    lowest_rate = MIN_EXPECTED_FALSE_ACCEPTS / scores
    smallest = None
    if lowest_rate < 1:
        # Rounded up, so that the target suggested is measurable, not a hair short of it.
        over = far_over(lowest_rate, gallery_size) if per_n else lowest_rate
        smallest = max(round_up(over), MIN_TARGET_FAR)
        smallest = smallest if smallest < 1 else None
    needed = impostors_needed(per_score)
    return FarCheck(name, target, per_score, gallery_size, scores, needed, smallest)

"""Threshold calibration on the enrolled gallery: request, result and the stored calibration."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.evaluation.far_calibration import MIN_TARGET_FAR
from app.schemas.info import ThresholdsPublic


class CalibrateParams(BaseModel):
    # Strict: "force": "yes" stored an unreliable calibration, and "target_far": "0.01" passed.
    model_config = ConfigDict(extra="forbid", strict=True)

    target_far: float = Field(
        0.001,
        ge=MIN_TARGET_FAR,
        lt=1.0,
        allow_inf_nan=False,
        description="False-accept rate the verify threshold may reach.",
    )
    identify_target_far: float | None = Field(
        None,
        ge=MIN_TARGET_FAR,
        lt=1.0,
        allow_inf_nan=False,
        description="Chance a stranger matches anyone in the gallery (default: target_far).",
    )
    force: bool = Field(
        False,
        description="Store and serve the thresholds even when too few impostor scores back "
        "a target (reliable: false), or when a threshold is degenerate (warnings); without it "
        "such a calibration is refused with 422 calibration_unreliable or "
        "calibration_degenerate and the thresholds serving stay.",
    )


class CalibrationPublic(BaseModel):
    """A stored calibration of one model version."""

    model_config = ConfigDict(from_attributes=True, protected_namespaces=())

    model_version: str
    source: Literal["pairs", "gallery"]
    verify_threshold: float
    verify_far: float = Field(description="Target FAR of the verify threshold.")
    identify_threshold: float
    identify_far: float = Field(description="Target chance a stranger matches anyone.")
    gallery_size: int
    method: str
    pairs: Path | None = Field(description="The pairs CSV, for a calibration from pairs.")
    impostors: int
    identify_scores: int | None = Field(
        default=None,
        description="Scores behind the identify threshold where they are not the impostor "
        "pairs: each probe's best score per other subject, for a gallery calibration.",
    )
    verify_accepts: int | None = Field(
        default=None,
        description="Impostor scores at or above the verify threshold; the FAR stated is "
        "never below their 95% upper bound. Null in calibrations stored before it was "
        "counted: then as many as the target allows.",
    )
    identify_accepts: int | None = Field(
        default=None, description="The same for the identify threshold and its scores."
    )
    verify_design_effect: float | None = Field(
        default=None,
        description="How many impostor scores count as one independent trial: scores of one "
        "person are correlated, measured by resampling whole subjects (people, for pairs). "
        "The FAR stated counts impostors / this (the reliability check counts scores). "
        "Null in calibrations stored before it was measured: each score counts as one.",
    )
    identify_design_effect: float | None = Field(
        default=None, description="The same for the identify threshold and its scores."
    )
    created_at: datetime
    reliable: bool = Field(
        description="Enough impostor scores behind it to see about 10 false accepts at both "
        "targets. False only for a calibration stored with force (or before unreliable ones "
        "were refused): its thresholds serve, but their FARs were not measured."
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="Why a threshold is degenerate: it is above every genuine score or at "
        "1.0 (it accepts nobody), or lets through over twice its target FAR. Only a forced "
        "calibration has any; empty in calibrations stored before they were checked.",
    )


class CalibrationResult(BaseModel):
    """What POST /v1/admin/calibrate measured, stored and now serves (reliable, or forced)."""

    model_config = ConfigDict(protected_namespaces=())

    calibration: CalibrationPublic
    subjects: int = Field(description="Subjects with a face under the active model.")
    faces: int
    genuine_pairs: int = Field(description="Same-subject face pairs scored.")
    impostor_pairs: int = Field(description="Different-subject face pairs scored.")
    impostor_pairs_total: int = Field(description="Different-subject face pairs in the gallery.")
    identify_scores: int = Field(
        description="Face-against-other-subject scores (best over that subject's faces) scored."
    )
    verify_far_measured: float = Field(description="Share of scored impostor pairs passing.")
    verify_frr_measured: float | None = Field(
        description="Share of scored genuine pairs rejected; null without genuine pairs."
    )
    identify_frr_measured: float | None = Field(
        description="Share of scored genuine pairs below the identify threshold (1 - TAR); "
        "null without genuine pairs."
    )
    identify_per_comparison_far: float = Field(
        description="FAR per subject compared that gives the identify target at gallery_size."
    )
    identify_far_estimated: float = Field(
        description=(
            "Stranger FAR at gallery_size, as responses state it: the 95% upper bound of "
            "the share of identify scores passing, over gallery_size comparisons, and never "
            "below the target."
        )
    )
    reliable: bool = Field(
        description="Enough impostor scores to see about 10 false accepts at both targets."
    )
    warnings: list[str] = Field(description="The calibration's warnings: empty unless forced.")
    notes: list[str]
    active: ThresholdsPublic = Field(description="Thresholds serving now; settings still win.")

"""Locally calibrated thresholds per model version, one row each in the database."""

from __future__ import annotations

import functools
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy.orm import Session, sessionmaker

from app.errors import ModelError
from app.gallery import calibrations_repo

log = logging.getLogger(__name__)

# The layout of a stored row, kept in it as "format" (rows without one are format 1). A
# release that adds a field which leaves the thresholds meaning what they meant keeps it:
# releases from this one on read the row without that field (the one before formats
# refuses any field it does not know). One that changes what they mean bumps it: older
# releases then refuse the row rather than serve it under the old meaning.
FORMAT = 1

METHOD_GALLERY_ADJUSTED = "impostor scores adjusted for gallery size N (independence assumption)"
METHOD_STRANGER_SET = "stranger set"


class Calibration(BaseModel):
    """Thresholds measured on local pairs for one model version, and how they were found."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    model_version: str
    verify_threshold: float = Field(ge=-1.0, le=1.0)
    # The FAR the verify threshold was calibrated for; the achieved FAR is at most this.
    verify_far: float = Field(gt=0.0, lt=1.0)
    identify_threshold: float = Field(ge=-1.0, le=1.0)
    # Estimated chance that a stranger is matched to someone in a gallery of gallery_size.
    identify_far: float = Field(gt=0.0, lt=1.0)
    gallery_size: int = Field(ge=1)
    method: str
    # Written before gallery calibration existed: no source, as they came from pairs.
    source: Literal["pairs", "gallery"] = "pairs"
    pairs: Path | None = None
    impostors: int = Field(ge=1)
    # Scores behind the identify threshold, where they differ from `impostors`: gallery
    # calibration sets it from each probe's best score per subject, not from face pairs.
    identify_scores: int | None = Field(default=None, ge=1)
    # How many of those scores each threshold lets through, for the FAR stated (None in
    # files written before they were counted: as many as the target allowed).
    verify_accepts: int | None = Field(default=None, ge=0)
    identify_accepts: int | None = Field(default=None, ge=0)
    # How many scores count as one independent trial: those of one subject are correlated
    # (app/evaluation/clustered_rate.py). None in calibrations stored before it was
    # measured: each score then counts as one, as it did.
    verify_design_effect: float | None = Field(default=None, ge=1.0, allow_inf_nan=False)
    identify_design_effect: float | None = Field(default=None, ge=1.0, allow_inf_nan=False)
    # Why a threshold is degenerate (accepts nobody, or far beyond its FAR); only a forced
    # calibration stores any. Files written before they were checked have none.
    warnings: tuple[str, ...] = ()
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @model_validator(mode="after")
    def _pairs_name_their_file(self) -> Self:
        if self.source == "pairs" and self.pairs is None:
            raise ValueError("a calibration from pairs must name its pairs file")
        return self

    @model_validator(mode="after")
    def _accepts_are_among_the_scores(self) -> Self:
        # A file edited by hand must fail here, as unreadable, not later in far_upper_bound.
        if self.verify_accepts is not None and self.verify_accepts > self.impostors:
            raise ValueError("verify_accepts exceeds impostors")
        identify_scores = self.identify_scores or self.impostors
        if self.identify_accepts is not None and self.identify_accepts > identify_scores:
            raise ValueError("identify_accepts exceeds the identify scores")
        return self


class CalibrationStore:
    """The calibrations table: a save replaces its model version's row, and only that."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def load(self, model_version: str) -> Calibration | None:
        with self.sessions() as session:
            body = calibrations_repo.get(session, model_version)
        return None if body is None else parse(model_version, body)

    def stamp(self, model_version: str) -> object:
        """Changes whenever this version's calibration does, by any process's hand; None
        while there is none."""
        with self.sessions() as session:
            return calibrations_repo.stamp(session, model_version)

    def save(self, calibration: Calibration) -> None:
        with self.sessions.begin() as session:
            calibrations_repo.put(session, calibration.model_version, dump(calibration))

    def delete(self, model_version: str) -> Calibration | None:
        """Remove this version's calibration; the one removed, or None when there was none.
        An unreadable one is removed all the same, then raises ModelError saying so."""
        with self.sessions.begin() as session:
            body = calibrations_repo.remove(session, model_version)
        return None if body is None else parse(model_version, body)


def dump(calibration: Calibration) -> dict[str, Any]:
    """The row's body: the calibration, and the format this release writes. Format 1 goes
    without its number: the release before formats refuses any key it does not know. It
    reads the rows this one writes only without the design effects (added 2026-11-28, with
    format 1 kept: the thresholds mean what they meant), so a rolling upgrade from it goes
    through the release that introduced formats, which reads them without those fields."""
    body = calibration.model_dump(mode="json")
    for unmeasured in ("verify_design_effect", "identify_design_effect"):
        if body[unmeasured] is None:  # as rows were before: readable by that release too
            del body[unmeasured]
    return body if FORMAT == 1 else {"format": FORMAT, **body}


def problems(exc: ValidationError) -> str:
    """How many problems pydantic found, and the first, in words."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "the top level"
    return f"{exc.error_count()} problem(s); at {where}: {first['msg']}"


def parse(model_version: str, body: dict[str, Any]) -> Calibration:
    """The stored row as a Calibration; ModelError (503) for one that does not validate,
    edited by hand, say: serving the defaults instead would silently loosen its FAR.

    Rolling upgrades, where releases share the table: a release that adds a field keeps
    FORMAT when the thresholds still mean what they meant, and bumps it when they do not.
    So a row of a newer format raises ModelError too (its thresholds mean something this
    release does not know), while one of a format this release reads, with fields it does
    not know, is read without them, and the log names them.
    """
    written = body.get("format", 1) if isinstance(body, dict) else 1
    if type(written) is not int or written < 1:
        raise ModelError(
            f"the stored calibration of {model_version} is unreadable (its format is "
            f"{written!r}); calibrate again or delete it"
        )
    if written > FORMAT:
        raise ModelError(
            f"the stored calibration of {model_version} is unreadable: it was written by a "
            f"newer release (format {written}; this release reads format {FORMAT}); "
            "upgrade this process, or calibrate again or delete it"
        )
    try:
        calibration = Calibration.model_validate(_known_fields(model_version, body))
    except ValidationError as exc:
        raise ModelError(
            f"the stored calibration of {model_version} is unreadable ({problems(exc)}); "
            "calibrate again or delete it"
        ) from exc
    if calibration.model_version != model_version:
        raise ModelError(
            f"the stored calibration of {model_version} is unreadable (it names "
            f"{calibration.model_version}); calibrate again or delete it"
        )
    if calibration.verify_design_effect is None:
        _log_unmeasured(model_version)
    return calibration


def _known_fields(model_version: str, body: object) -> object:
    """`body` without its format, and without the fields a newer release added."""
    if not isinstance(body, dict):
        return body  # for pydantic to refuse
    known = Calibration.model_fields
    unknown = sorted(key for key in body if key not in known and key != "format")
    if unknown:
        _log_dropped(model_version, tuple(unknown))
    return {key: value for key, value in body.items() if key in known}


@functools.lru_cache(maxsize=64)
def _log_unmeasured(model_version: str) -> None:
    log.warning(
        "the stored calibration of %s was made before calibrations measured how correlated "
        "their impostor scores are: the FARs stated for it count every score as an "
        "independent trial and may understate on a small gallery; calibrate again",
        model_version,
    )


@functools.lru_cache(maxsize=64)
def _log_dropped(model_version: str, keys: tuple[str, ...]) -> None:
    # Once per process for each row's set of keys: rows are read again on each gallery
    # recount (every 30 s) and each GET of the admin endpoint, not only when they change.
    log.warning(
        "the stored calibration of %s has fields this release does not know (%s; added by "
        "a newer release, or by hand): read without them",
        model_version,
        ", ".join(keys),
    )

"""Locally calibrated thresholds per model version, kept in data_dir/calibration.json."""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from app.errors import ModelError

CALIBRATION_FILE = "calibration.json"

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
    # Files written before gallery calibration existed have no source: they came from pairs.
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


_FILE_SCHEMA = TypeAdapter(dict[str, Calibration])


class CalibrationStore:
    """One JSON object mapping model_version -> Calibration; every save replaces it whole."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / CALIBRATION_FILE

    def load(self, model_version: str) -> Calibration | None:
        return self._read().get(model_version)

    def load_all(self) -> dict[str, Calibration]:
        return self._read()

    def delete(self, model_version: str) -> Calibration | None:
        """Remove this model's entry, keeping every other model's; the entry removed, or
        None when there was none."""
        with self._locked():
            entries = self._read()
            removed = entries.pop(model_version, None)
            if removed is not None:
                self._write(entries)
        return removed

    def save(self, calibration: Calibration) -> None:
        """Add or replace this model's entry, keeping every other model's."""
        with self._locked():
            entries = self._read()
            entries[calibration.model_version] = calibration
            self._write(entries)

    def save_over_unreadable(self, calibration: Calibration) -> tuple[Path, str] | None:
        """`save`; a file that cannot be read is first set aside and a new one started.
        Returns (where it was set aside, why it was unreadable), or None."""
        with self._locked():
            try:
                entries = self._read()
                aside = None
            except ModelError as error:
                aside = self._rename_aside(), error.message
                entries = {}
            entries[calibration.model_version] = calibration
            self._write(entries)
        return aside

    def set_aside(self) -> Path | None:
        """Rename the file out of the way if it is still unreadable (kept for inspection,
        other models' entries included); the new name, or None when it is readable or gone
        by now: another process set it aside, or wrote a new one, meanwhile."""
        with self._locked():
            try:
                self._read()
            except ModelError:
                return self._rename_aside()
            return None

    def _rename_aside(self) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        aside = self.path.with_name(f"{CALIBRATION_FILE}.unreadable-{stamp}")
        os.replace(self.path, aside)
        return aside

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Every read-modify-write holds an exclusive lock on a file beside it, so that the
        service and a `python -m app calibrate` process never lose each other's entries,
        nor set aside the file the other has just written."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.with_name(f".{CALIBRATION_FILE}.lock").open("a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _write(self, entries: dict[str, Calibration]) -> None:
        data = _FILE_SCHEMA.dump_json(dict(sorted(entries.items())), indent=2) + b"\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Write beside the target and rename over it: a crash leaves the old file or the
        # new one, never half of either, and a unique name keeps two writers apart.
        fd, tmp = tempfile.mkstemp(prefix=f".{CALIBRATION_FILE}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _read(self) -> dict[str, Calibration]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:  # a folder in its place, no permission: unreadable too
            raise ModelError(
                f"calibration file {self.path} cannot be read ({exc}); fix or delete it"
            ) from exc
        try:
            return _FILE_SCHEMA.validate_json(raw)
        except ValidationError as exc:
            # Refuse rather than treat as empty: the next save would erase other models.
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "the top level"
            raise ModelError(
                f"calibration file {self.path} is unreadable ({exc.error_count()} problem(s); "
                f"at {where}: {first['msg']}); fix or delete it"
            ) from exc

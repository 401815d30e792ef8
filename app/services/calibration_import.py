"""The calibration.json of releases before the calibrations table: imported, then renamed."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path

from pydantic import TypeAdapter, ValidationError
from sqlalchemy.orm import Session, sessionmaker

from app.errors import ModelError
from app.gallery import calibrations_repo
from app.services.calibration import Calibration, dump, parse, problems

log = logging.getLogger(__name__)

LEGACY_FILE = "calibration.json"

_FILE_SCHEMA = TypeAdapter(dict[str, Calibration])


def import_legacy_file(data_dir: Path, sessions: sessionmaker[Session]) -> None:
    """Move the entries of `data_dir`/calibration.json into the database, then rename the
    file calibration.json.imported-<time>. Where a version has a row already (saved by
    another process sharing the database, or imported from its file), the more recently
    calibrated of the two stays.

    An unreadable file raises ModelError and stays where it is: serving the default
    thresholds in its place would silently loosen the FAR it was calibrated for. Its
    entries have no format (they predate it): they are format 1, and stored as such.
    """
    path = data_dir / LEGACY_FILE
    entries = _read(path)
    if entries is None:
        return
    with sessions.begin() as session:
        outcomes = {
            version: _import(session, calibration)
            for version, calibration in sorted(entries.items())
        }
    aside = _rename(path, "imported")
    if aside is None:  # imported by another call meanwhile
        return
    said = {
        outcome: ", ".join(v for v, o in outcomes.items() if o == outcome)
        for outcome in ("imported", "later", "unreadable")
    }
    log.warning(
        "imported %s from %s into the database%s%s; the file is now %s",
        said["imported"] or "no calibration",
        path,
        f" ({said['later']}: a later calibration there, kept)" if said["later"] else "",
        f" ({said['unreadable']}: an unreadable row there, kept; delete or recalibrate it)"
        if said["unreadable"]
        else "",
        aside.name,
    )


def _import(session: Session, calibration: Calibration) -> str:
    """Store one entry unless the database holds a later calibration of its version, or
    one it cannot read (left for an operator to judge): "imported", "later" or
    "unreadable"."""
    version = calibration.model_version
    if calibrations_repo.put(session, version, dump(calibration), replace=False):
        return "imported"
    try:  # read as the service reads it: a row of this format with newer fields is readable
        stored = parse(version, calibrations_repo.get(session, version) or {})
    except ModelError:
        return "unreadable"
    if stored.created_at >= calibration.created_at:
        return "later"
    calibrations_repo.put(session, version, dump(calibration))
    return "imported"


def file_stamp(data_dir: Path) -> tuple[int, int] | None:
    """When and how large calibration.json was last written; None while there is none."""
    try:
        found = (data_dir / LEGACY_FILE).stat()
    except FileNotFoundError:
        return None
    return found.st_mtime_ns, found.st_size


def set_aside(data_dir: Path) -> Path | None:
    """Rename calibration.json out of the way if it is there and unreadable (kept for
    inspection); the new name, or None when it is readable or gone."""
    path = data_dir / LEGACY_FILE
    try:
        _read(path)
    except ModelError:
        return _rename(path, "unreadable")
    return None


def _rename(path: Path, why: str) -> Path | None:
    """The new name; None when the file went meanwhile (imported or set aside by another
    call: a model swap reads the thresholds outside the lock that the admin routes take)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = path.with_name(f"{path.name}.{why}-{stamp}")
    try:
        os.replace(path, target)
    except FileNotFoundError:
        return None
    return target


def _read(path: Path) -> dict[str, Calibration] | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:  # a folder in its place, no permission: unreadable too
        raise ModelError(
            f"calibration file {path} cannot be read ({exc}); fix or delete it"
        ) from exc
    try:
        entries = _FILE_SCHEMA.validate_json(raw)
    except ValidationError as exc:
        raise ModelError(
            f"calibration file {path} is unreadable ({problems(exc)}); fix or delete it"
        ) from exc
    for version, calibration in entries.items():
        if calibration.model_version != version:
            raise ModelError(
                f"calibration file {path} is unreadable (its entry {version} names "
                f"{calibration.model_version}); fix or delete it"
            )
    return entries

"""`python -m app restore SRC`: put a backup in place of the configured data and checkpoints."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path

from alembic.script import ScriptDirectory
from pydantic import ValidationError

from app.commands.backup_files import (
    CHECKPOINTS,
    DATABASE,
    FINETUNED_DIR,
    MANIFEST,
    Manifest,
    copy_file,
    private_files,
    sha256_of,
    sqlite_file,
)
from app.commands.serve import _lock_data_dir
from app.config import Settings
from app.gallery.db import alembic_config, shown_url
from app.services.calibration import CALIBRATION_FILE

# SQLite's files beside a database: they belong to it, and would corrupt another.
_COMPANIONS = ("-wal", "-shm", "-journal")


class Refused(Exception):
    """Why the restore cannot go ahead, in one line."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "restore",
        help="restore a backup into FACE_DATA_DIR and FACE_MODELS_DIR, the service stopped",
        description="Checks every file against backup.json, moves the database and "
        "calibration.json found aside (*.before-restore-<time>), copies the backup into "
        "place and deletes the index: the next start rebuilds it from the database.",
    )
    parser.add_argument("source", type=Path, metavar="SRC", help="a folder `backup` wrote")
    parser.add_argument(
        "--force", action="store_true", help="replace a database that holds subjects"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    with private_files():
        try:
            lock = _lock_data_dir(settings.data_dir)
        except OSError as error:
            print(f"cannot use FACE_DATA_DIR={settings.data_dir}: {error}", file=sys.stderr)
            return 2
        if lock is None:
            print(f"a service is running on {settings.data_dir}: stop it first", file=sys.stderr)
            return 2
        try:  # holding the lock throughout: no service starts on a half-restored folder
            manifest = read_manifest(args.source)
            database = _target_database(settings, manifest, args.force)
            revision = _schema_revision(args.source) if database is not None else None
            moved = _restore(args.source, manifest, settings, database)
        except Refused as why:
            print(why, file=sys.stderr)
            return 2
        except (OSError, sqlite3.Error) as error:
            print(f"restore failed: {error}", file=sys.stderr)
            return 1
        finally:
            lock.close()
    print(f"restored the backup of {manifest.created_at:%Y-%m-%d %H:%M:%S} UTC:")
    if database is not None and (counts := manifest.counts) is not None:
        print(f"  {database}: {counts.subjects} subjects, {counts.faces} faces, schema {revision}")
    else:
        print("  no database in this backup: restore it with pg_restore (docs/backup.md)")
    print(f"  {len(manifest.files)} files checked against their sha256 and copied")
    for path in moved:
        print(f"  moved aside: {path}")
    print(f"deleted {settings.index_dir}: the next start rebuilds the index from the database")
    return 0


def read_manifest(source: Path) -> Manifest:
    """The backup's manifest, once every file it lists matches its sha256."""
    path = source / MANIFEST
    try:
        manifest = Manifest.model_validate_json(path.read_bytes())
    except OSError as error:  # none there, or SRC is not a folder
        raise Refused(f"cannot read {path} ({error.strerror}): not a backup") from error
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "top level"
        raise Refused(f"{path} is not a valid manifest ({where}: {first['msg']})") from error
    for name, expected in manifest.files.items():
        file = source / name
        if not file.is_file():
            raise Refused(f"{file} is missing: the backup is incomplete")
        if sha256_of(file) != expected:
            raise Refused(f"{file} does not match its sha256 in {MANIFEST}: damaged or changed")
    return manifest


def _target_database(settings: Settings, manifest: Manifest, force: bool) -> Path | None:
    """The SQLite file to restore into (None for a backup without one), if allowed."""
    if DATABASE not in manifest.files:  # files only: PostgreSQL's is pg_restore's
        return None
    database = sqlite_file(settings)
    if database is None:
        raise Refused(
            f"the backup holds a SQLite database but FACE_DATABASE_URL is "
            f"{shown_url(settings.resolved_database_url)}: see docs/backup.md for PostgreSQL"
        )
    subjects = _subjects_in(database)
    if subjects and not force:
        raise Refused(
            f"{database} holds {subjects} subjects: to replace it with the backup, add "
            "--force (it is then moved aside, not deleted)"
        )
    return database


def _subjects_in(database: Path) -> int:
    if not database.is_file():
        return 0
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as db:
        try:
            return int(db.execute("SELECT count(*) FROM subjects").fetchone()[0])
        except sqlite3.OperationalError as error:
            if "no such table" not in str(error):
                raise
            return 0


def _schema_revision(source: Path) -> str | None:
    """The backup's schema revision, refused when this code does not know it."""
    uri = f"{(source / DATABASE).resolve().as_uri()}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        try:
            row = db.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.OperationalError:  # no such table: a database never migrated
            return None
    revision = None if row is None else str(row[0])
    script = ScriptDirectory.from_config(alembic_config())
    if revision is not None and revision not in {r.revision for r in script.walk_revisions()}:
        raise Refused(
            f"the backup's database has schema revision {revision}, newer than this version "
            f"of the service knows (up to {script.get_current_head()}): restore it with the "
            "release that made it, or a later one"
        )
    return revision


def _restore(
    source: Path, manifest: Manifest, settings: Settings, database: Path | None
) -> list[Path]:
    """Copy the backup into place, moving aside what it replaces; the paths moved aside."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    moved: list[Path] = []
    by_folder: dict[str, dict[str, str]] = {}
    for name, sha256 in manifest.files.items():
        if name.startswith(f"{CHECKPOINTS}/"):
            folder, file = name.removeprefix(f"{CHECKPOINTS}/").split("/")
            by_folder.setdefault(folder, {})[file] = sha256
    for folder, files in sorted(by_folder.items()):
        target = settings.models_dir / FINETUNED_DIR / folder
        if all((target / f).is_file() and sha256_of(target / f) == s for f, s in files.items()):
            continue  # already there, as a restore into the same models folder finds them
        moved += _set_aside(target, stamp)
        for file in files:
            copy_file(source / CHECKPOINTS / folder / file, target / file)
    # The calibration of the gallery found there would not fit the gallery restored.
    moved += _set_aside(settings.data_dir / CALIBRATION_FILE, stamp)
    if CALIBRATION_FILE in manifest.files:
        copy_file(source / CALIBRATION_FILE, settings.data_dir / CALIBRATION_FILE)
    if database is not None:
        moved += _set_aside(database, stamp, _COMPANIONS)
        copy_file(source / DATABASE, database)
    # A cache of the database replaced (or pg_restored): stale, and rebuilt at the next start.
    shutil.rmtree(settings.index_dir, ignore_errors=True)
    return moved


def _set_aside(path: Path, stamp: str, companions: tuple[str, ...] = ()) -> list[Path]:
    """Rename `path` and its companions out of the way, keeping their names paired (so an
    old database opens with its own -wal); the new names of those that existed."""
    aside = f"{path.name}.before-restore-{stamp}"
    moved = []
    for suffix in ("", *companions):
        found = path.with_name(path.name + suffix)
        if found.exists() or found.is_symlink():
            moved.append(found.with_name(aside + suffix))
            os.replace(found, moved[-1])
    return moved

"""What restore checks before it touches anything: the backup, the target, the schema."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from alembic.script import ScriptDirectory
from pydantic import ValidationError

from app.commands.backup_files import DATABASE, MANIFEST, Manifest, sha256_of, sqlite_file
from app.config import Settings
from app.gallery.db import alembic_config, shown_url


class Refused(Exception):
    """Why the restore cannot go ahead, in one line."""


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
    if manifest.files_only == (DATABASE in manifest.files):
        # Else a full backup whose manifest lost its database entry restored as files
        # only, exit 0, and left the old gallery in place.
        lists = "lists" if DATABASE in manifest.files else "does not list"
        raise Refused(
            f"{path} says files_only={str(manifest.files_only).lower()} but {lists} "
            f"{DATABASE}: damaged or edited"
        )
    for name, expected in manifest.files.items():
        file = source / name
        if any((source / Path(*Path(name).parts[:n])).is_symlink() for n in (1, 2, 3, 4)):
            raise Refused(f"{file} is or lies in a symbolic link: a backup holds none")
        if not file.is_file():
            raise Refused(f"{file} is missing: the backup is incomplete")
        if sha256_of(file) != expected:
            raise Refused(f"{file} does not match its sha256 in {MANIFEST}: damaged or changed")
    return manifest


def target_database(settings: Settings, manifest: Manifest, force: bool) -> Path | None:
    """The SQLite file to restore into (None for a backup without one), if allowed."""
    if DATABASE not in manifest.files:  # files only: PostgreSQL's is pg_restore's
        return None
    database = sqlite_file(settings)
    if database is None:
        raise Refused(
            f"the backup holds a SQLite database but FACE_DATABASE_URL is "
            f"{shown_url(settings.resolved_database_url)}: see docs/backup.md for PostgreSQL"
        )
    _refuse_if_open(database)
    subjects = _subjects_in(database)
    if subjects and not force:
        raise Refused(
            f"{database} holds {subjects} subjects: to replace it with the backup, add "
            "--force (it is then moved aside, not deleted)"
        )
    return database


def _refuse_if_open(database: Path) -> None:
    """Refuse while any other process has the database open: another service sharing it
    from its own data folder, or `python -m app finetune`, would go on writing into the
    file moved aside. Leaving WAL mode needs the only connection; services keep theirs."""
    if not database.is_file():
        return
    with contextlib.closing(sqlite3.connect(database, timeout=0)) as db:
        try:
            mode = db.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
        except sqlite3.OperationalError as error:
            mode = str(error)
    if mode != "delete":
        raise Refused(
            f"another process has {database} open ({mode}): stop every service and "
            "command that uses this database first"
        )


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


def schema_revision(source: Path) -> str | None:
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

"""`python -m app restore SRC`: put a backup in place of the configured data and checkpoints."""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from app.atomic_write import sync_folder
from app.commands.backup_files import (
    CHECKPOINTS,
    DATABASE,
    FINETUNED_DIR,
    MANIFEST,
    Manifest,
    private_files,
    sha256_of,
    staged_copy,
)
from app.commands.restore_checks import Refused, read_manifest, schema_revision, target_database
from app.commands.serve import lock_data_dir
from app.config import Settings
from app.services.calibration_import import LEGACY_FILE

# SQLite's files beside a database: they belong to it, and would corrupt another.
_COMPANIONS = ("-wal", "-shm", "-journal")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "restore",
        help="restore a backup into FACE_DATA_DIR and FACE_MODELS_DIR, the service stopped",
        description="Checks every file against backup.json, moves the database found (with "
        "its calibrations) aside (*.before-restore-<time>), copies the backup into place and "
        "deletes the index: the next start rebuilds it from the database.",
    )
    parser.add_argument("source", type=Path, metavar="SRC", help="a folder `backup` wrote")
    parser.add_argument(
        "--force", action="store_true", help="replace a database that holds subjects"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    with private_files():
        try:
            lock = lock_data_dir(settings.data_dir)
        except OSError as error:
            print(f"cannot use FACE_DATA_DIR={settings.data_dir}: {error}", file=sys.stderr)
            return 2
        if lock is None:
            print(f"a service is running on {settings.data_dir}: stop it first", file=sys.stderr)
            return 2
        try:  # holding the lock throughout: no service starts on a half-restored folder
            manifest = read_manifest(args.source)
            database = target_database(settings, manifest, args.force)
            revision = schema_revision(args.source) if database is not None else None
            had_index = settings.index_dir.exists()
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
        print(
            "  no database in this backup (--files-only); PostgreSQL: pg_restore (docs/backup.md)"
        )
    print(f"  {len(manifest.files)} files checked against their sha256 and copied")
    for path in moved:
        print(f"  moved aside: {path}")
    done = f"deleted {settings.index_dir}" if had_index else "no index to delete"
    print(f"{done}: the next start builds the index from the database")
    return 0


def _restore(
    source: Path, manifest: Manifest, settings: Settings, database: Path | None
) -> list[Path]:
    """Copy the backup into place, moving aside what it replaces; the paths moved aside.

    Every copy is made beside its target and checked against its sha256 before anything
    moves: a full disk or a file changed meanwhile leaves every old file where it was, and
    there is never a moment without a database."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    staged: list[tuple[Path, Path, tuple[str, ...]]] = []  # (copy, target, companions)
    try:
        for folder, files in sorted(_checkpoints(manifest).items()):
            target = settings.models_dir / FINETUNED_DIR / folder
            if all((target / f).is_file() and sha256_of(target / f) == h for f, h in files.items()):
                continue  # already there, as a restore into the same models folder finds them
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{folder}.", dir=target.parent))
            staged.append((staging, target, ()))
            for file, sha256 in files.items():
                copy = _copy(source / CHECKPOINTS / folder / file, staging / file, sha256)
                os.replace(copy, staging / file)
            sync_folder(staging)
        # An older release's calibration.json (backed up before its start imported it).
        # One found here calibrated the gallery replaced, so it goes aside either way.
        calibration = settings.data_dir / LEGACY_FILE
        expected = manifest.files.get(LEGACY_FILE)
        if expected is not None:
            staged.append((_copy(source / LEGACY_FILE, calibration, expected), calibration, ()))
        if database is not None:
            copy = _copy(source / DATABASE, database, manifest.files[DATABASE])
            staged.append((copy, database, _COMPANIONS))
    except BaseException:
        for copy, _, _ in staged:
            if copy.is_dir():
                shutil.rmtree(copy, ignore_errors=True)
            else:
                copy.unlink(missing_ok=True)
        raise
    moved = [] if expected is not None else _set_aside(calibration, stamp)
    for copy, target, companions in staged:
        moved += _set_aside(target, stamp, companions)
        os.replace(copy, target)
    for parent in {target.parent for _, target, _ in staged}:
        sync_folder(parent)
    # A cache of the database replaced (or pg_restored): stale, and rebuilt at the next start.
    shutil.rmtree(settings.index_dir, ignore_errors=True)
    return moved


def _checkpoints(manifest: Manifest) -> dict[str, dict[str, str]]:
    """The backup's checkpoint folders: file name -> sha256, by folder."""
    by_folder: dict[str, dict[str, str]] = {}
    for name, sha256 in manifest.files.items():
        if name.startswith(f"{CHECKPOINTS}/"):
            folder, file = name.removeprefix(f"{CHECKPOINTS}/").split("/")
            by_folder.setdefault(folder, {})[file] = sha256
    return by_folder


def _copy(source: Path, target: Path, sha256: str) -> Path:
    """A copy of `source` beside `target`, checked against its sha256 again: the backup was
    checked before, but whoever can write to it could have changed a file since."""
    staged = staged_copy(source, target)
    if sha256_of(staged) != sha256:
        staged.unlink()
        raise Refused(f"{source} changed during the restore: it no longer matches {MANIFEST}")
    return staged


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

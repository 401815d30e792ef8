"""`python -m app backup DEST`: an online copy of the database and the fine-tuned checkpoints."""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.commands.backup_files import (
    CHECKPOINTS,
    DATABASE,
    FINETUNED_DIR,
    MANIFEST,
    METADATA_FILE,
    Counts,
    Manifest,
    copy_file,
    first_missing,
    private_files,
    remove_written,
    sha256_of,
    sqlite_file,
)
from app.config import Settings
from app.gallery import models_repo, repository
from app.gallery.db import shown_url
from app.services.calibration_import import LEGACY_FILE


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "backup",
        help="copy the database and the checkpoints into a new folder, online",
        description="A consistent copy while the service runs: the SQLite database through "
        "its online backup API (the calibrations are in it), then the fine-tuned checkpoints "
        "and an older release's calibration.json not yet imported, with a backup.json of "
        "sha256s. The FAISS index is not copied: it is rebuilt at start-up.",
    )
    parser.add_argument("destination", type=Path, metavar="DEST", help="a new or empty folder")
    parser.add_argument(
        "--files-only",
        action="store_true",
        help="only the checkpoints (PostgreSQL: pg_dump the database, calibrations included)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    # Absolute and without "..": `missing/..` passed the empty-folder check as a folder
    # that did not exist, and the backup then wrote into the one it names.
    dest = Path(os.path.abspath(args.destination))
    sqlite = sqlite_file(settings)
    database = None if args.files_only else sqlite
    if not args.files_only and database is None:
        shown = shown_url(settings.resolved_database_url)
        print(
            f"{shown} is not a SQLite file: back it up with pg_dump -Fc, then run this with "
            "--files-only for the checkpoints (docs/backup.md)",
            file=sys.stderr,
        )
        return 2
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        print(f"{dest} exists and is not an empty folder; give a new one", file=sys.stderr)
        return 2
    if args.files_only and sqlite is not None and sqlite.is_file():
        # Meant for PostgreSQL, whose pg_dump saves the rest: here nothing else would.
        print(
            f"note: --files-only leaves out the SQLite database {sqlite} (subjects, faces, "
            "calibrations): this backup cannot restore the gallery; run without it for one "
            "that can",
            file=sys.stderr,
        )
    if database is not None and not database.is_file():
        print(f"no database at {database}: nothing to back up", file=sys.stderr)
        return 2
    created = first_missing(dest)  # the top folder this backup creates, if any
    status = 1
    try:
        with private_files():
            try:
                status = _write(dest, settings, database)
            except (OSError, sqlite3.Error, SQLAlchemyError) as error:
                print(f"backup failed: {error}", file=sys.stderr)
    finally:  # Ctrl-C too, unless the manifest, written last, made it a whole backup
        if status and not (dest / MANIFEST).is_file():
            # What a failed backup wrote is no backup (it has no manifest), and a rerun into
            # the same DEST would be refused as "not an empty folder".
            remove_written(dest, created)
    return status


def _write(dest: Path, settings: Settings, database: Path | None) -> int:
    dest.mkdir(parents=True, exist_ok=True)
    dest.chmod(0o700)  # an empty folder given may have been made with a looser umask
    revision, counts, needed = None, None, list[tuple[str, str, bool]]()
    if database is not None:
        # The database first: an active model cannot be deleted, so the checkpoints copied
        # next include every one that the snapshot's active models need.
        snapshot(database, dest / DATABASE)
        revision, counts, needed = _snapshot_contents(dest / DATABASE)
    calibration = settings.data_dir / LEGACY_FILE
    if calibration.is_file():
        copy_file(calibration, dest / LEGACY_FILE)
    folders = _copy_checkpoints(settings.models_dir / FINETUNED_DIR, dest / CHECKPOINTS)
    missing = [(model, active) for model, path, active in needed if not (dest / path).is_file()]
    for model, active in missing:
        said = "error: the active" if active else "warning: the"
        print(f"{said} model {model}'s checkpoint is missing", file=sys.stderr)
    if any(active for _, active in missing):
        print(f"backup failed: {dest} would lack a checkpoint the gallery needs", file=sys.stderr)
        return 1
    written = sorted(path for path in dest.rglob("*") if path.is_file())
    files = {path.relative_to(dest).as_posix(): sha256_of(path) for path in written}
    manifest = Manifest(
        created_at=datetime.now(UTC),
        files_only=database is None,
        schema_revision=revision,
        counts=counts,
        files=files,
        source={
            "data_dir": str(settings.data_dir.resolve()),
            "models_dir": str(settings.models_dir.resolve()),
            "database_url": shown_url(settings.resolved_database_url),
        },
    )
    (dest / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n")
    _print_summary(dest, manifest, folders)
    return 0


def snapshot(source: Path, target: Path) -> None:
    """Copy a live SQLite database as of one commit, through its online backup API."""
    with (
        contextlib.closing(sqlite3.connect(source, timeout=30)) as live,
        contextlib.closing(sqlite3.connect(target)) as copy,
    ):
        live.backup(copy)  # in one step: one read transaction, however the service writes
        # One self-contained file, no -wal beside it; the service turns WAL on at start-up.
        copy.execute("PRAGMA journal_mode=DELETE")


def _snapshot_contents(path: Path) -> tuple[str | None, Counts, list[tuple[str, str, bool]]]:
    """The snapshot's schema revision, counts, and (model id, backup path, active) of each
    fine-tuned model."""
    # A plain engine: make_engine's pragmas would turn the snapshot back to WAL.
    engine = create_engine(f"sqlite:///{path}")
    try:
        with Session(engine) as s:
            revision = s.scalar(text("SELECT version_num FROM alembic_version"))
            counts = Counts(
                subjects=repository.count_subjects(s),
                faces=repository.count_faces(s),
                embeddings=models_repo.embedding_counts(s),
            )
            rows = models_repo.list_models(s)
            embedders = {row.embedder for row in rows}
            active = {m.id for e in embedders if (m := models_repo.active_model(s, e))}
    finally:
        engine.dispose()
    # weights_path is stored relative to the models folder, in POSIX form.
    needed = [(r.id, f"models/{r.weights_path}", r.id in active) for r in rows if r.weights_path]
    return revision, counts, needed


def _copy_checkpoints(root: Path, target: Path) -> list[str]:
    """Copy each complete checkpoint folder under `root`; the names of those copied."""
    copied = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        # checkpoint.json is written last: without it, training is still writing there. A
        # folder a restore set aside is no model's: it would come back at every restore.
        aside = ".before-restore-" in folder.name
        if folder.name.startswith(".") or aside or not (folder / METADATA_FILE).is_file():
            continue
        for file in sorted(folder.iterdir()):
            if file.is_file() and not file.name.startswith("."):  # dot files are temporary
                copy_file(file, target / folder.name / file.name)
        copied.append(folder.name)
    return copied


def _print_summary(dest: Path, manifest: Manifest, folders: list[str]) -> None:
    print(f"backup written to {dest}, readable by its owner only (it holds biometric data):")
    if (counts := manifest.counts) is not None:
        per_model = ", ".join(f"{n} of {model}" for model, n in sorted(counts.embeddings.items()))
        print(
            f"  {DATABASE} (schema {manifest.schema_revision}): {counts.subjects} subjects, "
            f"{counts.faces} faces; embeddings: {per_model or 'none'}"
        )
    if LEGACY_FILE in manifest.files:  # the calibrations are in the database now
        print(f"  {LEGACY_FILE}: an older release's, which the next start imports")
    print(f"  {len(folders)} checkpoint folder(s); {MANIFEST} with {len(manifest.files)} sha256s")
    print("not backed up: the FAISS index, a cache the service rebuilds from the database")

"""`python -m app backup` and `restore`: online snapshots, round trips and refusals."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from alembic.script import ScriptDirectory

from app.cli import main
from app.commands import backup as backup_command
from app.commands import restore
from app.commands.serve import lock_data_dir
from app.config import Settings
from app.gallery import models_repo, repository
from app.gallery.db import alembic_config, make_engine, make_session_factory, migrate
from app.services.calibration import Calibration
from app.training.checkpoints import save_checkpoint
from tests.api.conftest import enrol, new_subject, open_client
from tests.calibrations import store_for
from tests.durable import Synced, watch_fsync

MODEL = "arcface-mbf@000000000000"  # vectors under any version will do outside a service
TUNED = "arcface-mbf@0123456789ab"
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


def use(monkeypatch: pytest.MonkeyPatch, root: Path) -> Settings:
    """Point the commands at root/data and root/models, as a service there would be set."""
    monkeypatch.setenv("FACE_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("FACE_MODELS_DIR", str(root / "models"))
    monkeypatch.delenv("FACE_DATABASE_URL", raising=False)
    return Settings()


def add_subjects(settings: Settings, count: int, seed: int = 0) -> None:
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    vectors = np.random.default_rng(seed).standard_normal((count, 512)).astype(np.float32)
    with make_session_factory(engine).begin() as session:
        for n, vector in enumerate(vectors):
            repository.add_face(
                session,
                repository.create_subject(session, f"person {seed}-{n}").id,
                box=[0, 0, 9, 9],
                landmarks=[[1, 1]] * 5,
                quality={},
                image_sha256=f"{seed}-{n}",
                crop=None,
                crop_landmarks=None,
                model=MODEL,
                vector=vector / np.linalg.norm(vector),
            )
    engine.dispose()


def add_checkpoint(settings: Settings, job: str) -> None:
    """A fine-tuned model row and its checkpoint folder, as a promotion leaves them."""
    info = save_checkpoint(settings.models_dir / "finetuned" / job, {"w": torch.zeros(2)}, {})
    engine = make_engine(settings.resolved_database_url)
    with make_session_factory(engine).begin() as session:
        weights = Path("finetuned") / job / "weights.pt"
        models_repo.ensure_model(session, TUNED, "arcface-mbf", info.sha256, weights_path=weights)
    engine.dispose()


CHECKPOINT = "models/finetuned/job1/checkpoint.json"


def calibration(version: str) -> Calibration:
    return Calibration(
        model_version=version,
        verify_threshold=0.42,
        verify_far=0.01,
        identify_threshold=0.47,
        identify_far=0.02,
        gallery_size=3,
        method="stranger set",
        pairs=Path("pairs.csv"),
        impostors=10_000,
    )


@pytest.fixture(autouse=True)
def _no_leftover_umask() -> Iterator[None]:
    """The commands set a private umask while they write; the test process keeps its own."""
    before = os.umask(0o022)
    os.umask(before)
    yield
    after = os.umask(before)
    assert after == before


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A gallery of 3 subjects, a calibration and a fine-tuned (not active) checkpoint."""
    settings = use(monkeypatch, tmp_path / "source")
    add_subjects(settings, 3)
    add_checkpoint(settings, "job1")
    store_for(settings).save(calibration(MODEL))
    return settings


def rows(database: Path) -> dict[str, Any]:
    with contextlib.closing(sqlite3.connect(database)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return {
            table: db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            for table in ("subjects", "faces", "embeddings", "models", "calibrations")
        }


def test_a_backup_taken_during_an_open_write_transaction_holds_the_last_commit(
    source: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = source.data_dir / "faces.db"
    with contextlib.closing(sqlite3.connect(database, isolation_level=None)) as writer:
        # A commit that stays in faces.db-wal while a connection is open: a plain copy of
        # faces.db would miss it.
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute("UPDATE subjects SET name = 'renamed'")
        committed = rows(database)
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("DELETE FROM embeddings")  # never committed
        assert main(["backup", str(tmp_path / "backup")]) == 0
        writer.execute("ROLLBACK")
    out = capsys.readouterr().out
    assert "3 subjects, 3 faces" in out and "not backed up: the FAISS index" in out

    backup = tmp_path / "backup"
    assert rows(backup / "faces.db") == committed
    assert not (backup / "faces.db-wal").exists()  # one self-contained file
    manifest = json.loads((backup / "backup.json").read_text())
    assert manifest["schema_revision"] == HEAD and not manifest["files_only"]
    assert manifest["counts"] == {"subjects": 3, "faces": 3, "embeddings": {MODEL: 3}}
    assert manifest["source"]["database_url"].startswith("sqlite:///")
    files = sorted(p for p in backup.rglob("*") if p.is_file() and p.name != "backup.json")
    assert {p.relative_to(backup).as_posix() for p in files} == {
        "faces.db",  # the calibration is in it
        "models/finetuned/job1/weights.pt",
        "models/finetuned/job1/checkpoint.json",
    }
    for path in files:
        assert manifest["files"][path.relative_to(backup).as_posix()] == (
            hashlib.sha256(path.read_bytes()).hexdigest()
        )
    for path in [backup, *backup.rglob("*")]:  # biometric data: the owner's only
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


def test_a_backup_while_another_process_keeps_writing_is_consistent_and_restores(
    source: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stop = threading.Event()
    committed = threading.Semaphore(0)

    def keep_writing() -> None:
        seed = 1
        while not stop.is_set():
            add_subjects(source, 1, seed)  # a subject, its face and its vector: one commit
            committed.release()
            seed += 1

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        for _ in range(3):
            assert committed.acquire(timeout=10)
        assert main(["backup", str(tmp_path / "backup")]) == 0
    finally:
        stop.set()
        writer.join()
    snapshot = rows(tmp_path / "backup" / "faces.db")
    assert len(snapshot["subjects"]) == len(snapshot["faces"]) == len(snapshot["embeddings"])
    assert len(snapshot["subjects"]) >= 6

    use(monkeypatch, tmp_path / "target")
    assert main(["restore", str(tmp_path / "backup")]) == 0, capsys.readouterr().err
    assert rows(tmp_path / "target" / "data" / "faces.db") == snapshot


def test_a_round_trip_serves_the_same_answers(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    models: Any,
    package_images: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = use(monkeypatch, tmp_path / "source")
    client = open_client(settings.data_dir, models, models_dir=settings.models_dir)
    yao = new_subject(client, "Yao Ming")
    photo = (package_images / "yaoming.jpg").read_bytes()
    assert enrol(client, yao, ("yao.jpg", photo)).status_code == 201
    other = new_subject(client, "GDP speaker")
    gdp = ("gdp.jpg", (package_images / "gdp.jpg").read_bytes())
    assert enrol(client, other, gdp, face="largest").status_code == 201
    store_for(settings).save(calibration(models.embedder.version))
    deadline = time.monotonic() + 30  # the service takes up a new calibration within a second
    while client.get("/v1/info").json()["thresholds"]["verify"] != 0.42:
        assert time.monotonic() < deadline, "the service never served the stored calibration"
        time.sleep(0.05)
    add_checkpoint(settings, "job1")
    players = {"image": ("players.jpg", (package_images / "players.jpg").read_bytes())}

    def answers(client: Any) -> list[Any]:
        identify = client.post("/v1/identify", files=players, data={"top_k": 2})
        verify = client.post("/v1/verify", data={"subject_id": yao}, files={"image": gdp})
        info = client.get("/v1/info").json()
        return [identify.json(), verify.json(), info["thresholds"], info["index_size"]]

    try:
        expected = answers(client)
        assert main(["backup", str(tmp_path / "backup")]) == 0  # while the service runs
    finally:
        client.__exit__(None, None, None)
    assert [f["match"]["subject_id"] for f in expected[0]["faces"] if f["match"]] == [yao]
    assert expected[2]["verify"] == 0.42 and expected[3] == 2

    target = use(monkeypatch, tmp_path / "target")
    assert main(["restore", str(tmp_path / "backup")]) == 0
    assert "no index to delete: the next start builds the index" in capsys.readouterr().out
    assert not target.index_dir.exists()
    assert (target.models_dir / "finetuned" / "job1" / "weights.pt").is_file()
    restored = open_client(target.data_dir, models, models_dir=target.models_dir)
    try:
        assert answers(restored) == expected
    finally:
        restored.__exit__(None, None, None)
    assert rows(target.data_dir / "faces.db") == rows(settings.data_dir / "faces.db")


def test_files_only_on_sqlite_says_the_gallery_is_left_out(
    source: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It exited 0 without a word, and a backup of the checkpoints alone looked like one of
    the gallery (a docs audit)."""
    assert main(["backup", "--files-only", str(tmp_path / "files")]) == 0
    err = capsys.readouterr().err
    assert "leaves out the SQLite database" in err and "cannot restore the gallery" in err
    manifest = json.loads((tmp_path / "files" / "backup.json").read_text())
    assert manifest["files_only"] and "faces.db" not in manifest["files"]
    assert main(["backup", str(tmp_path / "full")]) == 0
    assert "leaves out" not in capsys.readouterr().err


def test_backup_refuses_a_folder_in_use_and_postgresql_without_files_only(
    source: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.txt").write_text("something")
    assert main(["backup", str(tmp_path / "full")]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err

    url = "postgresql://face:s3cret@db.example/face"
    monkeypatch.setenv("FACE_DATABASE_URL", url)
    assert main(["backup", str(tmp_path / "pg")]) == 2
    err = capsys.readouterr().err
    assert "pg_dump -Fc" in err and "--files-only" in err and "s3cret" not in err
    assert err.count("\n") == 1 and not (tmp_path / "pg").exists()

    # The calibrations are in the database, which pg_dump saves; a calibration.json that a
    # release before them left, not yet imported by a start, is carried along.
    (source.data_dir / "calibration.json").write_text("{}")  # as old releases wrote it
    assert main(["backup", "--files-only", str(tmp_path / "pg")]) == 0
    manifest = json.loads((tmp_path / "pg" / "backup.json").read_text())
    assert manifest["files_only"] and manifest["counts"] is None
    assert "s3cret" not in manifest["source"]["database_url"]
    assert set(manifest["files"]) == {
        "calibration.json",
        "models/finetuned/job1/weights.pt",
        "models/finetuned/job1/checkpoint.json",
    }
    # Restored after pg_restore: the files only, the database left as it is.
    use(monkeypatch, tmp_path / "target")
    monkeypatch.setenv("FACE_DATABASE_URL", url)
    assert main(["restore", str(tmp_path / "pg")]) == 0
    target = tmp_path / "target"
    assert (target / "data" / "calibration.json").read_bytes() == (
        source.data_dir / "calibration.json"
    ).read_bytes()
    assert (target / "models" / "finetuned" / "job1" / "weights.pt").is_file()
    assert not (target / "data" / "faces.db").exists()


def test_a_missing_checkpoint_warns_unless_its_model_is_active(
    source: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = source.models_dir / "finetuned" / "job1"
    for file in folder.iterdir():
        file.unlink()
    assert main(["backup", str(tmp_path / "warned")]) == 0
    assert f"warning: the model {TUNED}'s checkpoint is missing" in capsys.readouterr().err

    engine = make_engine(source.resolved_database_url)
    with make_session_factory(engine).begin() as session:
        models_repo.activate(session, TUNED)
    engine.dispose()
    assert main(["backup", str(tmp_path / "failed")]) == 1
    assert f"error: the active model {TUNED}'s checkpoint" in capsys.readouterr().err
    # Nothing is left behind: no half backup, and the same DEST may be given again.
    assert not (tmp_path / "failed").exists()
    (tmp_path / "empty").mkdir()
    assert main(["backup", str(tmp_path / "empty")]) == 1
    assert list((tmp_path / "empty").iterdir()) == []


def test_a_backup_of_a_damaged_database_leaves_nothing_behind(
    source: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = source.data_dir / "faces.db"
    database.write_bytes(b"not a database" * 100)
    dest = tmp_path / "new" / "dest"
    assert main(["backup", str(dest)]) == 1
    assert capsys.readouterr().err.startswith("backup failed: ")
    # Nor the folders made for it; a rerun into it is not refused as "not an empty folder".
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    ("step", "kept"),
    [
        ("_copy_checkpoints", False),  # no backup yet: nothing is left behind
        ("_print_summary", True),  # the manifest, written last, made it a whole backup
    ],
)
def test_a_backup_interrupted_leaves_nothing_or_a_whole_backup(
    source: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str, kept: bool
) -> None:
    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(backup_command, step, interrupted)
    dest = tmp_path / "dest"
    with pytest.raises(KeyboardInterrupt):
        backup_command.run(argparse.Namespace(destination=dest, files_only=False), source)
    assert dest.exists() is kept
    if kept:
        assert (dest / "backup.json").is_file() and (dest / "faces.db").is_file()


@pytest.fixture
def backup(source: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    assert main(["backup", str(tmp_path / "backup")]) == 0
    use(monkeypatch, tmp_path / "target")
    return tmp_path / "backup"


def rewrite(backup: Path, change: dict[str, Any]) -> None:
    manifest = json.loads((backup / "backup.json").read_text())
    (backup / "backup.json").write_text(json.dumps(manifest | change))


def drop_database_entry(backup: Path) -> None:
    manifest = json.loads((backup / "backup.json").read_text())
    del manifest["files"]["faces.db"]
    (backup / "backup.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (
            lambda b: (b / CHECKPOINT).write_text("{}"),
            "does not match its sha256",
        ),
        (lambda b: (b / "backup.json").unlink(), "backup.json (No such file or directory)"),
        (lambda b: rewrite(b, {"files": {"../faces.db": "0" * 64}}), "not a valid manifest"),
        (lambda b: rewrite(b, {"format": 2}), "not a valid manifest"),
        # Restored as files only, exit 0, the old gallery left in place.
        (lambda b: drop_database_entry(b), "says files_only=false but does not list faces.db"),
        (lambda b: rewrite(b, {"files_only": True}), "says files_only=true but lists faces.db"),
    ],
    ids=["tampered", "no-manifest", "path-outside", "unknown-format", "no-db-entry", "flag"],
)
def test_restore_refuses_a_damaged_backup(
    backup: Path, damage: Any, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    damage(backup)
    assert main(["restore", str(backup)]) == 2
    err = capsys.readouterr().err
    assert said in err and err.count("\n") == 1
    assert not (backup.parent / "target" / "data" / "faces.db").exists()


@pytest.mark.parametrize("revision", ["0005", "0099"])
def test_restore_refuses_a_newer_schema_only(
    backup: Path, revision: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with contextlib.closing(sqlite3.connect(backup / "faces.db")) as db, db:
        db.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    sha256 = hashlib.sha256((backup / "faces.db").read_bytes()).hexdigest()
    manifest = json.loads((backup / "backup.json").read_text())
    rewrite(backup, {"files": manifest["files"] | {"faces.db": sha256}})
    if revision < HEAD:  # an older release's backup: the service migrates it at start-up
        assert main(["restore", str(backup)]) == 0
        return
    assert main(["restore", str(backup)]) == 2
    err = capsys.readouterr().err
    assert "schema revision 0099, newer than this version" in err and f"up to {HEAD}" in err
    assert not (backup.parent / "target" / "data" / "faces.db").exists()


def test_restore_refuses_while_a_service_holds_the_data_folder(
    backup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    held = lock_data_dir(backup.parent / "target" / "data")
    assert held is not None
    try:
        assert main(["restore", str(backup)]) == 2
    finally:
        held.close()
    assert "a service is running on" in capsys.readouterr().err
    assert not (backup.parent / "target" / "data" / "faces.db").exists()


def test_restore_over_a_gallery_needs_force_and_keeps_it_aside(
    backup: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = use(monkeypatch, backup.parent / "target")
    add_subjects(target, 2, seed=7)
    store_for(target).save(calibration("other@000000000000"))
    # An older release's file not yet imported here: it calibrated the gallery replaced.
    (target.data_dir / "calibration.json").write_text('{"other@000000000000": "old"}')
    existing = rows(target.data_dir / "faces.db")
    assert main(["restore", str(backup)]) == 2
    err = capsys.readouterr().err
    assert "holds 2 subjects" in err and "--force" in err

    synced = watch_fsync(monkeypatch)
    (target.index_dir / "old").mkdir(parents=True)  # the replaced gallery's index
    assert main(["restore", "--force", str(backup)]) == 0
    said = capsys.readouterr().out
    assert f"deleted {target.index_dir}: the next start builds the index" in said
    assert not target.index_dir.exists()
    database = target.data_dir / "faces.db"
    # The copy reached the disk before its rename, and the folder holding the renames after.
    assert synced.index(Synced(False, database.stat().st_ino)) < synced.index(
        Synced(True, target.data_dir.stat().st_ino)
    )
    assert rows(target.data_dir / "faces.db") == rows(backup / "faces.db")
    (aside,) = target.data_dir.glob("faces.db.before-restore-*")
    assert rows(aside) == existing
    (old_file,) = target.data_dir.glob("calibration.json.before-restore-*")
    assert old_file.read_text() == '{"other@000000000000": "old"}'
    assert not (target.data_dir / "calibration.json").exists()
    # The calibrations go with the database they calibrated.
    assert [row[0] for row in rows(aside)["calibrations"]] == ["other@000000000000"]
    assert [row[0] for row in rows(target.data_dir / "faces.db")["calibrations"]] == [MODEL]


def test_the_layout_names_match_the_training_code() -> None:
    """Spelled out in backup_files so that the command line need not load torch."""
    from app.commands import backup_files
    from app.training.checkpoints import METADATA_FILE
    from app.training.promote import FINETUNED_DIR

    assert (backup_files.FINETUNED_DIR, backup_files.METADATA_FILE) == (
        FINETUNED_DIR,
        METADATA_FILE,
    )


def test_restore_refuses_a_database_another_process_has_open(
    backup: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another service sharing the file from its own data folder holds no lock on this
    one; replaced under it, it would go on writing into the file moved aside."""
    target = use(monkeypatch, backup.parent / "target")
    add_subjects(target, 2, seed=7)
    existing = rows(target.data_dir / "faces.db")
    with contextlib.closing(sqlite3.connect(target.data_dir / "faces.db")) as other:
        assert other.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
        other.execute("SELECT count(*) FROM subjects").fetchone()
        assert main(["restore", "--force", str(backup)]) == 2
    assert "another process has" in capsys.readouterr().err
    assert rows(target.data_dir / "faces.db") == existing
    assert not list(target.data_dir.glob("*.before-restore-*"))


def test_restore_writes_through_no_symlink_and_reads_none(
    backup: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = use(monkeypatch, backup.parent / "target")
    target.data_dir.mkdir(parents=True)
    victim = backup.parent / "victim.txt"
    victim.write_text("keep me")
    # Planted where a fixed partial name would have been written through.
    (target.data_dir / ".faces.db.partial").symlink_to(victim)
    assert main(["restore", str(backup)]) == 0
    assert victim.read_text() == "keep me"
    assert rows(target.data_dir / "faces.db") == rows(backup / "faces.db")

    # A backup whose file is a symbolic link (to a file of the right content) is refused.
    real = backup.parent / "checkpoint-elsewhere.json"
    real.write_bytes((backup / CHECKPOINT).read_bytes())
    (backup / CHECKPOINT).unlink()
    (backup / CHECKPOINT).symlink_to(real)
    assert main(["restore", "--force", str(backup)]) == 2
    assert "symbolic link" in capsys.readouterr().err


def test_a_restore_that_fails_midway_leaves_the_old_database_in_place(
    backup: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = use(monkeypatch, backup.parent / "target")
    add_subjects(target, 2, seed=7)
    existing = rows(target.data_dir / "faces.db")
    copy = shutil.copyfileobj

    def disk_full(data: Any, out: Any, *args: Any) -> None:
        if Path(data.name).name == "faces.db":
            raise OSError(28, "No space left on device")
        copy(data, out, *args)

    monkeypatch.setattr(shutil, "copyfileobj", disk_full)  # a full disk cannot be made here
    assert main(["restore", "--force", str(backup)]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert rows(target.data_dir / "faces.db") == existing
    assert not list(target.data_dir.glob("faces.db.before-restore-*"))
    assert not list(target.data_dir.glob(".faces.db.*.partial"))


def test_a_file_changed_after_its_check_is_refused_and_nothing_moves(
    backup: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The backup is checked first, then read again to copy: whoever can write to it could
    change a file in between. Each copy is checked again, before anything moves."""
    target = use(monkeypatch, backup.parent / "target")
    add_subjects(target, 2, seed=7)
    existing = rows(target.data_dir / "faces.db")
    check = restore.read_manifest

    def then_tamper(source: Path) -> Any:
        manifest = check(source)
        with contextlib.closing(sqlite3.connect(source / "faces.db")) as db, db:
            db.execute("DELETE FROM faces")
        return manifest

    monkeypatch.setattr(restore, "read_manifest", then_tamper)
    assert main(["restore", "--force", str(backup)]) == 2
    assert "changed during the restore" in capsys.readouterr().err
    assert rows(target.data_dir / "faces.db") == existing
    assert not list(target.data_dir.glob("*.before-restore-*"))
    assert not list(target.data_dir.glob(".*.partial"))
    assert not (target.models_dir / "finetuned" / "job1").exists()  # staged, then dropped
    assert not list(target.models_dir.glob("finetuned/.job1.*"))


def test_a_dest_through_a_missing_folder_is_checked_where_it_leads(
    source: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`missing/..` passed the empty-folder check, and the backup wrote into the folder it
    names, over an older backup's files."""
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "faces.db").write_text("an older backup")
    assert main(["backup", str(tmp_path / "missing" / ".." / "keep")]) == 2
    assert "is not an empty folder" in capsys.readouterr().err
    assert (keep / "faces.db").read_text() == "an older backup"
    assert not (tmp_path / "missing").exists()

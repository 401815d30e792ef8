"""Migration 0008: stored names are folded again without accents, and back on downgrade."""

from __future__ import annotations

import importlib

from alembic import command
from sqlalchemy import text

from app.gallery.db import alembic_config, make_engine
from tests.unit.gallery.name_migrations import insert_subjects, stored_folds

revision = importlib.import_module("app.gallery.migrations.versions.0008_subject_name_accents")
previous = importlib.import_module("app.gallery.migrations.versions.0007_subject_name_nfkc")

# Names as a gallery at 0007 holds them: name_folded is NFKC and casefold, accents kept.
STORED = {
    "jose": "José",
    "jose-nfd": "Jose\u0301 Lee",  # as macOS and iOS keyboards send accents
    "plain-jose": "Jose Ruiz",
    "bjork": "Björk",
    "francois": "François",
    "lukasz": "Łukasz",
    "ascii": "Ada Lovelace",
    "full-width": "ＡＤＡ",
    "kumar": "कुमार",
    "gakko": "がっこう",
    "kakko": "かっこう",
}


SAMPLES = [*STORED.values(), "\ufdfa", "Ǆ", "ﬀ", "İ", "ΐ", "Ⅻ", "①", "Ǽ", "ｶﾞ", "\u0301", ""]
SAMPLES += [chr(point) for point in range(0x80, 0x3400)]


def test_the_downgrade_folds_as_0007_did() -> None:
    assert [revision.fold_0007(n) for n in SAMPLES] == [previous.fold(n) for n in SAMPLES]


def test_migration_0008_refolds_stored_names_and_goes_back(db_url: str) -> None:
    # Searching the refolded names is tested at the head revision (test_migration_0010).
    engine = make_engine(db_url)
    config = alembic_config()
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0007")
            insert_subjects(connection, STORED, previous.fold, with_face="jose")
            command.upgrade(config, "0008")
            assert stored_folds(connection) == {k: revision.fold(n) for k, n in STORED.items()}
            assert stored_folds(connection)["jose-nfd"] == "jose lee"
            assert stored_folds(connection)["lukasz"] == "lukasz"
            assert stored_folds(connection)["gakko"] != stored_folds(connection)["kakko"]
            assert connection.scalar(text("SELECT count(*) FROM faces")) == 1

        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0007")
            assert stored_folds(connection) == {k: previous.fold(n) for k, n in STORED.items()}
            assert connection.scalar(text("SELECT count(*) FROM faces")) == 1
            command.upgrade(config, "0008")  # and up again
            assert connection.scalar(text("SELECT version_num FROM alembic_version")) == "0008"
            assert stored_folds(connection)["jose-nfd"] == "jose lee"
    finally:
        engine.dispose()

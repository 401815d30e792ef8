"""Migration 0009: stored names are folded again without Hebrew and Arabic points, and back."""

from __future__ import annotations

import importlib

from alembic import command
from sqlalchemy import text

from app.gallery.db import alembic_config, make_engine
from tests.unit.gallery.name_migrations import insert_subjects, stored_folds

revision = importlib.import_module("app.gallery.migrations.versions.0009_subject_name_points")
previous = importlib.import_module("app.gallery.migrations.versions.0008_subject_name_accents")

# Names as a gallery at 0008 holds them: name_folded keeps Hebrew and Arabic points.
STORED = {
    "shalom": "שָׁלוֹם",
    "shalom-plain": "שלום כהן",
    "moshe": "מֹשֶׁה",
    "yitzhak": "יִצְחָק\u05be\u05d0",  # and a maqaf, which is punctuation and stays
    "muhammad": "مُحَمَّد",
    "muhammad-plain": "محمد علي",
    "stretched": "محـــمد",  # tatweel
    "ahmad": "أحمد",  # hamza changes the letter
    "jose": "José",
    "ascii": "Ada Lovelace",
    "kumar": "कुमार",
    "gakko": "がっこう",
    "kakko": "かっこう",
}


SAMPLES = [*STORED.values(), "\ufdfa", "\ufcf2", "\ufe71", "\ufb2c", "\ufb1f", "ـ", "\u05b8", ""]
SAMPLES += [chr(point) for point in range(0x80, 0x3400)]
SAMPLES += [chr(point) for point in range(0xFB00, 0xFF00)]  # Hebrew and Arabic forms


def test_the_downgrade_folds_as_0008_did() -> None:
    assert [revision.fold_0008(n) for n in SAMPLES] == [previous.fold(n) for n in SAMPLES]


def test_migration_0009_refolds_stored_names_and_goes_back(db_url: str) -> None:
    # Searching the refolded names is tested at the head revision (test_migration_0010).
    engine = make_engine(db_url)
    config = alembic_config()
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0008")
            insert_subjects(connection, STORED, previous.fold, with_face="shalom")
            assert stored_folds(connection)["shalom"] != "שלום"
            command.upgrade(config, "0009")
            assert connection.scalar(text("SELECT version_num FROM alembic_version")) == "0009"
            assert stored_folds(connection) == {k: revision.fold(n) for k, n in STORED.items()}
            assert stored_folds(connection)["shalom"] == "שלום"
            assert stored_folds(connection)["muhammad"] == "محمد"
            assert stored_folds(connection)["ahmad"] == "أحمد"  # the hamza still counts
            assert stored_folds(connection)["gakko"] != stored_folds(connection)["kakko"]
            assert connection.scalar(text("SELECT count(*) FROM faces")) == 1

        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0008")
            assert stored_folds(connection) == {k: previous.fold(n) for k, n in STORED.items()}
            assert stored_folds(connection)["shalom"] == "שָׁלוֹם"
            assert connection.scalar(text("SELECT count(*) FROM faces")) == 1
            command.upgrade(config, "0009")  # and up again
            assert connection.scalar(text("SELECT version_num FROM alembic_version")) == "0009"
            assert stored_folds(connection)["stretched"] == "محمد"
    finally:
        engine.dispose()

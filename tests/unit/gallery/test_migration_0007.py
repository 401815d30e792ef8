"""Migration 0007: stored names are folded again with NFKC, and folded back on downgrade."""

from __future__ import annotations

import importlib

from alembic import command
from sqlalchemy import text

from app.gallery.db import alembic_config, make_engine
from tests.unit.gallery.name_migrations import insert_subjects, stored_folds

revision = importlib.import_module("app.gallery.migrations.versions.0007_subject_name_nfkc")

# Names as a gallery from before 0007 holds them: name_folded is name.casefold().
STORED = {
    "composed": "Zoë Café",
    "decomposed": "Rene\u0301e Zoe\u0308",  # as macOS and iOS keyboards send accents
    "ascii": "Ada Lovelace",
    "sharp-s": "Straße",
    "full-width": "ＡＤＡ",
    "ligature": "\ufb01fi",  # "ﬁ" then "fi"
    "emoji": "👩\u200d👩\u200d👧 family",
}


def test_migration_0007_refolds_stored_names_and_goes_back(db_url: str) -> None:
    # Searching the refolded names is tested at the head revision (test_migration_0010).
    engine = make_engine(db_url)
    config = alembic_config()
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0006")
            insert_subjects(connection, STORED, str.casefold, with_face="composed")
            command.upgrade(config, "0007")
            assert stored_folds(connection) == {k: revision.fold(n) for k, n in STORED.items()}
            assert stored_folds(connection)["decomposed"] == "renée zoë"
            assert connection.scalar(text("SELECT count(*) FROM faces")) == 1

        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0006")
            assert stored_folds(connection) == {k: n.casefold() for k, n in STORED.items()}
            assert connection.scalar(text("SELECT count(*) FROM faces")) == 1
            command.upgrade(config, "0007")  # and up again
            assert connection.scalar(text("SELECT version_num FROM alembic_version")) == "0007"
            assert stored_folds(connection)["decomposed"] == "renée zoë"
    finally:
        engine.dispose()

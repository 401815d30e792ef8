"""Migration 0007: stored names are folded again with NFKC, and folded back on downgrade."""

from __future__ import annotations

import importlib

from alembic import command
from sqlalchemy import Connection, text

from app.gallery import repository
from app.gallery.db import alembic_config, make_engine, make_session_factory, migrate
from app.gallery.names import fold_name

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


def insert_subjects(connection: Connection) -> None:
    for subject_id, name in STORED.items():
        connection.execute(
            text(
                "INSERT INTO subjects (id, name, name_folded, metadata, created_at, updated_at) "
                "VALUES (:id, :name, :folded, '{}', '2026-01-01', '2026-01-01')"
            ),
            {"id": subject_id, "name": name, "folded": name.casefold()},
        )
    connection.execute(
        text(
            "INSERT INTO faces (subject_id, box, landmarks, quality, image_sha256, created_at) "
            "VALUES ('composed', '[0, 0, 1, 1]', '[]', '{}', :sha, '2026-01-01')"
        ),
        {"sha": "0" * 64},
    )


def stored_folds(connection: Connection) -> dict[str, str]:
    return dict(connection.execute(text("SELECT id, name_folded FROM subjects")).all())


def test_the_migration_folds_as_the_service_does() -> None:
    samples = [*STORED.values(), "\ufdfa", "Ǆ", "ﬀ", "İ", "ΐ", "Ⅻ", "①"]
    samples += [chr(point) for point in range(0x80, 0x3400)]
    assert [revision.fold(name) for name in samples] == [fold_name(name) for name in samples]


def test_migration_0007_refolds_stored_names_and_goes_back(db_url: str) -> None:
    engine = make_engine(db_url)
    config = alembic_config()
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0006")
            insert_subjects(connection)
        migrate(engine)
        with engine.connect() as connection:
            assert stored_folds(connection) == {k: fold_name(n) for k, n in STORED.items()}
            assert connection.scalar(text("SELECT count(*) FROM faces")) == 1

        with make_session_factory(engine)() as s:

            def found(query: str) -> list[str]:
                page, _ = repository.list_subjects(s, 10, 0, query)
                return sorted(subject.id for subject, _ in page)

            assert found("Cafe\u0301") == found("CAFÉ") == ["composed"]
            assert found("RENÉE") == ["decomposed"]
            assert found("zoë") == ["composed", "decomposed"]
            assert found("ada") == ["ascii", "full-width"]
            assert found("STRASSE") == ["sharp-s"]
            assert found("fifi") == ["ligature"]
            assert found("👩\u200d👧") == ["emoji"]

        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0006")
            assert stored_folds(connection) == {k: n.casefold() for k, n in STORED.items()}
            assert connection.scalar(text("SELECT count(*) FROM faces")) == 1
        migrate(engine)  # and up again
        with engine.connect() as connection:
            assert connection.scalar(text("SELECT version_num FROM alembic_version")) == "0007"
            assert stored_folds(connection)["decomposed"] == "renée zoë"
    finally:
        engine.dispose()

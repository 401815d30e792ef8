"""Migration 0010: stored names are folded again without the further Arabic marks, and back."""

from __future__ import annotations

import importlib

from alembic import command
from sqlalchemy import Connection, text

from app.gallery import repository
from app.gallery.db import alembic_config, make_engine, make_session_factory, migrate
from app.gallery.names import fold_name
from tests.unit.gallery.name_migrations import insert_subjects, stored_folds
from tests.unit.gallery.revisions import head_revision

revision = importlib.import_module("app.gallery.migrations.versions.0010_subject_name_more_marks")
previous = importlib.import_module("app.gallery.migrations.versions.0009_subject_name_points")

# Names as a gallery at 0009 holds them: name_folded keeps the marks 0010 drops.
STORED = {
    "ali": "عَلِيٖ",  # subscript alef (standing kasra)
    "pashtun": "پ\u0659ښتون",  # zwarakay
    "curly": "م\u08e5ح\u08e4م\u0651د",  # curly damma and fatha, then shadda
    "yusuf": "يوسف\u08de",  # the Quranic pause mark "qif" over the word
    "kano": "كَنُو\u08ea",  # a tone mark
    "dawud": "داو\u08d3د",  # small low waw
    "sukun-below": "ب\u08d0ت",  # Extended-A before U+08D3
    "waajib": "جا\u089cء",  # the madda waajib, a recitation mark (Extended-B)
    "wavy-hamza": "ا\u065fحمد",  # the wavy hamza below makes another letter of the alef
    "ayah": "يوسف\u08e2",  # the disputed end of ayah is a sign, not a mark
    # As 0009 left them: their folds change no more.
    "ali-plain": "علي حسن",
    "shalom": "שָׁלוֹם",
    "shalom-plain": "שלום כהן",
    "moshe": "מֹשֶׁה",
    "muhammad": "مُحَمَّد",
    "stretched": "محـــمد",  # tatweel
    "ahmad": "أحمد",  # hamza changes the letter
    "jose": "José",
    "kumar": "कुमार",
    "gakko": "がっこう",
    "kakko": "かっこう",
}


SAMPLES = [*STORED.values(), "\ufdfa", "\ufcf2", "\ufe71", "\ufb2c", "ـ", "\u0656", "\u08f3", ""]
SAMPLES += [chr(point) for point in range(0x80, 0x3400)]
SAMPLES += [chr(point) for point in range(0xFB00, 0xFF00)]  # Hebrew and Arabic forms
SAMPLES += [f"ب{chr(point)}" for point in range(0x0590, 0x0900)]  # marks on a letter


def version(connection: Connection) -> str | None:
    revision_num: str | None = connection.scalar(text("SELECT version_num FROM alembic_version"))
    return revision_num


def test_the_migration_folds_as_the_service_does() -> None:
    assert [revision.fold(name) for name in SAMPLES] == [fold_name(name) for name in SAMPLES]


def test_the_downgrade_folds_as_0009_did() -> None:
    assert [revision.fold_0009(n) for n in SAMPLES] == [previous.fold(n) for n in SAMPLES]


def test_migration_0010_refolds_stored_names_and_goes_back(db_url: str) -> None:
    engine = make_engine(db_url)
    config = alembic_config()
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0009")
            insert_subjects(connection, STORED, previous.fold, with_face="ali")
            assert stored_folds(connection)["ali"] != "علي"
            command.upgrade(config, "0010")
            assert version(connection) == "0010"
            assert stored_folds(connection) == {k: revision.fold(n) for k, n in STORED.items()}
            assert stored_folds(connection)["ali"] == "علي"
            assert stored_folds(connection)["curly"] == "محمد"
            assert stored_folds(connection)["wavy-hamza"] == "ا\u065fحمد"
            assert stored_folds(connection)["ayah"] == "يوسف\u08e2"
            assert connection.scalar(text("SELECT count(*) FROM faces")) == 1
        migrate(engine)  # on to the head, where the service searches
        with engine.connect() as connection:
            assert version(connection) == head_revision()
            assert stored_folds(connection) == {k: fold_name(n) for k, n in STORED.items()}

        with make_session_factory(engine)() as s:

            def found(query: str) -> list[str]:
                page, _ = repository.list_subjects(s, 30, 0, query)
                return sorted(subject.id for subject, _ in page)

            assert found("علي") == found("عَلِيٖ") == ["ali", "ali-plain"]
            assert found("پښتون") == ["pashtun"]
            assert found("محمد") == found("مُحَمَّد") == ["curly", "muhammad", "stretched"]
            assert found("يوسف") == ["ayah", "yusuf"]
            assert found("يوسف\u08e2") == ["ayah"]
            assert found("كنو") == ["kano"]
            assert found("داود") == ["dawud"]
            assert found("احمد") == []  # the hamza, plain or wavy, still counts
            assert found("ا\u065fحمد") == ["wavy-hamza"]
            assert found("שלום") == found("שָׁלוֹם") == ["shalom", "shalom-plain"]
            assert found("משה") == ["moshe"]
            assert found("jose") == ["jose"]
            assert found("कमार") == []
            assert found("がっこう") == ["gakko"]

        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0009")
            assert stored_folds(connection) == {k: previous.fold(n) for k, n in STORED.items()}
            assert stored_folds(connection)["ali"] == "علي\u0656"
            assert connection.scalar(text("SELECT count(*) FROM faces")) == 1
        migrate(engine)  # and up again
        with engine.connect() as connection:
            assert version(connection) == head_revision()
            assert stored_folds(connection)["curly"] == "محمد"
    finally:
        engine.dispose()

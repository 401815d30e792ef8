"""The schema's head revision, read from the migrations, for tests that migrate to it."""

from __future__ import annotations

from alembic.script import ScriptDirectory

from app.gallery.db import alembic_config


def head_revision() -> str:
    """The revision migrate() ends at: the one head of the packaged migrations, so that a
    new migration needs no test to name it."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations"
    return head

"""subjects.name_folded: NFKC as well as casefold, so either encoding of an accent matches."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_subjects = sa.table(
    "subjects",
    sa.column("id", sa.String(36)),
    sa.column("name", sa.String(255)),
    sa.column("name_folded", sa.Text()),
)


def fold(name: str) -> str:
    """app.gallery.names.fold_name as of this revision, kept here so that the migration
    does the same whatever later releases make of that function."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def upgrade() -> None:
    bind = op.get_bind()
    # NFKC makes a name up to 18 times longer (U+FDFA), past VARCHAR(1024). SQLite checks no
    # length, and retyping there would rebuild the table, cascade-deleting every face.
    if bind.dialect.name != "sqlite":
        op.alter_column("subjects", "name_folded", type_=sa.Text(), existing_type=sa.String(1024))
    _refold(bind, fold)


def downgrade() -> None:
    bind = op.get_bind()
    _refold(bind, str.casefold)  # casefold() at most triples a name: 765 characters fit
    if bind.dialect.name != "sqlite":
        op.alter_column("subjects", "name_folded", type_=sa.String(1024), existing_type=sa.Text())


def _refold(bind: sa.Connection, folding: Callable[[str], str]) -> None:
    # In Python, as 0003 did: no SQL function on either backend matches it.
    rows = bind.execute(sa.select(_subjects.c.id, _subjects.c.name, _subjects.c.name_folded))
    changed = [
        {"subject_id": subject_id, "folded": new}
        for subject_id, name, old in rows
        if (new := folding(name)) != old
    ]
    if changed:  # most names (ASCII ones, for a start) fold as before
        update = (
            _subjects.update()
            .where(_subjects.c.id == sa.bindparam("subject_id"))
            .values(name_folded=sa.bindparam("folded"))
        )
        bind.execute(update, changed)

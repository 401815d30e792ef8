"""subjects.name_folded: accents dropped as well, so "Jose" finds "José" and back."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_subjects = sa.table(
    "subjects",
    sa.column("id", sa.String(36)),
    sa.column("name", sa.String(255)),
    sa.column("name_folded", sa.Text()),
)

# As app.gallery.names has them at this revision (the reasons are given there).
_ACCENTS = range(0x0300, 0x0370)
_BASE_LETTERS = str.maketrans(
    {"æ": "ae", "ð": "d", "đ": "d", "ħ": "h", "ı": "i", "ł": "l", "ø": "o", "œ": "oe", "þ": "th"}
)


def fold(name: str) -> str:
    """app.gallery.names.fold_name as of this revision, kept here so that the migration
    does the same whatever later releases make of that function."""
    letters = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", name).casefold())
    bare = "".join(char for char in letters if ord(char) not in _ACCENTS).translate(_BASE_LETTERS)
    return unicodedata.normalize("NFKC", bare or letters)


def fold_0007(name: str) -> str:
    """The folding of revision 0007 (NFKC and casefold), which downgrade() puts back."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def upgrade() -> None:
    # The column stays as 0007 left it: the new folding is longer than the old only where
    # a letter becomes two ("æ" to "ae"), and 0007 lifted the bound on PostgreSQL.
    _refold(op.get_bind(), fold)


def downgrade() -> None:
    _refold(op.get_bind(), fold_0007)


def _refold(bind: sa.Connection, folding: Callable[[str], str]) -> None:
    # In Python, as 0003 and 0007 did: no SQL function on either backend matches it.
    rows = bind.execute(sa.select(_subjects.c.id, _subjects.c.name, _subjects.c.name_folded))
    changed = [
        {"subject_id": subject_id, "folded": new}
        for subject_id, name, old in rows
        if (new := folding(name)) != old
    ]
    if changed:  # ASCII names (most, for a start) fold as before
        update = (
            _subjects.update()
            .where(_subjects.c.id == sa.bindparam("subject_id"))
            .values(name_folded=sa.bindparam("folded"))
        )
        bind.execute(update, changed)

"""subjects.name_folded: more optional Arabic vowel and Quranic marks dropped, as in 0009."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
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
_POINTS_0009 = frozenset(
    map(
        chr,
        [
            *range(0x0591, 0x05BE),
            0x05BF,
            *range(0x05C1, 0x05C3),
            *range(0x05C4, 0x05C6),
            0x05C7,
            *range(0x0610, 0x061B),
            0x0640,
            *range(0x064B, 0x0653),
            0x0670,
            *range(0x06D6, 0x06DD),
            *range(0x06DF, 0x06E5),
            *range(0x06E7, 0x06E9),
            *range(0x06EA, 0x06EE),
        ],
    )
)
_POINTS = _POINTS_0009 | frozenset(
    map(
        chr,
        [
            *range(0x0656, 0x065F),
            *range(0x0898, 0x08A0),
            *range(0x08CA, 0x08E2),
            *range(0x08E3, 0x0900),
        ],
    )
)
_BASE_LETTERS = str.maketrans(
    {"æ": "ae", "ð": "d", "đ": "d", "ħ": "h", "ı": "i", "ł": "l", "ø": "o", "œ": "oe", "þ": "th"}
)


def fold(name: str) -> str:
    """app.gallery.names.fold_name as of this revision, kept here so that the migration
    does the same whatever later releases make of that function."""
    return _fold(name, _POINTS)


def fold_0009(name: str) -> str:
    """The folding of revision 0009 (Hebrew and Arabic points dropped, but not these
    marks), which downgrade() puts back."""
    return _fold(name, _POINTS_0009)


def _fold(name: str, points: frozenset[str]) -> str:
    letters = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", name).casefold())
    bare = "".join(
        char for char in letters if ord(char) not in _ACCENTS and char not in points
    ).translate(_BASE_LETTERS)
    return unicodedata.normalize("NFKC", bare or letters)


def upgrade() -> None:
    # The column stays as 0007 left it: dropping marks only shortens a folded name.
    _refold(op.get_bind(), fold)


def downgrade() -> None:
    _refold(op.get_bind(), fold_0009)


def _refold(bind: sa.Connection, folding: Callable[[str], str]) -> None:
    # In Python, as 0003 and 0007 to 0009 did: no SQL function on either backend matches it.
    rows = bind.execute(sa.select(_subjects.c.id, _subjects.c.name, _subjects.c.name_folded))
    changed = [
        {"subject_id": subject_id, "folded": new}
        for subject_id, name, old in rows
        if (new := folding(name)) != old
    ]
    if changed:  # names without these marks (nearly all) fold as before
        update = (
            _subjects.update()
            .where(_subjects.c.id == sa.bindparam("subject_id"))
            .values(name_folded=sa.bindparam("folded"))
        )
        bind.execute(update, changed)

"""subjects.name_folded: the name casefold()ed, for a name filter alike on every backend."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_subjects = sa.table(
    "subjects",
    sa.column("id", sa.String(36)),
    sa.column("name", sa.String(255)),
    sa.column("name_folded", sa.String(1024)),
)


def upgrade() -> None:
    op.add_column("subjects", sa.Column("name_folded", sa.String(1024), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(sa.select(_subjects.c.id, _subjects.c.name)).all()
    for subject_id, name in rows:  # casefold() is Python's: no SQL function matches it
        bind.execute(
            _subjects.update()
            .where(_subjects.c.id == subject_id)
            .values(name_folded=name.casefold())
        )


def downgrade() -> None:
    op.drop_column("subjects", "name_folded")

"""subjects(created_at, id): the listing's order, so a page no longer sorts every subject."""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # At 300k subjects on SQLite (2026-11-29, a quiet 2-core VM) the first page took 110 ms,
    # a cursor's page 173 ms and the page at offset 150k 691 ms, nearly all of it sorting the
    # table; from this index they take 19-27, 18-19 and 40-56 ms. A name search still scans
    # the table (repository.list_subjects): 234-297 ms against 212-226 before.
    op.create_index("ix_subjects_created_at_id", "subjects", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_subjects_created_at_id", table_name="subjects")

"""jobs.owner_host, owner_pid, heartbeat_at: which process runs a job, and when it last said so."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, with no value for the jobs already stored: a job without an owner is one
    # from before this revision, ended at the next start-up as every unfinished job was.
    op.add_column("jobs", sa.Column("owner_host", sa.String(255), nullable=True))
    op.add_column("jobs", sa.Column("owner_pid", sa.Integer(), nullable=True))
    op.add_column("jobs", sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "heartbeat_at")
    op.drop_column("jobs", "owner_pid")
    op.drop_column("jobs", "owner_host")

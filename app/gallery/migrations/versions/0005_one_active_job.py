"""jobs.slot and a partial unique index on it: at most one job queued, running or cancelling."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here, as the index holds them: jobs_repo.ACTIVE_STATES when this revision was written.
ACTIVE_STATES = ("queued", "running", "cancelling")
ENDED_ERROR = "ended by migration 0005: another job held the training slot"

_jobs = sa.table(
    "jobs",
    sa.column("id", sa.String(36)),
    sa.column("state", sa.String(20)),
    sa.column("error", sa.Text()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("finished_at", sa.DateTime(timezone=True)),
    sa.column("heartbeat_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    _end_all_but_one_active_job()
    # Every row holds slot 1; the index counts only active rows, so a second active job
    # is a unique violation, whichever process inserts it. A constant column rather than
    # an index on the expression (1): SQLite and alembic's comparison both handle columns.
    op.add_column(
        "jobs", sa.Column("slot", sa.Integer(), nullable=False, server_default=sa.text("1"))
    )
    where = sa.column("state").in_(ACTIVE_STATES)
    op.create_index(
        "uq_jobs_one_active",
        "jobs",
        ["slot"],
        unique=True,
        sqlite_where=where,
        postgresql_where=where,
    )


def downgrade() -> None:
    op.drop_index("uq_jobs_one_active", table_name="jobs")
    op.drop_column("jobs", "slot")


def _end_all_but_one_active_job() -> None:
    """Two active jobs (the race this revision closes) would fail the index: all but the
    one that beat last (else the newest) end as a process-less job does."""
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_jobs.c.id, _jobs.c.state, _jobs.c.heartbeat_at, _jobs.c.created_at).where(
            _jobs.c.state.in_(ACTIVE_STATES)
        )
    ).all()
    if len(rows) < 2:
        return
    ranked = sorted(rows, key=lambda r: (_utc(r.heartbeat_at), _utc(r.created_at)))
    now = datetime.now(UTC)
    for row in ranked[:-1]:
        bind.execute(
            _jobs.update()
            .where(_jobs.c.id == row.id)
            .values(
                state="cancelled" if row.state == "cancelling" else "interrupted",
                error=ENDED_ERROR,
                finished_at=now,
            )
        )


def _utc(value: datetime | None) -> datetime:
    """A naive UTC value to sort by: SQLite returns naive UTC, PostgreSQL the session's zone."""
    if value is None:
        return datetime.min
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value

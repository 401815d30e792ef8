"""A calibrations table: the thresholds every process serves, no longer a file per process."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Each process's FACE_DATA_DIR/calibration.json is imported at its next start
    # (services/calibration_import.py): the migration cannot know where those folders are.
    # A table already here at 0010 is a leftover: `pg_restore --clean` of a dump made before
    # this revision drops only what the dump holds, so the rows of the gallery replaced
    # stayed (and the CREATE failed). They calibrated that gallery: gone with it.
    op.execute("DROP TABLE IF EXISTS calibrations")
    op.create_table(
        "calibrations",
        sa.Column("model_version", sa.String(100), primary_key=True),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("calibrations")

"""Initial schema: subjects, faces and per-model embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Mirrors app.gallery.orm.FaceId; repeated so this revision never changes with the ORM.
FACE_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "subjects",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_subjects_name", "subjects", ["name"])

    op.create_table(
        "faces",
        sa.Column("id", FACE_ID, primary_key=True, autoincrement=True),
        sa.Column(
            "subject_id",
            sa.String(36),
            sa.ForeignKey("subjects.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("box", sa.JSON(), nullable=False),
        sa.Column("landmarks", sa.JSON(), nullable=False),
        sa.Column("quality", sa.JSON(), nullable=False),
        sa.Column("image_sha256", sa.String(64), nullable=False),
        sa.Column("crop", sa.LargeBinary(), nullable=True),
        sa.Column("crop_landmarks", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_faces_subject_id", "faces", ["subject_id"])
    op.create_index("ix_faces_image_sha256", "faces", ["image_sha256"])

    op.create_table(
        "embeddings",
        sa.Column(
            "face_id",
            FACE_ID,
            sa.ForeignKey("faces.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("model", sa.String(100), primary_key=True),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_embeddings_model", "embeddings", ["model"])


def downgrade() -> None:
    op.drop_table("embeddings")
    op.drop_table("faces")
    op.drop_table("subjects")

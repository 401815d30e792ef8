"""Alembic migrations of the gallery schema."""

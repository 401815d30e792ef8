"""Alembic revisions, applied in order by app.gallery.db.migrate."""

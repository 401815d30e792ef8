"""HTTP layer: the only package that knows about FastAPI."""

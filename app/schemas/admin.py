"""Admin-only responses."""

from __future__ import annotations

from pydantic import BaseModel


class IndexRebuilt(BaseModel):
    model_version: str
    previous_size: int
    size: int
    seconds: float

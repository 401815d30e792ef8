"""Subjects (people) and their enrolled faces."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.common import Box, JsonObject, QualityPublic, Text


class SubjectCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "Ada Lovelace", "metadata": {"badge": "42"}}]},
    )

    name: Text = Field(min_length=1, max_length=255)
    metadata: JsonObject = Field(default_factory=dict)


class SubjectUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text | None = Field(None, min_length=1, max_length=255)
    metadata: JsonObject | None = None


class SubjectPublic(BaseModel):
    id: str
    name: str
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    face_count: int


class SubjectList(BaseModel):
    items: list[SubjectPublic]
    total: int
    limit: int
    offset: int


class FacePublic(BaseModel):
    id: int
    box: Box
    quality: QualityPublic
    landmarks: list[list[float]] | None = None
    image_sha256: str | None = None
    created_at: datetime | None = None


class FacesCreated(BaseModel):
    faces: list[FacePublic]


class FaceList(BaseModel):
    faces: list[FacePublic]

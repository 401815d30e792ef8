"""Subjects (people) and their enrolled faces."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from app.gallery.names import check_name
from app.schemas.common import Box, JsonObject, NulFree, QualityPublic

# check_name refuses the empty name itself, with a plainer message than min_length's; the
# schema still tells clients the bound.
SubjectName = Annotated[
    str,
    Field(max_length=255, json_schema_extra={"minLength": 1}),
    NulFree,
    AfterValidator(check_name),
]

_NULL_REFUSED = {
    "name": "name must not be null: a subject always has a name (leave name out to keep it)",
    "metadata": "metadata must not be null: send {} to clear the metadata, or leave it out",
}


def _not_null_in_schema(schema: dict[str, Any]) -> None:
    # `X | None` keeps pydantic's errors plain (a union would add "Input should be null" to
    # each), but would publish null as allowed, and as the default.
    schema.pop("default", None)
    branches = schema.pop("anyOf")
    schema.update(next(b for b in branches if b.get("type") != "null"))


class SubjectCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "Ada Lovelace", "metadata": {"badge": "42"}}]},
    )

    name: SubjectName
    metadata: JsonObject = Field(default_factory=dict)


class SubjectUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # None stands for "left out", which keeps the field; null itself is refused below.
    name: SubjectName | None = Field(None, json_schema_extra=_not_null_in_schema)
    metadata: JsonObject | None = Field(None, json_schema_extra=_not_null_in_schema)

    @field_validator("name", "metadata", mode="before")
    @classmethod
    def _refuse_null(cls, value: Any, info: ValidationInfo) -> Any:
        # An explicit null used to be read as "left out" and changed nothing, with a 200.
        if value is None:
            raise ValueError(_NULL_REFUSED[str(info.field_name)])
        return value


class SubjectPublic(BaseModel):
    id: str
    name: str
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    face_count: int


_NEXT_AFTER = (
    "Pass as `after` for the next page; null on the last page. Unlike offsets, it still"
    " continues where this page ended when rows before it are deleted meanwhile."
)


class SubjectList(BaseModel):
    items: list[SubjectPublic]
    total: int
    limit: int
    offset: int
    next_after: str | None = Field(default=None, description=_NEXT_AFTER)


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
    faces: list[FacePublic]  # not `items` as in SubjectList: clients read `faces`
    total: int
    limit: int
    offset: int
    next_after: str | None = Field(default=None, description=_NEXT_AFTER)

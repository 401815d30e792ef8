"""Shapes shared by several endpoints: errors, boxes, quality."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field


class ErrorBody(BaseModel):
    code: str = Field(examples=["no_face"])
    message: str = Field(examples=["No face of at least 32 px was found in the image."])
    details: Any | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


def reject_nul(value: Any) -> Any:
    """Refuse NUL characters in a string, or in any key or string inside JSON data.

    PostgreSQL cannot store them in text or JSON, so they would fail at the database;
    refusing them on every backend keeps the API the same on SQLite and PostgreSQL.
    """
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("NUL characters are not allowed")
    elif isinstance(value, dict):
        for key, item in value.items():
            reject_nul(key)
            reject_nul(item)
    elif isinstance(value, list):
        for item in value:
            reject_nul(item)
    return value


NulFree = AfterValidator(reject_nul)
Text = Annotated[str, NulFree]
JsonObject = Annotated[dict[str, Any], NulFree]

Box = list[float]  # x1, y1, x2, y2 in pixels of the uploaded (EXIF-rotated) image


class QualityPublic(BaseModel):
    passed: bool
    face_size: float = Field(description="Shorter side of the face box, pixels.")
    probability: float = Field(description="Detector confidence.")
    blur: float = Field(description="Laplacian variance of the aligned face; low is blurry.")
    reasons: list[str] = Field(default_factory=list, examples=[["blurry: 3.1 < 15.0"]])


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 413, 415, 422, 503)
}

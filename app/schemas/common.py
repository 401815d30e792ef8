"""Shapes shared by several endpoints: errors, boxes, quality."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    code: str = Field(examples=["no_face"])
    message: str = Field(examples=["No face was found in the image."])
    details: Any | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


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

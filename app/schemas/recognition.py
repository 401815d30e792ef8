"""Verify (1:1), identify (1:N) and detect responses."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.schemas.common import Box, QualityPublic


class VerifyResult(BaseModel):
    verified: bool
    similarity: float = Field(description="Cosine similarity; max over the subject's faces.")
    threshold: float
    estimated_far: float | None = Field(
        None,
        description=(
            "False-accept rate of this threshold, when calibrated: per image pair, and against "
            "a subject over its k faces, 1 - (1 - FAR)^k (a stranger has k chances)."
        ),
    )
    subject_id: str | None = None
    box: Box
    box2: Box | None = Field(None, description="Face box in image2 (image-to-image mode).")
    quality: QualityPublic = Field(description="The quality gate's verdict on image's face.")
    quality2: QualityPublic | None = Field(
        None, description="The same for image2's face (image-to-image mode)."
    )


class Candidate(BaseModel):
    subject_id: str
    name: str
    similarity: float


class IdentifiedFace(BaseModel):
    box: Box
    quality: QualityPublic
    candidates: list[Candidate]
    match: Candidate | None = Field(description="Best candidate at or above the threshold.")


class IdentifyResult(BaseModel):
    faces: list[IdentifiedFace]
    faces_found: int = Field(
        description="Faces detected in the image; the largest, up to max_faces, are identified."
    )
    threshold: float
    estimated_far: float | None = None


class DetectedFacePublic(BaseModel):
    box: Box
    probability: float
    landmarks: list[list[float]] = Field(description="5 points: eyes, nose, mouth corners.")
    quality: QualityPublic


class DetectResult(BaseModel):
    faces: list[DetectedFacePublic] = Field(description="The largest first, up to max_faces.")
    faces_found: int = Field(description="Faces detected in the image, reported or not.")
    width: int
    height: int

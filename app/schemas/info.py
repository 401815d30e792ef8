"""Health, readiness and service information."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    reason: str | None = None
    # Ready, but verify and identify answer 503: why (an unreadable stored calibration).
    paused: str | None = None


class ThresholdsPublic(BaseModel):
    verify: float
    identify: float
    verify_far: float | None
    identify_far: float | None
    source: str
    identify_far_gallery_size: int | None = Field(
        default=None,
        description="The gallery size identify_far is stated for: the gallery as it is now "
        "(re-counted every 30 s), in faces for a calibration from pairs and in subjects with "
        "faces for one on the gallery. A stranger's chance of a match grows with it.",
    )
    identify_far_method: str | None = Field(
        default=None,
        description="How identify_far was estimated: from impostor scores, adjusted for the "
        "gallery size on the assumption that comparisons are independent, or from a stranger "
        "set. Null when no FAR is stated.",
    )


class Info(BaseModel):
    version: str
    ready: bool = Field(
        description="Whether this process has a model to serve: false while it loads, or "
        "while it cannot load the active model; /v1/ready says why, and whether decisions "
        "are paused (an unreadable calibration)."
    )
    embedder: str | None
    model_version: str | None
    device: str | None
    precision: str | None = Field(
        description="Number format of embedding inference (fp32, bf16 or fp16)."
    )
    thresholds: ThresholdsPublic | None
    licence: str | None = Field(
        description="Terms of the serving model's pretrained weights (models/registry.json); "
        "fine-tuned weights inherit them."
    )
    index_type: str
    index_size: int | None
    index_how: str | None
    subjects: int
    faces: int
    store_crops: bool
    auth_enabled: bool
    versions: dict[str, str]

"""Shapes shared by several endpoints: errors, boxes, quality."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field

# Subject metadata is the client's own JSON. These bounds keep every stored value one that
# can be sent back: pydantic refuses to serialise much deeper nesting, so a deeper object
# would be stored and then break every listing that includes it.
MAX_JSON_DEPTH = 16
MAX_METADATA_BYTES = 64 * 1024
# The largest integer SQLite and PostgreSQL (bigint) store: the bound of ids and offsets.
MAX_SQL_INT = 2**63 - 1


class ErrorBody(BaseModel):
    code: str = Field(
        examples=["no_face"],
        description="Stable and machine-readable; the README's Errors section lists them.",
    )
    message: str = Field(examples=["No face of at least 32 px was found in the image."])
    # Always sent (null when there is nothing to add), so required in the description.
    details: Any | None = Field(
        description="What the code is about, shaped by the code: null when there is nothing "
        "to add; for invalid_request always a list of {loc, msg, type}, loc starting with "
        "body, query or path."
    )


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


def check_metadata(value: dict[str, Any]) -> dict[str, Any]:
    """Refuse metadata that could not be stored and served back the same on every backend:
    NUL characters, NaN or infinite numbers (not JSON), nesting deeper than MAX_JSON_DEPTH
    levels, or more than MAX_METADATA_BYTES once encoded."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"metadata may nest at most {MAX_JSON_DEPTH} levels deep")
            for key in item if isinstance(item, dict) else ():
                reject_nul(key)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, str):
            reject_nul(item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError("NaN and infinite numbers are not valid JSON")
    size = len(json.dumps(value, ensure_ascii=False).encode())
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"metadata is {size} bytes as JSON; the limit is {MAX_METADATA_BYTES}")
    return value


NulFree = AfterValidator(reject_nul)
Text = Annotated[str, NulFree]
JsonObject = Annotated[dict[str, Any], AfterValidator(check_metadata)]

Box = list[float]  # x1, y1, x2, y2 in pixels of the uploaded (EXIF-rotated) image


class QualityPublic(BaseModel):
    passed: bool
    face_size: float = Field(description="Shorter side of the face box, pixels.")
    probability: float = Field(description="Detector confidence.")
    blur: float = Field(description="Laplacian variance of the aligned face; low is blurry.")
    reasons: list[str] = Field(default_factory=list, examples=[["blurry: 3.1 < 25.0"]])


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)
}
# The health routes take no parameters: any query parameter is refused.
QUERY_REFUSED: dict[int | str, dict[str, Any]] = {422: {"model": ErrorResponse}}

"""Why an enrolment is refused: every rejected upload, and images already enrolled."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from app.errors import DuplicateImage, FaceServiceError, LowQuality
from app.gallery import repository
from app.services.probes import Upload

if TYPE_CHECKING:
    from app.services.enrolment import PreparedFace


def detached(error: FaceServiceError) -> FaceServiceError:
    """`error` without its traceback or chained causes: their frames hold the decoded
    image, and a rejected upload's image must go as soon as the next one is decoded (the
    pixel budget reserves one image at a time for an enrolment)."""
    error.__cause__ = error.__context__ = None
    return error.with_traceback(None)


def combined(rejected: list[tuple[int, Upload, FaceServiceError]], total: int) -> FaceServiceError:
    first = rejected[0][2]
    files = [
        {"index": i, "filename": up.filename, "code": err.code, "message": err.message}
        | ({"reasons": err.details["reasons"]} if isinstance(err, LowQuality) else {})
        for i, up, err in rejected
    ]
    prefix = (
        ""
        if total == 1
        else f"{len(rejected)} of {total} files rejected; nothing was enrolled. First: "
    )
    return type(first)(prefix + first.message, details={"files": files})


def refuse_duplicates(session: Session, subject_id: str, prepared: list[PreparedFace]) -> None:
    """DuplicateImage naming every upload already enrolled for the subject and the face it
    became, so that a client retrying after a lost answer can find what it has."""
    found = [  # repeats within the request were refused before
        {"index": i, "filename": item.upload.filename, "image_sha256": item.sha256}
        | {"face_id": face_id}
        for i, item in enumerate(prepared)
        if (face_id := repository.face_with_image(session, subject_id, item.sha256)) is not None
    ]
    if not found:
        return
    first = found[0]
    more = f" ({len(found)} of {len(prepared)} files are)" if len(found) > 1 else ""
    raise DuplicateImage(
        f"{first['filename']} is already enrolled for this subject as face {first['face_id']}"
        f"{more}; nothing was enrolled.",
        details={**{k: first[k] for k in ("filename", "image_sha256", "face_id")}, "files": found},
    )

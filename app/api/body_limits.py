"""BodyLimits: the most bytes a request body may hold, chosen by its route and Content-Type."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.exceptions import HTTPException

from app.api.upload_routes import UploadRoute

# Bodies that are not multipart uploads are small JSON documents (subjects, admin
# parameters): one limit for them, far below the upload limit.
MAX_JSON_BODY_BYTES = 1_000_000

# Room for an upload's form fields and multipart framing, besides its files.
FORM_ALLOWANCE_BYTES = 1_000_000


class BodyTooLarge(HTTPException):
    """Raised from `receive` once a body has grown past its limit, whatever its headers
    said; FastAPI passes HTTPExceptions from body parsing through, so it becomes a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request body exceeds {limit} bytes.")


class BodyLimits:
    """The JSON limit for every body but a multipart one sent to an upload route, which may
    hold the files that route takes, plus room for the form fields."""

    def __init__(
        self, uploads: Iterable[UploadRoute], max_upload_bytes: int, max_files: int
    ) -> None:
        # Only the upload routes (app/api/upload_routes.py) get an upload limit, whatever
        # the Content-Type of a request to another route claims, and each only for the
        # files it takes: identify took an enrolment-sized body (201 MB) that Starlette
        # held in memory, part by part.
        self.uploads = tuple(
            (route, max_upload_bytes * (route.files or max_files) + FORM_ALLOWANCE_BYTES)
            for route in uploads
        )

    def limit(self, method: str, path: str, content_type: bytes) -> int:
        """The limit of a request's body; `path` is the one the router matches (without
        the root path)."""
        if content_type.lower().startswith(b"multipart/"):
            # No route path ends in a slash. One that a path takes but for a trailing slash
            # lets the upload through, to the 404 that names the path without it, not a 413.
            path = path.rstrip("/")
            for route, limit in self.uploads:
                if route.matches(method, path):
                    return limit
        return MAX_JSON_BODY_BYTES

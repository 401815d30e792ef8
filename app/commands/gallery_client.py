"""The face service's REST API as seen by `import`: subjects, faces, bounded retries."""

from __future__ import annotations

import logging
import mimetypes
import random
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from app.commands.retry_policy import RETRY_STATUSES, RetryPolicy, Turns, retry_after_s

log = logging.getLogger(__name__)

PAGE = 1000  # the API's largest page


class ServiceError(Exception):
    """The service refused a request, or could not be reached after the retries."""

    def __init__(self, status: int | None, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    @classmethod
    def from_response(cls, response: httpx.Response) -> ServiceError:
        try:
            error = response.json()["error"]
            return cls(response.status_code, str(error["code"]), str(error["message"]))
        except (ValueError, KeyError, TypeError):  # not our JSON shape, e.g. a proxy's page
            return cls(response.status_code, f"http_{response.status_code}", response.text[:200])

    @property
    def refused_access(self) -> bool:
        return self.status in (401, 403)


def split_credentials(url: str) -> tuple[httpx.URL, httpx.BasicAuth | None]:
    """`url` without its user:password, and those as HTTP Basic auth (as httpx sends them).

    Left in the URL, httpx would keep them in every request's URL, which its log lines and our
    messages print. httpx.InvalidURL if `url` does not parse."""
    parsed = httpx.URL(url)
    if not parsed.userinfo:
        return parsed, None
    auth = httpx.BasicAuth(parsed.username, parsed.password)
    return parsed.copy_with(username=None, password=None), auth


@dataclass(frozen=True)
class Subject:
    id: str
    enrolled: dict[str, int]  # image sha256 -> face id, for resuming


class GalleryClient:
    """Thread-safe as long as the httpx.Client is (it is)."""

    def __init__(
        self,
        client: httpx.Client,
        retry: RetryPolicy,
        interrupted: Callable[[], bool] | None = None,
    ) -> None:
        self.client = client
        self.retry = retry
        # Asked before every retry: Ctrl-C ends the waiting (ServiceError `interrupted`).
        self.interrupted = interrupted or (lambda: False)
        self._turns = Turns()

    def send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """The response of the last try; ServiceError if the service was never reached."""
        attempt, limited, limited_s = 0, 0, 0.0
        while True:
            last = attempt == self.retry.attempts - 1
            if (attempt or limited_s) and self.interrupted():
                raise ServiceError(None, "interrupted", "Interrupted (Ctrl-C) while retrying.")
            self._wait(self._turns.claim())
            try:
                response = self.client.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                if last:
                    raise ServiceError(None, "connection_error", str(exc) or repr(exc)) from exc
                log.debug("%s %s failed (%r); retrying", method, url, exc)
            except httpx.RequestError as exc:  # not worth another try, e.g. a redirect loop
                raise ServiceError(None, "request_error", str(exc) or repr(exc)) from exc
            else:
                pause = self._rate_limit_pause(response, limited, limited_s)
                self._turns.record(pause)
                if pause is not None:
                    log.debug("%s %s rate-limited; retrying in %.2f s", method, url, pause)
                    limited, limited_s = limited + 1, limited_s + pause
                    continue
                if response.status_code not in RETRY_STATUSES or last:
                    return response
                log.debug("%s %s answered %d; retrying", method, url, response.status_code)
            time.sleep(self.retry.delay(attempt))
            attempt += 1

    def _rate_limit_pause(
        self, response: httpx.Response, times: int, waited_s: float
    ) -> float | None:
        """How long to wait before sending again after a 429 (the `times`-th in a row); None
        for any other answer, or once this request has waited `rate_limited_s` in all."""
        budget = self.retry.rate_limited_s - waited_s
        if response.status_code != 429 or budget <= 0:
            return None
        asked = retry_after_s(response)  # without it, back off as for a 503
        pause = self.retry.delay(times) if asked is None else asked
        # A little more, and not the same for every worker: those that waited together
        # would otherwise all come back at once for the one request the limit allows.
        return min(pause * random.uniform(1.0, 1.2) + 0.01, budget)

    def _wait(self, seconds: float) -> None:
        """Sleep, in slices short enough that Ctrl-C ends a long wait (ServiceError)."""
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0:
            if self.interrupted():
                raise ServiceError(None, "interrupted", "Interrupted (Ctrl-C) while retrying.")
            time.sleep(min(left, 0.25))

    def call(self, method: str, url: str, **kwargs: Any) -> Any:
        """JSON body of a 2xx answer, else ServiceError."""
        response = self.send(method, url, **kwargs)
        if not response.is_success:
            raise ServiceError.from_response(response)
        try:
            return response.json()
        except ValueError as exc:  # e.g. a proxy's page
            message = f"The answer is not JSON: {response.text[:200]}"
            raise ServiceError(response.status_code, "invalid_response", message) from exc

    def wait_ready(self) -> None:
        """Returns once /v1/ready says yes, retrying 503 (models loading) within the policy."""
        response = self.send("GET", "/v1/ready")
        if response.status_code == 503:
            try:
                reason = str(response.json()["reason"])
            except (ValueError, KeyError, TypeError):
                reason = response.text[:200]
            raise ServiceError(503, "not_ready", f"The service is not ready: {reason}")
        if not response.is_success:
            raise ServiceError.from_response(response)

    def subject(self, name: str) -> Subject:
        """The subject called exactly `name`, created if missing. ServiceError
        `ambiguous_subject` if several are: which one a folder means cannot be told.

        Names compare in NFC, and a subject is created with its name in NFC: macOS names
        folders in NFD ("e" then U+0301), so "José/" from a Mac would otherwise miss the
        subject "José" and make a second one."""
        name = unicodedata.normalize("NFC", name)
        matches = self._find_subjects(name)
        if len(matches) > 1:
            matches.sort(key=lambda s: datetime.fromisoformat(s["created_at"]))
            ids = ", ".join(str(s["id"]) for s in matches)
            message = (
                f"{len(matches)} subjects are named {name!r} (ids {ids}); nothing was enrolled. "
                "Rename or delete all but one of them, then import again."
            )
            raise ServiceError(None, "ambiguous_subject", message)
        if matches:
            subject_id = str(matches[0]["id"])
        else:
            subject_id = str(self.call("POST", "/v1/subjects", json={"name": name})["id"])
        faces = self._faces(subject_id)
        enrolled = {f["image_sha256"]: int(f["id"]) for f in faces if f.get("image_sha256")}
        return Subject(id=subject_id, enrolled=enrolled)

    def _faces(self, subject_id: str) -> list[dict[str, Any]]:
        """Every face of the subject, a page at a time."""
        url = f"/v1/subjects/{subject_id}/faces"
        # The first page without parameters: a server from before paging refuses them (and
        # sends every face, without a `total`); a newer one sends its largest page.
        page = self.call("GET", url)
        faces: list[dict[str, Any]] = list(page["faces"])
        while page["faces"] and _more(page, len(faces)):
            # A cursor keeps its place when faces are deleted meanwhile (an offset skips);
            # servers from before cursors send no next_after and take offsets.
            where = (
                {"after": page["next_after"]} if "next_after" in page else {"offset": len(faces)}
            )
            page = self.call("GET", url, params={"limit": PAGE, **where})
            faces += page["faces"]
        return faces

    def _find_subjects(self, name: str) -> list[dict[str, Any]]:
        """Every subject called exactly `name` (in NFC), case included."""
        # The API's name filter ignores case and accents: page through, match exactly.
        matches: list[dict[str, Any]] = []
        where: dict[str, Any] = {"offset": 0}
        while True:
            page = self.call("GET", "/v1/subjects", params={"name": name, "limit": PAGE, **where})
            matches += [s for s in page["items"] if unicodedata.normalize("NFC", s["name"]) == name]
            listed = int(where.get("offset", 0)) + len(page["items"])
            if not page["items"] or not _more(page, listed):
                return matches
            where = {"after": page["next_after"]} if "next_after" in page else {"offset": listed}

    def enrol(self, subject_id: str, filename: str, data: bytes, face: str | None) -> int:
        """Id of the face enrolled from one image; ServiceError if the service refused it."""
        media_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        body = self.call(
            "POST",
            f"/v1/subjects/{subject_id}/faces",
            files=[("files", (filename, data, media_type))],
            params={"face": face} if face else None,
        )
        return int(body["faces"][0]["id"])


def _more(page: dict[str, Any], listed: int) -> bool:
    """Whether another page follows: its next_after says so, or (from servers before
    cursors) the total; `listed` counts what offsets have listed so far."""
    if "next_after" in page:
        return page["next_after"] is not None
    return listed < int(page.get("total", 0))

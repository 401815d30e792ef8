"""Enrol one album (a subject's folder) photo by photo, one report row per file."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from app.commands.gallery_client import GalleryClient, ServiceError, Subject
from app.commands.import_files import Album, NotUploaded, read_photo
from app.commands.import_report import ReportRow, Status, Stop, shown

log = logging.getLogger(__name__)

RowMaker = Callable[..., ReportRow]  # ReportRow with path and subject filled in


def import_album(
    gallery: GalleryClient,
    pool: ThreadPoolExecutor,
    album: Album,
    root: Path,
    face: str | None,
    max_bytes: int,
    stop: Stop,
) -> Iterator[ReportRow]:
    subject_name = shown(album.name)

    def row_maker(path: Path) -> RowMaker:
        return partial(ReportRow, shown(path.relative_to(root).as_posix()), subject_name)

    def every_file(status: Status, code: str, message: str) -> Iterator[ReportRow]:
        return (row_maker(path)(status, code, message) for path in album.files)

    if album.problem is not None:
        yield row_maker(album.folder)("error", *album.problem)
        return
    if stop.reason is not None:
        yield from every_file("error", "not_attempted", stop.reason)
        return
    if not _is_utf8(album.name):
        message = "The folder name is not valid UTF-8, so it cannot be a subject name."
        yield from every_file("error", "name_not_utf8", message)
        return
    try:
        subject = gallery.subject(album.name)
    except ServiceError as exc:
        if _stops_import(exc):
            stop.fail(exc)
        yield from every_file("error", exc.code, exc.message)
        return
    except Exception as exc:  # a bug, or an answer of a shape we do not know: this folder only
        log.debug("looking up subject %r failed", album.name, exc_info=True)
        yield from every_file("error", "unexpected_error", _describe(exc))
        return
    futures = [
        pool.submit(_import_file, gallery, subject, path, face, max_bytes, row_maker(path), stop)
        for path in album.files
    ]
    for future in futures:
        yield future.result()


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _stops_import(error: ServiceError) -> bool:
    """Nothing more can be done: the service did not answer after the retries, or it
    refused the key."""
    return error.code == "connection_error" or error.refused_access


def _import_file(
    gallery: GalleryClient,
    subject: Subject,
    path: Path,
    face: str | None,
    max_bytes: int,
    row: RowMaker,
    stop: Stop,
) -> ReportRow:
    if stop.reason is not None:
        return row("error", "not_attempted", stop.reason)
    try:
        return _enrol_file(gallery, subject, path, face, max_bytes, row, stop)
    except Exception as exc:  # a bug, or an answer of a shape we do not know: this file only
        log.debug("importing %s failed", shown(str(path)), exc_info=True)
        return row("error", "unexpected_error", _describe(exc))


def _enrol_file(
    gallery: GalleryClient,
    subject: Subject,
    path: Path,
    face: str | None,
    max_bytes: int,
    row: RowMaker,
    stop: Stop,
) -> ReportRow:
    if not _is_utf8(path.name):
        return row("error", "name_not_utf8", "The file name is not valid UTF-8.")
    try:
        data = read_photo(path, max_bytes)
    except NotUploaded as refused:
        return row(refused.status, refused.code, refused.message)
    except OSError as exc:
        return row("error", "unreadable", str(exc))
    face_id = subject.enrolled.get(hashlib.sha256(data).hexdigest())
    if face_id is not None:
        return row("skipped", "already_enrolled", "This image is already enrolled.", face_id)
    try:
        face_id = gallery.enrol(subject.id, path.name, data, face)
    except ServiceError as exc:
        if _stops_import(exc):
            stop.fail(exc)
        return row(_status_of(exc), exc.code, exc.message)
    return row("enrolled", face_id=face_id)


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


def _status_of(error: ServiceError) -> Status:
    if error.code == "duplicate_image":
        return "skipped"
    # The service judged the photo itself: not an image, too large, no usable face.
    if error.status in (413, 415, 422):
        return "rejected"
    return "error"

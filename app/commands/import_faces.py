"""`python -m app import DIR`: enrol DIR/<subject name>/*.jpg into a running service over HTTP."""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from types import FrameType
from typing import get_args

import httpx
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from app.commands.gallery_client import (
    GalleryClient,
    RetryPolicy,
    ServiceError,
    Subject,
    split_credentials,
)
from app.commands.import_files import Album, NotUploaded, read_photo, scan_directory
from app.commands.import_report import (
    INTERRUPTED,
    REPORT_COLUMNS,
    ImportStopped,
    ImportSummary,
    ReportRow,
    Status,
    Stop,
    shown,
)
from app.config import FacePolicy, Settings

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8000"
# Enrolment runs detection and embedding; on a busy CPU a large photo can take a while.
TIMEOUT = httpx.Timeout(120.0, connect=10.0)
# The service's default FACE_MAX_UPLOAD_BYTES. /v1/info does not publish the limit in force,
# so the command line uses its own settings' value.
DEFAULT_MAX_FILE_BYTES: int = Settings.model_fields["max_upload_bytes"].default


RowMaker = Callable[..., ReportRow]  # ReportRow with path and subject filled in


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "import",
        help="enrol a folder of photos (DIR/<subject name>/*.jpg) into a running service",
        description="Creates missing subjects, uploads one photo per request, skips photos "
        "already enrolled, and writes a per-file CSV report.",
    )
    parser.add_argument("directory", type=Path, metavar="DIR", help="one sub-folder per subject")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"service URL (default {DEFAULT_URL})")
    parser.add_argument("--api-key", help="client or admin key (default: $FACE_API_KEY)")
    parser.add_argument(
        "--report", type=Path, help="CSV report to write (default: DIR/../import-report.csv)"
    )
    parser.add_argument(
        "--face",
        choices=get_args(FacePolicy),
        help="which face to enrol from a photo with several (default: refuse such photos)",
    )
    parser.add_argument("--workers", type=int, default=2, help="parallel uploads (default 2)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    root: Path = args.directory
    if not root.is_dir():
        print(f"{shown(str(root))} is not a folder", file=sys.stderr)
        return 2
    if not 1 <= args.workers <= 32:
        print(f"--workers must lie in 1..32, got {args.workers}", file=sys.stderr)
        return 2
    # httpx logs every request at INFO: thousands of lines above the progress bar.
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        # From here on only `url`, which holds no user:password, is used or printed.
        url, auth = split_credentials(args.url)
    except httpx.InvalidURL as exc:
        print(f"--url is not a valid URL: {exc}", file=sys.stderr)
        return 2
    if url.scheme not in ("http", "https"):  # then `url` may not have parsed as one
        print("--url must start with http:// or https://", file=sys.stderr)
        return 2
    report: Path = args.report or root.resolve().parent / "import-report.csv"
    key = args.api_key or os.environ.get("FACE_API_KEY")
    headers = {"X-API-Key": key} if key else {}
    stop = Stop()
    restore = _stop_on_ctrl_c(stop)
    try:
        with httpx.Client(base_url=url, auth=auth, headers=headers, timeout=TIMEOUT) as client:
            summary = import_directory(
                client,
                root,
                face=args.face,
                workers=args.workers,
                report=report,
                progress=sys.stderr.isatty(),
                stop=stop,
                max_file_bytes=settings.max_upload_bytes,
            )
    except ImportStopped as exc:
        print(f"import stopped: {exc.message} ({exc.code}) at {url}", file=sys.stderr)
        print(f"imported {shown(str(root))}: {exc.summary.describe()}")
        return exc.summary.exit_code
    except ServiceError as exc:
        print(f"import stopped: {exc.message} ({exc.code}) at {url}", file=sys.stderr)
        return INTERRUPTED if exc.code == "interrupted" else 1
    except KeyboardInterrupt:  # a second Ctrl-C: the report holds the rows written so far
        print(f"import interrupted; report (incomplete): {shown(str(report))}", file=sys.stderr)
        return INTERRUPTED
    except OSError as exc:  # DIR cannot be listed, the report cannot be written
        print(f"import failed: {exc}", file=sys.stderr)
        return 1
    finally:
        restore()
    print(f"imported {shown(str(root))}: {summary.describe()}")
    return summary.exit_code


def _stop_on_ctrl_c(stop: Stop) -> Callable[[], object]:
    """Makes the first Ctrl-C stop the import gracefully (the uploads in flight finish and the
    report is complete) and a second one raise KeyboardInterrupt. Returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # signal handlers can only be set from the main thread

    def handler(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        stop.interrupt()
        # Not print(): the handler may run inside a write to sys.stderr (the progress bar).
        with contextlib.suppress(OSError, ValueError):
            os.write(sys.stderr.fileno(), b"\ninterrupted: finishing the uploads in flight\n")

    previous = signal.signal(signal.SIGINT, handler)
    if previous is None:  # set outside Python: cannot be put back
        return lambda: None
    return lambda: signal.signal(signal.SIGINT, previous)


def import_directory(
    client: httpx.Client,
    root: Path,
    *,
    face: str | None,
    workers: int,
    report: Path,
    progress: bool,
    retry: RetryPolicy | None = None,
    stop: Stop | None = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> ImportSummary:
    """Enrol every photo under `root`, writing the report as it goes. A file over
    `max_file_bytes` (the service's upload limit) is reported, neither read whole nor sent.

    Raises ServiceError when the import cannot start: the service stays unreachable or not
    ready. Raises ImportStopped (a ServiceError) when it stopped midway: a request could not
    reach the service after the retries, or the service refused the API key. `stop.interrupt()`
    (from any thread) stops it the same way, but it then returns the summary.
    """
    stop = stop or Stop()
    gallery = GalleryClient(client, retry or RetryPolicy(), lambda: stop.interrupted)
    albums = scan_directory(root)
    gallery.wait_ready()
    if stop.interrupted:  # Ctrl-C while waiting for the service: nothing done, no report
        raise ServiceError(None, "interrupted", "Interrupted (Ctrl-C) before the first upload.")
    summary = ImportSummary(report=report)
    report.parent.mkdir(parents=True, exist_ok=True)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="import")
    try:
        with (
            # Paths are written as shown by _shown; backslashreplace is the last resort.
            report.open("w", newline="", encoding="utf-8", errors="backslashreplace") as handle,
            tqdm(
                total=sum(len(a.files) or 1 for a in albums), unit="file", disable=not progress
            ) as bar,
            logging_redirect_tqdm(),
        ):
            writer = csv.writer(handle)
            writer.writerow(REPORT_COLUMNS)
            for album in albums:
                rows = _import_album(gallery, pool, album, root, face, max_file_bytes, stop)
                for row in rows:
                    writer.writerow(row.cells())
                    handle.flush()  # a run that dies midway still leaves its rows
                    summary.add(row)
                    bar.update()
                    bar.set_postfix(summary.counts, refresh=False)
    finally:
        pool.shutdown(cancel_futures=True)  # after a second Ctrl-C: start no queued upload
    summary.interrupted = stop.interrupted
    summary.stopped = stop.error is not None
    if stop.error is not None and not stop.interrupted:
        raise ImportStopped(stop.error, summary)
    return summary


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


def _import_album(
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

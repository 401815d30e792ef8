"""`python -m app import DIR`: enrol DIR/<subject name>/*.jpg into a running service over HTTP."""

from __future__ import annotations

import argparse
import csv
import hashlib
import logging
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal, get_args

import httpx
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from app.commands.gallery_client import GalleryClient, RetryPolicy, ServiceError, Subject
from app.config import FacePolicy, Settings

# Every format the service decodes (app/pipeline/image_io.py ACCEPTED_FORMATS).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
REPORT_COLUMNS = ("path", "subject", "status", "code", "message", "face_id")
DEFAULT_URL = "http://127.0.0.1:8000"
# Enrolment runs detection and embedding; on a busy CPU a large photo can take a while.
TIMEOUT = httpx.Timeout(120.0, connect=10.0)

Status = Literal["enrolled", "skipped", "rejected", "error"]


@dataclass(frozen=True)
class Album:
    name: str  # of the subject
    files: list[Path]


@dataclass(frozen=True)
class ReportRow:
    path: str
    subject: str
    status: Status
    code: str = ""
    message: str = ""
    face_id: int | None = None

    def cells(self) -> list[str]:
        face_id = "" if self.face_id is None else str(self.face_id)
        return [self.path, self.subject, self.status, self.code, self.message, face_id]


RowMaker = Callable[..., ReportRow]  # ReportRow with path and subject filled in


@dataclass
class ImportSummary:
    report: Path
    counts: Counter[str] = field(default_factory=Counter)  # status -> files
    problems: Counter[str] = field(default_factory=Counter)  # code of rejected/error -> files

    def add(self, row: ReportRow) -> None:
        self.counts[row.status] += 1
        if row.status in ("rejected", "error"):
            self.problems[row.code] += 1

    @property
    def exit_code(self) -> int:
        return 1 if self.counts["error"] else 0

    def describe(self) -> str:
        counts = ", ".join(f"{self.counts[s]} {s}" for s in get_args(Status))
        problems = ", ".join(f"{code} {n}" for code, n in self.problems.most_common())
        return f"{counts}" + (f" ({problems})" if problems else "") + f"; report: {self.report}"


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
        print(f"{root} is not a folder", file=sys.stderr)
        return 2
    if not 1 <= args.workers <= 32:
        print(f"--workers must lie in 1..32, got {args.workers}", file=sys.stderr)
        return 2
    # httpx logs every request at INFO: thousands of lines above the progress bar.
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("httpx").setLevel(logging.WARNING)
    report: Path = args.report or root.resolve().parent / "import-report.csv"
    key = args.api_key or os.environ.get("FACE_API_KEY")
    headers = {"X-API-Key": key} if key else {}
    try:
        with httpx.Client(base_url=args.url, headers=headers, timeout=TIMEOUT) as client:
            summary = import_directory(
                client,
                root,
                face=args.face,
                workers=args.workers,
                report=report,
                progress=sys.stderr.isatty(),
            )
    except ServiceError as exc:
        print(f"import stopped: {exc.message} ({exc.code}) at {args.url}", file=sys.stderr)
        return 1
    print(f"imported {root}: {summary.describe()}")
    return summary.exit_code


def import_directory(
    client: httpx.Client,
    root: Path,
    *,
    face: str | None,
    workers: int,
    report: Path,
    progress: bool,
    retry: RetryPolicy | None = None,
) -> ImportSummary:
    """Enrol every photo under `root`, writing the report as it goes.

    Raises ServiceError when the import cannot go on at all: the service stays unreachable or
    not ready, or it refuses the API key.
    """
    gallery = GalleryClient(client, retry or RetryPolicy())
    albums = scan_directory(root)
    gallery.wait_ready()
    summary = ImportSummary(report=report)
    report.parent.mkdir(parents=True, exist_ok=True)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="import")
    try:
        with (
            report.open("w", newline="") as handle,
            tqdm(total=sum(len(a.files) for a in albums), unit="file", disable=not progress) as bar,
            logging_redirect_tqdm(),
        ):
            writer = csv.writer(handle)
            writer.writerow(REPORT_COLUMNS)
            for album in albums:
                for row in _import_album(gallery, pool, album, root, face):
                    writer.writerow(row.cells())
                    handle.flush()  # a run that dies midway still leaves its rows
                    summary.add(row)
                    bar.update()
                    bar.set_postfix(summary.counts, refresh=False)
    finally:
        pool.shutdown(cancel_futures=True)  # on Ctrl-C, don't start the queued uploads
    return summary


def scan_directory(root: Path) -> list[Album]:
    """Sub-folders of `root` holding images, by name; hidden files and folders are left out."""
    albums = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not _hidden(p)):
        # A broken link is kept, so that the report says it could not be read.
        files = sorted(
            p
            for p in folder.iterdir()
            if (p.is_file() or p.is_symlink())
            and not _hidden(p)
            and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if files:
            albums.append(Album(name=folder.name, files=files))
    return albums


def _hidden(path: Path) -> bool:
    return path.name.startswith(".")


def _import_album(
    gallery: GalleryClient, pool: ThreadPoolExecutor, album: Album, root: Path, face: str | None
) -> Iterator[ReportRow]:
    def row_maker(path: Path) -> RowMaker:
        return partial(ReportRow, path.relative_to(root).as_posix(), album.name)

    try:
        subject = gallery.subject(album.name)
    except ServiceError as exc:
        if exc.refused_access:
            raise
        for path in album.files:
            yield row_maker(path)("error", exc.code, exc.message)
        return
    yield from pool.map(
        lambda path: _import_file(gallery, subject, path, face, row_maker(path)), album.files
    )


def _import_file(
    gallery: GalleryClient, subject: Subject, path: Path, face: str | None, row: RowMaker
) -> ReportRow:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return row("error", "unreadable", str(exc))
    face_id = subject.enrolled.get(hashlib.sha256(data).hexdigest())
    if face_id is not None:
        return row("skipped", "already_enrolled", "This image is already enrolled.", face_id)
    try:
        face_id = gallery.enrol(subject.id, path.name, data, face)
    except ServiceError as exc:
        if exc.refused_access:
            raise
        return row(_status_of(exc), exc.code, exc.message)
    return row("enrolled", face_id=face_id)


def _status_of(error: ServiceError) -> Status:
    if error.code == "duplicate_image":
        return "skipped"
    # The service judged the photo itself: not an image, too large, no usable face.
    if error.status in (413, 415, 422):
        return "rejected"
    return "error"

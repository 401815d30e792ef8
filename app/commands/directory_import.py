"""Import a whole photo directory over HTTP, writing the CSV report as each row comes in."""

from __future__ import annotations

import csv
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from app.commands.album_import import import_album
from app.commands.gallery_client import GalleryClient, ServiceError
from app.commands.import_files import scan_directory
from app.commands.import_report import REPORT_COLUMNS, ImportStopped, ImportSummary, Stop
from app.commands.retry_policy import RetryPolicy
from app.config import Settings

# The service's default FACE_MAX_UPLOAD_BYTES. /v1/info does not publish the limit in force,
# so the command line uses its own settings' value.
DEFAULT_MAX_FILE_BYTES: int = Settings.model_fields["max_upload_bytes"].default


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
            # Paths are written as `shown` writes them; backslashreplace is the last resort.
            report.open("w", newline="", encoding="utf-8", errors="backslashreplace") as handle,
            tqdm(
                total=sum(len(a.files) or 1 for a in albums), unit="file", disable=not progress
            ) as bar,
            logging_redirect_tqdm(),
        ):
            writer = csv.writer(handle)
            writer.writerow(REPORT_COLUMNS)
            for album in albums:
                rows = import_album(gallery, pool, album, root, face, max_file_bytes, stop)
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

"""`python -m app import DIR`: enrol DIR/<subject name>/*.jpg into a running service over HTTP."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import get_args

import httpx

from app.commands.directory_import import import_directory
from app.commands.gallery_client import ServiceError, split_credentials
from app.commands.import_report import INTERRUPTED, ImportStopped, Stop, shown
from app.config import FacePolicy, Settings

DEFAULT_URL = "http://127.0.0.1:8000"
# Enrolment runs detection and embedding; on a busy CPU a large photo can take a while.
TIMEOUT = httpx.Timeout(120.0, connect=10.0)


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

"""`python -m app serve`: check the settings, address and data folder, then run uvicorn."""

from __future__ import annotations

import argparse
import fcntl
import os
import socket
import sys
from pathlib import Path
from typing import TextIO

from app.config import Settings

# Files and folders the service creates: rw for its user, nothing for group and others.
PRIVATE_UMASK = 0o077
# On SIGTERM uvicorn stops accepting and lets running requests finish for this long before
# the lifespan saves the index; docker-compose.yml's stop_grace_period must exceed it.
GRACEFUL_SHUTDOWN_S = 30


def serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from app.api.http_limits import HttpLimits
    from app.api.http_protocol import guarded_protocol
    from app.main import create_app
    from app.security import KeyRing, is_loopback

    host = args.host or settings.host
    port = args.port or settings.port
    try:
        keys = KeyRing.parse(settings.api_keys)
    except ValueError as error:
        print(f"invalid FACE_API_KEYS: {error}", file=sys.stderr)
        return 2
    if not keys.enabled and not is_loopback(host):
        print(
            f"refusing to listen on {host} without API keys: set FACE_API_KEYS "
            "(e.g. admin:SECRET,client:SECRET) or bind to 127.0.0.1",
            file=sys.stderr,
        )
        return 2
    problem = _cannot_listen(host, port)
    if problem is not None:  # found before anything loads or writes to the data folder
        print(f"cannot listen on {host}:{port}: {problem}", file=sys.stderr)
        return 2
    problem = _unusable_setting(settings)
    if problem is not None:  # one line, not a start-up traceback or a service never ready
        print(problem, file=sys.stderr)
        return 2
    # What the service writes (the database, its index, face crops, checkpoints) is
    # biometric data: readable by the service's own user only, not by everyone on the host.
    os.umask(PRIVATE_UMASK)
    try:
        lock = lock_data_dir(settings.data_dir)
    except OSError as error:  # read-only, a file in the way, no such mount...
        print(f"cannot use FACE_DATA_DIR={settings.data_dir}: {error}", file=sys.stderr)
        return 2
    if lock is None:
        print(
            f"another service is running on {settings.data_dir}: two cannot share one data "
            "folder (each keeps the index in memory); give each its own FACE_DATA_DIR",
            file=sys.stderr,
        )
        return 2
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        http=guarded_protocol(HttpLimits.of(settings)),
    )
    lock.close()
    return 0


def _cannot_listen(host: str, port: int) -> str | None:
    """Why `host:port` cannot be bound now (in use, no such address), or None."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            probe.bind(address)
    except OSError as error:
        return error.strerror or str(error)
    return None


def _unusable_setting(settings: Settings) -> str | None:
    """What makes the embedder, the device or the database unusable, found before start-up
    (where it would be a traceback, or a service that is never ready), or None."""
    from sqlalchemy.exc import SQLAlchemyError

    from app.errors import ModelError
    from app.gallery.db import engine_url, make_engine, shown_url
    from app.pipeline.embedders.registry import resolve_device, resolve_embedder_name

    try:
        resolve_embedder_name(settings.embedder, settings.models_dir)
        resolve_device(settings.device)
    except ModelError as error:
        return f"cannot serve: {error.message}"
    try:
        url = engine_url(settings.resolved_database_url)
        if url.get_backend_name() == "sqlite":
            return None  # a file in the data folder, which lock_data_dir has checked
        engine = make_engine(settings.resolved_database_url)
    # A malformed port is a ValueError; an unknown dialect or a driver that is not
    # installed (mysql://, postgresql+psycopg2://) an ImportError.
    except (SQLAlchemyError, ValueError, ImportError) as error:
        return f"FACE_DATABASE_URL is not a usable database URL: {error}"
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as error:
        cause = getattr(error, "orig", None) or error  # the driver's own words, when it has any
        first = str(cause).strip().splitlines()
        shown = shown_url(url)
        return f"cannot reach the database at {shown}: {first[0] if first else error}"
    finally:
        engine.dispose()
    return None


def lock_data_dir(data_dir: Path) -> TextIO | None:
    """An exclusive lock on the data folder, held while the process lives (the open file
    must be kept); None when another process holds it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / "serve.lock").open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle

"""Command line: serve, config, models fetch, import, evaluate, calibrate, finetune."""

from __future__ import annotations

import argparse
import difflib
import fcntl
import logging
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

from app.commands import calibrate, evaluate, finetune, import_faces
from app.config import Settings

# Files and folders the service creates: rw for its user, nothing for group and others.
PRIVATE_UMASK = 0o077


def serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

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
        lock = _lock_data_dir(settings.data_dir)
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
        timeout_graceful_shutdown=30,
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
            return None  # a file in the data folder, which _lock_data_dir has checked
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


def _lock_data_dir(data_dir: Path) -> TextIO | None:
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


def fetch(args: argparse.Namespace, settings: Settings) -> int:
    from app.errors import ModelError
    from app.pipeline.embedders import load_model_specs
    from app.pipeline.embedders.weights import fetch_model

    specs = load_model_specs(settings.models_dir)
    names = args.names or list(specs)
    unknown = [name for name in names if name not in specs]
    if unknown:
        print(f"unknown model {unknown[0]!r}; known: {', '.join(specs)}", file=sys.stderr)
        return 2
    for name in names:
        spec = specs[name]
        try:
            # A model shipped inside a pip package is only located and checked.
            path = fetch_model(spec, settings.models_dir)
        except ModelError as error:
            hint = (
                f"\nWithout internet here, fetch it where there is "
                f"(python -m app models fetch {name}) and copy the file to "
                f"{settings.models_dir / spec.file} here."
                if spec.kind == "file"
                else ""
            )
            print(f"{name}: {error.message}{hint}", file=sys.stderr)
            return 1
        how = "sha256 verified" if spec.kind == "file" else f"in {spec.package}, sha256 verified"
        print(f"{name}: {path} ({how})\n  licence: {spec.licence}")
    return 0


# FACE_* variables read elsewhere than Settings: the import's key, and the test suite's.
_OTHER_VARIABLES = {
    "FACE_API_KEY",
    "FACE_SHARED_FACES",
    "FACE_REQUIRE_SHARED",
    "FACE_REQUIRE_POSTGRES",
}


def unknown_settings(environ: Mapping[str, str], dotenv: Path = Path(".env")) -> list[str]:
    """A warning for each FACE_* variable, in the environment or the `.env` file that
    Settings read, that no setting reads (a misspelling is otherwise ignored in silence),
    with the closest setting's name."""
    from dotenv import dotenv_values  # pydantic-settings reads .env with it

    known = {f"FACE_{name.upper()}" for name in Settings.model_fields} | _OTHER_VARIABLES
    found = [(variable, "") for variable in sorted(environ)]
    if dotenv.is_file():
        found += [(variable, f" (in {dotenv})") for variable in sorted(dotenv_values(dotenv))]
    lines = []
    for variable, where in found:
        # Settings read names ignoring case: FACE_log_level is FACE_LOG_LEVEL.
        if variable.upper().startswith("FACE_") and variable.upper() not in known:
            close = difflib.get_close_matches(variable.upper(), sorted(known), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            lines.append(f"warning: {variable}{where} is not a setting and is ignored{hint}")
    return lines


def settings_errors(error: ValidationError) -> str:
    """One line per invalid setting, named as the environment spells it."""
    lines = ["invalid settings (environment variables or .env):"]
    for problem in error.errors():
        name = "_".join(str(part) for part in problem["loc"])
        lines.append(f"  FACE_{name.upper()}: {problem['msg']} (got {problem.get('input')!r})")
    return "\n".join(lines)


def settings_table() -> str:
    """The Markdown table of every setting, as the README shows it."""
    rows = ["| setting | environment variable | default | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "(unset)" if default is None or default == "" else f"`{default}`"
        if name == "models_dir":  # an absolute path that differs between checkouts
            shown = "the repository's `models/` (`/app/models` in Docker)"
        rows.append(f"| `{name}` | `FACE_{name.upper()}` | {shown} | {field.description} |")
    return "\n".join(rows)


def show_config(args: argparse.Namespace, settings: Settings) -> int:
    if args.markdown:
        print(settings_table())
        return 0
    for name, value in settings.model_dump().items():
        hidden = name == "api_keys" and value
        shown = "<hidden>" if hidden else "" if value is None else value  # unset: empty
        if name == "database_url" and value:
            shown = _without_password(value)
        print(f"FACE_{name.upper()}={shown}")
    return 0


def _without_password(url: str) -> str:
    from app.gallery.db import shown_url

    try:
        return shown_url(url)
    except Exception:  # not a URL at all: it might still hold a password
        return "<hidden: not a valid database URL>"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    p_serve = commands.add_parser("serve", help="start the HTTP service")
    p_serve.add_argument("--host", help="bind address (default FACE_HOST or 127.0.0.1)")
    p_serve.add_argument("--port", type=int, help="bind port (default FACE_PORT or 8000)")
    p_serve.set_defaults(handler=serve)

    p_config = commands.add_parser("config", help="print the effective settings")
    p_config.add_argument("--markdown", action="store_true", help="the README's settings table")
    p_config.set_defaults(handler=show_config)

    p_models = commands.add_parser("models", help="manage model weights")
    models_cmd = p_models.add_subparsers(dest="models_command", required=True)
    p_fetch = models_cmd.add_parser("fetch", help="download weights and check their sha256")
    p_fetch.add_argument("names", nargs="*", help="model names (default: all)")
    p_fetch.set_defaults(handler=fetch)
    import_faces.register(commands)
    evaluate.register(commands)
    calibrate.register(commands)
    finetune.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Also set by app/__main__.py before torch loads; this covers callers of main() that
    # have not imported torch yet.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    for line in unknown_settings(os.environ):
        print(line, file=sys.stderr)
    try:
        settings = Settings()
    except ValidationError as error:
        print(settings_errors(error), file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    code: int = args.handler(args, settings)
    return code

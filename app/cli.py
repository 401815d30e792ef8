"""Command line: serve, config, models, import, evaluate, calibrate, finetune, backup, restore."""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import ValidationError

from app.commands.fetch_models import fetch_models
from app.commands.serve import serve
from app.commands.show_config import show_config
from app.config import Settings
from app.interrupt import report_interrupt

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
            # Compared without the FACE_ every name shares, which made any name look close
            # (FACE_TYPO_SETTING was "FACE_PORT?").
            names = sorted(name.removeprefix("FACE_") for name in known)
            close = difflib.get_close_matches(variable.upper()[5:], names, n=1, cutoff=0.75)
            hint = f"; did you mean FACE_{close[0]}?" if close else ""
            lines.append(f"warning: {variable}{where} is not a setting and is ignored{hint}")
    return lines


def settings_errors(error: ValidationError) -> str:
    """One line per invalid setting, named as the environment spells it."""
    lines = ["invalid settings (environment variables or .env):"]
    for problem in error.errors():
        name = "_".join(str(part) for part in problem["loc"])
        lines.append(f"  FACE_{name.upper()}: {problem['msg']} (got {problem.get('input')!r})")
    return "\n".join(lines)


def port_number(text: str) -> int:
    """A TCP port, 1 to 65535, as FACE_PORT takes it. Python's socket layer takes a larger
    number modulo 65536: --port 99999 listened on 34463 while the log said 99999."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be 1 to 65535, got {port}")
    return port


# The commands whose modules import SQLAlchemy, Alembic, NumPy or httpx (about a second
# together): only the one that runs is imported, or all of them for the list in --help.
COMMAND_MODULES = {
    "import": "app.commands.import_faces",
    "evaluate": "app.commands.evaluate",
    "calibrate": "app.commands.calibrate",
    "finetune": "app.commands.finetune",
    "backup": "app.commands.backup",
    "restore": "app.commands.restore",
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for `argv`: every command in full without it or without a command in it;
    otherwise the command it names in full and the others by name only."""
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    p_serve = commands.add_parser("serve", help="start the HTTP service")
    p_serve.add_argument("--host", help="bind address (default FACE_HOST or 127.0.0.1)")
    p_serve.add_argument("--port", type=port_number, help="bind port (default FACE_PORT or 8000)")
    p_serve.set_defaults(handler=serve)

    p_config = commands.add_parser("config", help="print the effective settings")
    p_config.add_argument("--markdown", action="store_true", help="the README's settings table")
    p_config.set_defaults(handler=show_config)

    p_models = commands.add_parser("models", help="manage model weights")
    models_cmd = p_models.add_subparsers(dest="models_command", required=True)
    p_fetch = models_cmd.add_parser("fetch", help="download weights and check their sha256")
    p_fetch.add_argument("names", nargs="*", help="model names (default: all)")
    p_fetch.set_defaults(handler=fetch_models)
    arguments = list(argv or ())
    at = next((i for i, arg in enumerate(arguments) if not arg.startswith("-")), len(arguments))
    # `-h import` shows the list of commands, each with its help.
    asks_help = bool({"-h", "--help"} & set(arguments[:at]))
    named = arguments[at] if at < len(arguments) and not asks_help else None
    for name, module in COMMAND_MODULES.items():
        if argv is None or named is None or named == name:
            importlib.import_module(module).register(commands)
        else:  # a choice to parse, never run: the named command is another one
            commands.add_parser(name)
    if asks_help and at < len(arguments) and arguments[at] not in commands.choices:
        # argparse would print the help for `-h nosuch` and exit 0, as if nosuch existed.
        parser.error(f"unknown command {arguments[at]!r}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Also set by app/__main__.py before torch loads; this covers callers of main() that
    # have not imported torch yet.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    arguments = sys.argv[1:] if argv is None else list(argv)
    try:
        return _run(arguments)
    except KeyboardInterrupt:
        # Ctrl-C while modules import, models load or photos embed: evaluate and calibrate
        # have nothing to clean up, so one line, not a traceback. import and finetune catch
        # it themselves, to finish their report or mark their job, and return their status.
        return report_interrupt(arguments)


def _run(arguments: list[str]) -> int:
    args = build_parser(arguments).parse_args(arguments)
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
    try:
        code: int = args.handler(args, settings)
        # Output short enough to sit in stdout's buffer is written only here, or at exit,
        # where a failure would escape the handlers below.
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader left (`python -m app config | head`): no traceback, and none at exit
        # either, when Python flushes stdout into the closed pipe (the Python docs' recipe).
        _drop_stdout()
        return 141  # 128 + SIGPIPE, as a shell reports a command a closed pipe ended
    except OSError as error:
        # Output that cannot be written (`config > /dev/full`), or a file error a command
        # did not expect: one line, not a traceback. The commands report the ones they do.
        try:
            sys.stdout.flush()
        except OSError:
            _drop_stdout()
        print(f"python -m app {args.command}: {error}", file=sys.stderr)
        return 1
    return code


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so that Python's flush at exit cannot fail again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

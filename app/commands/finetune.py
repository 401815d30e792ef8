"""`python -m app finetune`: the service's fine-tuning job, run in the foreground."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import types
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from sqlalchemy.orm import Session, sessionmaker
from tqdm import tqdm

from app.config import Settings
from app.errors import FaceServiceError
from app.gallery import jobs_repo
from app.gallery.db import make_engine, make_session_factory, migrate
from app.schemas.finetune import FinetuneParams, FinetuneRequest, JobProgress
from app.training.owners import this_process


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune the active embedder on the gallery's stored face crops",
        description="Runs the same job as POST /v1/admin/finetune, in this process, with a "
        "progress bar. A running service picks up a promoted model within a poll interval.",
    )
    for name, field in FinetuneParams.model_fields.items():
        flag = "--" + name.replace("_", "-")
        help_text = f"{field.description or ''} (default {field.default})".strip()
        parser.add_argument(flag, dest=name, default=None, help=help_text, **_kind(field))
    parser.set_defaults(handler=run, prog=parser.prog)


def _kind(field: FieldInfo) -> dict[str, Any]:
    """argparse options for one parameter, from its type; defaults stay FinetuneParams'."""
    annotation = field.annotation
    if get_origin(annotation) in (Union, types.UnionType):
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    if annotation is bool:
        return {"action": argparse.BooleanOptionalAction}
    if get_origin(annotation) is Literal:
        return {"choices": get_args(annotation)}
    return {"type": annotation}


def _rule_broken(error: ValidationError) -> str:
    """The flags and rules a ValidationError names, as one line; its own dump is pages."""
    rules = []
    for item in error.errors():
        flag = "--" + str(item["loc"][0]).replace("_", "-") if item["loc"] else ""
        message = item["msg"]
        if item["type"] == "string_pattern_mismatch" and flag:
            field = FinetuneParams.model_fields[str(item["loc"][0])]
            message = "must be " + str(field.description).rstrip(".")
        else:
            message = message.replace("Input should be", "must be").removeprefix("Value error, ")
        rules.append(f"argument {flag}: {message}" if flag else message)
    return "; ".join(rules)


def run(args: argparse.Namespace, settings: Settings) -> int:
    given = {name: getattr(args, name) for name in FinetuneParams.model_fields}
    try:
        params = FinetuneRequest.model_validate({k: v for k, v in given.items() if v is not None})
    except ValidationError as error:
        print(f"{args.prog}: error: {_rule_broken(error)}", file=sys.stderr)
        return 2
    # Here, not at the top: they load torch and the models' code, seconds that every other
    # command (`python -m app config`, `--help`), and a mistyped flag, would wait for.
    from app.services.finetune import check_device
    from app.training.admission import queue_job
    from app.training.supervisor import end_abandoned
    from app.training.worker import exit_on_sigterm, run_job

    try:  # the API refuses it up front too; the job would load, then fail on it
        check_device(params.device)
    except FaceServiceError as error:
        print(f"{error.code}: {error.message}", file=sys.stderr)
        return 1
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    sessions = make_session_factory(engine)
    for ended in end_abandoned(sessions, settings.models_dir):  # its process is gone
        print(f"job {ended} ended: the process that ran it is gone", file=sys.stderr)
    try:  # the checks and errors of POST /v1/admin/finetune
        job_id = queue_job(settings, sessions, params, this_process())
    except FaceServiceError as error:
        print(f"{error.code}: {error.message}", file=sys.stderr)
        engine.dispose()
        return 1
    bar = tqdm(desc="fine-tuning", unit="step", file=sys.stderr, dynamic_ncols=True)

    def show(progress: JobProgress) -> None:
        bar.total = progress.total_steps or None
        bar.n = progress.step
        loss = "-" if progress.loss is None else f"{progress.loss:.4f}"
        bar.set_postfix_str(f"{progress.phase}, epoch {progress.epoch}, loss {loss}")

    # SIGTERM (docker stop, systemd, timeout) ends the job like Ctrl-C: cleaned up and
    # marked interrupted. It used to kill the process and leave the job "running", which
    # refused every new job until the service restarted. (One landing before this point
    # leaves the job to this dead process, which the next check finds abandoned.)
    previous = signal.getsignal(signal.SIGTERM)
    exit_on_sigterm()
    try:
        state = run_job(settings, sessions, job_id, listener=show)
    except (KeyboardInterrupt, SystemExit) as stop:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut this short
        terminal = isinstance(stop, KeyboardInterrupt)
        why = "interrupted from the terminal" if terminal else "stopped by SIGTERM"
        with sessions.begin() as session:
            jobs_repo.interrupt_unfinished(session, job_id, error=why)
        bar.close()  # before the lines below, which its last redraw would garble
        # One landing just after the model was activated leaves the job succeeded.
        final = _print_job(sessions, job_id)
        print(f"{why}: job {job_id} ended {final}", file=sys.stderr)
        engine.dispose()
        return 130 if terminal else 128 + signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)
        bar.close()
    _print_job(sessions, job_id)
    engine.dispose()
    return 0 if state == jobs_repo.SUCCEEDED else 1


def _print_job(sessions: sessionmaker[Session], job_id: str) -> str:
    """Print the job as GET /v1/admin/jobs/{id} shows it; returns its state."""
    from app.services.finetune import job_public

    with sessions() as session:
        job = job_public(jobs_repo.get_job(session, job_id))
    print(json.dumps(job.model_dump(mode="json"), indent=2))
    return job.state

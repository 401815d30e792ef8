"""`python -m app evaluate`: verification metrics on labelled pairs, or 1:N identification."""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.atomic_write import write_atomically
from app.commands.evaluate_inputs import (
    argument_problem,
    at_least,
    finite,
    rate,
    read_source,
    require_both_kinds,
    require_writable_folder,
)
from app.commands.evaluate_summary import identical_copies_warnings, verification_summary
from app.commands.gallery_split import DEFAULT_STRANGER_FRACTION
from app.config import Settings
from app.errors import FaceServiceError
from app.evaluation.far_calibration import MIN_TARGET_FAR
from app.evaluation.pair_scores import (
    accuracy_at,
    no_face_summary,
    rates_at,
    score_pairs,
    unreadable_summary,
)
from app.evaluation.pairs import PairsFile, dropped_summary, identical_impostors

if TYPE_CHECKING:
    from app.pipeline.analyzer import FacePipeline


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="measure verification (pairs) or identification accuracy on local photos",
        description="Verification: --pairs CSV (path_a,path_b,same) under --root. "
        "Identification: --identify with --root DIR/<subject>/*.jpg or a --manifest.",
    )
    # Every value is checked here, by argparse (exit 2), so that a typo is reported in a
    # second rather than after minutes of embedding.
    parser.add_argument("--pairs", type=Path, help="CSV with columns path_a,path_b,same")
    parser.add_argument("--root", type=Path, required=True, help="folder the paths are under")
    parser.add_argument("--out", type=Path, help="output folder (default FACE_DATA_DIR/evaluation)")
    parser.add_argument("--folds", type=at_least(2), default=10, help="k for k-fold accuracy")
    parser.add_argument("--embedder", help="embedder name (default: FACE_EMBEDDER)")
    parser.add_argument("--batch", type=at_least(1), default=32, help="faces per embedding pass")
    parser.add_argument(
        "--threshold",
        type=finite,
        action="append",
        default=[],
        help="also report error rates at this threshold (repeatable)",
    )
    parser.add_argument("--identify", action="store_true", help="evaluate 1:N identification")
    parser.add_argument("--manifest", type=Path, help="CSV with path,identity columns")
    parser.add_argument(
        "--gallery-per-subject", type=at_least(1), default=1, help="photos enrolled per subject"
    )
    parser.add_argument(
        "--far",
        # Smaller targets overflow the arithmetic (1/FAR) after minutes of embedding.
        type=rate(zero=False, smallest=MIN_TARGET_FAR),
        default=0.01,
        help="stranger FAR for open-set DIR",
    )
    parser.add_argument(
        "--stranger-fraction",
        type=rate(zero=True),
        default=DEFAULT_STRANGER_FRACTION,
        help="share of eligible identities held out as strangers",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings, pipeline: FacePipeline | None = None) -> int:
    """The subcommand; `pipeline` lets a caller that already holds loaded models pass them."""
    problem = argument_problem(args)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    # Here, not at the top: they load torch, scikit-learn and the models' code, seconds that
    # every other command (`python -m app config`, `--help`) would wait for.
    from app.commands import identification
    from app.commands.file_embeddings import load_pipeline

    out: Path = args.out or settings.data_dir / "evaluation"
    start = time.perf_counter()
    files: dict[str, bytes] = {}  # what to write under `out`, once the summary is printed
    try:
        source = read_source(args)  # before any model loads: a bad row is found in seconds
        require_writable_folder(out)  # and an output that cannot be written
        pipeline = pipeline or load_pipeline(settings, args.embedder)
        if isinstance(source, PairsFile):
            report, files["roc.png"] = evaluate_pairs(
                pipeline, source, args, settings.max_image_pixels, out, settings.max_upload_bytes
            )
        else:
            report = identification.evaluate(
                pipeline, source, args, settings.max_image_pixels, settings.max_upload_bytes
            )
    except (OSError, ValueError, FaceServiceError) as exc:
        # Bad input files are the user's to fix: say which, without a traceback.
        print(f"evaluate failed: {exc}", file=sys.stderr)
        return 1
    name = "identification.json" if args.identify else "verification.json"
    report = {
        "embedder": pipeline.embedder.name,
        "model_version": pipeline.embedder.version,
        "device": str(pipeline.embedder.device),
        "precision": pipeline.embedder.precision_name,
        "seconds": round(time.perf_counter() - start, 1),
        **report,
    }
    # Printed first: minutes of embedding are not lost to an output that cannot be written.
    summary = identification.summary if args.identify else verification_summary
    print(summary(report))
    for warning in report.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    # The JSON last: it names roc.png, which must be there when the JSON is.
    files[name] = (json.dumps(report, indent=2) + "\n").encode()
    for file_name, data in files.items():
        try:
            write_atomically(out / file_name, data)
        except OSError as exc:
            print(
                f"evaluate failed: cannot write {out / file_name}: {exc.strerror or exc}",
                file=sys.stderr,
            )
            return 1
    print(f"wrote {out / name}")
    return 0


def evaluate_pairs(
    pipeline: FacePipeline,
    pairs_file: PairsFile,
    args: argparse.Namespace,
    max_pixels: int,
    out: Path,
    max_bytes: int,
) -> tuple[dict[str, Any], bytes]:
    """The verification report and its ROC curve as PNG bytes, for `run` to write."""
    from app.commands.file_embeddings import embed_readable_files
    from app.evaluation.verification import plot_roc, verification_report

    pairs = pairs_file.pairs
    paths = [path for pair in pairs for path in (pair.path_a, pair.path_b)]
    embedded = embed_readable_files(
        pipeline, paths, max_pixels, batch=args.batch, max_bytes=max_bytes
    )
    embeddings, unreadable = embedded.vectors, embedded.unreadable
    scored = score_pairs(pairs, embeddings)
    require_both_kinds(pairs, scored, embeddings, unreadable)
    # Too few pairs of a class for k-fold accuracy still leave AUC, EER, TAR and the rates.
    report = verification_report(
        scored.scores, scored.labels, folds=args.folds, kfold_optional=True
    )
    best = report["best_threshold"]
    roc = io.BytesIO()
    plot_roc(scored.scores, scored.labels, roc, f"{pipeline.embedder.name} on {args.pairs.name}")
    return {
        "pairs_file": str(args.pairs),
        "root": str(args.root),
        **report,
        # In-sample at the threshold fitted on all pairs, so the two figures compare.
        "accuracy_at_best_threshold": accuracy_at(scored, best),
        "accuracy_counting_failures_as_errors": accuracy_at(scored, best, failures_as_errors=True),
        "dropped_rows": dropped_summary(pairs_file),
        "no_face": no_face_summary(pairs, embeddings, scored, unreadable),
        "unreadable": unreadable_summary(unreadable, pairs),
        "at_threshold": [rates_at(scored, t) for t in args.threshold],
        "roc_png": str(out / "roc.png"),
        "warnings": identical_copies_warnings(identical_impostors(pairs, embedded.digests)),
    }, roc.getvalue()

"""`python -m app calibrate`: verify and identify thresholds from local impostor pairs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from alembic.util import CommandError
from sqlalchemy.exc import SQLAlchemyError

from app.commands.calibrate_inputs import gallery_count, path_problem, require_photos
from app.commands.calibrate_report import Report, print_report
from app.commands.calibration_gallery import gallery_size
from app.commands.evaluate_inputs import at_least
from app.commands.evaluate_summary import identical_copies_warnings
from app.commands.service_db import service_sessions, write_problem
from app.config import Settings
from app.errors import FaceServiceError
from app.evaluation.clustered_rate import design_effect, impostor_identities
from app.evaluation.far_calibration import MIN_TARGET_FAR, SCORE_NOISE, calibrate_far
from app.evaluation.identification import (
    no_looser_than_verify,
    open_set_threshold,
)
from app.evaluation.pair_scores import no_face_summary, score_pairs
from app.evaluation.pairs import identical_impostors, read_pairs
from app.gallery.db import shown_url
from app.services.calibration import METHOD_GALLERY_ADJUSTED, Calibration, CalibrationStore
from app.services.calibration_import import LEGACY_FILE, set_aside
from app.services.calibration_reliability import advice, far_checks
from app.services.calibration_warnings import calibration_warnings
from app.services.far_bounds import accepted

if TYPE_CHECKING:
    from app.pipeline.analyzer import FacePipeline


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="set verify/identify thresholds for a target FAR from local labelled pairs",
        description="Embeds the pairs, calibrates on the impostor scores and stores the "
        "thresholds for the active model in the service's database. Too few impostor "
        "pairs to measure a target FAR, or a degenerate threshold (one no genuine pair reaches, "
        "or passing over twice its FAR): it reports, stores nothing and exits 1 (see --force).",
    )
    parser.add_argument("--pairs", type=Path, required=True, help="CSV: path_a,path_b,same")
    parser.add_argument("--root", type=Path, required=True, help="folder the paths are under")
    parser.add_argument("--target-far", type=float, default=0.001, help="verify FAR to reach")
    parser.add_argument(
        "--identify-target-far",
        type=float,
        help="chance a stranger matches anyone in the gallery (default: --target-far)",
    )
    parser.add_argument(
        "--gallery-size",
        type=gallery_count,
        help="faces identify compares a probe with (default: the faces enrolled now)",
    )
    parser.add_argument("--embedder", help="embedder name (default: FACE_EMBEDDER)")
    parser.add_argument("--batch", type=at_least(1), default=32, help="faces per embedding pass")
    parser.add_argument(
        "--force",
        action="store_true",
        help="store the thresholds anyway: unreliable (too few impostor pairs) or degenerate",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings, pipeline: FacePipeline | None = None) -> int:
    """The subcommand; `pipeline` lets a caller that already holds loaded models pass them."""
    # Here, not at the top: it loads torch and the models' code, seconds that every other
    # command (`python -m app config`, `--help`) would wait for.
    from app.commands.file_embeddings import embed_readable_files, load_pipeline

    identify_far: float = (
        args.target_far if args.identify_target_far is None else args.identify_target_far
    )
    for name, far in (("--target-far", args.target_far), ("--identify-target-far", identify_far)):
        if not MIN_TARGET_FAR <= far < 1.0:
            print(f"{name} must lie in [{MIN_TARGET_FAR:g}, 1), got {far}", file=sys.stderr)
            return 2
    problem = path_problem(args)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    problem = write_problem(settings)  # where the calibration will be stored
    if problem is not None:
        print(f"calibrate failed: {problem}", file=sys.stderr)
        return 1
    gallery, why = gallery_size(args.gallery_size, settings)
    try:
        pairs = read_pairs(args.pairs, args.root)  # before any model loads: found in seconds
        if all(pair.same for pair in pairs):
            print(f"no impostor pair (same=0) in {args.pairs}; cannot calibrate", file=sys.stderr)
            return 2
        require_photos(pairs, args.pairs)
        pipeline = pipeline or load_pipeline(settings, args.embedder)
        paths = [path for pair in pairs for path in (pair.path_a, pair.path_b)]
        embedded = embed_readable_files(
            pipeline,
            paths,
            settings.max_image_pixels,
            batch=args.batch,
            max_bytes=settings.max_upload_bytes,
        )
    except (OSError, ValueError, FaceServiceError) as exc:
        print(f"calibrate failed: {exc}", file=sys.stderr)
        return 1
    embeddings, unreadable = embedded.vectors, embedded.unreadable
    for warning in identical_copies_warnings(identical_impostors(pairs, embedded.digests)):
        print(f"warning: {warning}", file=sys.stderr)
    scored = score_pairs(pairs, embeddings)
    impostors = scored.impostor_scores
    if impostors.size == 0:
        print(
            "no impostor pair (same=0) with a face on both sides; cannot calibrate", file=sys.stderr
        )
        return 2

    people = impostor_identities(pairs, embeddings)
    verify = calibrate_far(impostors, args.target_far, SCORE_NOISE)
    identify = no_looser_than_verify(
        open_set_threshold(impostors, gallery, identify_far, SCORE_NOISE),
        identify_far,
        verify.threshold,
        args.target_far,
    )
    calibration = Calibration(
        model_version=pipeline.embedder.version,
        verify_threshold=verify.threshold,
        verify_far=args.target_far,
        identify_threshold=identify,
        identify_far=identify_far,
        gallery_size=gallery,
        method=METHOD_GALLERY_ADJUSTED,
        pairs=args.pairs.resolve(),
        impostors=int(impostors.size),
        verify_accepts=accepted(impostors, verify.threshold, SCORE_NOISE),
        identify_accepts=accepted(impostors, identify, SCORE_NOISE),
        verify_design_effect=design_effect(impostors, people, verify.threshold, SCORE_NOISE),
        identify_design_effect=design_effect(impostors, people, identify, SCORE_NOISE),
    )
    checks = far_checks(calibration)
    reliable = all(check.reliable for check in checks)
    genuine = scored.scores[scored.labels == 1]
    warned = calibration_warnings(calibration, impostors, impostors, genuine)
    calibration = calibration.model_copy(update={"warnings": warned})
    will = "will" if (reliable and not warned) or args.force else "would"  # refused: none will
    no_face = no_face_summary(pairs, embeddings, scored, unreadable)
    print_report(args, calibration, scored, verify, Report(unreadable, no_face, why, will, checks))
    if warned and not args.force:  # first: more pairs or a larger FAR may not help
        print(
            "not stored: its thresholds are degenerate (see the warnings); correct the "
            "impostor pairs (same=0) of one photo or person, or pass --force to store it anyway",
            file=sys.stderr,
        )
        return 1
    if not reliable and not args.force:
        # An unmeasured FAR may be far looser than its target: what serves now stays.
        targets = ("--target-far", "--identify-target-far")
        more = "add impostor pairs (same=0) to --pairs"
        todo = advice(checks, targets, more, "pass --force to store it anyway, unreliable")
        print(f"not stored: its FARs cannot be measured; {todo}", file=sys.stderr)
        return 1
    where = shown_url(settings.resolved_database_url)
    try:  # the service's database, where every service process reads it
        with service_sessions(settings) as sessions:
            CalibrationStore(sessions).save(calibration)
        # This release's calibration replaces an older one's unreadable file, as the admin
        # endpoint's does: left, it would keep the service's decisions paused.
        aside = set_aside(settings.data_dir)
    except (SQLAlchemyError, OSError, CommandError) as exc:  # changed since the check above
        print(f"not stored: cannot write to {where} ({type(exc).__name__})", file=sys.stderr)
        return 1
    if aside is not None:
        print(f"note: the unreadable {LEGACY_FILE} of an older release is now {aside.name}")
    forced = [kind for kind, bad in (("unreliable", not reliable), ("degenerate", warned)) if bad]
    print(f"stored in {where}" + (f", {' and '.join(forced)} (--force)" if forced else ""))
    return 0

"""Before/after verification metrics of a fine-tune, and the rule that decides promotion."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from app.evaluation.far_calibration import impostors_needed
from app.evaluation.pairs import Pair, read_pairs
from app.evaluation.verification import verification_report
from app.pipeline.analyzer import FacePipeline
from app.pipeline.embedders import Embedder
from app.pipeline.image_io import decode_image
from app.pipeline.selection import select_face
from app.pipeline.types import FloatArray, ImageArray
from app.schemas.finetune import BeforeAfter, PairMetrics, PromotionDecision, PromotionRule
from app.training.probes import FAR, MIN_GAIN_PROBES, MIN_PROBES, SIGNIFICANCE, ProbeChange

EMBED_BATCH = 64


def _carry_on() -> None:
    """The default `check`: nothing asks to stop."""


@dataclass(frozen=True)
class ExternalPairs:
    """A labelled pairs file with each photo's face detected and aligned once."""

    pairs: list[Pair]
    crops: dict[Path, ImageArray | None]  # None: no face found


def embed_images(
    module: nn.Module,
    embedder: Embedder,
    images: Sequence[ImageArray],
    check: Callable[[], None] = _carry_on,
) -> FloatArray:
    """Unit vectors of aligned crops through `module` (the model being fine-tuned).
    `check` runs before each batch, so a cancel (it raises) need not wait for the gallery."""
    was_training = module.training
    module.eval()
    rows: list[FloatArray] = []
    with torch.inference_mode():
        for start in range(0, len(images), EMBED_BATCH):
            check()
            batch = embedder.preprocess(images[start : start + EMBED_BATCH])
            rows.append(F.normalize(module(batch).float(), dim=1).cpu().numpy())
    module.train(was_training)
    if not rows:
        return np.zeros((0, embedder.embedding_dim), dtype=np.float32)
    return np.concatenate(rows).astype(np.float32)


def pair_metrics(scores: FloatArray, labels: np.ndarray, excluded: int = 0) -> PairMetrics:
    report = verification_report(scores, labels, fars=(FAR,))
    point = report["tar_at_far"][0]
    return PairMetrics(
        pairs=report["pairs"],
        genuine=report["genuine"],
        impostor=report["impostor"],
        accuracy=round(report["accuracy_mean"], 6),
        roc_auc=round(report["roc_auc"], 6),
        far=FAR,
        tar_at_far=round(point["tar"], 6),
        tar_reliable=point["reliable"],
        excluded_pairs=excluded,
    )


def load_external(
    pipeline: FacePipeline,
    csv_path: Path,
    root: Path | None,
    max_pixels: int,
    check: Callable[[], None] = _carry_on,
) -> ExternalPairs:
    """Read the pairs and detect, choose and align the face of each photo once; `check`
    runs before each photo."""
    pairs = read_pairs(csv_path, root or csv_path.parent)
    crops: dict[Path, ImageArray | None] = {}
    for path in dict.fromkeys(p for pair in pairs for p in (pair.path_a, pair.path_b)):
        check()
        image = decode_image(path.read_bytes(), max_pixels)
        detected = pipeline.detect(image)
        if not detected:
            crops[path] = None
            continue
        chosen = select_face(detected, (image.shape[0], image.shape[1]), "prominent")
        crops[path] = pipeline.analyze(image, [detected[chosen]])[0].aligned
    return ExternalPairs(pairs=pairs, crops=crops)


def external_metrics(
    module: nn.Module,
    embedder: Embedder,
    external: ExternalPairs,
    check: Callable[[], None] = _carry_on,
) -> PairMetrics:
    found = [path for path, crop in external.crops.items() if crop is not None]
    crops = [external.crops[p] for p in found]
    vectors = embed_images(module, embedder, crops, check)  # type: ignore[arg-type]
    by_path = dict(zip(found, vectors, strict=True))
    scored = [p for p in external.pairs if p.path_a in by_path and p.path_b in by_path]
    scores = np.array([float(by_path[p.path_a] @ by_path[p.path_b]) for p in scored])
    labels = np.array([int(p.same) for p in scored], dtype=np.int64)
    return pair_metrics(scores, labels, excluded=len(external.pairs) - len(scored))


def decide_promotion(
    validation: BeforeAfter,
    external: BeforeAfter | None,
    tolerance_points: float,
    force: bool,
    probes: ProbeChange | None = None,
) -> PromotionDecision:
    """Promote only if validation is measurable (enough impostors for FAR and MIN_PROBES
    probes), at least MIN_GAIN_PROBES more probes are verified with a sign-test p-value of at
    most SIGNIFICANCE, and the external TAR@FAR drops by at most `tolerance_points`
    percentage points; `force` overrides all. Without `probes` no gain is measurable."""
    before, after = validation.before, validation.after
    assert after is not None
    gain_pairs = round((after.tar_at_far - before.tar_at_far) * after.genuine)
    change = f"validation TAR@FAR={FAR:g} {before.tar_at_far:.4f} -> {after.tar_at_far:.4f}"
    change += f" ({gain_pairs:+d} of {after.genuine} genuine pairs)"
    change += f", ROC AUC {before.roc_auc:.4f} -> {after.roc_auc:.4f}"
    if probes is not None:
        change += (
            f"; held-out faces verified {probes.before} -> {probes.after} of {probes.probes}"
            f" (+{probes.gained} -{probes.lost}, sign test p={probes.p_value:.3g})"
        )
    drop = 0.0
    if external is not None and external.after is not None:
        drop = 100 * (external.before.tar_at_far - external.after.tar_at_far)
        change += f"; external TAR@FAR dropped {drop:.2f} points"

    def decision(promote: bool, rule: PromotionRule, why: str) -> PromotionDecision:
        reason = f"{why}: {change}"
        return PromotionDecision(
            promote=promote, rule=rule, reason=reason, tolerance_points=tolerance_points
        )

    if force:
        return decision(True, "forced", "promoted because force=true")
    if not (before.tar_reliable and after.tar_reliable):
        why = (
            f"{after.impostor} validation impostor pairs cannot measure FAR={FAR:g} "
            f"(about {impostors_needed(FAR)} are needed), so no gain is measurable; "
            "enrol more subjects, or pass force=true"
        )
        return decision(False, "validation_unmeasurable", why)
    if probes is None:
        why = "no per-face validation outcomes were given, so no gain is measurable"
        return decision(False, "validation_unmeasurable", why)
    if probes.probes < MIN_PROBES:
        why = (
            f"only {probes.probes} held-out faces: at least {MIN_PROBES} are needed to "
            "measure a gain; enrol more faces, or pass force=true"
        )
        return decision(False, "validation_unmeasurable", why)
    if probes.net < MIN_GAIN_PROBES or probes.p_value > SIGNIFICANCE:
        why = (
            f"validation did not verify at least {MIN_GAIN_PROBES} more held-out faces "
            f"with a one-sided sign-test p-value of at most {SIGNIFICANCE:g}"
        )
        return decision(False, "validation_not_improved", why)
    if drop > tolerance_points:
        return decision(False, "external_dropped", f"external fell by more than {tolerance_points}")
    return decision(True, "validation_improved", "validation improved")

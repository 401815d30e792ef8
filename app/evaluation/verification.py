"""1:1 verification metrics: accuracy, TAR@FAR, EER and ROC over cosine-similarity pairs."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import StratifiedKFold

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# A FAR measured on fewer than ~10 expected false accepts is mostly noise.
MIN_EXPECTED_FALSE_ACCEPTS = 10

# The smallest target FAR calibration accepts. Measuring it would take 10^10 impostor pairs;
# far smaller ones overflow the arithmetic (1/FAR) or underflow to 0 per comparison.
MIN_TARGET_FAR = 1e-9

# How far above the highest score it must reject a calibrated threshold sits, at most. The
# service scores in float32 (FAISS or numpy), which rounds differently from the float64
# scores here by about 1e-7: a threshold one float64 step above an impostor's score let
# that impostor through in the service.
SCORE_MARGIN = 1e-6


def impostors_needed(far: float) -> int:
    """Impostor scores needed to expect MIN_EXPECTED_FALSE_ACCEPTS false accepts at `far`."""
    return math.ceil(MIN_EXPECTED_FALSE_ACCEPTS / far - 1e-9)


@dataclass(frozen=True)
class FarCalibration:
    """A threshold calibrated on impostor scores and how well the data supports it."""

    threshold: float
    far_actual: float
    impostors: int
    # True when target_far < 1/impostors: no observed impostor may pass, so the
    # threshold sits just above the highest impostor score and the FAR is unmeasured.
    below_resolution: bool


@dataclass(frozen=True)
class FarPoint:
    """One operating point: the true-accept rate at a target false-accept rate."""

    far_target: float
    threshold: float
    tar: float
    far_actual: float
    impostors: int
    reliable: bool
    note: str


def _pairs(scores: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[FloatArray, IntArray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if s.size == 0 or s.shape != y.shape:
        raise ValueError(f"need equal, non-empty scores and labels, got {s.size} and {y.size}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 1 (same person) or 0 (different people)")
    return s, y.astype(np.int64)


def _both_classes(y: IntArray) -> None:
    if y.min() == y.max():
        raise ValueError("need both genuine (1) and impostor (0) pairs")


def best_threshold(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """The threshold (accept when score >= threshold) that maximises accuracy on this data.

    Candidates are the lowest score (accept all), the midpoints between consecutive
    distinct scores and just above the highest (reject all); midpoints generalise to
    held-out pairs better than the observed scores do. Ties go to the lowest threshold.
    """
    s, y = _pairs(scores, labels)
    distinct = np.unique(s)
    candidates = np.concatenate(
        [distinct[:1], (distinct[:-1] + distinct[1:]) / 2, [np.nextafter(distinct[-1], np.inf)]]
    )
    genuine, impostor = np.sort(s[y == 1]), np.sort(s[y == 0])
    accepted_genuine = genuine.size - np.searchsorted(genuine, candidates, side="left")
    rejected_impostor = np.searchsorted(impostor, candidates, side="left")
    return float(candidates[int(np.argmax(accepted_genuine + rejected_impostor))])


def kfold_accuracy(
    scores: npt.ArrayLike, labels: npt.ArrayLike, folds: int = 10, seed: int = 0
) -> tuple[float, float, list[float]]:
    """LFW-protocol accuracy: pick the threshold on k-1 folds, score the held-out fold.

    Returns (mean, population std, per-fold thresholds). Folds are stratified and shrink
    to the size of the smaller class when it has fewer pairs than `folds`.
    """
    s, y = _pairs(scores, labels)
    n_splits = min(folds, int(np.bincount(y, minlength=2).min()))
    if n_splits < 2:
        raise ValueError("k-fold accuracy needs at least two genuine and two impostor pairs")
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    accuracies: list[float] = []
    thresholds: list[float] = []
    for train, test in splitter.split(s, y):
        threshold = best_threshold(s[train], y[train])
        accuracies.append(float(np.mean((s[test] >= threshold) == (y[test] == 1))))
        thresholds.append(threshold)
    return float(np.mean(accuracies)), float(np.std(accuracies)), thresholds


def calibrate_far(impostor_scores: npt.ArrayLike, target_far: float) -> FarCalibration:
    """The smallest threshold that lets at most `target_far` of impostors through.

    With impostors sorted high to low, at most k = floor(target_far * n) may pass, so the
    threshold sits above the (k+1)-th highest score: SCORE_MARGIN above it, or halfway to
    the next higher score where that is closer (then the margin can shrink to about the
    float32 rounding it is there to cover: such close scores cannot be split reliably).
    Ties are never split: if that score is shared with higher-ranked ones they are all
    rejected, so the achieved FAR is the largest attainable fraction <= target_far
    (possibly below it). When target_far < 1/n, k = 0 and the threshold sits just above
    the maximum impostor score with `below_resolution` set.

    Scores are cosines, clipped to [-1, 1] (float32 gives 1.0000001 for one image against
    itself), and the threshold never exceeds 1: an impostor pair of two identical images
    (one photo enrolled under two subjects) passes any threshold, and `far_actual` says so.
    """
    if not 0.0 < target_far < 1.0:  # per-comparison rates may lie below MIN_TARGET_FAR
        raise ValueError(f"a target FAR must lie in (0, 1), got {target_far}")
    imp = np.sort(np.asarray(impostor_scores, dtype=np.float64).ravel())[::-1]
    if imp.size == 0 or not np.all(np.isfinite(imp)):
        raise ValueError("need at least one finite impostor score")
    imp = np.clip(imp, -1.0, 1.0)
    allowed = allowed_accepts(target_far, imp.size)
    rejected = float(imp[allowed])  # allowed < n, as target_far < 1
    higher = imp[:allowed][imp[:allowed] > rejected]  # sorted: the last is the next score up
    threshold = rejected + SCORE_MARGIN
    if higher.size:
        threshold = min(threshold, (rejected + float(higher[-1])) / 2)
    threshold = min(max(threshold, float(np.nextafter(rejected, np.inf))), 1.0)
    far_actual = float(np.mean(imp >= threshold))
    return FarCalibration(threshold, far_actual, int(imp.size), below_resolution=allowed == 0)


def allowed_accepts(target_far: float, n: int) -> int:
    """The most of `n` impostors that may pass for a FAR of at most `target_far`: k with
    k / n <= target_far, computed on the quotients, so that 0.57 * 100 = 56.99... loses no
    accept and a target a hair below 1/100 gains none."""
    k = math.floor(target_far * n)
    while (k + 1) / n <= target_far:
        k += 1
    while k > 0 and k / n > target_far:
        k -= 1
    return k


def threshold_for_far(impostor_scores: npt.ArrayLike, target_far: float) -> float:
    """Threshold with a fraction of impostor scores >= it of at most target_far.

    See `calibrate_far` for ties and for target_far < 1/len (just above the max impostor
    score); call it directly to get the `below_resolution` flag.
    """
    return calibrate_far(impostor_scores, target_far).threshold


def far_reliability(
    cal: FarCalibration, far: float, counted: str, one: str, metric: str
) -> tuple[bool, str]:
    """Whether `cal` rests on enough impostors to measure `far`, and a sentence saying so.

    One rule for every rate calibrated on impostors (TAR for pairs, DIR for strangers), so
    a figure from too few of them is flagged the same way wherever it is reported.
    `counted` names the impostors in the plural, `one` in the singular.
    """
    needed = impostors_needed(far)
    reliable = cal.impostors >= needed
    if reliable:
        note = f"{cal.impostors} {counted}; FAR={far:g} is measurable (needs >= {needed})."
    else:
        note = (
            f"Only {cal.impostors} {counted}: FAR={far:g} needs at least {needed} "
            f"to see about {MIN_EXPECTED_FALSE_ACCEPTS} false accepts, so this {metric} "
            "is unreliable."
        )
    if cal.below_resolution:
        note += f" No {one} may pass, so the threshold is just above the highest {one} score."
    return reliable, note


def tar_at_far(scores: npt.ArrayLike, labels: npt.ArrayLike, far: float) -> FarPoint:
    """True-accept rate at the smallest threshold whose impostor FAR is <= far."""
    s, y = _pairs(scores, labels)
    _both_classes(y)
    cal = calibrate_far(s[y == 0], far)
    reliable, note = far_reliability(cal, far, "impostor pairs", "impostor", "TAR")
    tar = float(np.mean(s[y == 1] >= cal.threshold))
    return FarPoint(far, cal.threshold, tar, cal.far_actual, cal.impostors, reliable, note)


def eer(scores: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[float, float]:
    """Equal error rate and its threshold, interpolated where FPR crosses 1 - TPR."""
    s, y = _pairs(scores, labels)
    _both_classes(y)
    fpr, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
    gap = fpr - (1.0 - tpr)  # rises from -1 (accept none) to +1 (accept all)
    i = int(np.argmax(gap >= 0))
    if gap[i] == 0:
        return float(fpr[i]), float(thresholds[i])
    # Linear interpolation between the last point below the crossing and the first above.
    w = -gap[i - 1] / (gap[i] - gap[i - 1])
    rate = fpr[i - 1] + w * (fpr[i] - fpr[i - 1])
    lo = thresholds[i - 1] if np.isfinite(thresholds[i - 1]) else thresholds[i]
    return float(rate), float(lo + w * (thresholds[i] - lo))


def verification_report(
    scores: npt.ArrayLike,
    labels: npt.ArrayLike,
    fars: tuple[float, ...] = (1e-2, 1e-3),
    folds: int = 10,
) -> dict[str, Any]:
    """Every verification metric for one set of pairs, as a JSON-serialisable dict."""
    s, y = _pairs(scores, labels)
    _both_classes(y)
    mean, std, thresholds = kfold_accuracy(s, y, folds=folds)
    rate, rate_threshold = eer(s, y)
    return {
        "pairs": int(s.size),
        "genuine": int(y.sum()),
        "impostor": int(s.size - y.sum()),
        "folds": len(thresholds),
        "accuracy_mean": mean,
        "accuracy_std": std,
        "best_threshold": best_threshold(s, y),
        "roc_auc": float(roc_auc_score(y, s)),
        "eer": rate,
        "eer_threshold": rate_threshold,
        "tar_at_far": [asdict(tar_at_far(s, y, far)) for far in fars],
    }


def plot_roc(scores: npt.ArrayLike, labels: npt.ArrayLike, path: Path, title: str) -> None:
    """Write the ROC curve as a PNG with a log FPR axis and the EER point marked."""
    # An explicit Agg canvas instead of pyplot: no global backend switch, safe off-thread.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    s, y = _pairs(scores, labels)
    _both_classes(y)
    fpr, tpr, _ = roc_curve(y, s)
    rate, _threshold = eer(s, y)
    # A log axis cannot show FPR = 0; half of one impostor is below anything measurable.
    floor = 0.5 / int((y == 0).sum())
    fig = Figure(figsize=(5, 4), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(np.maximum(fpr, floor), tpr, label=f"AUC = {roc_auc_score(y, s):.4f}")
    ax.plot([max(rate, floor)], [1 - rate], "o", label=f"EER = {rate:.2%}")
    ax.set(xscale="log", xlim=(floor, 1), ylim=(0, 1.01), title=title)
    ax.set(xlabel="False accept rate", ylabel="True accept rate")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, format="png")

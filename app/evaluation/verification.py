"""1:1 verification metrics: accuracy, TAR@FAR, EER and ROC over cosine-similarity pairs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import StratifiedKFold

from app.evaluation.far_calibration import calibrate_far, far_reliability

# Every fold must hold a pair of each class to be scored, and at least two folds are needed.
KFOLD_NEEDS = "needs at least 2 genuine and 2 impostor pairs"

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


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


def kfold_possible(labels: npt.ArrayLike) -> bool:
    """Whether there are enough pairs of each class for k-fold accuracy (see KFOLD_NEEDS)."""
    return int(np.bincount(np.asarray(labels, dtype=np.int64), minlength=2).min()) >= 2


def kfold_accuracy(
    scores: npt.ArrayLike, labels: npt.ArrayLike, folds: int = 10, seed: int = 0
) -> tuple[float, float, list[float]]:
    """LFW-protocol accuracy: pick the threshold on k-1 folds, score the held-out fold.

    Returns (mean, population std, per-fold thresholds). Folds are stratified and shrink
    to the size of the smaller class when it has fewer pairs than `folds`.
    """
    s, y = _pairs(scores, labels)
    if not kfold_possible(y):
        raise ValueError(f"k-fold accuracy {KFOLD_NEEDS}")
    n_splits = min(folds, int(np.bincount(y, minlength=2).min()))
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    accuracies: list[float] = []
    thresholds: list[float] = []
    for train, test in splitter.split(s, y):
        threshold = best_threshold(s[train], y[train])
        accuracies.append(float(np.mean((s[test] >= threshold) == (y[test] == 1))))
        thresholds.append(threshold)
    return float(np.mean(accuracies)), float(np.std(accuracies)), thresholds


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
    kfold_optional: bool = False,
) -> dict[str, Any]:
    """Every verification metric for one set of pairs, as a JSON-serialisable dict.

    With `kfold_optional`, fewer than two pairs of a class leave folds, accuracy_mean and
    accuracy_std None (see KFOLD_NEEDS) instead of refusing the whole report.
    """
    s, y = _pairs(scores, labels)
    _both_classes(y)
    kfold: dict[str, Any] = {"folds": None, "accuracy_mean": None, "accuracy_std": None}
    if not kfold_optional or kfold_possible(y):
        mean, std, thresholds = kfold_accuracy(s, y, folds=folds)
        kfold = {"folds": len(thresholds), "accuracy_mean": mean, "accuracy_std": std}
    rate, rate_threshold = eer(s, y)
    return {
        "pairs": int(s.size),
        "genuine": int(y.sum()),
        "impostor": int(s.size - y.sum()),
        **kfold,
        "best_threshold": best_threshold(s, y),
        "roc_auc": float(roc_auc_score(y, s)),
        "eer": rate,
        "eer_threshold": rate_threshold,
        "tar_at_far": [asdict(tar_at_far(s, y, far)) for far in fars],
    }


def plot_roc(
    scores: npt.ArrayLike, labels: npt.ArrayLike, path: Path | IO[bytes], title: str
) -> None:
    """Write the ROC curve as a PNG (to a file, or a binary stream) with a log FPR axis and
    the EER point marked."""
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

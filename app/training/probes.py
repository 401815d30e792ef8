"""Held-out faces a model verifies, and whether a fine-tune verifies significantly more."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import binomtest

from app.evaluation.far_calibration import calibrate_far
from app.pipeline.types import FloatArray

# The FAR at which probes are verified, as pair_metrics' TAR is measured.
FAR = 1e-2
# "Measurably better" is counted in held-out faces (probes), not in pairs. A probe's genuine
# pairs (it against each other face of its subject) rise and fall together, so one photo
# newly accepted against three training faces counted as three pairs: enough, once, to
# promote. A probe is verified when its best genuine score passes the FAR threshold.
# Fewer probes than MIN_PROBES cannot measure a gain: one face would move the rate 5 points.
MIN_PROBES = 20
# The gain must be at least MIN_GAIN_PROBES more probes verified (newly verified minus newly
# missed), and an exact one-sided sign test (McNemar's) over the probes whose outcome
# changed must reject "training changed nothing" at SIGNIFICANCE. At 0.05 the test alone
# needs 5 probes gained and none lost (0.5^5 = 0.031), so the two agree on a small gallery.
MIN_GAIN_PROBES = 5
SIGNIFICANCE = 0.05

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ProbeOutcomes:
    """Which held-out faces one model verifies at FAR: each face counts once."""

    probes: IntArray  # indices of the held-out faces with a genuine partner, sorted
    verified: BoolArray  # per probe: its best genuine score passes the FAR threshold


@dataclass(frozen=True)
class ProbeChange:
    """The probes verified before and after training, paired probe by probe."""

    probes: int
    before: int
    after: int
    gained: int  # verified after, not before
    lost: int  # verified before, not after
    p_value: float  # one-sided sign test: this many gains if training changed nothing

    @property
    def net(self) -> int:
        return self.gained - self.lost


def probe_outcomes(
    scores: FloatArray, same: np.ndarray, first: IntArray, second: IntArray
) -> ProbeOutcomes:
    """Outcomes of the probes of `validation_pairs` (each pair's `first` is held out).

    A probe is verified when its best score against its subject's other faces passes the
    threshold that lets FAR of the impostor pairs through, the threshold of `pair_metrics`.
    """
    genuine = same == 1
    threshold = calibrate_far(scores[~genuine], FAR).threshold
    probes = np.unique(first)
    best = np.full(int(max(first.max(), second.max())) + 1, -np.inf)
    np.maximum.at(best, first[genuine], scores[genuine])
    # A pair of two held-out faces is listed once, under the lower index: it counts for both.
    both_held = genuine & np.isin(second, probes)
    np.maximum.at(best, second[both_held], scores[both_held])
    probes = probes[np.isfinite(best[probes])]
    return ProbeOutcomes(probes=probes, verified=best[probes] >= threshold)


def probe_change(before: ProbeOutcomes, after: ProbeOutcomes) -> ProbeChange:
    """Compare two models probe by probe, with an exact one-sided McNemar (sign) test.

    Only the probes whose outcome changed carry evidence; if training changed nothing, each
    of them is as likely to have been gained as lost.
    """
    if not np.array_equal(before.probes, after.probes):
        raise ValueError("before and after outcomes must be of the same probes")
    gained = int(np.sum(after.verified & ~before.verified))
    lost = int(np.sum(before.verified & ~after.verified))
    changed = gained + lost
    p_value = (
        float(binomtest(gained, changed, 0.5, alternative="greater").pvalue) if changed else 1.0
    )
    return ProbeChange(
        probes=len(before.probes),
        before=int(before.verified.sum()),
        after=int(after.verified.sum()),
        gained=gained,
        lost=lost,
        p_value=p_value,
    )

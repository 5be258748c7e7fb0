"""Sample ratio mismatch (SRM): chi-square goodness of fit of exposures to expectation.

``expected_exposures[a]`` is the sum, over counted decisions, of arm a's weight at decision
time, so the test is exact under adaptive allocation too. A very small p-value (< 0.001) means
the assignment or the exposure logging is broken and no other statistic should be trusted.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special

from croupier.stats.sufficient import FloatArray

SRM_THRESHOLD = 0.001


@dataclass(frozen=True, slots=True)
class SrmResult:
    """Outcome of the SRM check.

    Attributes:
        p_value: chi-square goodness-of-fit p-value; None when there are no exposures or fewer
            than two arms with a positive expectation.
        flag: True when p_value < 0.001.
    """

    p_value: float | None
    flag: bool


def srm_test(
    exposures: npt.ArrayLike, expected_exposures: npt.ArrayLike, *, threshold: float = SRM_THRESHOLD
) -> SrmResult:
    """Chi-square test of observed vs expected exposures.

    Equal to scipy ``chisquare(exposures, f_exp=expected_exposures)`` once the expectations are
    rescaled to the observed total (they differ only by floating-point error in practice).
    Arms expected to get nothing and getting nothing are left out; an arm expected to get
    nothing that did get exposures is an SRM by definition (p = 0).
    """
    observed = np.asarray(exposures, dtype=np.float64)
    expected = np.asarray(expected_exposures, dtype=np.float64)
    total = float(observed.sum())
    expected_total = float(expected.sum())
    if total <= 0.0 or expected_total <= 0.0:
        return SrmResult(p_value=None, flag=False)
    if np.any((expected <= 0.0) & (observed > 0.0)):
        return SrmResult(p_value=0.0, flag=True)
    keep = expected > 0.0
    observed, expected = observed[keep], expected[keep] * (total / expected_total)
    if observed.size < 2:
        return SrmResult(p_value=None, flag=False)
    with np.errstate(over="ignore"):  # a vanishing expectation means an infinite statistic
        statistic = float(np.sum((observed - expected) ** 2 / expected))
    if not math.isfinite(statistic):
        return SrmResult(p_value=0.0, flag=True)
    p_value = min(1.0, max(0.0, float(special.chdtrc(observed.size - 1, statistic))))
    return SrmResult(p_value=p_value, flag=p_value < threshold)


def srm_many(
    exposures: FloatArray,
    expected_exposures: FloatArray,
    arms: Sequence[int],
    *,
    threshold: float = SRM_THRESHOLD,
) -> list[SrmResult]:
    """:func:`srm_test` for many experiments at once (the same results).

    ``exposures`` and ``expected_exposures`` hold the experiments' arms one after the other;
    ``arms`` gives each experiment's number of arms.
    """
    observed = np.asarray(exposures, dtype=np.float64)
    expected = np.asarray(expected_exposures, dtype=np.float64)
    bounds = np.concatenate([[0], np.cumsum(arms, dtype=np.intp)]).tolist()
    spans = list(itertools.pairwise(bounds))
    keep = expected > 0.0
    # per experiment: the sums as srm_test takes them (np.sum of each slice, so the same bits)
    totals = [float(observed[a:b].sum()) for a, b in spans]
    expected_totals = [float(expected[a:b].sum()) for a, b in spans]
    ratios = [
        t / e if t > 0.0 and e > 0.0 else 0.0 for t, e in zip(totals, expected_totals, strict=True)
    ]
    scale = np.repeat(ratios, arms)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        kept_expected = expected[keep] * scale[keep]
        terms = (observed[keep] - kept_expected) ** 2 / kept_expected
    kept = np.concatenate([[0], np.cumsum(keep, dtype=np.intp)])[bounds].tolist()
    unexpected = ((expected <= 0.0) & (observed > 0.0)).tolist()
    out: list[SrmResult] = []
    for i, (a, b) in enumerate(spans):
        if totals[i] <= 0.0 or expected_totals[i] <= 0.0:
            out.append(SrmResult(p_value=None, flag=False))
        elif any(unexpected[a:b]):
            out.append(SrmResult(p_value=0.0, flag=True))
        elif kept[i + 1] - kept[i] < 2:
            out.append(SrmResult(p_value=None, flag=False))
        else:
            statistic = float(terms[kept[i] : kept[i + 1]].sum())
            if not math.isfinite(statistic):
                out.append(SrmResult(p_value=0.0, flag=True))
                continue
            df = kept[i + 1] - kept[i] - 1
            p_value = min(1.0, max(0.0, float(special.chdtrc(df, statistic))))
            out.append(SrmResult(p_value=p_value, flag=p_value < threshold))
    return out

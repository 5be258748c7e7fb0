"""Sufficient statistics: (n, sum, sum of squares) as frozen values that merge.

Every statistic in Croupier is computed from these three running totals per arm and metric,
which the storage layer keeps up to date in the same transaction as the events they count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class SufficientStats:
    """Running totals of one metric for one arm.

    Attributes:
        n: number of observations (rewards, or exposures for a binary metric).
        sum: sum of the observed values.
        sum_sq: sum of the squared observed values.
    """

    n: int = 0
    sum: float = 0.0
    sum_sq: float = 0.0

    def __add__(self, other: SufficientStats) -> SufficientStats:
        return SufficientStats(self.n + other.n, self.sum + other.sum, self.sum_sq + other.sum_sq)

    @classmethod
    def of(cls, values: Iterable[float]) -> SufficientStats:
        """Sufficient statistics of a finite collection of values."""
        arr = np.asarray(list(values), dtype=np.float64)
        return cls(int(arr.size), float(arr.sum()), float(np.square(arr).sum()))

    @property
    def mean(self) -> float | None:
        """Sample mean, or None when there are no observations."""
        return None if self.n <= 0 else self.sum / self.n

    @property
    def variance(self) -> float | None:
        """Sample variance (ddof 1), or None with fewer than two observations."""
        if self.n < 2:
            return None
        return max(0.0, (self.sum_sq - self.sum * self.sum / self.n) / (self.n - 1))

    @property
    def std(self) -> float | None:
        """Sample standard deviation (ddof 1), or None with fewer than two observations."""
        var = self.variance
        return None if var is None else math.sqrt(var)


def safe_divide(num: npt.ArrayLike, den: npt.ArrayLike) -> FloatArray:
    """Elementwise num / den with NaN (and no warning) where den == 0."""
    num_a = np.asarray(num, dtype=np.float64)
    den_a = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num_a, den_a).shape, np.nan)
    np.divide(num_a, den_a, out=out, where=den_a != 0)
    return out


def means(count: npt.ArrayLike, sums: npt.ArrayLike) -> FloatArray:
    """Per-arm means sum / count; NaN where count is 0."""
    return safe_divide(sums, count)


def sample_variances(
    count: npt.ArrayLike, sums: npt.ArrayLike, sums_sq: npt.ArrayLike
) -> FloatArray:
    """Per-arm sample variances (ddof 1) from running totals; NaN where count < 2.

    Negative values produced by floating-point cancellation are clipped to 0.
    """
    n = np.asarray(count, dtype=np.float64)
    s = np.asarray(sums, dtype=np.float64)
    ss = np.asarray(sums_sq, dtype=np.float64)
    centred = ss - s * safe_divide(s, n)
    var = safe_divide(centred, np.where(n >= 2, n - 1.0, 0.0))
    return np.where(np.isnan(var), np.nan, np.maximum(var, 0.0))

"""Bjøntegaard delta rate (BD-rate): one number for "how many bits vs the anchor".

The classic VCEG-M33 recipe: fit log(rate) as a cubic polynomial of the quality
(PSNR in dB, or MS-SSIM in dB) for each curve, integrate both fits over the quality
interval the two curves share, and turn the mean log-rate difference into a percentage.
An undefined comparison is NaN with a reason, never an extrapolated number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.polynomial import Polynomial

MIN_POINTS = 4  # a cubic needs four points to be determined


@dataclass(frozen=True)
class BDRate:
    """A BD-rate in percent (negative = fewer bits than the anchor), or NaN and why."""

    percent: float
    reason: str = ""

    @property
    def defined(self) -> bool:
        return math.isfinite(self.percent)

    def __str__(self) -> str:
        return f"{self.percent:+.1f}%" if self.defined else self.reason


def finite_curve(rate: npt.ArrayLike, quality: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Drop points a log/poly fit cannot use (lossless = infinite quality, unmeasured = NaN)."""
    r = np.asarray(rate, dtype=float)
    q = np.asarray(quality, dtype=float)
    if r.shape != q.shape:
        raise ValueError(f"rate and quality differ in length ({r.size} vs {q.size})")
    keep = np.isfinite(r) & np.isfinite(q) & (r > 0)
    return r[keep], q[keep]


def bd_rate(
    anchor_rate: npt.ArrayLike,
    anchor_quality: npt.ArrayLike,
    test_rate: npt.ArrayLike,
    test_quality: npt.ArrayLike,
) -> BDRate:
    """BD-rate of the test curve against the anchor curve (rates in bpp, quality in dB)."""
    curves = (finite_curve(anchor_rate, anchor_quality), finite_curve(test_rate, test_quality))
    for label, (r, q) in zip(("anchor", "test"), curves):
        if r.size < MIN_POINTS:
            return BDRate(math.nan, f"{label}: {r.size} points (< {MIN_POINTS})")
        if np.unique(q).size < MIN_POINTS:
            return BDRate(math.nan, f"{label}: < {MIN_POINTS} distinct quality values")

    lo = max(q.min() for _, q in curves)
    hi = min(q.max() for _, q in curves)
    if not hi > lo:
        return BDRate(math.nan, "no overlap")

    # Polynomial.fit rescales the abscissa to [-1, 1], which keeps the cubic well conditioned.
    mean_log_rate = []
    for r, q in curves:
        antiderivative = Polynomial.fit(q, np.log(r), 3).integ()
        mean_log_rate.append((antiderivative(hi) - antiderivative(lo)) / (hi - lo))
    return BDRate(float((math.exp(mean_log_rate[1] - mean_log_rate[0]) - 1.0) * 100.0))

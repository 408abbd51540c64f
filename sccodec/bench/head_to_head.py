"""Head to head: sccodec's BD-rate against each other codec directly, with the range it covers.

A BD-rate against JPEG is integrated over each codec's own overlap with JPEG. When sccodec's
curve stops at a lower quality than a peer's (JPEG is weakest at low rates), its BD-rate vs JPEG
and the peer's come from different quality ranges and do not rank the two. The head-to-head figure
takes the other codec as the anchor and integrates over the range both curves cover: positive
means sccodec needs more bits than that codec at equal quality. ``compare`` is the one place a
bench BD-rate is computed together with its quality range (the table's BD vs JPEG uses it
too), so a figure never travels without the range that qualifies it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from sccodec.bench.bdrate import BDRate, finite_curve, bd_rate
from sccodec.bench.peers import EFFORT_PREFIX, MODEL_SEPARATOR, SccodecAdapter
from sccodec.bench.runner import Curve

#: An overlap narrower than this (dB of PSNR or of MS-SSIM) describes a sliver of the curves,
#: not the codecs: the comparison is reported as undefined, with the overlap, instead.
MIN_OVERLAP_DB = 1.0


@dataclass(frozen=True)
class Comparison:
    """The BD-rate of ``test`` against ``anchor`` on one metric, and the quality range it covers.

    ``overlap`` is the (low, high) dB range both curves cover, None when they share none or a
    curve has no usable point; ``bd.reason`` says why an undefined comparison is undefined."""

    test: Curve
    anchor: Curve
    metric: str
    bd: BDRate
    overlap: tuple[float, float] | None

    @property
    def defined(self) -> bool:
        return self.bd.defined

    def overlap_text(self, dash: str = "-") -> str:
        """``26.9-34.5 dB``, or "" without an overlap."""
        return f"{_span(self.overlap, dash)} dB" if self.overlap else ""

    def text(self, dash: str = "-") -> str:
        """``+23.1% (26.9-34.5 dB)``, or the reason it is undefined."""
        return f"{self.bd} ({self.overlap_text(dash)})" if self.defined and self.overlap else str(self.bd)

    def to_json(self) -> dict[str, object]:
        """Percent and overlap rounded as published (0.1% and 0.01 dB); null where undefined."""
        return {
            "bd_rate_percent": round(self.bd.percent, 1) if self.defined else None,
            "overlap_db": [round(v, 2) for v in self.overlap] if self.overlap else None,
            "reason": None if self.defined else self.bd.reason,
        }


def is_sccodec(curve: Curve) -> bool:
    """sccodec with its default model or any other (``sccodec@MODEL``), at any effort
    (``sccodec-effortN``), measured or loaded."""
    base = curve.name.partition(MODEL_SEPARATOR)[0]
    return base == SccodecAdapter.name or (base.startswith(EFFORT_PREFIX) and base[len(EFFORT_PREFIX):].isdigit())


def _quality_range(curve: Curve, metric: str) -> tuple[float, float] | None:
    """The range of the points bd_rate can use (finite, positive rate), None if there are none."""
    _, quality = finite_curve(curve.values("bpp"), curve.values(metric))
    return (float(quality.min()), float(quality.max())) if quality.size else None


def _named_reason(reason: str, test: Curve, anchor: Curve) -> str:
    """bd_rate's reasons say "anchor"/"test"; a table cell reads better with the codec's name."""
    role, colon, rest = reason.partition(":")
    names = {"anchor": anchor.name, "test": test.name}
    return f"{names[role]}{colon}{rest}" if colon and role in names else reason


def compare(test: Curve, anchor: Curve, metric: str = "psnr") -> Comparison:
    """BD-rate of ``test`` against ``anchor`` over the ``metric`` range both cover.

    Undefined (NaN with a reason, never extrapolated) for a lossless curve, an unmeasured
    metric, fewer than 4 usable points, curves that share no range (both ranges are given),
    or an overlap narrower than MIN_OVERLAP_DB."""

    def undefined(reason: str, overlap: tuple[float, float] | None = None) -> Comparison:
        return Comparison(test, anchor, metric, BDRate(math.nan, reason), overlap)

    if test.lossless or anchor.lossless:
        return undefined("lossless")
    if any(all(math.isnan(v) for v in c.values(metric)) for c in (test, anchor)):
        return undefined("not measured")
    bd = bd_rate(anchor.values("bpp"), anchor.values(metric), test.values("bpp"), test.values(metric))
    test_range, anchor_range = _quality_range(test, metric), _quality_range(anchor, metric)
    if test_range is None or anchor_range is None:
        return undefined(_named_reason(bd.reason, test, anchor))
    lo, hi = max(test_range[0], anchor_range[0]), min(test_range[1], anchor_range[1])
    if not hi > lo:
        return undefined(f"no overlap: {_span(test_range)} vs {_span(anchor_range)} dB")
    if not bd.defined:
        return undefined(_named_reason(bd.reason, test, anchor), (lo, hi))
    if hi - lo < MIN_OVERLAP_DB:
        return undefined(f"overlap {_span((lo, hi))} dB only (< {MIN_OVERLAP_DB:g} dB)", (lo, hi))
    return Comparison(test, anchor, metric, bd, (lo, hi))


def _span(bounds: tuple[float, float], dash: str = "-") -> str:
    return f"{bounds[0]:.1f}{dash}{bounds[1]:.1f}"


def head_to_head(ours: Curve, others: Sequence[Curve], metric: str = "psnr") -> list[Comparison]:
    """sccodec's curve ``ours`` against each of ``others`` but itself, each other curve the anchor."""
    return [compare(ours, other, metric) for other in others if other is not ours]

"""Bjontegaard delta metrics: how much rate (or task accuracy) one RD curve saves over another.

BD-rate answers "at equal mAP, how many more/fewer bits does the test codec spend than the
anchor?". Following VCEG-M33 and the JCT-VC CTC spreadsheet we interpolate log10(rate) as
a function of the metric for each curve, integrate both over the metric interval where the
two curves overlap, and turn the mean log-rate difference back into a percentage:

    bd_rate = (10 ** mean(log10 r_test - log10 r_anchor) - 1) * 100

BD-metric (BD-mAP here) is the mirror image: the metric interpolated over log10(rate),
averaged over the overlapping log-rate interval.

Two interpolation methods are offered because published numbers use both:

* ``"pchip"`` (default): piecewise cubic Hermite interpolation, as the JCT-VC / JVET CTC
  spreadsheet does; it never overshoots between points, so it is robust for 4+ points.
* ``"cubic"``: a least-squares cubic polynomial (the original VCEG-M33 formulation).

Inputs are validated strictly: a BD number from a malformed curve looks plausible and is
wrong, which is worse than no number at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from scipy.interpolate import PchipInterpolator

from vcmbench.errors import MetricError

__all__ = [
    "BDResult",
    "Overlap",
    "METHODS",
    "MIN_POINTS",
    "bd_rate",
    "bd_metric",
    "bd_overlap",
    "compare",
]

METHODS = ("pchip", "cubic")
MIN_POINTS = 4  # a cubic needs 4 points; the CTC uses 4 rate points per curve


@dataclass(frozen=True)
class BDResult:
    """Everything a report row needs about one test-vs-anchor comparison.

    ``overlap_lo``/``overlap_hi`` is the metric interval BD-rate was integrated over;
    ``overlap_fraction`` is the smaller of the two curves' covered fractions (0..1), so a
    low value flags a BD-rate extrapolated from a sliver of one curve.
    """

    bd_rate: float
    bd_metric: float
    overlap_lo: float
    overlap_hi: float
    overlap_fraction: float


class Overlap(NamedTuple):
    """The metric interval shared by both curves and how much of each curve it covers."""

    lo: float
    hi: float
    anchor_fraction: float
    test_fraction: float

    @property
    def fraction(self) -> float:
        """The worse of the two coverages: what a report should warn on."""
        return min(self.anchor_fraction, self.test_fraction)


def _curve(name: str, rate: Any, metric: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate one RD curve and return (rate, metric) sorted by rate, as float64 arrays."""
    r = np.asarray(rate, dtype=np.float64).ravel()
    m = np.asarray(metric, dtype=np.float64).ravel()
    if r.shape != m.shape:
        raise MetricError(
            f"{name} curve has {r.size} rates but {m.size} metric values; pass one metric value per rate point"
        )
    if r.size < MIN_POINTS:
        raise MetricError(
            f"{name} curve has {r.size} point(s); BD metrics need at least {MIN_POINTS} rate "
            "points per curve (run more rate points, e.g. 4 QPs as in the CTC)"
        )
    for i in range(r.size):
        if not (math.isfinite(r[i]) and math.isfinite(m[i])):
            raise MetricError(
                f"{name} point {i + 1} (rate={r[i]!r}, metric={m[i]!r}) is NaN or infinite; "
                "remove that rate point or fix the run that produced it"
            )
        if r[i] <= 0:
            raise MetricError(
                f"{name} point {i + 1} (rate={r[i]!r}, metric={m[i]!r}) has a non-positive rate; "
                "BD metrics work on log(rate), so every rate must be > 0"
            )
    order = np.argsort(r, kind="stable")
    for k in range(1, order.size):
        i, j = order[k - 1], order[k]  # j has the next higher rate after i
        if r[j] == r[i]:
            raise MetricError(
                f"{name} points {i + 1} and {j + 1} share rate={r[i]!r}; each rate point must "
                "have a distinct rate (drop the duplicate)"
            )
        if not m[j] > m[i]:
            rel = "equal to" if m[j] == m[i] else "below"
            raise MetricError(
                f"{name} point {j + 1} (rate={r[j]!r}, metric={m[j]!r}) is {rel} point {i + 1} "
                f"(rate={r[i]!r}, metric={m[i]!r}): the metric must strictly increase with rate "
                "(points numbered from 1 in the order given); drop or re-run the outlier point"
            )
    return r[order], m[order]


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise MetricError(f"unknown BD interpolation method {method!r}; choose one of {METHODS}")


def _mean_over(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: str) -> float:
    """Mean of y(x) over [lo, hi], y interpolated through the points (x strictly increasing)."""
    if method == "pchip":
        area = float(PchipInterpolator(x, y, extrapolate=False).integrate(lo, hi))
    else:
        antiderivative = np.polyint(np.polyfit(x, y, 3))
        area = float(np.polyval(antiderivative, hi) - np.polyval(antiderivative, lo))
    return area / (hi - lo)


def _interval(name: str, a: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    lo, hi = max(a.min(), t.min()), min(a.max(), t.max())
    if not hi > lo:
        raise MetricError(
            f"the {name} ranges do not overlap (anchor {a.min():g}..{a.max():g}, test "
            f"{t.min():g}..{t.max():g}); BD metrics are only defined on a shared range: "
            "choose rate points (QPs) so that both curves span common quality levels"
        )
    return float(lo), float(hi)


def bd_overlap(
    anchor_rate: Sequence[float],
    anchor_metric: Sequence[float],
    test_rate: Sequence[float],
    test_metric: Sequence[float],
) -> Overlap:
    """The metric interval BD-rate integrates over and the fraction of each curve's metric range it is."""
    _, am = _curve("anchor", anchor_rate, anchor_metric)
    _, tm = _curve("test", test_rate, test_metric)
    lo, hi = _interval("metric", am, tm)
    return Overlap(lo, hi, (hi - lo) / float(am[-1] - am[0]), (hi - lo) / float(tm[-1] - tm[0]))


def bd_rate(
    anchor_rate: Sequence[float],
    anchor_metric: Sequence[float],
    test_rate: Sequence[float],
    test_metric: Sequence[float],
    method: str = "pchip",
) -> float:
    """BD-rate in percent: negative means the test curve needs fewer bits for the same metric."""
    _check_method(method)
    ar, am = _curve("anchor", anchor_rate, anchor_metric)
    tr, tm = _curve("test", test_rate, test_metric)
    lo, hi = _interval("metric", am, tm)
    diff = _mean_over(tm, np.log10(tr), lo, hi, method) - _mean_over(am, np.log10(ar), lo, hi, method)
    return float((10.0**diff - 1.0) * 100.0)


def bd_metric(
    anchor_rate: Sequence[float],
    anchor_metric: Sequence[float],
    test_rate: Sequence[float],
    test_metric: Sequence[float],
    method: str = "pchip",
) -> float:
    """BD-metric (e.g. BD-mAP): mean metric gain of test over anchor across the shared log-rate range."""
    _check_method(method)
    ar, am = _curve("anchor", anchor_rate, anchor_metric)
    tr, tm = _curve("test", test_rate, test_metric)
    la, lt = np.log10(ar), np.log10(tr)
    lo, hi = _interval("log-rate", la, lt)
    return float(_mean_over(lt, tm, lo, hi, method) - _mean_over(la, am, lo, hi, method))


def compare(
    anchor_df: Any,
    test_df: Any,
    rate_col: str = "bpp",
    metric_col: str = "map",
    method: str = "pchip",
) -> BDResult:
    """BD-rate, BD-metric and overlap of two points tables (pandas DataFrames, one row per rate point)."""
    cols = {}
    for name, df in (("anchor", anchor_df), ("test", test_df)):
        missing = [c for c in (rate_col, metric_col) if c not in df.columns]
        if missing:
            raise MetricError(
                f"{name} table lacks column(s) {missing} (has {list(df.columns)}); pass "
                "rate_col=/metric_col= naming the rate (e.g. 'bpp') and metric (e.g. 'map') columns"
            )
        cols[name] = (df[rate_col].to_numpy(dtype=np.float64), df[metric_col].to_numpy(dtype=np.float64))
    args = (*cols["anchor"], *cols["test"])
    ov = bd_overlap(*args)
    rate = bd_rate(*args, method=method)
    try:
        metric = bd_metric(*args, method=method)
    except MetricError:
        # Curves that share accuracy levels but no rates (a codec many times cheaper than the
        # anchor everywhere) still have a BD-rate; BD-metric, averaged over shared rates, has none.
        metric = math.nan
    return BDResult(
        bd_rate=rate,
        bd_metric=metric,
        overlap_lo=ov.lo,
        overlap_hi=ov.hi,
        overlap_fraction=ov.fraction,
    )

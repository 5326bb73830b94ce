"""Why a pair of RD curves has no BD-rate: the first unmet condition of `metrics.bd`, named.

The bootstrap leaves out every resample whose curves give no BD-rate, so its interval speaks
only of the resamples that had one. Whether that matters depends on why they had none: a curve
losing points to the pareto rule on a small set (the curve is fragile, and under the monotonic
fit it would have kept them) is another warning than curves whose mAP ranges do not overlap (the
codecs work at different accuracies). `bd_rate`'s MetricError says the same in a sentence about
one curve pair, with its numbers; the names here are short and stable, so that resamples can be
counted by them, and a report can say how many went for each.

The checks follow `bd_rate`'s order (interpolation method, the anchor's curve, the test's curve,
then the shared mAP range), so a pair that fails several is named by the one `bd_rate` meets first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vcmbench.metrics.bd import METHODS, MIN_POINTS

__all__ = ["NOT_FINITE", "NO_OVERLAP", "curve_cause", "failure_cause", "kept_too_few", "rule_words"]

NO_OVERLAP = "the two curves' mAP ranges do not overlap"
NOT_FINITE = "the BD-rate is not finite"  # bd_rate gave inf or NaN without refusing (an overflow)

_RULE_WORDS = {"pareto": "the pareto rule", "monotonic": "the monotonic fit"}


def rule_words(rule: str) -> str:
    """How a cause names the curve rule (metrics.curve_fitting.CURVES) a curve went through."""
    return _RULE_WORDS.get(rule, f"the {rule} rule")


def kept_too_few(kept: Sequence[tuple[str, int]], rule: str = "pareto") -> str:
    """The cause for curves that kept fewer than MIN_POINTS points after the curve rule: `kept`
    holds (who, points kept) of each such curve, both when both fell short, so a draw is named by
    all it lost and the counts still add up to the dropped draws (one cause per draw)."""
    if not kept:
        raise ValueError("kept_too_few needs at least one (curve, points kept)")
    who = " and ".join(f"{name} kept {n}" for name, n in kept)
    return f"{who} < {MIN_POINTS} points after {rule_words(rule)}"


def curve_cause(who: str, rate: Sequence[float], metric: Sequence[float], rule: str = "pareto") -> str | None:
    """Why one curve (after its rule) cannot enter a BD-rate, or None: too few points, a NaN or
    infinite value, a rate of 0 or below, two points at one rate, mAP not rising strictly with
    rate (under the pareto rule that cannot happen; under the monotonic fit a curve that only falls
    is fitted flat)."""
    r = np.asarray(rate, dtype=np.float64).ravel()
    m = np.asarray(metric, dtype=np.float64).ravel()
    if r.shape != m.shape:
        return f"{who} has {r.size} bpp and {m.size} mAP values"
    if r.size < MIN_POINTS:
        return kept_too_few([(who, int(r.size))], rule)
    for x, y in zip(r, m, strict=True):
        if not np.isfinite(x):
            return f"{who} has a NaN or infinite bpp"
        if not np.isfinite(y):
            return f"{who} has a NaN or infinite mAP"
    if np.any(r <= 0):
        return f"{who} has a point at 0 bpp (no bytes in the drawn images)"
    order = np.argsort(r, kind="stable")
    if np.any(np.diff(r[order]) == 0):
        return f"{who} has two points at the same bpp"
    if not np.all(np.diff(m[order]) > 0):
        return f"{who}'s mAP does not rise strictly with bpp after {rule_words(rule)}"
    return None


def failure_cause(
    anchor_rate: Sequence[float],
    anchor_metric: Sequence[float],
    test_rate: Sequence[float],
    test_metric: Sequence[float],
    *,
    anchor: str = "the anchor",
    test: str = "the test",
    rule: str = "pareto",
    method: str = "pchip",
) -> str | None:
    """The first condition of BD-rate the two curves (each already through `rule`) do not meet,
    named (`anchor`, `test`: how the names of the curves read), or None when they meet them all.
    Both curves short of points are named together (`kept_too_few`)."""
    if method not in METHODS:
        return f"unknown interpolation method {method!r}"
    short = [(who, len(r)) for who, r in ((anchor, anchor_rate), (test, test_rate)) if len(r) < MIN_POINTS]
    if short:
        return kept_too_few(short, rule)
    for who, rate, metric in ((anchor, anchor_rate, anchor_metric), (test, test_rate, test_metric)):
        cause = curve_cause(who, rate, metric, rule)
        if cause is not None:
            return cause
    am, tm = np.asarray(anchor_metric, dtype=np.float64), np.asarray(test_metric, dtype=np.float64)
    if not min(am.max(), tm.max()) > max(am.min(), tm.min()):
        return NO_OVERLAP
    return None

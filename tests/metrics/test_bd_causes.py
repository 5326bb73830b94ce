"""The named causes of a missing BD-rate: each condition of bd_rate gets its name, in bd_rate's
order, and a pair is named exactly when bd_rate refuses it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vcmbench.errors import MetricError
from vcmbench.metrics.bd import bd_rate
from vcmbench.metrics.bd_causes import NO_OVERLAP, curve_cause, failure_cause, kept_too_few, rule_words

R = [0.1, 0.2, 0.4, 0.8, 1.6]
M = [20.0, 28.0, 33.0, 36.0, 37.0]

CASES = {
    # name: (anchor rate, anchor metric, test rate, test metric, cause)
    "fine": (R, M, [r * 0.9 for r in R], M, None),
    "anchor short": (R[:3], M[:3], R, M, "anchor A kept 3 < 4 points after the pareto rule"),
    "test short": (R, M, R[:2], M[:2], "B kept 2 < 4 points after the pareto rule"),
    "both short": (R[:3], M[:3], R[:1], M[:1], "anchor A kept 3 and B kept 1 < 4 points after the pareto rule"),
    "nan map": (R, [20.0, math.nan, 33.0, 36.0, 37.0], R, M, "anchor A has a NaN or infinite mAP"),
    "inf bpp": (R, M, [0.1, 0.2, math.inf, 0.8, 1.6], M, "B has a NaN or infinite bpp"),
    "zero bpp": (R, M, [0.0, 0.2, 0.4, 0.8, 1.6], M, "B has a point at 0 bpp (no bytes in the drawn images)"),
    "shared bpp": (R, M, [0.1, 0.2, 0.2, 0.8, 1.6], M, "B has two points at the same bpp"),
    "flat": (R, [30.0] * 5, R, M, "anchor A's mAP does not rise strictly with bpp after the pareto rule"),
    "no overlap": (R, M, R, [m + 20.0 for m in M], NO_OVERLAP),
    "touching": (R, M, R, [37.0, 38.0, 39.0, 40.0, 41.0], NO_OVERLAP),  # one shared value is no range
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_condition_is_named_and_only_when_bd_rate_refuses(case):
    ar, am, tr, tm, want = CASES[case]
    assert failure_cause(ar, am, tr, tm, anchor="anchor A", test="B") == want
    if want is None:
        assert math.isfinite(bd_rate(ar, am, tr, tm))
    else:
        with pytest.raises(MetricError):
            bd_rate(ar, am, tr, tm)


def test_the_anchor_is_named_before_the_test_and_a_curve_before_the_overlap():
    """bd_rate's order: a pair failing several conditions is named by the first it meets."""
    nan = [20.0, 28.0, math.nan, 36.0, 37.0]
    assert failure_cause(R, nan, R, nan, anchor="anchor A", test="B") == "anchor A has a NaN or infinite mAP"
    assert failure_cause(R, M, R, nan, anchor="anchor A", test="B") == "B has a NaN or infinite mAP"
    assert failure_cause(R, M, R, [m + 20 for m in nan], anchor="anchor A", test="B") == "B has a NaN or infinite mAP"
    assert failure_cause(R, M, R, M, method="linear") == "unknown interpolation method 'linear'"


def test_the_rule_is_named_as_the_report_names_it():
    falls = [40.0, 35.0, 30.0, 25.0]
    assert (
        curve_cause("B", R[:4], falls, "monotonic") == "B's mAP does not rise strictly with bpp after the monotonic fit"
    )
    assert kept_too_few([("B", 3)], "monotonic") == "B kept 3 < 4 points after the monotonic fit"
    assert rule_words("pareto") == "the pareto rule"
    assert curve_cause("B", np.array(R), np.array(M)) is None
    assert curve_cause("B", R[:4], M[:3]) == "B has 4 bpp and 3 mAP values"
    with pytest.raises(ValueError):
        kept_too_few([])

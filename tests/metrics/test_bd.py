"""Bjontegaard metrics against cases whose answer follows by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from vcmbench.errors import MetricError
from vcmbench.metrics.bd import BDResult, bd_metric, bd_overlap, bd_rate, compare

# A realistic, non-linear anchor curve (bpp, mAP).
RATES = [0.05, 0.11, 0.24, 0.52]
MAPS = [30.2, 35.1, 38.4, 40.0]

METHODS = ["pchip", "cubic"]


@pytest.mark.parametrize("method", METHODS)
def test_identical_curves_give_zero(method):
    assert abs(bd_rate(RATES, MAPS, RATES, MAPS, method=method)) < 1e-9
    assert abs(bd_metric(RATES, MAPS, RATES, MAPS, method=method)) < 1e-9


@pytest.mark.parametrize("method", METHODS)
def test_halved_rates_give_minus_50(method):
    # log10(r/2) = log10(r) - log10(2) at every metric value, so the mean log-rate gap is
    # -log10(2) and 10**(-log10 2) - 1 = -0.5.
    half = [r / 2 for r in RATES]
    assert abs(bd_rate(RATES, MAPS, half, MAPS, method=method) - (-50.0)) < 1e-9


@pytest.mark.parametrize("method", METHODS)
def test_doubled_rates_give_plus_100(method):
    double = [r * 2 for r in RATES]
    assert abs(bd_rate(RATES, MAPS, double, MAPS, method=method) - 100.0) < 1e-9


def test_point_order_does_not_matter():
    perm = [2, 0, 3, 1]
    half = [RATES[i] / 2 for i in perm]
    assert abs(bd_rate(RATES, MAPS, half, [MAPS[i] for i in perm]) + 50.0) < 1e-9


@pytest.mark.parametrize("method", METHODS)
def test_linear_in_log_case(method):
    # anchor: metric = 30 + 10*L, L = log10(rate) in {0,1,2,3}   -> metric 30..60
    # test:   metric = 32 + 10*L, L in {1,2,3,4}                 -> metric 42..72
    # Both interpolants reproduce straight lines exactly.
    # BD-metric: shared L range [1, 3]; test - anchor = 2 everywhere -> 2.0.
    # BD-rate: L_test(m) = (m-32)/10, L_anchor(m) = (m-30)/10, gap -0.2 over the shared
    #          metric range [42, 60] -> (10**-0.2 - 1)*100 = -36.9042...%.
    ar, am = [1, 10, 100, 1000], [30, 40, 50, 60]
    tr, tm = [10, 100, 1000, 10000], [42, 52, 62, 72]
    assert abs(bd_metric(ar, am, tr, tm, method=method) - 2.0) < 1e-9
    assert abs(bd_rate(ar, am, tr, tm, method=method) - (10**-0.2 - 1) * 100) < 1e-9
    # and the mirror image
    assert abs(bd_metric(tr, tm, ar, am, method=method) + 2.0) < 1e-9


@pytest.mark.parametrize("method", METHODS)
def test_partial_overlap_uses_only_the_overlap(method):
    # anchor: L = m/10        at m = 30, 40, 50, 60  (L = 3..6)
    # test:   L = m/20 + 1.5  at m = 45, 60, 75, 90  (L = 3.75..6)
    # Shared metric range [45, 60]:
    #   int_45^60 m/10 dm        = (60^2 - 45^2)/20            = 78.75
    #   int_45^60 (m/20 + 1.5) dm = (60^2 - 45^2)/40 + 1.5*15  = 61.875
    #   mean gap = (61.875 - 78.75)/15 = -1.125  -> BD-rate = (10**-1.125 - 1)*100
    # (Over the anchor's whole range [30, 60] the gap would be -0.75: a different number.)
    am = [30, 40, 50, 60]
    ar = [10 ** (m / 10) for m in am]
    tm = [45, 60, 75, 90]
    tr = [10 ** (m / 20 + 1.5) for m in tm]
    assert abs(bd_rate(ar, am, tr, tm, method=method) - (10**-1.125 - 1) * 100) < 1e-9
    # BD-metric: anchor m = 10 L, test m = 20 L - 30; shared L range [3.75, 6], mean L = 4.875
    #   mean gap = 10*4.875 - 30 = 18.75
    assert abs(bd_metric(ar, am, tr, tm, method=method) - 18.75) < 1e-9
    ov = bd_overlap(ar, am, tr, tm)
    assert (ov.lo, ov.hi) == (45.0, 60.0)
    assert ov.anchor_fraction == pytest.approx(0.5)
    assert ov.test_fraction == pytest.approx(1 / 3)
    assert ov.fraction == pytest.approx(1 / 3)


def test_compare_dataframes():
    am = [30, 40, 50, 60]
    anchor = pd.DataFrame({"bpp": [10 ** (m / 10) for m in am], "map": am})
    test = pd.DataFrame({"bpp": [10 ** (m / 10) / 2 for m in am], "map": am, "codec": "x"})
    res = compare(anchor, test)
    assert isinstance(res, BDResult)
    assert abs(res.bd_rate + 50.0) < 1e-9
    # halving the rate shifts the test curve left by log10(2) in L: with m = 10 L the
    # metric gain is 10*log10(2) over the shared L range.
    assert abs(res.bd_metric - 10 * math.log10(2)) < 1e-9
    assert (res.overlap_lo, res.overlap_hi, res.overlap_fraction) == (30.0, 60.0, 1.0)
    with pytest.raises(MetricError, match="lacks column"):
        compare(anchor, test, metric_col="ap50")


def test_too_few_points():
    with pytest.raises(MetricError, match=r"test curve has 3 point\(s\)"):
        bd_rate(RATES, MAPS, RATES[:3], MAPS[:3])
    with pytest.raises(MetricError, match=r"anchor curve has 2 point"):
        bd_rate(RATES[:2], MAPS[:2], RATES, MAPS)


def test_non_monotonic_names_the_point():
    bad = [30.2, 35.1, 34.0, 40.0]
    with pytest.raises(MetricError) as e:
        bd_rate(RATES, MAPS, RATES, bad)
    msg = str(e.value)
    assert "test point 3 (rate=0.24, metric=34.0) is below point 2 (rate=0.11, metric=35.1)" in msg
    with pytest.raises(MetricError, match="anchor point 4 .* equal to point 3"):
        bd_rate(RATES, [30.2, 35.1, 38.4, 38.4], RATES, MAPS)


def test_bad_values():
    with pytest.raises(MetricError, match="non-positive rate"):
        bd_rate([0.0, 0.1, 0.2, 0.3], MAPS, RATES, MAPS)
    with pytest.raises(MetricError, match="NaN"):
        bd_rate(RATES, [30.2, np.nan, 38.4, 40.0], RATES, MAPS)
    with pytest.raises(MetricError, match="share rate"):
        bd_rate([0.1, 0.1, 0.2, 0.3], MAPS, RATES, MAPS)
    with pytest.raises(MetricError, match="unknown BD interpolation method"):
        bd_rate(RATES, MAPS, RATES, MAPS, method="linear")
    with pytest.raises(MetricError, match="4 rates but 3 metric"):
        bd_rate(RATES, MAPS[:3], RATES, MAPS)


def test_disjoint_ranges():
    with pytest.raises(MetricError, match="do not overlap"):
        bd_rate(RATES, MAPS, RATES, [m + 20 for m in MAPS])
    with pytest.raises(MetricError, match="do not overlap"):
        bd_metric(RATES, MAPS, [r * 100 for r in RATES], MAPS)


def test_bd_rate_needs_shared_accuracy_not_shared_rates():
    """A test codec 20x cheaper everywhere: no rate in common, yet BD-rate at equal mAP is -95 %."""
    import pandas as pd

    anchor = pd.DataFrame({"bpp": RATES, "map": MAPS})
    test = pd.DataFrame({"bpp": [r / 20 for r in RATES], "map": MAPS})
    res = compare(anchor, test)
    assert res.bd_rate == pytest.approx(-95.0)
    assert math.isnan(res.bd_metric)

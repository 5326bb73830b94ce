"""The monotonic curve rule (vcmbench.metrics.curve_fitting) against values worked out by hand.

The cases are built so that the expected fit follows from the method's definition (least-squares
cubic in log10(rate), non-decreasing and concave at the points, 0 <= f <= 100 at the ends) without
running the implementation's solver:

* on equally spaced log-rates, the weights of a 5th difference (-1, 5, -10, 10, -5, 1), or of a
  4th (1, -4, 6, -4, 1), are orthogonal to every cubic: adding them to a cubic g leaves g the
  least-squares cubic, so where g is itself increasing and concave the fit is g exactly;
* a curve that only falls: the constant at its mean is the best non-decreasing fit of any kind,
  and it is a (flat) cubic, so it is the fit;
* a fit that breaks only the ceiling: the least-squares cubic with f(highest rate) = 100 held,
  in closed form.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vcmbench.analysis import bd_row, monotonic_front
from vcmbench.bootstrap import _bd as bootstrap_bd_of_curves
from vcmbench.errors import ConfigError
from vcmbench.metrics.curve_fitting import CURVES, check_curve, is_increasing, monotonic_fit, monotonic_values

RATES = 0.05 * 2.0 ** np.arange(6)  # log10(rate) equally spaced
G = np.array([20.0 + 12.0 * i - i * i for i in range(6)])  # 20, 31, 40, 47, 52, 55: rising, concave
W5 = np.array([-1.0, 5.0, -10.0, 10.0, -5.0, 1.0])  # orthogonal to cubics on 6 equally spaced points
WOBBLY = G + W5  # 19, 36, 30, 57, 47, 56: not monotonic


@pytest.mark.timeout(30)
def test_a_rising_curve_is_left_as_measured():
    measured = [20.0, 27.0, 32.0, 35.0, 36.5, 37.1]
    assert is_increasing(measured)
    assert monotonic_values(RATES, measured).tolist() == measured
    # above the ceiling too: the bounds belong to the fit, and a rising curve is not fitted
    assert monotonic_values(RATES[:4], [90.0, 99.0, 104.0, 107.0]).tolist() == [90.0, 99.0, 104.0, 107.0]


@pytest.mark.timeout(30)
def test_noise_orthogonal_to_cubics_is_removed_exactly():
    assert WOBBLY.tolist() == [19.0, 36.0, 30.0, 57.0, 47.0, 56.0] and not is_increasing(WOBBLY)
    fitted = monotonic_values(RATES, WOBBLY)
    assert fitted == pytest.approx(G, abs=1e-9)
    # the same as the plain least-squares cubic, computed with numpy
    x = np.log10(RATES)
    assert fitted == pytest.approx(np.polyval(np.polyfit(x, WOBBLY, 3), x), abs=1e-9)
    # given in any order, each point gets its own fitted value
    shuffle = np.array([3, 0, 5, 1, 4, 2])
    assert monotonic_values(RATES[shuffle], WOBBLY[shuffle]) == pytest.approx(G[shuffle], abs=1e-9)


@pytest.mark.timeout(30)
def test_five_points_with_a_dip():
    g = np.array([20.0 + 12.0 * i - i * i for i in range(5)])  # 20, 31, 40, 47, 52
    measured = g + 2.0 * np.array([1.0, -4.0, 6.0, -4.0, 1.0])  # 22, 23, 52, 39, 54
    assert monotonic_values(RATES[:5], measured) == pytest.approx(g, abs=1e-9)


@pytest.mark.timeout(30)
def test_a_falling_curve_becomes_its_mean():
    assert monotonic_values([1.0, 10.0, 100.0, 1000.0], [40.0, 30.0, 20.0, 10.0]) == pytest.approx([25.0] * 4)


@pytest.mark.timeout(30)
def test_the_ceiling_of_100_percent_holds_the_top_of_the_fit():
    i = np.arange(5.0)
    g = 30.0 + 30.0 * i - 3.0 * i * i  # 30, 57, 78, 93, 102: rising and concave, but above 100 at the top
    measured = g + 2.0 * np.array([1.0, -4.0, 6.0, -4.0, 1.0])  # 32, 49, 90, 85, 104
    # least squares with f(x_top) = 100: b = b_ls - M^-1 c (c' b_ls - 100) / (c' M^-1 c), M = A'A
    x = np.log10(RATES[:5])
    a = np.vander(x, 4)
    m_inv = np.linalg.inv(a.T @ a)
    b_ls = m_inv @ a.T @ measured
    c = a[-1]
    b = b_ls - m_inv @ c * (c @ b_ls - 100.0) / (c @ m_inv @ c)
    expected = a @ b
    # the hand solution keeps the other constraints slack (rising, concave), so it is the optimum
    d1, d2 = np.polyder(b, 1), np.polyder(b, 2)
    assert (np.polyval(d1, x) > 0).all() and (np.polyval(d2, x) < 0).all() and expected[0] > 0
    fitted = monotonic_values(RATES[:5], measured)
    assert fitted == pytest.approx(expected, abs=1e-8)
    assert fitted[-1] == pytest.approx(100.0, abs=1e-9)


@pytest.mark.timeout(60)
def test_same_values_as_the_platforms_constraints_solved_with_slsqp():
    """The platform's formulation (a constraint at every point), solved as it solves it."""
    from scipy.optimize import minimize

    x = np.log10([120.0, 260.0, 510.0, 1040.0, 2100.0, 4300.0])
    y = np.array([28.0, 35.5, 34.0, 41.0, 40.2, 44.0])
    xc = x - x.mean()

    def f(b, at):
        return b[0] * at**3 + b[1] * at**2 + b[2] * at + b[3]

    constraints = [
        {"type": "ineq", "fun": lambda b: 3 * b[0] * xc**2 + 2 * b[1] * xc + b[2]},
        {"type": "ineq", "fun": lambda b: -6 * b[0] * xc - 2 * b[1]},
        {"type": "ineq", "fun": lambda b: f(b, xc[0]) - 0.0},
        {"type": "ineq", "fun": lambda b: 100.0 - f(b, xc[-1])},
    ]
    res = minimize(
        lambda b: np.sum((f(b, xc) - y) ** 2),
        x0=np.ones(4),
        method="SLSQP",
        constraints=constraints,
        options={"ftol": 1e-14, "maxiter": 1000},
    )
    assert res.success
    assert monotonic_fit(x, y) == pytest.approx(f(res.x, xc), abs=1e-4)


@pytest.mark.timeout(30)
def test_curves_it_cannot_fit_are_left_for_bd_to_name():
    assert monotonic_values([1.0, 2.0, 4.0], [3.0, 1.0, 2.0]).tolist() == [3.0, 1.0, 2.0]  # 3 points
    assert monotonic_values([1.0, 2.0, 2.0, 4.0], [3.0, 1.0, 2.0, 5.0]).tolist() == [3.0, 1.0, 2.0, 5.0]
    with_nan = monotonic_values([1.0, 2.0, 4.0, 8.0], [3.0, np.nan, 2.0, 5.0])
    assert np.isnan(with_nan[1]) and with_nan[[0, 2, 3]].tolist() == [3.0, 2.0, 5.0]


@pytest.mark.timeout(30)
def test_an_unknown_rule_names_the_setting_the_value_and_the_choices():
    assert CURVES == ("pareto", "monotonic") and check_curve("monotonic") == "monotonic"
    with pytest.raises(ConfigError) as err:
        check_curve("isotonic", "--curve")
    assert str(err.value) == "--curve='isotonic': choose one of ['pareto', 'monotonic']"


def _pts(rates, maps, codec: str) -> pd.DataFrame:
    return pd.DataFrame({"codec": codec, "rate": [f"qp={40 - 3 * i}" for i in range(len(rates))]}).assign(
        bpp=list(rates), map=list(maps)
    )


@pytest.mark.timeout(30)
def test_bd_rate_on_the_fit_of_a_wobbly_curve_at_80_percent_of_the_bits_is_minus_20():
    """The test codec's fit is the anchor's curve at 0.8 x its rates: BD-rate (0.8 - 1) x 100."""
    anchor, test = _pts(RATES, G, "anchor"), _pts(RATES * 0.8, WOBBLY, "wobbly")
    for method in ("pchip", "cubic"):
        row = bd_row(anchor, test, "wobbly", "anchor", method, curve="monotonic")
        assert row.ok and row.bd_rate == pytest.approx(-20.0, abs=1e-9)
        assert row.fitted == ("wobbly",) and row.dominated == ()
        assert row.note == "not rising with rate, replaced by a monotonic cubic fit: wobbly"
    # the pareto rule leaves 3 of its points (30, 47 and 56 are dominated): no BD-rate
    pareto = bd_row(anchor, test, "wobbly", "anchor")
    assert not pareto.ok and "3 rate points, BD-rate needs 4" in pareto.reason
    assert pareto.dominated == ("wobbly qp=34", "wobbly qp=28", "wobbly qp=25")
    # the bootstrap's per-resample rule is the same
    value, cause = bootstrap_bd_of_curves(RATES, G, RATES * 0.8, WOBBLY, "pchip", "monotonic")
    assert value == pytest.approx(-20.0, abs=1e-9) and cause is None
    with pytest.raises(ConfigError, match="curve='fit'"):
        bd_row(anchor, test, "wobbly", "anchor", curve="fit")


@pytest.mark.timeout(30)
def test_the_fitted_front_keeps_every_point_and_its_other_columns():
    test = _pts(RATES * 0.8, WOBBLY, "wobbly").iloc[::-1]
    front, fitted = monotonic_front(test, "bpp", "map")
    assert fitted and front["bpp"].tolist() == sorted(RATES * 0.8) and front["rate"].iloc[0] == "qp=40"
    assert front["map"].to_numpy() == pytest.approx(G, abs=1e-9)
    same, fitted = monotonic_front(_pts(RATES, G, "anchor"), "bpp", "map")
    assert not fitted and same["map"].tolist() == G.tolist()

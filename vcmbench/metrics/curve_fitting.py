"""Monotonic curve fitting: a non-monotonic RD curve's metric values replaced by a monotonic cubic fit.

BD interpolation needs the metric to rise with rate, and measured task accuracy does not always
do so (detection noise on a small set, a curve saturating at its uncompressed accuracy). vcmbench
offers two rules for such a curve, chosen with `curve` (``--curve`` on the command lines):

* ``"pareto"`` (default): keep a point only if its metric beats every cheaper point's
  (`vcmbench.analysis.pareto_front`). Measured values stay as they were; the dominated points are
  left out and named, so the curve can lose points (and fall below the 4 a BD figure needs).
* ``"monotonic"``: the rule of MPEG's reference platform (CompressAI-Vision's
  ``scripts/metrics/curve_fitting.py``, after H. Wang et al., "Improvements of the BD-Rate Metrics
  Using Monotonic Curve-Fitting Methods", PCS 2024): every point stays, and when the metric does
  not strictly increase with rate, its values are replaced by those of a cubic in log10(rate)
  fitted by least squares under the constraints that make it monotonic and concave.

The fit, as the platform defines it: f(x) = b3 x^3 + b2 x^2 + b1 x + b0 with x = log10(rate),
minimising the sum of squared differences to the measured metric values subject to, at the
measured points, f'(x) >= 0 (non-decreasing) and f''(x) <= 0 (concave: diminishing returns), and
to f(lowest rate) >= 0 and f(highest rate) <= 100 (the metric is in percent). Rates are kept; only
the metric values change. The platform solves it with SLSQP from a fixed start; here it is solved
exactly: the problem is a strictly convex quadratic programme, and since a cubic's second
derivative is linear, the constraints at the measured points reduce to five (concave at both ends,
rising at the highest rate, the two bounds), so the optimum is found by checking the optimality
(KKT) conditions of each set of active constraints. Where SLSQP converges, both give the same
values; where it would fail the platform keeps the measured values, here there is no such failure.

Choices where the platform is silent or does otherwise, documented here:

* the fit is applied only to curves that are not strictly increasing (the platform function's
  default, and what the method is for); the platform's own CSV generation for the VCM test
  conditions fits every curve, while its FCM conditions fit none;
* a curve with fewer than 4 points, a repeated rate, or a NaN/infinite value is left as it is:
  a cubic is not determined by 3 points, and the BD check then names the problem (the platform
  reads NaN accuracy as 0, which would hide a failed run);
* a fit that is constant (a curve that only falls) makes equal metric values, which BD refuses
  as it refuses a flat measured curve.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from vcmbench.errors import ConfigError

__all__ = [
    "CURVES",
    "DEFAULT_CURVE",
    "METRIC_FLOOR",
    "METRIC_CEILING",
    "check_curve",
    "curve_heading",
    "curve_sentence",
    "is_increasing",
    "monotonic_fit",
    "monotonic_values",
]

CURVES = ("pareto", "monotonic")
DEFAULT_CURVE = "pareto"
METRIC_FLOOR, METRIC_CEILING = 0.0, 100.0  # the platform's bounds on the fitted metric, in percent
_MIN_POINTS = 4  # the cubic's 4 coefficients (metrics.bd.MIN_POINTS, not imported: bd stays below)


def check_curve(curve: str, name: str = "curve") -> str:
    """The curve rule, or a ConfigError naming the setting (`name`: "curve", or "--curve" on a
    command line), the bad value and the choices: a typo must not silently mean the default."""
    if curve not in CURVES:
        raise ConfigError(f"{name}={curve!r}: choose one of {list(CURVES)}")
    return curve


def add_curve_argument(parser, metric: str = "metric") -> None:
    """`--curve RULE` on a command line (bdrate, report, regress, export), one wording everywhere;
    the caller checks the value with `check_curve(args.curve, "--curve")` for the one-line error."""
    parser.add_argument(
        "--curve",
        default=DEFAULT_CURVE,
        metavar="RULE",
        help=f"how a curve whose {metric} does not rise with rate is made monotonic before BD: pareto "
        "(default: dominated points left out) or monotonic (MPEG's monotonic cubic fit of its values)",
    )


def curve_heading(curve: str) -> str:
    """What a BD table's heading adds for the curve rule: nothing for the default (pareto), whose
    tables read as they always have, else the rule's name."""
    return "" if curve == DEFAULT_CURVE else "monotonic curve fit"


def curve_sentence(curve: str) -> str:
    """What a report's header adds after its BD interpolation for the curve rule: nothing for the
    default, else how the curves were made monotonic and after whom."""
    if curve == DEFAULT_CURVE:
        return ""
    return (
        "; RD curves: monotonic, a curve whose metric does not rise with rate replaced by its "
        "monotonic cubic fit (MPEG's rule, after Wang et al., PCS 2024)"
    )


def is_increasing(metric_by_rate: Sequence[float]) -> bool:
    """Whether the metric strictly increases with rate (values already in rate order)."""
    values = list(metric_by_rate)
    return all(b > a for a, b in zip(values, values[1:], strict=False))


def monotonic_values(rate: Sequence[float], metric: Sequence[float]) -> np.ndarray:
    """The metric values the monotonic rule gives, in the order given: the measured ones when the
    curve strictly increases with rate or cannot be fitted (see the module's notes), else the fit's."""
    r = np.asarray(rate, dtype=np.float64).ravel()
    m = np.asarray(metric, dtype=np.float64).ravel()
    if r.shape != m.shape or r.size < _MIN_POINTS:
        return m.copy()
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(m)) and np.all(r > 0)):
        return m.copy()
    order = np.argsort(r, kind="stable")
    if np.any(np.diff(r[order]) == 0) or is_increasing(m[order]):
        return m.copy()
    out = np.empty_like(m)
    out[order] = monotonic_fit(np.log10(r[order]), m[order])
    return out


def monotonic_fit(
    x: Sequence[float],
    y: Sequence[float],
    floor: float = METRIC_FLOOR,
    ceiling: float = METRIC_CEILING,
) -> np.ndarray:
    """The constrained least-squares cubic's values at x (x strictly increasing, 4+ points).

    Solved on x mapped to [-1, 1], which keeps the 4x4 normal equations well conditioned; the
    mapping is increasing and affine, so the signs of the derivatives, and the fitted values, are
    those of the cubic in x.
    """
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if xs.size < _MIN_POINTS or not np.all(np.diff(xs) > 0):
        raise ValueError(f"monotonic_fit needs {_MIN_POINTS}+ strictly increasing x values, got {xs.tolist()}")
    t = (2.0 * xs - (xs[0] + xs[-1])) / (xs[-1] - xs[0])
    design = np.vander(t, 4)  # columns t^3, t^2, t, 1
    lo, hi = t[0], t[-1]
    # each row g with bound h reads g . b >= h
    g = np.array(
        [
            [-6.0 * lo, -2.0, 0.0, 0.0],  # f''(lowest) <= 0
            [-6.0 * hi, -2.0, 0.0, 0.0],  # f''(highest) <= 0: with the row above, concave throughout
            [3.0 * hi * hi, 2.0 * hi, 1.0, 0.0],  # f'(highest) >= 0: concave, so f' >= 0 throughout
            [lo**3, lo**2, lo, 1.0],  # f(lowest) >= floor
            [-(hi**3), -(hi**2), -hi, -1.0],  # f(highest) <= ceiling
        ]
    )
    h = np.array([0.0, 0.0, 0.0, floor, -ceiling])
    gram, rhs = design.T @ design, design.T @ ys
    tol = 1e-9 * max(1.0, float(np.max(np.abs(ys))), abs(floor), abs(ceiling))
    for k in range(len(h)):
        for active in itertools.combinations(range(len(h)), k):
            coef = _kkt(gram, rhs, g[list(active)], h[list(active)], tol)
            if coef is not None and np.all(g @ coef >= h - tol):
                return design @ coef
    # unreachable for a strictly convex problem with a feasible set (a constant in [floor, ceiling])
    raise ArithmeticError(f"monotonic_fit found no optimum for x={xs.tolist()}, y={ys.tolist()}")


def _kkt(gram: np.ndarray, rhs: np.ndarray, g: np.ndarray, h: np.ndarray, tol: float) -> np.ndarray | None:
    """The least-squares coefficients with the constraints `g . b = h` held as equalities, or None
    when those constraints are dependent or one of them pushes the wrong way (a negative multiplier:
    the optimum leaves that constraint slack)."""
    k = len(h)
    if k and np.linalg.matrix_rank(g) < k:
        return None
    system = np.zeros((4 + k, 4 + k))
    system[:4, :4], system[:4, 4:], system[4:, :4] = gram, -g.T, g
    solution = np.linalg.solve(system, np.concatenate([rhs, h]))
    coef, multipliers = solution[:4], solution[4:]
    if k and not np.all(multipliers >= -tol * max(1.0, math.sqrt(float(np.sum(gram * gram))))):
        return None
    return coef

"""BD analysis of merged points: the anchor of a group, the pareto front of a curve, BD rows.

Roles come from the points (the codec yaml's meta.role, carried in points.csv): the feature
anchor every codec is compared to, the image anchor of the second table, the uncompressed
ceiling. BD-rate itself is vcmbench.metrics.bd (docs/design.md).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vcmbench.errors import MetricError
from vcmbench.metrics.bd import MIN_POINTS, compare
from vcmbench.metrics.curve_fitting import DEFAULT_CURVE, check_curve, monotonic_values
from vcmbench.tables import codec_order, codecs_with_role
from vcmbench.types import TASK_COLUMNS

POOR_OVERLAP = 0.5  # overlap_fraction below this is flagged


WARN = "⚠"


def has_curve(points: pd.DataFrame, codec: str) -> bool:
    sub = points[points.codec == codec]
    return len(sub) >= MIN_POINTS and sub["map"].nunique() > 1


def choose_anchor(points: pd.DataFrame, requested: str | None = None) -> tuple[str, str | None]:
    """The anchor codec of one (dataset, model) group and a note when the request could not be met.

    Default: the first codec whose role is `feature_anchor` and that has a curve, else the
    first codec with at least 4 rate points, else the first codec.
    """
    codecs = codec_order(points)
    if requested:
        if requested in codecs:
            return requested, None
        fallback, _ = choose_anchor(points)
        return fallback, f"the requested anchor {requested!r} has no points here (codecs: {codecs}); using {fallback!r}"
    for c in codecs_with_role(points, "feature_anchor") + codecs:
        if has_curve(points, c):
            return c, None
    return codecs[0], None


@dataclass
class BDRow:
    codec: str
    anchor: str
    bd_rate: float = math.nan
    bd_metric: float = math.nan
    overlap_lo: float = math.nan
    overlap_hi: float = math.nan
    overlap_fraction: float = math.nan
    reason: str | None = None  # why no figure could be computed
    n_failed: int = 0
    dominated: tuple[str, ...] = ()  # "codec rate" of points left out: more bits, no higher metric
    fitted: tuple[str, ...] = ()  # curves whose metric values the monotonic rule replaced by its fit

    @property
    def ok(self) -> bool:
        return self.reason is None

    @property
    def poor_overlap(self) -> bool:
        return self.ok and self.overlap_fraction < POOR_OVERLAP

    @property
    def note(self) -> str:
        if not self.ok:
            return f"not computed: {self.reason}"
        parts = []
        if self.poor_overlap:
            parts.append(f"{WARN} poor overlap")
        if self.n_failed:
            parts.append(f"{WARN} {self.n_failed} failed decode(s) in its points")
        if self.dominated:
            parts.append("dominated point(s) left out (more bits, no higher accuracy): " + ", ".join(self.dominated))
        if self.fitted:
            parts.append("not rising with rate, replaced by a monotonic cubic fit: " + ", ".join(self.fitted))
        return "; ".join(parts)


def _short_reason(exc: MetricError, codec: str, anchor: str) -> str:
    msg = str(exc).split(";")[0].strip()
    msg = re.sub(r"^anchor\b", f"anchor {anchor}", msg)
    msg = re.sub(r"^test\b", codec, msg)
    return msg


def pareto_front(pts: pd.DataFrame, rate_col: str = "bpp", metric: str = "map") -> tuple[pd.DataFrame, list[int]]:
    """The curve's operating points: sorted by rate, each point kept only if its metric beats every
    cheaper point's. A point with more bits and no higher accuracy (a curve saturating at its
    uncompressed accuracy, where detection noise makes mAP wobble) is one no user would pick, and
    BD interpolation needs the metric to rise with rate. Returns (kept, index labels dropped)."""
    pts = pts.sort_values(rate_col, kind="stable")
    keep, dropped = pareto_positions(pd.to_numeric(pts[metric], errors="coerce").to_numpy(float))
    return pts.iloc[keep], [pts.index[i] for i in dropped]


def pareto_positions(metric_by_rate) -> tuple[list[int], list[int]]:
    """pareto_front's rule on metric values already in rate order: (positions kept, dropped). A NaN
    stays in, so the BD check names it."""
    keep, dropped, best = [], [], -math.inf
    for i, value in enumerate(metric_by_rate):
        if value > best:
            keep.append(i)
            best = value
        elif math.isfinite(value):
            dropped.append(i)
        else:
            keep.append(i)
    return keep, dropped


def monotonic_front(pts: pd.DataFrame, rate_col: str = "bpp", metric: str = "map") -> tuple[pd.DataFrame, bool]:
    """The monotonic rule's curve (metrics.curve_fitting): every point, sorted by rate, with the
    metric column replaced by the monotonic cubic fit where the measured one does not rise with
    rate. Returns (points, whether the values were replaced)."""
    pts = pts.sort_values(rate_col, kind="stable")
    measured = pd.to_numeric(pts[metric], errors="coerce").to_numpy(float)
    values = monotonic_values(pd.to_numeric(pts[rate_col], errors="coerce").to_numpy(float), measured)
    if np.array_equal(values, measured, equal_nan=True):
        return pts, False
    return pts.assign(**{metric: values}), True


def bd_row(
    anchor_pts: pd.DataFrame,
    test_pts: pd.DataFrame,
    codec: str,
    anchor: str,
    method: str = "pchip",
    metric: str = "map",
    rate_col: str = "bpp",
    curve: str = DEFAULT_CURVE,
) -> BDRow:
    """BD figures of one codec vs the anchor, each curve first taken through the `curve` rule
    (pareto: dominated points left out; monotonic: a non-rising curve replaced by its fit); a
    comparison that cannot be made gets its reason instead of figures."""
    check_curve(curve)
    row = BDRow(codec, anchor)
    if "n_failed" in test_pts:
        row.n_failed = int(pd.to_numeric(test_pts.n_failed, errors="coerce").fillna(0).sum())
    if curve == "monotonic":
        test_pts, t_fit = monotonic_front(test_pts, rate_col, metric)
        anchor_pts, a_fit = monotonic_front(anchor_pts, rate_col, metric)
        row.fitted = tuple(who for who, fit in ((codec, t_fit), (f"anchor {anchor}", a_fit)) if fit)
    elif len(test_pts) > 1 and len(anchor_pts) > 1:
        dominated = []
        test_front, d_test = pareto_front(test_pts, rate_col, metric)
        anchor_front, d_anchor = pareto_front(anchor_pts, rate_col, metric)
        for who, frame, idx in ((codec, test_pts, d_test), (anchor, anchor_pts, d_anchor)):
            labels = frame.loc[idx, "rate"] if "rate" in frame else pd.Series(idx, dtype=object)
            dominated += [f"{who} {label}" for label in labels.astype(str)]
        row.dominated = tuple(dominated)
        test_pts, anchor_pts = test_front, anchor_front
    for who, pts in ((codec, test_pts), (f"anchor {anchor}", anchor_pts)):
        if len(pts) == 1:
            row.reason = f"{who} has a single rate point (a fixed-rate codec): no curve to compare"
            return row
        if len(pts) < MIN_POINTS:
            row.reason = f"{who} has {len(pts)} rate points, BD-rate needs {MIN_POINTS}"
            return row
    try:
        r = compare(
            anchor_pts.sort_values(rate_col),
            test_pts.sort_values(rate_col),
            rate_col=rate_col,
            metric_col=metric,
            method=method,
        )
    except MetricError as exc:
        row.reason = _short_reason(exc, codec, anchor)
        return row
    row.bd_rate, row.bd_metric = r.bd_rate, r.bd_metric
    row.overlap_lo, row.overlap_hi, row.overlap_fraction = r.overlap_lo, r.overlap_hi, r.overlap_fraction
    return row


def bd_rows(
    points: pd.DataFrame, anchor: str, method: str = "pchip", metric: str = "map", curve: str = DEFAULT_CURVE
) -> list[BDRow]:
    """Every codec of one (dataset, model) group vs the anchor (the anchor itself left out)."""
    a = points[points.codec == anchor]
    return [
        bd_row(a, points[points.codec == c], c, anchor, method, metric, curve=curve)
        for c in codec_order(points)
        if c != anchor
    ]


def uncompressed_line(points: pd.DataFrame) -> tuple[str, float] | None:
    """The accuracy ceiling: the first codec of role `uncompressed` (raw features, lossless image)."""
    for codec in codecs_with_role(points, "uncompressed"):
        values = points[points.codec == codec]["map"].dropna()
        if len(values):
            return f"uncompressed ({codec}) mAP", float(values.iloc[0])
    return None


def task_metrics(points: pd.DataFrame, choice: str | None) -> list[str]:
    """The task metrics a group's report shows, the one its headline BD-rates stand for first:
    `choice` (the run's `task_metric`; None or auto: semseg where the points have mIoU, else
    keypoints where they have keypoint AP, else mask where they have mask AP, else box), then any
    other one the points have (a segmenting or keypoint model's report shows its boxes too)."""
    have = [
        task
        for task, (col, _) in TASK_COLUMNS.items()
        if col in points.columns and pd.to_numeric(points[col], errors="coerce").notna().any()
    ]
    if choice in (None, "auto"):  # the network's own task: pixels' categories, else poses, else masks, else boxes
        first = next((t for t in ("semseg", "keypoints", "mask") if t in have), "box")
    else:
        first = choice
    if first not in have:
        raise MetricError(
            f"task_metric={first}: these points have no {TASK_COLUMNS[first][0]} values (the model "
            f"does not give them, or the set has no such ground truth); use task_metric=box or auto"
        )
    return [first, *(t for t in have if t != first)]


def metric_view(points: pd.DataFrame, task: str) -> pd.DataFrame:
    """The points with `task`'s columns standing as map / ap50, so BD-rates, curves, plots and
    tables read one pair of columns whatever the task (the box columns are kept as they are)."""
    if task == "box":
        return points
    m, a = TASK_COLUMNS[task]
    ap50 = pd.to_numeric(points[a], errors="coerce") if a is not None and a in points.columns else math.nan
    return points.assign(map=pd.to_numeric(points[m], errors="coerce"), ap50=ap50)


def group_metric(points: pd.DataFrame, from_config: str | None) -> str | None:
    """The evaluator of a group: the points' own `metric` column, else the run's dataset config."""
    if "metric" in points.columns:
        named = points["metric"].dropna().astype(str).unique()
        if len(named):
            return str(named[0])
    return from_config


def foreign_codecs(points: pd.DataFrame) -> list[str]:
    """The codecs whose rows say they coded another network's features (the `foreign` column)."""
    if "foreign" not in points.columns:
        return []
    flags = points["foreign"].map(lambda v: str(v).lower() == "true")
    return sorted(set(points.codec[flags]))


def marked_foreign(points: pd.DataFrame, foreign: list[str]) -> pd.DataFrame:
    """The points with each foreign codec's name marked, for the figures' legends."""
    if not foreign:
        return points
    return points.assign(codec=points.codec.map(lambda c: f"{c} ({WARN} foreign network)" if c in foreign else c))

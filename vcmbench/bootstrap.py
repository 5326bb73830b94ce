"""How sure is a BD-rate: a paired bootstrap over the items (images) of a run.

A BD-rate measured on 20 or 50 images is one draw from the images a user could have picked.
Resampling the images with replacement and recomputing everything from the per-item records
(each point's bits and task metric, then the BD-rate of every test-vs-anchor pair) shows how
far it moves. The resample is paired: one draw of images serves every curve, so what two
codecs share (hard images are hard for both) cancels as it does in the point estimate.

Per resample a point's rate is 8 x (drawn bytes) / (drawn pixels), each item counted as many
times as it was drawn, and its metric comes from `metrics.item_matches`: detections matched to
ground truth once per item, aggregated under the draw's weights (weights of all ones give the
points table's mAP to the last bit, which `load_run_items` checks). A task other than the boxes
is resampled the same way where its evaluator scores items from their records (`match_records`:
mIoU from one confusion matrix per image, summed under the weights). The BD-rate of a resample
uses the same curve rule and interpolation as the report's (`analysis.pareto_front`, or the
monotonic fit of `metrics.curve_fitting`, and `metrics.bd`: the fit is redone on each resample's
curve). A resample whose curves give no BD-rate (a curve left with fewer than 4 points by the
pareto rule, mAP ranges that do not overlap, ...) is left out, not imputed, and counted by its
cause (`metrics.bd_causes`): the interval is then conditioned on a resample having a BD-rate, and
the report says how many were dropped and why, so a reader can judge what that conditioning hides.
Reported: the full-set figure, the resamples' median and percentile interval, the share of
resamples with BD-rate below 0, and the dropped resamples by cause. The seed is a setting: the
same seed, the same interval.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from vcmbench.analysis import pareto_positions
from vcmbench.errors import ConfigError, MetricError, VcmbenchError
from vcmbench.metrics.bd import MIN_POINTS, bd_rate
from vcmbench.metrics.bd_causes import NOT_FINITE, failure_cause, kept_too_few
from vcmbench.metrics.curve_fitting import DEFAULT_CURVE, check_curve, monotonic_values
from vcmbench.metrics.evaluators import ItemSet, item_scorer
from vcmbench.metrics.item_matches import ItemMatches, match_items
from vcmbench.process_map import process_map
from vcmbench.records import Record, coco_results, read_records
from vcmbench.settings import DEFAULT_LEVEL, DEFAULT_RESAMPLES, DEFAULT_SEED
from vcmbench.types import TASK_COLUMNS

#: points from which item_points matches them on a pool of processes (one COCO evaluation each)
PARALLEL_POINTS = 16
#: resamples x calls from which the bootstrap's calls go to a pool of processes (process_map):
#: the default report's 1,000 resamples of ~50 points take tens of seconds on one core
PARALLEL_RESAMPLES = 3000


@dataclass
class ItemPoint:
    """One (codec, rate) point's per-item figures: what a resample re-aggregates."""

    codec: str
    rate: str
    bytes: np.ndarray  # (items,)
    pixels: np.ndarray  # (items,)
    matches: ItemMatches  # or any per-item figures with `score(weights)` (an evaluator's match_records)
    column: str = "map"  # the figure of `matches.score` that is the point's metric

    def values(self, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(bpp, metric) per row of weights (None: the full set, one row)."""
        w = np.ones((1, len(self.bytes))) if weights is None else weights
        bpp = 8.0 * (w @ self.bytes) / (w @ self.pixels)
        return bpp, self.matches.score(w)[self.column]


@dataclass
class RunItems:
    """The points of one run, item by item, over the same items (sorted image ids)."""

    dataset: str
    model: str
    item_ids: list[int]
    points: dict[str, list[ItemPoint]]  # codec -> its points

    def curve(self, codec: str) -> list[ItemPoint]:
        return self.points.get(codec, [])


def item_points(
    records: Sequence[Record],
    metric: str,
    annotation_file: str | Path,
    item_ids: Sequence[int],
    points: pd.DataFrame | None = None,
    task: str = "box",
) -> dict[str, list[ItemPoint]]:
    """Group records into per-item points, covering every item. With `points` (the run's
    points table), the records of each (codec, rate) whose bytes add up to that row's are used
    (a run folder can hold records of older settings), and the full-set metric is checked against
    the row's: a mismatch means the records are not those of the table. `task`: whose metric
    (types.TASK_COLUMNS; other than box: an evaluator with `match_records` fills its column)."""
    column = TASK_COLUMNS[task][0]
    scorer = None if task == "box" else item_scorer(column)
    if task != "box" and scorer is None:
        raise VcmbenchError(f"the bootstrap resamples no {column}: its evaluator scores no item alone")
    ids = sorted(int(i) for i in item_ids)
    wanted_ids = set(ids)
    by_key: dict[tuple[str, str, str], dict[int, Record]] = {}
    for r in records:
        if r.image_id in wanted_ids:
            by_key.setdefault((r.codec, r.rate, r.setup), {})[r.image_id] = r
    wanted = None
    if points is not None:
        wanted = {(str(row.codec), str(row.rate)): row for row in points.itertuples()}
    chosen = []
    for (codec, rate, _setup), recs in by_key.items():
        if len(recs) != len(ids):
            continue
        ordered = [recs[i] for i in ids]
        row = wanted.get((codec, rate)) if wanted is not None else None
        if wanted is not None and (row is None or int(row.bytes) != sum(r.bytes for r in ordered)):
            continue
        if any(r.is_sequence for r in ordered):
            raise VcmbenchError(f"{codec} {rate}: sequence records; the bootstrap resamples images only (for now)")
        chosen.append((codec, rate, ordered, row))
    # matching each point to the ground truth is the real evaluator's work, point by point: on the cores
    if scorer is not None:
        items = ItemSet(metric, Path(annotation_file), ids)
        calls = [(scorer.match_records, items, o) for _, _, o, _ in chosen]
        matched = process_map(_call, calls, min_calls=PARALLEL_POINTS)
    else:
        calls = [(metric, annotation_file, coco_results(o), ids) for _, _, o, _ in chosen]
        matched = process_map(match_items, calls, min_calls=PARALLEL_POINTS)
    out: dict[str, list[ItemPoint]] = {}
    for (codec, rate, ordered, row), matches in zip(chosen, matched, strict=True):
        point = ItemPoint(
            codec,
            rate,
            np.array([r.bytes for r in ordered], dtype=np.float64),
            np.array([r.pixels for r in ordered], dtype=np.float64),
            matches,
            column if scorer is not None else "map",
        )
        if row is not None:
            full, want = float(point.values(None)[1][0]), float(getattr(row, column))
            if not (full == want or (math.isnan(full) and math.isnan(want))):
                raise VcmbenchError(
                    f"{codec} {rate}: its records give {column} {full!r} over the full set, the points "
                    f"table {want!r}; the records are not those of this table"
                )
        out.setdefault(codec, []).append(point)
    return out


def _call(function, *args):
    return function(*args)


def load_run_items(run_dir: str | Path, task: str = "box") -> RunItems:
    """A run folder's per-item points of `task`'s metric: its records, its dataset (instantiated from
    the run's own config.resolved.yaml for the ground truth) and its points table (to pick the right
    records)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    run_dir = Path(run_dir)
    for need in ("records.jsonl", "config.resolved.yaml", "points.csv"):
        if not (run_dir / need).is_file():
            raise VcmbenchError(f"{run_dir}: no {need}; the bootstrap needs a run folder made by `vcmbench run`")
    cfg = OmegaConf.load(run_dir / "config.resolved.yaml")
    dataset = instantiate(cfg.dataset)
    if not hasattr(dataset, "annotation_file") or getattr(dataset, "sequences", None) is not None:
        raise VcmbenchError(f"{run_dir}: a video run; the bootstrap resamples images only (for now)")
    points = pd.read_csv(run_dir / "points.csv", dtype={"rate": str, "codec": str}, float_precision="round_trip")
    records = read_records(run_dir / "records.jsonl")
    items = item_points(records, dataset.metric, dataset.annotation_file, dataset.image_ids, points, task)
    first = points.iloc[0] if len(points) else None
    return RunItems(
        str(first.dataset) if first is not None else str(dataset.name),
        str(first.model) if first is not None else "",
        sorted(dataset.image_ids),
        items,
    )


def resample_weights(n_items: int, n_resamples: int, seed: int) -> np.ndarray:
    """(resamples, items): how many times each item is drawn, n_items draws with replacement."""
    rng = np.random.default_rng(int(seed))
    draws = rng.integers(0, n_items, size=(n_resamples, n_items))
    weights = np.zeros((n_resamples, n_items))
    np.add.at(weights, (np.repeat(np.arange(n_resamples), n_items), draws.ravel()), 1.0)
    return weights


@dataclass
class BDInterval:
    codec: str
    anchor: str
    estimate: float  # the full set's BD-rate (%)
    median: float
    lo: float
    hi: float
    p_below_0: float  # share of (valid) resamples with BD-rate < 0
    n_valid: int  # resamples with a BD-rate
    n_resamples: int
    seed: int
    level: float
    reason: str | None = None
    # the resamples without a BD-rate, by cause (metrics.bd_causes), the most frequent first
    dropped: tuple[tuple[str, int], ...] = ()

    @property
    def ok(self) -> bool:
        return self.reason is None and self.n_valid > 0

    @property
    def n_dropped(self) -> int:
        """Resamples without a BD-rate: those left out of the interval (all of them when it has none)."""
        return sum(n for _, n in self.dropped)

    def dropped_note(self) -> str:
        """What a report row says of its dropped resamples: how many of how many, each cause with
        its count, and that the interval is conditioned on the rest ("" when none was dropped).
        Why: a resample left out is not a resample that agrees; an interval over 946 of 1000 draws
        describes images on which both curves keep their shape, and the reader must know which."""
        if not self.n_dropped:
            return ""
        return (
            f"{self.n_dropped} of {self.n_resamples} resamples have no BD-rate ({causes_text(self.dropped)}) "
            "and are left out: the interval and P(BD<0) are conditioned on a resample having a BD-rate"
        )


def causes_text(dropped: Sequence[tuple[str, int]]) -> str:
    """Each cause with its count, in the order given: "cause: n, cause: n"."""
    return ", ".join(f"{cause}: {n}" for cause, n in dropped)


def count_causes(causes: Sequence[str | None]) -> tuple[tuple[str, int], ...]:
    """The causes of the resamples without a BD-rate (None: one with a BD-rate), counted, the most
    frequent first (ties by name, so the order does not depend on the draws' order)."""
    counts = Counter(c for c in causes if c is not None)
    return tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _curves(
    points: list[ItemPoint], weights: np.ndarray | None, cache: dict | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(points, rows) arrays of bpp and map; `cache` keeps each point's values for these weights
    (an anchor's points serve every pair)."""
    cache = {} if cache is None else cache
    for p in points:
        key = (p.codec, p.rate, weights is None)
        if key not in cache:
            cache[key] = p.values(weights)
    vals = [cache[(p.codec, p.rate, weights is None)] for p in points]
    return np.array([v[0] for v in vals]), np.array([v[1] for v in vals])


def _front(rate: np.ndarray, metric: np.ndarray, curve: str = DEFAULT_CURVE) -> tuple[np.ndarray, np.ndarray]:
    """The report's curve rule on one resample's curve: its pareto front (analysis.pareto_positions)
    or every point with the monotonic fit's values (analysis.monotonic_front)."""
    order = np.argsort(rate, kind="stable")
    if curve == "monotonic":
        return rate[order], monotonic_values(rate[order], metric[order])
    keep = order[pareto_positions(metric[order])[0]]
    return rate[keep], metric[keep]


def _bd(
    a_rate: np.ndarray,
    a_metric: np.ndarray,
    t_rate: np.ndarray,
    t_metric: np.ndarray,
    method: str,
    curve: str = DEFAULT_CURVE,
    names: tuple[str, str] = ("the anchor", "the test"),
) -> tuple[float, str | None]:
    """One curve pair's BD-rate after the curve rule and, when it has none (NaN or infinite), why
    (metrics.bd_causes; `names`: the anchor's and the test's, as the cause names them). The value
    is bd_rate's, untouched: the cause is worked out only on a failure, so the draws kept, and
    the interval, are those of the value alone."""
    ar, am = _front(a_rate, a_metric, curve)
    tr, tm = _front(t_rate, t_metric, curve)
    short = [(who, len(r)) for who, r in zip(names, (ar, tr), strict=True) if len(r) < MIN_POINTS]
    if short:
        return math.nan, kept_too_few(short, curve)
    try:
        value = bd_rate(ar, am, tr, tm, method=method)
    except MetricError as exc:
        cause = failure_cause(ar, am, tr, tm, anchor=names[0], test=names[1], rule=curve, method=method)
        return math.nan, cause or str(exc).split(";")[0].strip()
    return value, None if math.isfinite(value) else NOT_FINITE


@dataclass(frozen=True)
class FixedCurve:
    """A curve known only by its points (a reference points table): held fixed, not resampled."""

    codec: str
    rate: np.ndarray
    metric: np.ndarray


def bootstrap_pair(
    test: list[ItemPoint],
    anchor: list[ItemPoint] | FixedCurve,
    weights: np.ndarray,
    *,
    method: str = "pchip",
    level: float = DEFAULT_LEVEL,
    seed: int = DEFAULT_SEED,
    cache: dict | None = None,
    curve: str = DEFAULT_CURVE,
    names: tuple[str, str] | None = None,
) -> BDInterval:
    """BD-rate of `test` vs `anchor` on the full set and on each row of `weights` (the same rows
    for both curves: paired); a FixedCurve anchor stays as it is while the test is resampled.
    `curve`: the rule each curve goes through first (metrics.curve_fitting.CURVES). `names`: how
    the causes of dropped resamples name the anchor's and the test's curve (default "anchor A"
    and the codec; the gate, whose two curves are one codec's, says reference and run)."""
    check_curve(curve)
    fixed = isinstance(anchor, FixedCurve)
    name = test[0].codec if test else "?"
    anchor_name = anchor.codec if fixed else (anchor[0].codec if anchor else "?")
    n = weights.shape[0]
    for who, count in ((name, len(test)), (f"anchor {anchor_name}", len(anchor.rate) if fixed else len(anchor))):
        if count < MIN_POINTS:
            return BDInterval(
                name,
                anchor_name,
                math.nan,
                math.nan,
                math.nan,
                math.nan,
                math.nan,
                0,
                n,
                seed,
                level,
                reason=f"{who} has {count} rate point(s), BD-rate needs {MIN_POINTS}",
            )
    ta, tm = _curves(test, None, cache)
    if fixed:
        aa, am = np.asarray(anchor.rate, dtype=float)[:, None], np.asarray(anchor.metric, dtype=float)[:, None]
        ar, amr = np.repeat(aa, n, axis=1), np.repeat(am, n, axis=1)
    else:
        aa, am = _curves(anchor, None, cache)
        ar, amr = _curves(anchor, weights, cache)
    names = names or (f"anchor {anchor_name}", name)
    estimate = _bd(aa[:, 0], am[:, 0], ta[:, 0], tm[:, 0], method, curve, names)[0]
    tr, tmr = _curves(test, weights, cache)
    drawn = [_bd(ar[:, b], amr[:, b], tr[:, b], tmr[:, b], method, curve, names) for b in range(n)]
    values = np.array([value for value, _ in drawn])
    dropped = count_causes([cause for _, cause in drawn])
    valid = values[np.isfinite(values)]
    if not valid.size:
        return BDInterval(
            name,
            anchor_name,
            estimate,
            math.nan,
            math.nan,
            math.nan,
            math.nan,
            0,
            n,
            seed,
            level,
            reason=f"no resample had a BD-rate ({causes_text(dropped)})",
            dropped=dropped,
        )
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(valid, [tail, 100.0 - tail])
    return BDInterval(
        name,
        anchor_name,
        estimate,
        float(np.median(valid)),
        float(lo),
        float(hi),
        float(np.mean(valid < 0)),
        int(valid.size),
        n,
        seed,
        level,
        dropped=dropped,
    )


def bootstrap_bd(
    items: RunItems,
    anchor: str,
    codecs: Sequence[str],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    method: str = "pchip",
    level: float = DEFAULT_LEVEL,
    cache: dict | None = None,
    curve: str = DEFAULT_CURVE,
) -> list[BDInterval]:
    """Every codec vs the anchor, all on one set of resamples of the run's items. `cache`: each
    point's resampled values, shared by calls with the same items, `n_resamples` and `seed` (the
    report's two BD tables: one matching and one set of scores per point, not one per table)."""
    weights = resample_weights(len(items.item_ids), n_resamples, seed)
    cache = {} if cache is None else cache
    tests = [c for c in codecs if c != anchor]
    # each point scored on every resample once (the anchor's serve every pair), then each pair's
    # BD-rates: independent calls, spread over the cores when there are many (process_map)
    points = [p for c in [anchor, *tests] for p in items.curve(c) if (p.codec, p.rate, False) not in cache]
    heavy = PARALLEL_RESAMPLES // max(n_resamples, 1)
    for p, values in zip(points, process_map(_values, [(p, weights) for p in points], min_calls=heavy), strict=True):
        cache[(p.codec, p.rate, False)] = values
    calls = []
    for c in tests:
        pair = {(p.codec, p.rate) for p in items.curve(c) + items.curve(anchor)}
        own = {k: v for k, v in cache.items() if (k[0], k[1]) in pair}
        calls.append((items.curve(c), items.curve(anchor), weights, method, level, seed, own, curve))
    return process_map(_pair, calls, min_calls=heavy)


def _values(point: ItemPoint, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return point.values(weights)


def _pair(test, anchor, weights, method, level, seed, cache, curve) -> BDInterval:
    return bootstrap_pair(test, anchor, weights, method=method, level=level, seed=seed, cache=cache, curve=curve)


@dataclass(frozen=True)
class BootstrapSettings:
    """The report's and the gate's bootstrap: resamples (0: off), seed, interval level."""

    resamples: int = DEFAULT_RESAMPLES
    seed: int = DEFAULT_SEED
    level: float = DEFAULT_LEVEL

    def check(self, where: str = "bootstrap") -> BootstrapSettings:
        """ConfigError naming the setting: `where`.resamples (a config) or --resamples (`where` "--")."""

        def name(field: str) -> str:
            return f"--{field}" if where == "--" else f"{where}.{field}"

        if self.resamples < 0:
            raise ConfigError(f"{name('resamples')}={self.resamples}: give 0 (off) or a number of resamples, e.g. 1000")
        if not 0.5 <= self.level < 1.0:
            raise ConfigError(f"{name('level')}={self.level}: give the interval's coverage in [0.5, 1), e.g. 0.95")
        return self

    def describe(self, n_items: int | None = None) -> str:
        if not self.resamples:
            return "off"
        over = f"the {n_items} images" if n_items else "the images"
        return (
            f"paired bootstrap over {over}: {self.resamples} resamples, seed {self.seed}, "
            f"{self.level:.0%} percentile intervals"
        )


def items_of_sources(sources: Sequence, dataset: str, model: str, task: str = "box") -> RunItems | None:
    """The per-item points of `task`'s metric of every run folder among `sources` (tables.Source)
    for one (dataset, model), merged like their points tables (a later source's codec wins); None
    when no run folder there has records, or their items differ (no pairing possible)."""
    merged: RunItems | None = None
    for src in sources:
        if src.kind != "run" or not (Path(src.path) / "records.jsonl").is_file():
            continue
        pts = src.points
        if not ((pts.dataset == dataset) & (pts.model == model)).any():
            continue
        items = _load_cached(Path(src.path), task)
        if merged is None:
            merged = RunItems(dataset, model, items.item_ids, dict(items.points))
        elif merged.item_ids == items.item_ids:
            merged.points.update(items.points)
    return merged


_LOADED: dict[tuple[str, float, str], RunItems] = {}


def _load_cached(run_dir: Path, task: str = "box") -> RunItems:
    key = (str(run_dir.resolve()), (run_dir / "records.jsonl").stat().st_mtime, task)
    if key not in _LOADED:
        _LOADED[key] = load_run_items(run_dir, task)
    return _LOADED[key]


def resamples_task(task: str) -> bool:
    """Whether the bootstrap gives intervals on `task`'s metric (box AP, and every task whose
    evaluator scores items alone: mIoU)."""
    return task == "box" or item_scorer(TASK_COLUMNS[task][0]) is not None

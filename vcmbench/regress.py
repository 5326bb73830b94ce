"""`vcmbench regress RUN_DIR --reference anchors/ci/points.csv --tolerance PCT`: a CI gate.

For every codec of the reference points table, the run's curve is compared with the
reference curve of the same dataset and model:

- codecs whose reference has at least 4 rate points with mAP rising with rate: BD-rate of
  the run vs the reference (percent bits at equal mAP, vcmbench.metrics.bd). Worse than
  +tolerance % is a regression.
- codecs whose reference cannot make a BD curve (a single point, such as the lossless
  `raw` / `raw16`, fewer than 4 points, or an mAP that does not vary across its points):
  point by point, matched on the `rate` label. bpp rising by more than tolerance % or mAP
  dropping by more than tolerance % of its reference value is a regression.

Video runs are gated per class of sequences: with a classes table as the reference (the
`classes.csv` a video run writes, e.g. anchors/ci/video-classes.csv), each (class, codec) curve
of the run's classes.csv is compared the same way, in kbps instead of bpp.

Exit status: 0 = no codec regressed; 1 = some codec regressed (each is named with its
figure); 2 = unusable input (a codec or rate point of the reference missing in the run,
too few points, curves that do not overlap, unreadable files).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from vcmbench.analysis import bd_row, pareto_front
from vcmbench.bootstrap import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    BDInterval,
    BootstrapSettings,
    FixedCurve,
    ItemPoint,
    RunItems,
    bootstrap_pair,
    items_of_sources,
    load_run_items,
    resample_weights,
)
from vcmbench.errors import VcmbenchError
from vcmbench.metrics.bd import METHODS, MIN_POINTS
from vcmbench.metrics.curve_fitting import DEFAULT_CURVE, add_curve_argument, check_curve, curve_heading
from vcmbench.tables import codec_order, encoder_of, load_sources, merge_points, read_points, text_table

__all__ = ["EXIT_OK", "EXIT_REGRESSION", "EXIT_UNUSABLE", "Check", "regress", "regress_main", "DEFAULT_REFERENCE"]

EXIT_OK, EXIT_REGRESSION, EXIT_UNUSABLE = 0, 1, 2
DEFAULT_REFERENCE = "anchors/ci/points.csv"
DEFAULT_TOLERANCE = 1.0

OK, BETTER, REGRESSION, UNUSABLE, MISSING = "ok", "ok (better)", "REGRESSION", "UNUSABLE", "MISSING"
ENVIRONMENT = "ENVIRONMENT"  # worse, but on other features: the machine or its settings differ, not the codec
ENV_DIFFERS = "the environment differs: features are not the same (features_hash)"


@dataclass
class Check:
    dataset: str
    model: str
    codec: str
    mode: str  # "BD-rate", "per point" or "-"
    figure: float  # BD-rate (%) or the worst bpp change (%)
    detail: str
    status: str
    summary: str = ""  # why it regressed, for the exit message

    @property
    def failed(self) -> bool:
        return self.status == REGRESSION

    @property
    def unusable(self) -> bool:
        return self.status in (UNUSABLE, MISSING, ENVIRONMENT)


def _bd_ok(ref: pd.DataFrame, metric: str, rate_col: str = "bpp", curve: str = DEFAULT_CURVE) -> bool:
    """Whether the reference makes a BD curve: 4 or more points on its pareto front (a small set's
    noisy metric can leave fewer: such a reference is compared point by point); under the monotonic
    rule every point stays, so 4 or more points whose metric varies."""
    if len(ref) < MIN_POINTS or ref[metric].nunique(dropna=True) <= 1:
        return False
    return curve == "monotonic" or len(pareto_front(ref, rate_col, metric)[0]) >= MIN_POINTS


def _pct(new: float, old: float) -> float:
    if old == 0:
        return 0.0 if new == old else math.copysign(math.inf, new - old)
    return (new / old - 1.0) * 100.0


def _per_point(
    ds: str,
    model: str,
    codec: str,
    ref: pd.DataFrame,
    run: pd.DataFrame,
    tol: float,
    metric: str,
    rate_col: str = "bpp",
) -> Check:
    worst_bpp, details, status, bad = -math.inf, [], OK, []
    for _, r in ref.iterrows():
        match = run[run.rate.astype(str) == str(r.rate)]
        if match.empty:
            return Check(
                ds,
                model,
                codec,
                "per point",
                math.nan,
                f"rate point {r.rate} of the reference is not in the run (run has {sorted(run.rate.astype(str))})",
                UNUSABLE,
            )
        m = match.iloc[-1]
        values = (float(r[rate_col]), float(m[rate_col]), float(r[metric]), float(m[metric]))
        if not all(math.isfinite(v) for v in values):
            return Check(
                ds,
                model,
                codec,
                "per point",
                math.nan,
                f"rate point {r.rate}: {rate_col} or {metric} is missing (NaN)",
                UNUSABLE,
            )
        ref_bpp, run_bpp, ref_m, run_m = values
        bpp_change = _pct(run_bpp, ref_bpp)
        drop = max(0.0, -_pct(run_m, ref_m)) if ref_m > 0 else (0.0 if run_m >= ref_m else math.inf)
        worst_bpp = max(worst_bpp, bpp_change)
        rel = f" ({_pct(run_m, ref_m):+.2f}%)" if ref_m > 0 else ""
        details.append(f"{r.rate}: {rate_col} {bpp_change:+.2f}%, {metric} {run_m - ref_m:+.3f}{rel}")
        if bpp_change > tol:
            bad.append(f"{r.rate} {rate_col} {bpp_change:+.2f}%")
        if drop > tol:
            bad.append(f"{r.rate} {metric} -{drop:.2f}%")
    if bad:
        status = REGRESSION
    front = len(pareto_front(ref, rate_col, metric)[0])
    why = (
        "single rate point"
        if len(ref) == 1
        else (
            f"{metric} does not vary"
            if ref[metric].nunique() <= 1
            else f"{len(ref)} points (< {MIN_POINTS})"
            if len(ref) < MIN_POINTS
            else f"{front} of {len(ref)} points on the pareto front (< {MIN_POINTS})"
        )
    )
    return Check(ds, model, codec, f"per point ({why})", worst_bpp, "; ".join(details), status, ", ".join(bad))


@dataclass
class Significance:
    """The gate on significance (`--alpha`): a codec regresses only when its BD-rate against the
    reference is above the tolerance with confidence 1 - alpha (the bootstrap's one-sided bound).
    `ref_items` None: the reference is a points table only, held at its curve while the run's
    images are resampled; with the reference run's records the resample is paired."""

    alpha: float
    settings: BootstrapSettings
    run_items: RunItems | None
    ref_items: RunItems | None = None


def _bd(
    ds: str,
    model: str,
    codec: str,
    ref: pd.DataFrame,
    run: pd.DataFrame,
    tol: float,
    method: str,
    metric: str,
    rate_col: str = "bpp",
    significance: Significance | None = None,
    curve: str = DEFAULT_CURVE,
) -> Check:
    r = bd_row(ref, run, codec, "reference", method, metric, rate_col, curve)
    if not r.ok:
        return Check(ds, model, codec, "BD-rate", math.nan, r.reason or "", UNUSABLE)
    detail = (
        f"BD-{metric} {r.bd_metric:+.3f}; {metric} range {r.overlap_lo:.3f}..{r.overlap_hi:.3f} "
        f"({r.overlap_fraction:.0%} overlap{', poor' if r.poor_overlap else ''})"
    )
    if r.n_failed:
        detail += f"; {r.n_failed} failed decode(s) in the run"
    if r.fitted:
        detail += f"; monotonic cubic fit of {', '.join(r.fitted)}"
    status = REGRESSION if r.bd_rate > tol else (BETTER if r.bd_rate < -tol else OK)
    if significance is None:
        return Check(ds, model, codec, "BD-rate", r.bd_rate, detail, status, f"BD-rate {r.bd_rate:+.2f}%")
    iv = _interval(significance, codec, method, ref, metric, curve)
    if iv is None or not iv.ok:
        why = "no per-item records of it in the run" if iv is None else iv.reason
        return Check(ds, model, codec, "BD-rate", r.bd_rate, f"{detail}; no bootstrap: {why}", UNUSABLE)
    sure = f"{1 - significance.alpha:.0%}"
    detail = (
        f"{detail}; bootstrap {iv.n_valid}/{iv.n_resamples}, seed {iv.seed}"
        f"{'' if significance.ref_items else ', reference curve held fixed'}: "
        f"{sure} sure BD-rate > {iv.lo:+.2f}% and < {iv.hi:+.2f}%"
    )
    if iv.n_dropped:  # the bounds are of the resamples that had a BD-rate: say how many did not, and why
        detail += f"; {iv.dropped_note()}"
    status = REGRESSION if iv.lo > tol else (BETTER if iv.hi < -tol else OK)
    return Check(
        ds,
        model,
        codec,
        "BD-rate, alpha " + f"{significance.alpha:g}",
        r.bd_rate,
        detail,
        status,
        f"BD-rate {r.bd_rate:+.2f}%, above +{tol:g}% with {sure} confidence (bound {iv.lo:+.2f}%)",
    )


def _interval(
    sig: Significance, codec: str, method: str, ref: pd.DataFrame, metric: str, curve: str = DEFAULT_CURVE
) -> BDInterval | None:
    """One-sided bounds at alpha: the two-sided interval of level 1 - 2 alpha."""
    if sig.run_items is None or not sig.run_items.curve(codec):
        return None
    weights = resample_weights(len(sig.run_items.item_ids), sig.settings.resamples, sig.settings.seed)
    if sig.ref_items is not None:
        if sig.ref_items.item_ids != sig.run_items.item_ids or not sig.ref_items.curve(codec):
            return None
        anchor: list[ItemPoint] | FixedCurve = sig.ref_items.curve(codec)
    else:
        anchor = FixedCurve(codec, ref["bpp"].to_numpy(float), ref[metric].to_numpy(float))
    level, seed = 1 - 2 * sig.alpha, sig.settings.seed
    return bootstrap_pair(
        sig.run_items.curve(codec),
        anchor,
        weights,
        method=method,
        level=level,
        seed=seed,
        curve=curve,
        names=("the reference", "the run"),
    )


def _image_count_mismatch(ref: pd.DataFrame, run: pd.DataFrame) -> str | None:
    """Curves over different image sets differ for reasons other than the code: refuse them.

    A reduced run (dataset.max_images=8) against a reference of 50 images would report the
    subset's difficulty as a regression or hide a real one.
    """
    if "n_images" not in ref.columns or "n_images" not in run.columns:
        return None
    want = sorted({int(n) for n in ref.n_images.dropna()})
    have = sorted({int(n) for n in run.n_images.dropna()})
    if not want or not have or want == have:
        return None
    return (
        f"the reference was measured on {'/'.join(map(str, want))} image(s), the run on "
        f"{'/'.join(map(str, have))}: rerun with dataset.max_images={want[0]} or compare with a reference "
        "made on the same images"
    )


def is_classes_table(table: pd.DataFrame) -> bool:
    """A video run's per-class table (classes.csv): curves per (class, codec), rates in kbps."""
    return "class" in table.columns and "kbps" in table.columns and "sequence" not in table.columns


def regress(
    run: pd.DataFrame,
    reference: pd.DataFrame,
    tolerance: float,
    method: str = "pchip",
    metric: str = "map",
    significance: Significance | None = None,
    curve: str = DEFAULT_CURVE,
) -> list[Check]:
    """One Check per (dataset, model, codec) of the reference; per (dataset, model, class, codec),
    in kbps, when the reference is a classes table. `curve`: the BD curve rule (metrics.curve_fitting)."""
    check_curve(curve)
    video = is_classes_table(reference)
    keys, rate_col = (
        (["dataset", "model", "class", "codec"], "kbps") if video else (["dataset", "model", "codec"], "bpp")
    )
    checks = []
    for key, ref in reference.groupby(keys, sort=False):
        ds, model, codec = key[0], key[1], key[-1]
        mine = run[(run.dataset == ds) & (run.model == model) & (run.codec == codec)]
        if video:
            mine = mine[mine["class"].astype(str) == str(key[2])]
            codec = f"{codec} [class {key[2]}]"
        if mine.empty:
            checks.append(Check(ds, model, codec, "-", math.nan, "not in the run", MISSING))
        elif (why := _image_count_mismatch(ref, mine)) is not None:
            checks.append(Check(ds, model, codec, "-", math.nan, why, UNUSABLE))
        else:
            if _bd_ok(ref, metric, rate_col, curve):
                sig = None if video else significance
                check = _bd(ds, model, codec, ref, mine, tolerance, method, metric, rate_col, sig, curve)
            else:
                check = _per_point(ds, model, codec, ref, mine, tolerance, metric, rate_col)
            changed = _encoder_change(ref, mine, key[-1])
            check = _with_features(check, ref, mine, same_codec=changed is None)
            if changed:
                check.detail = f"{check.detail}; {changed}"
            checks.append(check)
    return checks


def _encoder_change(ref: pd.DataFrame, run: pd.DataFrame, codec: str) -> str | None:
    """A change of encoder or preset (`encoder` column), said in the detail: the figure then
    measures the encoder swap (libvvenc faster -> medium), not a change of the code."""
    old, new = encoder_of(ref, codec), encoder_of(run, codec)
    return f"the encoder differs: {new} here, {old} in the reference" if old and new and old != new else None


def _with_features(check: Check, ref: pd.DataFrame, run: pd.DataFrame, same_codec: bool = True) -> Check:
    """Tell the environment from the codec, where both tables carry feature hashes.

    Other features (another CPU, thread count or determinism mode) move every quantising codec:
    a figure beyond the tolerance is then ENVIRONMENT, not a REGRESSION. Same features and other
    bytes at a rate point mean the codec itself is not deterministic, and the detail says so.
    """
    if "features_hash" not in ref.columns or "features_hash" not in run.columns:
        return check
    pairs = ref.merge(run, on="rate", suffixes=("_ref", "_run"))
    pairs = pairs[(pairs.features_hash_ref.fillna("") != "") & (pairs.features_hash_run.fillna("") != "")]
    if pairs.empty:
        return check
    if (pairs.features_hash_ref != pairs.features_hash_run).any():
        check.detail = f"{check.detail}; {ENV_DIFFERS}"
        if check.status == REGRESSION:
            check.status, check.summary = ENVIRONMENT, ENV_DIFFERS
    elif same_codec and "bytes_ref" in pairs and (pairs.bytes_ref != pairs.bytes_run).any():
        odd = ", ".join(pairs.loc[pairs.bytes_ref != pairs.bytes_run, "rate"].astype(str))
        check.detail = f"{check.detail}; bytes differ on identical features at {odd}: the codec is not deterministic"
    return check


def _table(checks: list[Check], several_groups: bool) -> str:
    rows = [
        {
            "codec": f"{c.dataset}/{c.model}/{c.codec}" if several_groups else c.codec,
            "check": c.mode,
            "BD-rate or bpp (%)": "–" if not math.isfinite(c.figure) else f"{c.figure:+.2f}",
            "status": c.status,
            "detail": c.detail,
        }
        for c in checks
    ]
    return text_table(pd.DataFrame(rows, columns=["codec", "check", "BD-rate or bpp (%)", "status", "detail"]), "llrll")


def regress_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="vcmbench regress",
        description="Compare a run with a reference points table, codec by codec: exit 0 when no codec is "
        "worse than the tolerance, 1 when some codec regressed, 2 on unusable input.",
    )
    ap.add_argument("run", metavar="RUN_DIR", help="run folder (holding points.csv), multirun folder, or points .csv")
    ap.add_argument(
        "--reference", default=DEFAULT_REFERENCE, help=f"reference points table (default: {DEFAULT_REFERENCE})"
    )
    ap.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        metavar="PCT",
        help="largest accepted BD-rate increase in percent; for single-point codecs the largest "
        f"accepted bpp increase and mAP drop, in percent (default: {DEFAULT_TOLERANCE})",
    )
    ap.add_argument("--method", choices=list(METHODS), default="pchip", help="BD interpolation (default: pchip)")
    ap.add_argument("--metric", default="map", help="metric column (default: map)")
    add_curve_argument(ap)
    ap.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="gate on significance: a codec regresses only when its BD-rate is above the tolerance with "
        "confidence 1 - ALPHA (paired bootstrap over the images, from the run's records; pass the "
        "reference as a run folder to pair it too). Default: the fixed-tolerance gate",
    )
    ap.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES, help="bootstrap resamples for --alpha")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help="bootstrap seed for --alpha")
    args = ap.parse_args(argv)
    try:
        check_curve(args.curve, "--curve")
        if not (args.tolerance >= 0 and math.isfinite(args.tolerance)):
            raise VcmbenchError(f"--tolerance {args.tolerance}: give a percentage >= 0 (e.g. 1.0)")
        if args.alpha is not None and not 0 < args.alpha < 0.5:
            raise VcmbenchError(
                f"--alpha {args.alpha}: give the accepted chance of a false alarm in (0, 0.5), e.g. 0.05"
            )
        ref_path = Path(args.reference)
        ref_dir = ref_path if ref_path.is_dir() and (ref_path / "points.csv").is_file() else None
        if ref_dir is not None:
            ref_path = ref_dir / "points.csv"
        if not ref_path.is_file():
            raise VcmbenchError(
                f"reference {ref_path}: no such file; pass --reference PATH to a points table "
                "(e.g. anchors/ci/points.csv) or a run folder"
            )
        reference = read_points(ref_path)
        if is_classes_table(reference):  # a video gate: the run's classes table
            run_classes = Path(args.run) / "classes.csv" if Path(args.run).is_dir() else Path(args.run)
            if not run_classes.is_file():
                raise VcmbenchError(
                    f"{run_classes}: no such file; the reference {ref_path} is a video run's "
                    "classes table, so give the video run's folder (holding classes.csv)"
                )
            run, notes = read_points(run_classes), []
        else:
            run, notes = merge_points(load_sources([args.run]))
        for col in (args.metric,):
            if col not in reference.columns or col not in run.columns:
                raise VcmbenchError(f"column {col!r} missing in {ref_path} or {args.run}; pass --metric COLUMN")
        if reference.empty:
            raise VcmbenchError(f"reference {ref_path} has no rows")
    except VcmbenchError as exc:
        print(f"vcmbench regress: error: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE

    ref_groups = set(zip(reference.dataset, reference.model))
    run_groups = set(zip(run.dataset, run.model))
    if not ref_groups & run_groups:
        print(
            f"vcmbench regress: error: the run holds {sorted(run_groups)} but the reference {ref_path} holds "
            f"{sorted(ref_groups)}: run the sweep with the reference's dataset and model, or pass the matching "
            "--reference",
            file=sys.stderr,
        )
        return EXIT_UNUSABLE

    significance = None
    if args.alpha is not None and not is_classes_table(reference):
        try:
            settings = BootstrapSettings(args.resamples, args.seed).check("--")
            ((ds, model),) = sorted(ref_groups & run_groups)[:1]
            run_items = items_of_sources(load_sources([args.run]), ds, model)
            ref_items = (
                load_run_items(ref_dir) if ref_dir is not None and (ref_dir / "records.jsonl").is_file() else None
            )
        except VcmbenchError as exc:
            print(f"vcmbench regress: error: {exc}", file=sys.stderr)
            return EXIT_UNUSABLE
        significance = Significance(args.alpha, settings, run_items, ref_items)
    checks = regress(run, reference, args.tolerance, args.method, args.metric, significance, args.curve)
    rule = f", {curve_heading(args.curve)}" if curve_heading(args.curve) else ""
    gate = (
        f"significance: alpha {args.alpha:g}, {args.resamples} resamples, seed {args.seed}, "
        f"{'paired with the reference run' if significance and significance.ref_items else 'reference fixed'}; "
        if significance
        else ""
    )
    print(
        f"vcmbench regress: {args.run} vs {ref_path}, tolerance {args.tolerance:g}% "
        f"({gate}BD-rate via {args.method}{rule}; single-point codecs: bpp and {args.metric} point by point)"
    )
    print(_table(checks, len(ref_groups) > 1))
    for n in notes:
        print(f"note: {n}")
    checked = {(c.dataset, c.model, c.codec.split(" [class ")[0]) for c in checks}
    extra = [c for c in codec_order(run) if not any((d, m, c) in checked for d, m in ref_groups)]
    if extra:
        print(f"not in the reference (not checked): {', '.join(extra)}")

    missing = [c for c in checks if c.status == MISSING]
    unusable = [c for c in checks if c.status in (UNUSABLE, ENVIRONMENT)]
    regressed = [c for c in checks if c.failed]
    for c in regressed:
        print(f"REGRESSION: {c.codec}: {c.summary} (tolerance {args.tolerance:g}%)", file=sys.stderr)
    if missing:
        print(
            f"vcmbench regress: error: codec(s) of the reference missing in the run: "
            f"{', '.join(c.codec for c in missing)} (add them to the sweep, e.g. codec=[...])",
            file=sys.stderr,
        )
    for c in unusable:
        print(f"vcmbench regress: error: {c.codec}: cannot compare: {c.detail}", file=sys.stderr)
    if missing or unusable:
        return EXIT_UNUSABLE
    if regressed:
        return EXIT_REGRESSION
    print(f"no regression: {len(checks)} codec(s) within +{args.tolerance:g}%")
    return EXIT_OK

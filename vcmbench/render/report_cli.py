"""`vcmbench report` and `vcmbench bdrate`: their command lines over `vcmbench.render.report`.

`report` writes the report of run folders and points tables (`write_report`, image and video runs
alike) and prints each section's BD-rate table; `bdrate` prints the BD-rate table of two points
tables. Errors are one line and exit status 2, as every command's.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from vcmbench.analysis import POOR_OVERLAP, WARN, bd_row
from vcmbench.bootstrap import DEFAULT_LEVEL, DEFAULT_RESAMPLES, DEFAULT_SEED, BootstrapSettings
from vcmbench.errors import VcmbenchError
from vcmbench.metrics.bd import METHODS, MIN_POINTS
from vcmbench.metrics.curve_fitting import add_curve_argument, check_curve, curve_heading
from vcmbench.render.jinja import MISSING
from vcmbench.render.report import write_report
from vcmbench.render.report_tables import _fmt
from vcmbench.tables import codec_order, codec_title, read_points, text_table


def _default_out(paths: list[str]) -> Path:
    p = Path(paths[0])
    if len(paths) == 1 and p.is_dir():
        return p / "report"
    return Path("results") / "report"


def report_main(argv: list[str], expand_paths: Callable[[list[str]], list] | None = None) -> int:
    """`vcmbench report`; `expand_paths` turns the folders given into the run folders to report (the
    command line passes the merge of sharded sweeps, which lives above rendering)."""
    ap = argparse.ArgumentParser(
        prog="vcmbench report",
        description="Merge the points tables of run folders (and reference tables such as anchors/*.csv) "
        "into report.md, a self-contained report.html, and RD/timing figures (PNG and SVG).",
    )
    ap.add_argument(
        "paths",
        nargs="+",
        metavar="RUN_DIR",
        help="run folder (results/<run>/), a folder of run folders (a multirun sweep), or a points-table .csv",
    )
    ap.add_argument(
        "--anchor",
        metavar="CODEC",
        help="codec every other is compared to (default: the codec of role feature_anchor, else the "
        f"first codec with >= {MIN_POINTS} rate points)",
    )
    ap.add_argument(
        "--out", metavar="DIR", help="output folder (default: RUN_DIR/report for one run, else results/report)"
    )
    ap.add_argument("--method", choices=METHODS, default="pchip", help="BD interpolation (default: pchip)")
    add_curve_argument(ap)
    ap.add_argument(
        "--resamples",
        type=int,
        default=DEFAULT_RESAMPLES,
        help=f"bootstrap resamples of the images for BD-rate intervals (default {DEFAULT_RESAMPLES}; 0: off)",
    )
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help="the bootstrap's seed (written into the report)")
    ap.add_argument("--level", type=float, default=DEFAULT_LEVEL, help="interval coverage (default 0.95)")
    ap.add_argument(
        "--include-foreign",
        action="store_true",
        help="put codecs that coded another network's features than they were trained for (allow_foreign) "
        "in the BD-rate tables too",
    )
    args = ap.parse_args(argv)
    try:
        # a sharded sweep's folder: its shards merged first (metrics over the union of their items)
        check_curve(args.curve, "--curve")
        paths = expand_paths(args.paths) if expand_paths else args.paths
        rep = write_report(
            paths,
            args.out or _default_out(args.paths),
            args.anchor,
            args.method,
            BootstrapSettings(args.resamples, args.seed, args.level),
            args.include_foreign,
            args.curve,
        )
    except VcmbenchError as exc:
        print(f"vcmbench report: error: {exc}", file=sys.stderr)
        return 2
    for g in rep.groups:
        print("\n".join(g.summary()))
    for n in rep.notes:
        print(f"note: {n}")
    print(f"report: {rep.markdown}\n        {rep.html}")
    print("figures: " + " ".join(str(p) for p in rep.figures))
    return 0


# --------------------------------------------------------------------------------------------
# `vcmbench bdrate ANCHOR.csv TEST.csv`
# --------------------------------------------------------------------------------------------


def bdrate_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="vcmbench bdrate", description="BD-rate of TEST vs ANCHOR points tables")
    ap.add_argument("anchor", help="points table (.csv) holding the anchor curve")
    ap.add_argument("test", help="points table (.csv) or run folder holding the codecs to compare")
    ap.add_argument("--anchor-codec", help="codec of ANCHOR.csv to use (default: its only codec)")
    ap.add_argument("--codec", nargs="*", help="codecs of TEST.csv to compare (default: all)")
    ap.add_argument("--method", choices=list(METHODS), default="pchip")
    ap.add_argument("--metric", default="map")
    add_curve_argument(ap)
    args = ap.parse_args(argv)
    try:
        check_curve(args.curve, "--curve")
        anchor = read_points(Path(args.anchor))
        test_path = Path(args.test)
        test = read_points(test_path / "points.csv" if test_path.is_dir() else test_path)
        a_codecs = codec_order(anchor)
        a_codec = args.anchor_codec or (a_codecs[0] if len(a_codecs) == 1 else None)
        if a_codec is None:
            raise VcmbenchError(f"{args.anchor} holds codecs {a_codecs}: choose one with --anchor-codec")
        if a_codec not in a_codecs:
            raise VcmbenchError(f"{args.anchor} has no codec {a_codec!r} (it has {a_codecs})")
        for col in (args.metric,):
            if col not in anchor.columns or col not in test.columns:
                raise VcmbenchError(f"column {col!r} missing in {args.anchor} or {args.test}; pass --metric COLUMN")
        codecs = args.codec or codec_order(test)
        unknown = [c for c in codecs if c not in set(test.codec)]
        if unknown:
            raise VcmbenchError(f"{args.test} has no codec(s) {unknown} (it has {codec_order(test)})")
    except VcmbenchError as exc:
        print(f"vcmbench bdrate: error: {exc}", file=sys.stderr)
        return 2
    a = anchor[anchor.codec == a_codec]
    rows = [bd_row(a, test[test.codec == c], c, a_codec, args.method, args.metric, curve=args.curve) for c in codecs]
    table = pd.DataFrame(
        [
            {
                "codec": r.codec,
                "anchor": r.anchor,
                "bd_rate_%": _fmt(r.bd_rate, ".3f"),
                f"bd_{args.metric}": _fmt(r.bd_metric, ".3f"),
                "overlap": f"{r.overlap_lo:.3f}..{r.overlap_hi:.3f}" if r.ok else MISSING,
                "overlap_%": _fmt(r.overlap_fraction * 100, ".0f"),
                "note": r.note,
            }
            for r in rows
        ]
    )
    print(f"anchor: {codec_title(a, a_codec)}")
    if curve_heading(args.curve):
        print(f"curve: {curve_heading(args.curve)} (curves whose {args.metric} does not rise with rate)")
    print(text_table(table, "llrrrrl"))
    failed = [r for r in rows if not r.ok]
    if any(r.poor_overlap for r in rows):
        print(f"{WARN} poor overlap: the shared mAP range covers less than {POOR_OVERLAP:.0%} of a curve's span")
    for r in failed:
        print(f"vcmbench bdrate: error: {r.codec}: {r.reason}", file=sys.stderr)
    return 2 if failed else 0

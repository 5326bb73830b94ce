"""`vcmbench export --format cttc`: a run's results as MPEG's platform writes them for the FCM CTTC template.

Contributors to the MPEG FCM (Feature Coding for Machines) common test and training conditions
(CTTC) paste per-sequence and per-class results into the group's reporting spreadsheet, from the
csv that the reference software CompressAI-Vision writes (`scripts/metrics/gen_mpeg_cttc_csv.py`
over the pipeline's per-sequence summaries). The export writes, per codec:

* `final_<SET>.csv`, that file as the platform writes it (vcmbench.render.cttc_platform: columns,
  rows, class groups and sequence names of the platform's sets, vcmbench.render.cttc_tables), for
  video runs in `<dataset>__<model>__<codec>/` and for image runs in `<codec>/`;

and, for video runs, vcmbench's own extras beside it (not the platform's):

* `<dataset>__<model>__<codec>-sequences.csv` and `-classes.csv`: the run's own sequences and
  classes (its names, its class grouping, its `rate` labels in the qp column, class times as totals
  over the class's frames) in the columns of `CTTC_LAYOUT`, rate points from the highest bitrate
  to the lowest;
* `-bdrate.csv` for every codec other than the anchor: a BD-rate summary (kbps vs end_accuracy,
  vcmbench.metrics.bd) per sequence and per class. `--curve monotonic` takes its BD-rates on
  MPEG's monotonic cubic fit of curves whose accuracy does not rise with rate
  (vcmbench.metrics.curve_fitting) instead of their pareto fronts; the summary then has a `curve`
  column saying so. The other files keep the measured accuracies either way.

Class rows come from the run's classes.csv: their mAP is evaluated jointly over all the class's
frames, which cannot be rebuilt from per-sequence numbers, so a video export without it is refused.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

import pandas as pd

from vcmbench.analysis import BDRow, bd_row, choose_anchor
from vcmbench.errors import VcmbenchError
from vcmbench.metrics.curve_fitting import DEFAULT_CURVE, add_curve_argument, check_curve, curve_heading
from vcmbench.render.cttc_platform import write_image_final, write_video_final
from vcmbench.tables import REQUIRED_COLUMNS, codec_order, codec_title, encoder_of, groups, text_table

__all__ = [
    "CTTC_LAYOUT",
    "CTTC_COLUMNS",
    "BD_COLUMNS",
    "FORMATS",
    "export_cttc",
    "export_main",
]

FORMATS = ("cttc",)

# (template column, vcmbench column, format) of the extras (`-sequences.csv`, `-classes.csv`);
# "total" formats multiply seconds per frame by `frames`.
CTTC_LAYOUT: tuple[tuple[str, str | None, str], ...] = (
    ("Dataset", "name", "s"),
    ("qp", "rate", "s"),
    ("bitrate (kbps)", "kbps", ".6f"),
    ("end_accuracy", "map", ".4f"),
    ("nn_part_1", "front_s", "total"),
    ("encode", "enc_s", "total"),
    ("decode", "dec_s", "total"),
    ("nn_part_2", "back_s", "total"),
)
CTTC_COLUMNS = [name for name, _, _ in CTTC_LAYOUT]
TIME_FORMAT = ".4f"

# The BD-rate summary (not part of the template: the spreadsheet computes its own BD-rates).
BD_COLUMNS = [
    "level",
    "name",
    "class",
    "anchor",
    "anchor encoder",
    "codec",
    "BD-rate (%)",
    "BD-accuracy",
    "overlap (%)",
    "note",
]

VIDEO_COLUMNS = ["sequence", "class", "kbps", "frames", "fps"]
CLASS_COLUMNS = ["dataset", "model", "codec", "rate", "class", "frames", "kbps", "map"]
_TEXT = {"dataset": str, "model": str, "codec": str, "rate": str, "sequence": str, "class": str}
_NUMERIC = (
    "bpp",
    "kbps",
    "map",
    "ap50",
    "frames",
    "fps",
    "n_images",
    "n_failed",
    "enc_s",
    "dec_s",
    "front_s",
    "back_s",
)


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


def _split(points: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(video points: rows naming a sequence, image points: the others)."""
    if "sequence" not in points.columns:
        return points.iloc[:0], points
    video = points["sequence"].notna() & (points["sequence"].astype(str) != "nan")
    return points[video], points[~video]


def _check_video(points: pd.DataFrame, label: str) -> None:
    missing = [c for c in VIDEO_COLUMNS if c not in points.columns]
    if missing:
        raise VcmbenchError(
            f"{label}: the points lack column(s) {missing}; export --format cttc needs a video run's points "
            f"(columns {VIDEO_COLUMNS} beside {REQUIRED_COLUMNS})"
        )


def _missing_classes(label: str) -> VcmbenchError:
    return VcmbenchError(
        f"{label}: no classes.csv for these points; export --format cttc takes its class rows (kbps over the "
        "class's duration, the metric evaluated jointly over the class's frames) from the run's classes.csv, "
        "which `vcmbench run` writes beside points.csv: pass the run folder holding both"
    )


def _numeric(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for col in _NUMERIC:
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    for col in _TEXT:
        if col in df.columns:
            df[col] = df[col].astype(str)
    return df


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------


def _fmt(value, spec: str) -> str:
    """A cell: '' for a missing number, else the value in `spec`."""
    if spec == "s":
        return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    try:
        f = float(value)
    except (TypeError, ValueError):
        return ""
    return format(f, spec) if math.isfinite(f) else ""


def _template_rows(rows: pd.DataFrame, name_col: str) -> pd.DataFrame:
    """`rows` (already ordered) in the template's columns, as strings."""
    out = []
    for _, r in rows.iterrows():
        cells = {}
        for column, source, spec in CTTC_LAYOUT:
            if source is None:
                cells[column] = ""
            elif source == "name":
                cells[column] = _fmt(r[name_col], "s")
            elif spec == "total":
                per_frame = r.get(source, math.nan)
                cells[column] = _fmt(float(per_frame) * float(r["frames"]), TIME_FORMAT) if pd.notna(per_frame) else ""
            else:
                cells[column] = _fmt(r.get(source, math.nan), spec)
        out.append(cells)
    return pd.DataFrame(out, columns=CTTC_COLUMNS)


def _slug(*parts: str) -> str:
    return "__".join(re.sub(r"[^A-Za-z0-9_.=-]+", "_", str(p)) for p in parts)


# --------------------------------------------------------------------------------------------
# Ordering
# --------------------------------------------------------------------------------------------


def _order(values) -> list[str]:
    return list(dict.fromkeys(str(v) for v in values))


def _layout(points: pd.DataFrame, classes: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """[(class, [sequences])] in the order the run lists them (the dataset's order)."""
    out = []
    for cls in _order(list(points["class"]) + list(classes["class"])):
        out.append((cls, _order(points.loc[points["class"] == cls, "sequence"])))
    return out


def _by_rate(rows: pd.DataFrame) -> pd.DataFrame:
    """Highest bitrate first, as the template lists its rate points."""
    return rows.sort_values("kbps", ascending=False, kind="stable", na_position="last")


# --------------------------------------------------------------------------------------------
# BD-rate summary
# --------------------------------------------------------------------------------------------


def _bd(anchor_rows: pd.DataFrame, test_rows: pd.DataFrame, codec: str, anchor: str, what: str, curve: str) -> BDRow:
    if test_rows.empty:
        return BDRow(codec, anchor, reason=f"{codec} has no points for this {what}")
    if anchor_rows.empty:
        return BDRow(codec, anchor, reason=f"anchor {anchor} has no points for this {what}")
    return bd_row(anchor_rows, test_rows, codec, anchor, metric="map", rate_col="kbps", curve=curve)


def _bd_cells(level: str, name: str, cls: str, row: BDRow) -> dict[str, str]:
    return {
        "level": level,
        "name": name,
        "class": cls,
        "anchor": row.anchor,
        "codec": row.codec,
        "BD-rate (%)": _fmt(row.bd_rate, ".4f"),
        "BD-accuracy": _fmt(row.bd_metric, ".4f"),
        "overlap (%)": _fmt(row.overlap_fraction * 100, ".1f"),
        "note": row.note,
    }


# --------------------------------------------------------------------------------------------
# The export
# --------------------------------------------------------------------------------------------


def export_cttc(
    points: pd.DataFrame,
    classes: pd.DataFrame | None,
    out_dir: Path,
    anchor: str | None = None,
    curve: str = DEFAULT_CURVE,
    label: str = "these points",
) -> list[Path]:
    """Write the platform's `final_<SET>.csv` per codec (vcmbench.render.cttc_platform): for a
    video run's (dataset, model, codec) in `<slug>/`, for an image run's codec in `<codec>/`; and,
    for video runs, the extras `<slug>-sequences.csv`, `<slug>-classes.csv` (CTTC_LAYOUT) and, for
    every codec but the anchor, `<slug>-bdrate.csv` (BD-rate vs the anchor per sequence and per
    class). Returns the paths written. `label` names the input in error messages.

    `anchor`: the codec the BD-rates are taken against (default: per (dataset, model), the
    codec of role feature_anchor, as vcmbench.analysis.choose_anchor picks it). `curve`: the BD
    curve rule (metrics.curve_fitting); other than the default, a `curve` column names it.
    """
    check_curve(curve)
    video, images = _split(points)
    out_dir = Path(out_dir)
    written: list[Path] = []
    if not video.empty:
        _check_video(video, label)
        if classes is None:
            raise _missing_classes(label)
        missing = [c for c in CLASS_COLUMNS if c not in classes.columns]
        if missing:
            raise VcmbenchError(
                f"{label}: classes.csv lacks column(s) {missing} (has {list(classes.columns)}); it needs {CLASS_COLUMNS}"
            )
        written += _export_video(_numeric(video), _numeric(classes), out_dir, anchor, curve, label)
    if not images.empty:
        images = _numeric(images)
        for codec in codec_order(images):
            written += write_image_final(images[images.codec == codec], out_dir / _slug(codec), label)
    return written


def _export_video(
    points: pd.DataFrame, classes: pd.DataFrame, out_dir: Path, anchor: str | None, curve: str, label: str
) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for (dataset, model), pts in groups(points):
        cls_rows = classes[(classes.dataset == dataset) & (classes.model == model)]
        order = _layout(pts, cls_rows)
        chosen, note = choose_anchor(pts, anchor)
        if note:
            print(f"{dataset} / {model}: note: {note}")
        for codec in codec_order(pts):
            seq_pts = pts[pts.codec == codec]
            codec_classes = cls_rows[cls_rows.codec == codec]
            lacking = [c for c in _order(seq_pts["class"]) if c not in set(codec_classes["class"])]
            if lacking:
                raise VcmbenchError(
                    f"{label}: {dataset} / {model}: classes.csv has no rows for class(es) {lacking} of codec "
                    f"{codec!r}; pass the classes.csv the same run wrote beside its points.csv"
                )
            stem = _slug(dataset, model, codec)
            written.append(write_video_final(seq_pts, codec_classes, out_dir / stem, label))
            seq_rows = pd.concat(
                [_by_rate(seq_pts[seq_pts.sequence == s]) for _, seqs in order for s in seqs], ignore_index=True
            )
            class_rows = pd.concat(
                [_by_rate(codec_classes[codec_classes["class"] == c]) for c, _ in order], ignore_index=True
            )
            for suffix, table in (
                ("sequences", _template_rows(seq_rows, "sequence")),
                ("classes", _template_rows(class_rows, "class")),
            ):
                path = out_dir / f"{stem}-{suffix}.csv"
                table.to_csv(path, index=False)
                written.append(path)
            if codec == chosen:
                continue
            written.append(_bd_summary(pts, cls_rows, order, codec, chosen, curve, out_dir / f"{stem}-bdrate.csv"))
    return written


def _bd_summary(pts, cls_rows, order, codec: str, chosen: str, curve: str, path: Path) -> Path:
    """`<slug>-bdrate.csv`: `codec` against the anchor `chosen`, per sequence then per class."""
    seq_pts, codec_classes = pts[pts.codec == codec], cls_rows[cls_rows.codec == codec]
    anchor_pts, anchor_classes = pts[pts.codec == chosen], cls_rows[cls_rows.codec == chosen]
    bd = []
    for cls, seqs in order:
        for s in seqs:
            a, t = anchor_pts[anchor_pts.sequence == s], seq_pts[seq_pts.sequence == s]
            bd.append(_bd_cells("sequence", s, cls, _bd(a, t, codec, chosen, "sequence", curve)))
    for cls, _ in order:
        a, t = anchor_classes[anchor_classes["class"] == cls], codec_classes[codec_classes["class"] == cls]
        bd.append(_bd_cells("class", cls, cls, _bd(a, t, codec, chosen, "class", curve)))
    summary = pd.DataFrame(bd, columns=BD_COLUMNS).assign(**{"anchor encoder": encoder_of(pts, chosen)})
    if curve_heading(curve):  # the default's file keeps its columns
        summary.insert(summary.columns.get_loc("note"), "curve", curve)
    summary.to_csv(path, index=False)
    dataset, model = pts.dataset.iloc[0], pts.model.iloc[0]
    summary = summary[summary.level == "class"][["name", "BD-rate (%)", "BD-accuracy", "note"]]
    rule = f", {curve_heading(curve)}" if curve_heading(curve) else ""
    print(f"{dataset} / {model}: {codec} vs {codec_title(pts, chosen)} (BD-rate on kbps, per class{rule})")
    print(text_table(summary, "lrrl"))
    return path


# --------------------------------------------------------------------------------------------
# `vcmbench export --format cttc RUN [RUN...]`
# --------------------------------------------------------------------------------------------


def _read(path: Path, what: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=_TEXT)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise VcmbenchError(f"{path}: cannot read it as a {what} (csv): {exc}") from None


def _classes_beside(points_csv: Path) -> Path:
    """Where a run keeps the class rows of its points: classes.csv beside points.csv; for another
    points file NAME.csv, NAME.classes.csv beside it."""
    if points_csv.name == "points.csv":
        return points_csv.with_name("classes.csv")
    return points_csv.with_name(f"{points_csv.stem}.classes.csv")


def _points_files(raw: str) -> list[Path]:
    p = Path(raw)
    if p.is_file():
        return [p]
    if p.is_dir():
        if (p / "points.csv").is_file():
            return [p / "points.csv"]
        found = sorted(p.rglob("points.csv"))
        if found:
            return found
        raise VcmbenchError(
            f"{p}: no points.csv in this folder or below it; pass a run's folder (results/<run>/, "
            "holding points.csv and, for a video run, classes.csv) or a points .csv"
        )
    raise VcmbenchError(
        f"{p}: no such file or folder; pass a run's folder (holding points.csv and, for a video run, classes.csv)"
    )


def load_run(raw: str) -> tuple[pd.DataFrame, pd.DataFrame | None, list[Path]]:
    """The points and class rows (None for an image run) of one RUN argument (a run folder, a sweep
    folder, a points .csv), and the points files read."""
    points, classes = [], []
    files = _points_files(raw)
    for pts_csv in files:
        pts = _read(pts_csv, "points table")
        missing = [c for c in REQUIRED_COLUMNS if c not in pts.columns]
        if missing:
            raise VcmbenchError(f"{pts_csv}: not a points table: column(s) {missing} missing (has {list(pts.columns)})")
        points.append(pts)
        if "sequence" not in pts.columns:
            continue  # an image run: no class rows
        _check_video(pts, str(pts_csv))
        cls_csv = _classes_beside(pts_csv)
        if not cls_csv.is_file():
            raise _missing_classes(f"{raw} (expected {cls_csv})")
        classes.append(_read(cls_csv, "classes table"))
    return (
        pd.concat(points, ignore_index=True),
        pd.concat(classes, ignore_index=True) if classes else None,
        files,
    )


def _merge(frames: list[pd.DataFrame], key: list[str], what: str) -> pd.DataFrame | None:
    if not frames:
        return None
    merged = pd.concat(frames, ignore_index=True, sort=False)
    dup = merged.duplicated([k for k in key if k in merged.columns], keep="last")
    if dup.any():
        print(f"note: {int(dup.sum())} {what} row(s) given twice; the later RUN's are used")
    return merged[~dup].reset_index(drop=True)


def _default_out(raw: str) -> Path:
    p = Path(raw)
    return (p if p.is_dir() else p.parent) / "export" / "cttc"


def export_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="vcmbench export",
        description="Write a run's results as MPEG's platform writes them for the FCM CTTC reporting template "
        "(final_<SET>.csv per codec: gen_mpeg_cttc_csv.py's layout), and, for a video run, vcmbench's own "
        "per-sequence and per-class CSVs and a BD-rate summary (kbps vs end accuracy) of every codec "
        "against the anchor.",
    )
    ap.add_argument("--format", required=True, choices=FORMATS, help="export format (cttc: MPEG FCM CTTC template)")
    ap.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="run folder (results/<run>/ holding points.csv and, for a video run, classes.csv), a folder "
        "of run folders, or a points .csv (a video run's class rows: classes.csv beside points.csv, "
        "else NAME.classes.csv beside NAME.csv)",
    )
    ap.add_argument("--out", metavar="DIR", help="output folder (default: <first RUN>/export/cttc)")
    ap.add_argument(
        "--anchor",
        metavar="CODEC",
        help="codec the BD-rates are taken against (default: the codec of role feature_anchor)",
    )
    add_curve_argument(ap, "accuracy")
    args = ap.parse_args(argv)
    try:
        check_curve(args.curve, "--curve")
        loaded = [load_run(raw) for raw in args.runs]
        points = _merge([p for p, _, _ in loaded], ["dataset", "model", "codec", "rate", "sequence"], "points")
        classes = _merge(
            [c for _, c, _ in loaded if c is not None], ["dataset", "model", "codec", "rate", "class"], "classes"
        )
        files = [f for _, _, fs in loaded for f in fs]
        label = str(files[0]) if len(files) == 1 else ", ".join(args.runs)
        out = Path(args.out) if args.out else _default_out(args.runs[0])
        written = export_cttc(points, classes, out, args.anchor, args.curve, label)
    except VcmbenchError as exc:
        print(f"vcmbench: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    print(f"cttc export: {len(written)} file(s) under {out}")
    for p in written:
        print(f"  {p}")
    return 0

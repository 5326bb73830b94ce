"""The report of a video run: per-class RD plots in kbps, per-class and per-sequence BD tables.

A video run writes points.csv (one row per sequence, codec and rate) and classes.csv (one row per
class of sequences, codec and rate, metrics recomputed jointly over the class's frames). The FCM
CTC compares codecs per class, so the report's curves and BD-rates are the classes' (rate in
kbps, log x), with each sequence's BD-rate below for the detail; the tables a contributor pastes
into MPEG's template come from `vcmbench export --format cttc RUN`.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from vcmbench.analysis import BDRow, bd_row, choose_anchor
from vcmbench.errors import VcmbenchError
from vcmbench.render.jinja import CSS, templates
from vcmbench.render.plots import rd_plot
from vcmbench.render.reproducibility import statement
from vcmbench.tables import codec_order, codec_title, read_points
from vcmbench.timing_table import describe, read_timing


def metric_label(metric: str) -> str:
    """The axis label of a video run's task metric: MOTA for tracking sets, else its evaluator's."""
    from vcmbench.metrics.evaluators import registered

    evaluator = registered().get(metric)
    return "MOTA (%)" if metric == "mota" else f"{evaluator.label} (%)" if evaluator else metric


SHOWN = ["codec", "rate", "kbps", "map", "ap", "ap50", "mota", "idf1", "hota", "n_failed", "enc_s", "dec_s"]


def is_video_run(path: Path) -> bool:
    """A run folder whose points are per sequence (it has the classes table beside them)."""
    return (Path(path) / "classes.csv").is_file()


def bd_table(points: pd.DataFrame, key: str, anchor: str, method: str, metric: str = "map") -> pd.DataFrame:
    """BD-rate (kbps) of every codec vs the anchor at equal `metric`, per value of `key` (class or sequence)."""
    rows = []
    for name in list(dict.fromkeys(points[key])):
        sub = points[points[key] == name]
        for codec in codec_order(sub):
            if codec == anchor:
                continue
            r: BDRow = bd_row(
                sub[sub.codec == anchor], sub[sub.codec == codec], codec, anchor, method, metric, rate_col="kbps"
            )
            rows.append(
                {
                    key: name,
                    "codec": codec,
                    "BD-rate (%)": _fmt(r.bd_rate, "+.2f"),
                    "BD-metric": _fmt(r.bd_metric, "+.3f"),
                    "overlap": f"{r.overlap_fraction * 100:.0f}%" if r.ok else "—",
                    "note": r.note,
                }
            )
    return pd.DataFrame(rows, columns=[key, "codec", "BD-rate (%)", "BD-metric", "overlap", "note"])


def _fmt(v: float, spec: str) -> str:
    return "—" if pd.isna(v) else format(v, spec)


def _rounded(df: pd.DataFrame) -> pd.DataFrame:
    out = df[[c for c in SHOWN if c in df.columns]].copy()
    for c in out.columns:
        if pd.api.types.is_float_dtype(out[c]):
            out[c] = out[c].map(lambda v: "—" if pd.isna(v) else f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}")
    return out


def _speed(run_dir: Path) -> dict[str, object]:
    """The run's timing pass (vcmbench.timing_pass) as a table of seconds per frame, and how it was
    taken; the per-sequence rows keep the sweep's own (contended) times."""
    timing = read_timing(run_dir)
    if timing is None:
        return {"speed": None, "speed_note": None}
    table = timing[["codec", "rate", "enc_s", "dec_s"]].rename(columns={"enc_s": "enc s/frame", "dec_s": "dec s/frame"})
    return {"speed": table.round(4), "speed_note": describe(timing)}


def write_video_report(run_dir: Path, out_dir: Path, anchor: str | None = None, method: str = "pchip") -> Path:
    """report.md and report.html (figures embedded) of one video run; returns the markdown path."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    points = read_points(run_dir / "points.csv")
    classes = read_points(run_dir / "classes.csv")
    if points.empty or classes.empty:
        raise VcmbenchError(f"{run_dir}: the video run has no complete rate points yet; finish the run first")
    chosen, note = choose_anchor(classes, anchor)
    metric = str(classes["metric"].iloc[0])
    label = metric_label(metric)
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = []
    for cls in list(dict.fromkeys(classes["class"])):
        sub = classes[classes["class"] == cls]
        stem = out_dir / "figures" / f"rd_class_{cls}"
        pngs = [
            p
            for p in rd_plot(
                sub,
                stem,
                title=f"class {cls}: {label} vs kbps",
                anchor=chosen,
                metric="map",
                metric_label=label,
                rate_col="kbps",
            )
            if p.suffix == ".png"
        ]
        sections.append(
            {
                "name": cls,
                "table": _rounded(sub),
                "figure": pngs[0],
                "figure_rel": pngs[0].relative_to(out_dir).as_posix(),
            }
        )
    context = {
        "title": f"{points['dataset'].iloc[0]} / {points['model'].iloc[0]}",
        "intro": (
            f"Generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} from {run_dir}. Per class of "
            f"sequences: rate = the duration-weighted mean of its sequences' kbps, {label} recomputed over "
            f"the class's frames jointly. BD-rates in kbps vs **{codec_title(classes, chosen)}** ({method}); negative = fewer bits "
            "for the same accuracy. The MPEG template's tables: `vcmbench export --format cttc RUN`."
        ),
        "reproducibility": statement([(str(run_dir), points, run_dir)]),
        "note": note,
        "by_class": bd_table(classes, "class", chosen, method),
        "by_sequence": bd_table(points, "sequence", chosen, method),
        # tracking sets: MOTA is the task metric, the detections' AP is steadier on few frames
        "by_class_ap": bd_table(classes, "class", chosen, method, "ap") if metric == "mota" else None,
        "points": _rounded(points).assign(sequence=points["sequence"]),
        "sections": sections,
        "css": CSS,
        **_speed(run_dir),
    }
    (out_dir / "report.md").write_text(
        templates(autoescape=False).get_template("video_report.md.j2").render(context).rstrip("\n") + "\n",
        encoding="utf-8",
    )
    for section in sections:
        section["png_base64"] = base64.b64encode(section["figure"].read_bytes()).decode("ascii")
    (out_dir / "report.html").write_text(
        templates(autoescape=True).get_template("video_report.html.j2").render(context), encoding="utf-8"
    )
    return out_dir / "report.md"

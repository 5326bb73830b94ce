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
from vcmbench.render.plots import rd_plot
from vcmbench.tables import codec_order, md_table, read_points

METRIC_LABELS = {"mota": "MOTA (%)", "coco": "COCO AP@[.5:.95] (%)", "oid": "OpenImages mAP@0.5 (%)"}
SHOWN = ["codec", "rate", "kbps", "map", "ap", "ap50", "mota", "idf1", "hota", "n_failed", "enc_s", "dec_s"]


def is_video_run(path: Path) -> bool:
    """A run folder whose points are per sequence (it has the classes table beside them)."""
    return (Path(path) / "classes.csv").is_file()


def bd_table(points: pd.DataFrame, key: str, anchor: str, method: str) -> pd.DataFrame:
    """BD-rate (kbps) of every codec vs the anchor, per value of `key` (class or sequence)."""
    rows = []
    for name in list(dict.fromkeys(points[key])):
        sub = points[points[key] == name]
        for codec in codec_order(sub):
            if codec == anchor:
                continue
            r: BDRow = bd_row(sub[sub.codec == anchor], sub[sub.codec == codec], codec, anchor, method,
                              rate_col="kbps")
            rows.append({key: name, "codec": codec, "BD-rate (%)": _fmt(r.bd_rate, "+.2f"),
                         "BD-metric": _fmt(r.bd_metric, "+.3f"),
                         "overlap": f"{r.overlap_fraction * 100:.0f}%" if r.ok else "—", "note": r.note})
    return pd.DataFrame(rows, columns=[key, "codec", "BD-rate (%)", "BD-metric", "overlap", "note"])


def _fmt(v: float, spec: str) -> str:
    return "—" if pd.isna(v) else format(v, spec)


def _rounded(df: pd.DataFrame) -> pd.DataFrame:
    out = df[[c for c in SHOWN if c in df.columns]].copy()
    for c in out.columns:
        if pd.api.types.is_float_dtype(out[c]):
            out[c] = out[c].map(lambda v: "—" if pd.isna(v) else f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}")
    return out


def write_video_report(run_dir: Path, out_dir: Path, anchor: str | None = None, method: str = "pchip") -> Path:
    """report.md and report.html (figures embedded) of one video run; returns the markdown path."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    points = read_points(run_dir / "points.csv")
    classes = read_points(run_dir / "classes.csv")
    if points.empty or classes.empty:
        raise VcmbenchError(f"{run_dir}: the video run has no complete rate points yet; finish the run first")
    chosen, note = choose_anchor(classes, anchor)
    metric = str(classes["metric"].iloc[0])
    label = METRIC_LABELS.get(metric, metric)
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = []
    for cls in list(dict.fromkeys(classes["class"])):
        sub = classes[classes["class"] == cls]
        stem = out_dir / "figures" / f"rd_class_{cls}"
        pngs = [p for p in rd_plot(sub, stem, title=f"class {cls}: {label} vs kbps", anchor=chosen, metric="map",
                                   metric_label=label, rate_col="kbps") if p.suffix == ".png"]
        sections.append({"name": cls, "table": _rounded(sub), "figure": pngs[0]})
    by_class = bd_table(classes, "class", chosen, method)
    by_sequence = bd_table(points, "sequence", chosen, method)
    title = f"{points['dataset'].iloc[0]} / {points['model'].iloc[0]}"
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    intro = (f"Generated {generated} from {run_dir}. Per class of sequences: rate = the duration-weighted "
             f"mean of its sequences' kbps, {label} recomputed over the class's frames jointly. BD-rates in kbps "
             f"vs **{chosen}** ({method}); negative = fewer bits for the same accuracy.")
    md = [f"# vcmbench video report: {title}", "", intro, ""] + ([f"> note: {note}", ""] if note else [])
    md += ["## BD-rate per class", "", md_table(by_class), "", "## BD-rate per sequence", "", md_table(by_sequence), ""]
    html = [f"<h1>vcmbench video report: {title}</h1>", f"<p>{intro}</p>", "<h2>BD-rate per class</h2>",
            by_class.to_html(index=False, border=0), "<h2>BD-rate per sequence</h2>",
            by_sequence.to_html(index=False, border=0)]
    for s in sections:
        rel = s["figure"].relative_to(out_dir)
        md += [f"## Class {s['name']}", "", f"![class {s['name']}]({rel})", "", md_table(s["table"]), ""]
        png = base64.b64encode(s["figure"].read_bytes()).decode("ascii")
        html += [f"<h2>Class {s['name']}</h2>", f'<img alt="class {s["name"]}" src="data:image/png;base64,{png}">',
                 s["table"].to_html(index=False, border=0)]
    md += ["## Rate points per sequence", "", md_table(_rounded(points).assign(sequence=points["sequence"])), ""]
    (out_dir / "report.md").write_text("\n".join(md), encoding="utf-8")
    (out_dir / "report.html").write_text(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>vcmbench video report</title>"
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.2em .5em}img{max-width:100%}</style></head><body>"
        + "\n".join(html) + "</body></html>\n", encoding="utf-8")
    return out_dir / "report.md"

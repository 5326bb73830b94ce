"""The section of a video run's report: per-class RD plots in kbps, per-class and per-sequence BD tables.

A video run writes points.csv (one row per sequence, codec and rate) and classes.csv (one row per
class of sequences, codec and rate, metrics recomputed jointly over the class's frames). The FCM
CTC compares codecs per class, so the section's curves and leading BD-rates are the classes' (rate
in kbps, log x), with each sequence's BD-rate below for the detail; the tables a contributor pastes
into MPEG's template come from `vcmbench export --format cttc RUN`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from vcmbench.analysis import BDRow, bd_row, choose_anchor
from vcmbench.errors import VcmbenchError
from vcmbench.metrics.curve_fitting import DEFAULT_CURVE, curve_heading
from vcmbench.metrics.evaluators import axis_label, class_rule, scores_boxes
from vcmbench.render.jinja import MISSING, figure_align
from vcmbench.render.sections import block, figure, section
from vcmbench.tables import Source, codec_order, codec_title, read_points, text_table
from vcmbench.timing_table import describe, read_timing

#: the columns of the per-class and per-sequence rate-point tables, where the run has them
SHOWN = ["codec", "rate", "kbps", "map", "ap", "ap50", "mota", "idf1", "hota", "miou", "n_failed", "enc_s", "dec_s"]
OPTIONAL = ("ap", "ap50", "mota", "idf1", "hota", "miou")  # shown where the run has them
#: a tracking set's `tracker` column (vision.trackers) in the section's words
TRACKERS = {
    "jde": "JDE's own tracker on the decoded detections and their appearance embeddings (embedding "
    "association gated by motion, then IoU, Kalman filter), as the MPEG FCM tracking conditions run it",
    "bytetrack": "vcmbench's ByteTrack-style tracker on the decoded boxes alone (not JDE's: its MOTA is not a "
    "CTTC report's)",
}


@dataclass
class VideoSection:
    """The report's section of one video run: its classes' and sequences' tables, BD rows and figures."""

    run_dir: Path
    points: pd.DataFrame  # per sequence, with the sweep's own (contended) times
    classes: pd.DataFrame
    anchor: str
    method: str
    metric: str  # the evaluator whose headline is the points' `map` (a tracking set's: mota)
    label: str  # its axis label
    notes: list[str] = field(default_factory=list)
    figures: dict[str, list[Path]] = field(default_factory=dict)  # class -> [png, svg]
    curve: str = DEFAULT_CURVE  # the BD rows' curve rule (metrics.curve_fitting), named in the headings

    @property
    def title(self) -> str:
        """The section's heading, as an image run's: dataset / model."""
        return f"{self.points['dataset'].iloc[0]} / {self.points['model'].iloc[0]}"

    def by_class(self, metric: str = "map") -> pd.DataFrame:
        """The classes' BD-rates (kbps) vs the anchor at equal `metric`: the CTC's comparison."""
        return bd_table(self.classes, "class", self.anchor, self.method, metric, self.curve)

    def context(self, out_dir: Path, sources: list[Source]) -> dict:
        """The section as the templates render it: per-class figures, BD-rates per class (and at equal
        detection AP on tracking sets) and per sequence, then each class's points, the codec speed and
        the per-sequence points."""
        lead = (
            f"Per class of sequences: rate = the duration-weighted mean of its sequences' kbps, {self.label} "
            f"{class_rule(self.metric)}. BD-rates in kbps vs "
            f"**{codec_title(self.classes, self.anchor)}** ({self.method}{self._rule}); negative = fewer bits for the same "
            "accuracy. The MPEG template's tables: `vcmbench export --format cttc RUN`."
        ) + self._tracked
        answer = [_bd_block(f"BD-rate per class{self._rule}", self.by_class())]
        # e.g. MOTA of a tracking set: the detections' AP is steadier (a set scored by mIoU alone has none)
        if not scores_boxes(self.metric) and _has_values(self.classes, "ap"):
            answer.append(_bd_block(f"BD-rate per class at equal detection AP{self._rule}", self.by_class("ap")))
        per_sequence = bd_table(self.points, "sequence", self.anchor, self.method, curve=self.curve)
        answer.append(_bd_block(f"BD-rate per sequence{self._rule}", per_sequence))
        details = [
            _block(f"Class {name}", _rounded(self.classes[self.classes["class"] == name])) for name in self._class_names
        ]
        timing = read_timing(self.run_dir)
        if timing is not None:  # each codec timed alone; the per-sequence rows keep the sweep's own times
            speed = timing[["codec", "rate", "enc_s", "dec_s"]].rename(
                columns={"enc_s": "enc s/frame", "dec_s": "dec s/frame"}
            )
            details.append(_block("Codec speed", speed.round(4), legends=[f"{describe(timing)}."]))
        details.append(
            _block("Rate points per sequence", _rounded(self.points).assign(sequence=self.points["sequence"]))
        )
        figures = [
            figure(out_dir, paths, f"class {name}: {self.label} vs kbps") for name, paths in self.figures.items()
        ]
        return section(self.title, [lead], self.notes, figures, answer, details)

    def summary(self) -> list[str]:
        """The per-class BD-rate table `vcmbench report` prints, and the notes."""
        by_class = self.by_class()
        head = f"{self.title}: BD-rate per class vs {codec_title(self.classes, self.anchor)}{self._rule}"
        table = text_table(by_class, figure_align(by_class)) if len(by_class) else "  (no other codec)"
        return [head, table] + [f"  note: {n}" for n in self.notes]

    @property
    def _tracked(self) -> str:
        """Which tracker made the tracks scored (a tracking set's `tracker` column), as a sentence."""
        kinds = list(dict.fromkeys(self.classes["tracker"].dropna())) if "tracker" in self.classes else []
        if not kinds:
            return ""
        said = ", ".join(TRACKERS.get(str(k), f"`{k}`") for k in kinds)
        return f" Tracks: {said} (`tracker.kind`; another tracker re-scores the run without recoding)."

    @property
    def _rule(self) -> str:
        """The curve rule as headings name it (nothing for the default, pareto)."""
        named = curve_heading(self.curve)
        return f", {named}" if named else ""

    @property
    def _class_names(self) -> list[str]:
        return list(dict.fromkeys(self.classes["class"]))


def video_section(
    source: Source, out_dir: Path, anchor: str | None, method: str, curve: str = DEFAULT_CURVE
) -> VideoSection:
    """Read a video run's tables, choose its anchor on the classes and draw each class's RD curves."""
    from vcmbench.render.plots import rd_plot

    run_dir = source.path
    if not (run_dir / "classes.csv").is_file():
        raise VcmbenchError(
            f"{run_dir}: a video run (points per sequence) without classes.csv, which its report compares "
            "codecs on; finish the run (`vcmbench run` resumes it) or merge its shards (`vcmbench merge`)"
        )
    # read again, not the source's points: those carry the timing pass's times, these the sweep's own
    points = read_points(run_dir / "points.csv")
    classes = read_points(run_dir / "classes.csv")
    if points.empty or classes.empty:
        raise VcmbenchError(f"{run_dir}: the video run has no complete rate points yet; finish the run first")
    chosen, note = choose_anchor(classes, anchor)
    metric = str(classes["metric"].iloc[0])
    sec = VideoSection(run_dir, points, classes, chosen, method, metric, axis_label(metric), curve=curve)
    if note:
        sec.notes.append(note)
    for name in sec._class_names:
        sec.figures[name] = rd_plot(
            classes[classes["class"] == name],
            out_dir / "figures" / f"rd_class_{name}",
            title=f"class {name}: {sec.label} vs kbps",
            anchor=chosen,
            metric="map",
            metric_label=sec.label,
            rate_col="kbps",
        )
    return sec


def bd_table(
    points: pd.DataFrame, key: str, anchor: str, method: str, metric: str = "map", curve: str = DEFAULT_CURVE
) -> pd.DataFrame:
    """BD-rate (kbps) of every codec vs the anchor at equal `metric`, per value of `key` (class or sequence)."""
    rows = []
    for name in list(dict.fromkeys(points[key])):
        sub = points[points[key] == name]
        for codec in codec_order(sub):
            if codec == anchor:
                continue
            r: BDRow = bd_row(
                sub[sub.codec == anchor],
                sub[sub.codec == codec],
                codec,
                anchor,
                method,
                metric,
                rate_col="kbps",
                curve=curve,
            )
            rows.append(
                {
                    key: name,
                    "codec": codec,
                    "BD-rate (%)": _fmt(r.bd_rate, "+.2f"),
                    "BD-metric": _fmt(r.bd_metric, "+.3f"),
                    "overlap": f"{r.overlap_fraction * 100:.0f}%" if r.ok else MISSING,
                    "note": r.note,
                }
            )
    return pd.DataFrame(rows, columns=[key, "codec", "BD-rate (%)", "BD-metric", "overlap", "note"])


def _bd_block(heading: str, table: pd.DataFrame) -> dict:
    """A BD-rate table of the section (the HTML styles its note column as text)."""
    return block(heading, table, figure_align(table), bd=True)


def _block(heading: str, table: pd.DataFrame, legends: list[str] | None = None) -> dict:
    """A detail table, aligned by its cells: names left, figures right."""
    return block(heading, table, figure_align(table), legends=legends)


def _has_values(table: pd.DataFrame, column: str) -> bool:
    return column in table.columns and bool(pd.to_numeric(table[column], errors="coerce").notna().any())


def _fmt(v: float, spec: str) -> str:
    return MISSING if pd.isna(v) else format(v, spec)


def _rounded(df: pd.DataFrame) -> pd.DataFrame:
    """The SHOWN columns the table has (a metric column without any value left out: the box AP of a
    set scored by mIoU alone), floats to 4 significant digits (large ones whole)."""
    empty = {c for c in OPTIONAL if c in df.columns and not _has_values(df, c)}
    out = df[[c for c in SHOWN if c in df.columns and c not in empty]].copy()
    for c in out.columns:
        if pd.api.types.is_float_dtype(out[c]):
            out[c] = out[c].map(lambda v: MISSING if pd.isna(v) else f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}")
    return out

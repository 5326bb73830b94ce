"""`vcmbench report`: points tables -> one report (report.md, report.html, figures), image or video runs.

A report merges the points tables of one or more run folders (each job folder of a Hydra
multirun is one run folder; a folder holding several of them is searched for points.csv)
and of reference tables (any points-table .csv, e.g. anchors/*.csv). It writes, under out_dir:

- report.md: a section per (dataset, model), leading with the answer: the RD figures and the
  BD-rate tables against the anchor (with bootstrap intervals where the runs have per-item
  records), then the details; after the sections each source's overrides, software versions and
  resolved config;
- report.html: the same, self-contained (figures embedded as base64 PNG);
- figures/: every figure as PNG and SVG.

What a section holds depends on what the run has, and that is decided here, once, from the
tables: an image run's sections are `image_sections` (rate in bpp, per task metric); a video run
(points per sequence with a kbps column, classes.csv beside them) is one `video_sections` section
(rate in kbps, per class and per sequence, tracking metrics, the timing pass's codec speed). Both
render through the same two templates, report.md.j2 and report.html.j2.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from vcmbench.analysis import POOR_OVERLAP, WARN, BDRow, bd_rows, choose_anchor
from vcmbench.bootstrap import BootstrapSettings
from vcmbench.errors import VcmbenchError
from vcmbench.metrics.bd import METHODS
from vcmbench.metrics.curve_fitting import DEFAULT_CURVE, check_curve, curve_sentence
from vcmbench.render.image_sections import GroupReport, build_groups
from vcmbench.render.jinja import CSS, templates
from vcmbench.render.report_tables import bd_display
from vcmbench.render.reproducibility import statement
from vcmbench.render.sections import Section
from vcmbench.render.video_sections import VideoSection, video_section
from vcmbench.tables import Source, codec_order, load_sources, md_table, merge_points

__all__ = [
    "POOR_OVERLAP",
    "Source",
    "BDRow",
    "GroupReport",
    "VideoSection",
    "Report",
    "load_sources",
    "merge_points",
    "choose_anchor",
    "bd_rows",
    "bd_display",
    "md_table",
    "write_report",
]


DEFAULT_BOOTSTRAP = BootstrapSettings()


@dataclass
class Report:
    """What write_report wrote: its files, its sections (image groups, or one video run's) and sources."""

    out_dir: Path
    markdown: Path
    html: Path
    groups: list[Section]
    sources: list[Source]
    notes: list[str]

    @property
    def figures(self) -> list[Path]:
        return [p for g in self.groups for ps in g.figures.values() for p in ps]


def is_video_run(source: Source) -> bool:
    """A run folder whose points are per sequence (a `sequence` and a `kbps` column): its report
    compares codecs per class in kbps, from the classes table the run writes beside its points."""
    return source.kind == "run" and {"sequence", "kbps"} <= set(source.points.columns)


def build_sections(
    sources: list[Source],
    out_dir: Path,
    anchor: str | None,
    method: str,
    bootstrap: BootstrapSettings | None,
    include_foreign: bool,
    curve: str = DEFAULT_CURVE,
) -> tuple[list[Section], list[str]]:
    """The report's sections and general notes: the one place that tells a video run from an image run."""
    video = [s for s in sources if is_video_run(s)]
    if video and len(sources) > 1:
        raise VcmbenchError(
            f"{video[0].path} is a video run (points per sequence, compared per class): report it alone, "
            f"not merged with {len(sources) - 1} other source(s)"
        )
    if video:  # compared per class in kbps; the bootstrap resamples images, a video run has no intervals
        return [video_section(video[0], out_dir, anchor, method, curve)], []
    points, notes = merge_points(sources)
    for src in sources:  # codecs a run left out: trained for another network (vcmbench.domain)
        for left in (src.versions or {}).get("left_out") or []:
            notes.append(f"{src.label}: {left.get('why')}")
            break
    groups: list[Section] = list(
        build_groups(
            points,
            sources,
            out_dir,
            anchor,
            method,
            bootstrap=bootstrap.check("--") if bootstrap else None,
            include_foreign=include_foreign,
            curve=curve,
        )
    )
    return groups, notes


def _first_with_versions(sources: list[Source]) -> dict[str, str]:
    """For each source, the label of the first source with the same software versions."""
    out, seen = {}, []
    for s in sources:
        match = next((label for label, v in seen if v == s.versions), None)
        out[s.label] = match or s.label
        if match is None and s.versions:
            seen.append((s.label, s.versions))
    return out


def _versions_df(v: dict) -> pd.DataFrame:
    return pd.DataFrame({"package": list(v), "version": [str(x) for x in v.values()]})


def report_context(rep: Report, method: str, generated: str, curve: str = DEFAULT_CURVE) -> dict:
    """Everything report.md and report.html show, computed once: both templates render it."""
    groups = [g.context(rep.out_dir, rep.sources) for g in rep.groups]
    first_with = _first_with_versions(rep.sources)
    sources = []
    for src in rep.sources:
        sources.append(
            {
                "label": src.label,
                "kind": "run folder" if src.kind == "run" else "points table",
                "path": str(src.path),
                "codecs": ", ".join(codec_order(src.points)) or "(no points)",
                "origins": list(src.points["source"].dropna().unique()) if "source" in src.points.columns else [],
                "overrides": src.overrides,
                "versions_as": first_with[src.label] if src.versions and first_with[src.label] != src.label else None,
                "versions": _versions_df(src.versions) if src.versions else None,
                "config": src.config.rstrip() if src.config else None,
                "config_raw": src.config,
            }
        )
    reproducibility = statement([(s.label, s.points, s.path if s.kind == "run" else None) for s in rep.sources])
    return {
        "generated": generated,
        "method": method,
        "curve_rule": curve_sentence(curve),
        "notes": rep.notes,
        "groups": groups,
        "sources": sources,
        "reproducibility": reproducibility,
        "warn": WARN,
        "css": CSS,
    }


def render_markdown(context: dict) -> str:
    return templates(autoescape=False).get_template("report.md.j2").render(context).rstrip("\n") + "\n"


def render_html(context: dict) -> str:
    """The HTML report, each figure's PNG embedded so that the one file travels alone."""
    for g in context["groups"]:
        for f in g["figures"]:
            f["png_base64"] = base64.b64encode(f["png_path"].read_bytes()).decode("ascii")
    return templates(autoescape=True).get_template("report.html.j2").render(context)


def write_report(
    paths: list[str | Path],
    out_dir: str | Path,
    anchor: str | None = None,
    method: str = "pchip",
    bootstrap: BootstrapSettings | None = DEFAULT_BOOTSTRAP,
    include_foreign: bool = False,
    curve: str = DEFAULT_CURVE,
) -> Report:
    """Load the sources, build their sections and write report.md, report.html and the figures under
        out_dir. An image run's or a video run's, as the tables say; the command line and `vcmbench run`
        both come here, so neither has to know which. `curve`: the rule that makes each curve rise with
    rate before BD (metrics.curve_fitting.CURVES)."""
    if method not in METHODS:
        raise VcmbenchError(f"unknown BD interpolation method {method!r}; choose one of {METHODS}")
    check_curve(curve)
    sources = load_sources(paths)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    groups, notes = build_sections(sources, out_dir, anchor, method, bootstrap, include_foreign, curve)
    rep = Report(out_dir, out_dir / "report.md", out_dir / "report.html", groups, sources, notes)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    context = report_context(rep, method, generated, curve)
    rep.markdown.write_text(render_markdown(context), encoding="utf-8")
    rep.html.write_text(render_html(context), encoding="utf-8")
    return rep

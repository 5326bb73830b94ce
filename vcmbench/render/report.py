"""`vcmbench report` and `vcmbench bdrate`: points tables -> tables, BD-rate tables, RD plots, md/html.

A report merges the points tables of one or more run folders (each job folder of a Hydra
multirun is one run folder; a folder holding several of them is searched for points.csv)
and of reference tables (any points-table .csv, e.g. anchors/*.csv). It writes, under --out:

- report.md: per (dataset, model) a table of every codec's rate points, the BD-rate table of
  every codec against the anchor, the RD and timing figures, and each run's overrides,
  software versions and resolved config;
- report.html: the same, self-contained (figures embedded as base64 PNG);
- figures/<dataset>__<model>-rd.{png,svg} (mAP vs bpp) and -time.{png,svg} (encode/decode
  time vs bpp).

BD-rate follows vcmbench.metrics.bd (docs/design.md): percent bits of the codec vs the anchor at
equal mAP over the overlapping mAP range, negative = fewer bits. A comparison that cannot be
made (fewer than 4 points, mAP not rising with rate, no overlap) shows its reason in the
table instead of stopping the report.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from vcmbench.analysis import (
    POOR_OVERLAP,
    WARN,
    BDRow,
    bd_rows,
    choose_anchor,
    codecs_with_role,
    foreign_codecs,
    group_metric,
    has_curve,
    marked_foreign,
    metric_view,
    task_metrics,
    uncompressed_line,
)
from vcmbench.bootstrap import (
    BDInterval,
    BootstrapSettings,
    bootstrap_bd,
    items_of_sources,
)
from vcmbench.errors import VcmbenchError
from vcmbench.metrics.bd import METHODS
from vcmbench.render.jinja import CSS, templates
from vcmbench.render.report_tables import (
    _TASK_WORDS,
    BD_LEGEND,
    COMPLEXITY_LEGEND,
    LAYERS_LEGEND,
    _metric_label,
    _metric_sentence,
    bd_display,
    complexity_display,
    layers_display,
    points_display,
)
from vcmbench.render.reproducibility import statement
from vcmbench.tables import (
    Source,
    codec_order,
    codec_title,
    codecs_table,
    encoder_of,
    groups,
    load_sources,
    md_table,
    merge_points,
)

__all__ = [
    "POOR_OVERLAP",
    "Source",
    "BDRow",
    "load_sources",
    "merge_points",
    "choose_anchor",
    "bd_rows",
    "md_table",
    "write_report",
]


DEFAULT_BOOTSTRAP = BootstrapSettings()


def _task_line(g: GroupReport) -> str:
    """The report header's statement of the section's metric and where the choice came from."""
    role = "the task metric" if g.task_rank == 0 else "a second metric of this model"
    return (
        f"Metric of this section: {_TASK_WORDS[g.task]}, {role} (task_metric={g.task_choice}); the mAP "
        f"columns, BD-rates and curves below are {g.metric_label.split(' (')[0]}."
    )


def _slug(*parts: str) -> str:
    return "__".join(re.sub(r"[^A-Za-z0-9_.=-]+", "_", p) for p in parts)


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


@dataclass
class GroupReport:
    dataset: str
    model: str
    anchor: str
    points: pd.DataFrame
    bd: list[BDRow]
    figures: dict[str, list[Path]] = field(default_factory=dict)  # "rd"/"time"/"layers" -> [png, svg]
    notes: list[str] = field(default_factory=list)
    metric_label: str = "mAP (%)"
    image_anchor: str | None = None  # a second BD reference: the image anchor (remote inference)
    bd_image: list[BDRow] = field(default_factory=list)
    # the bootstrap's intervals (codec -> interval) of each table; None: no per-item records
    intervals: dict[str, BDInterval] | None = None
    intervals_image: dict[str, BDInterval] | None = None
    bootstrap: str = "off"  # how the intervals were made (the report header says it)
    task: str = "box"  # the section's task metric (types.TASK_COLUMNS): its points are metric_view's
    task_rank: int = 0  # 0: the run's task metric; 1: the other one the model has (masks -> boxes)
    task_choice: str = "auto"  # the run's `task_metric` setting, as given


@dataclass
class Report:
    out_dir: Path
    markdown: Path
    html: Path
    groups: list[GroupReport]
    sources: list[Source]
    notes: list[str]

    @property
    def figures(self) -> list[Path]:
        return [p for g in self.groups for ps in g.figures.values() for p in ps]


def build_groups(
    points: pd.DataFrame,
    sources: list[Source],
    out_dir: Path,
    anchor: str | None,
    method: str,
    plots: bool = True,
    bootstrap: BootstrapSettings | None = None,
    include_foreign: bool = False,
) -> list[GroupReport]:
    """One section per (dataset, model) and task metric (boxes; masks too for a segmenting model),
    the run's task metric first."""
    metric_by_dataset: dict[str, str] = {}
    choice_by_group: dict[tuple[str, str], str] = {}
    for s in sources:
        for d, m in s.points[["dataset", "model"]].drop_duplicates().itertuples(index=False):
            if s.metric:
                metric_by_dataset.setdefault(d, s.metric)
            if s.task_metric:
                choice_by_group.setdefault((d, m), str(s.task_metric))
    out = []
    for (dataset, model), all_pts in groups(points):
        choice = choice_by_group.get((dataset, model), "auto")
        for rank, task in enumerate(task_metrics(all_pts, choice)):
            out.append(
                _group(
                    dataset,
                    model,
                    metric_view(all_pts, task),
                    task,
                    rank,
                    choice,
                    sources,
                    out_dir,
                    anchor,
                    method,
                    plots,
                    bootstrap,
                    metric_by_dataset.get(dataset),
                    include_foreign,
                )
            )
    return out


def _group(
    dataset: str,
    model: str,
    pts: pd.DataFrame,
    task: str,
    rank: int,
    choice: str,
    sources: list[Source],
    out_dir: Path,
    anchor: str | None,
    method: str,
    plots: bool,
    bootstrap: BootstrapSettings | None,
    evaluator: str | None,
    include_foreign: bool = False,
) -> GroupReport:
    """One section of the report: a (dataset, model) group's points under one task metric."""
    from vcmbench.render import plots as plotting

    foreign = foreign_codecs(pts)
    compared = pts if include_foreign or not foreign else pts[~pts.codec.isin(foreign)]
    a, note = choose_anchor(compared if len(compared) else pts, anchor)
    g = GroupReport(dataset, model, a, pts, bd_rows(compared, a, method), task=task, task_rank=rank, task_choice=choice)
    if note:
        g.notes.append(note)
    if foreign:
        g.notes.append(
            f"{', '.join(foreign)} coded features of {model}, a network their checkpoints were not trained "
            f"for (allow_foreign): marked {WARN} foreign; "
            + (
                "in the BD-rate tables on request"
                if include_foreign
                else "left out of the BD-rate tables (--include-foreign puts them in)"
            )
        )
    if not encoder_of(pts, a):
        g.notes.append(
            f"the points of the anchor {a} do not name its encoder and preset (made before vcmbench "
            f"recorded them): say which in any figure you quote, or re-run it"
        )
    # an image anchor (remote inference) beside another anchor gets a second BD-rate table
    image_anchor = next((c for c in codecs_with_role(pts, "image_anchor") if c != a and has_curve(pts, c)), None)
    if image_anchor is not None:
        g.image_anchor, g.bd_image = image_anchor, bd_rows(compared, image_anchor, method)
    if bootstrap is not None and bootstrap.resamples and task == "box":
        _add_intervals(g, sources, bootstrap, method)
    elif bootstrap is not None and bootstrap.resamples:
        g.bootstrap = "off: the bootstrap resamples box matches only (the mask section's BD-rates have no interval)"
    g.metric_label = _metric_label(group_metric(pts, evaluator), task)
    if plots:
        stem = out_dir / "figures" / (_slug(dataset, model) + ("" if task == "box" else f"__{task}"))
        title = f"{dataset} / {model}" + ("" if task == "box" else f" ({task}s)")
        g.figures["rd"] = plotting.rd_plot(
            marked_foreign(pts, foreign),
            stem.with_name(stem.name + "-rd"),
            title=f"{title}: accuracy vs rate",
            anchor=a,
            uncompressed=uncompressed_line(pts),
            metric_label=g.metric_label,
        )
        if plotting.has_layers(pts):
            g.figures["layers"] = plotting.layer_plot(
                pts,
                stem.with_name(stem.name + "-layers"),
                title=f"{title}: joint feature + image coding, per layer",
                anchor=a,
                metric_label=g.metric_label,
            )
        if plotting.has_times(pts):
            g.figures["time"] = plotting.time_plot(
                pts, stem.with_name(stem.name + "-time"), title=f"{title}: codec time per image vs rate", anchor=a
            )
    return g


def _add_intervals(g: GroupReport, sources: list[Source], settings: BootstrapSettings, method: str) -> None:
    """Bootstrap intervals of both BD tables, from the group's run folders' records."""
    try:
        items = items_of_sources(sources, g.dataset, g.model)
    except VcmbenchError as exc:  # e.g. the run's dataset is not on this machine: the report still comes
        g.bootstrap = f"off: {exc}"
        g.notes.append(f"no BD-rate intervals: {exc}")
        return
    if items is None:
        g.bootstrap = "off: no run folder here has per-item records (records.jsonl)"
        return
    g.bootstrap = settings.describe(len(items.item_ids))
    tables = [("intervals", g.anchor, g.bd)] + (
        [("intervals_image", g.image_anchor, g.bd_image)] if g.image_anchor else []
    )
    cache: dict = {}  # both tables resample the same items with the same seed: each point scored once
    for attr, anchor, rows in tables:
        codecs = [r.codec for r in rows if r.ok and items.curve(r.codec)]
        if not items.curve(anchor):
            continue
        found = bootstrap_bd(
            items,
            anchor,
            codecs,
            n_resamples=settings.resamples,
            seed=settings.seed,
            method=method,
            level=settings.level,
            cache=cache,
        )
        setattr(g, attr, {iv.codec: iv for iv in found})


_FIGURE_ALT = {
    "rd": "mAP vs bpp",
    "time": "encode and decode time vs bpp",
    "layers": "per layer: mAP vs base-layer bpp, image PSNR and MS-SSIM vs total bpp",
}


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


def report_context(rep: Report, method: str, generated: str) -> dict:
    """Everything report.md and report.html show, computed once: both templates render it."""
    groups = []
    for g in rep.groups:
        layers = layers_display(g.points)
        complexity = complexity_display(g.points)
        figures = [
            {
                "alt": f"{g.dataset} / {g.model}: {_FIGURE_ALT[k]}",
                "png_path": v[0],
                "png": v[0].relative_to(rep.out_dir).as_posix(),
                "svg": v[1].relative_to(rep.out_dir).as_posix(),
                "svg_name": Path(v[1]).name,
            }
            for k, v in g.figures.items()
        ]
        groups.append(
            {
                "title": f"{g.dataset} / {g.model}"
                + ("" if g.task == "box" and not g.task_rank else f" ({_TASK_WORDS[g.task].split()[0]})"),
                "task_line": _task_line(g),
                "notes": g.notes,
                "anchor": codec_title(g.points, g.anchor),
                "codecs": codecs_table(g.points),
                "points": points_display(g.points, g.anchor, g.task),
                "metric_sentence": _metric_sentence(g.metric_label),
                "timing": timing_sentence(rep.sources, g.dataset, g.model),
                "bd": bd_display(g.bd, g.intervals) if g.bd else None,
                "image_anchor": codec_title(g.points, g.image_anchor) if g.image_anchor else None,
                "bd_image": bd_display(g.bd_image, g.intervals_image) if g.image_anchor else None,
                "bootstrap": g.bootstrap,
                "layers": layers if len(layers) else None,
                "figures": figures,
                "complexity": complexity if len(complexity) else None,
            }
        )
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
        "notes": rep.notes,
        "groups": groups,
        "sources": sources,
        "reproducibility": reproducibility,
        "warn": WARN,
        "bd_legend": BD_LEGEND,
        "layers_legend": LAYERS_LEGEND,
        "complexity_legend": COMPLEXITY_LEGEND,
        "css": CSS,
    }


def timing_sentence(sources: list[Source], dataset: str, model: str) -> str:
    """How the enc/dec columns of a (dataset, model) section were timed: each codec alone (a run's
    timing pass), or as the sweeps measured them (contended where they coded items in parallel)."""
    passes = {s.timing for s in sources if s.timing and _covers(s, dataset, model)}
    if passes:
        return "; ".join(sorted(passes))
    contended = any(
        bool(pd.to_numeric(s.points.get("workers"), errors="coerce").fillna(1).gt(1).any())
        for s in sources
        if "workers" in s.points and _covers(s, dataset, model)
    )
    return "enc/dec: wall seconds per image as the sweep measured them" + (
        ", beside other items coded in parallel (contended: no timing pass in the run folder)"
        if contended
        else ", one item at a time"
    )


def _covers(source: Source, dataset: str, model: str) -> bool:
    pts = source.points
    return bool(((pts.dataset == dataset) & (pts.model == model)).any())


def render_markdown(context: dict) -> str:
    return templates(autoescape=False).get_template("report.md.j2").render(context).rstrip("\n") + "\n"


def render_html(context: dict) -> str:

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
) -> Report:
    """Load, merge, compute and write report.md, report.html and the figures under out_dir."""
    if method not in METHODS:
        raise VcmbenchError(f"unknown BD interpolation method {method!r}; choose one of {METHODS}")
    sources = load_sources(paths)
    points, notes = merge_points(sources)
    for src in sources:  # codecs a run left out: trained for another network (vcmbench.domain)
        for left in (src.versions or {}).get("left_out") or []:
            notes.append(f"{src.label}: {left.get('why')}")
            break
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rep = Report(
        out_dir,
        out_dir / "report.md",
        out_dir / "report.html",
        build_groups(
            points,
            sources,
            out_dir,
            anchor,
            method,
            bootstrap=bootstrap.check("--") if bootstrap else None,
            include_foreign=include_foreign,
        ),
        sources,
        notes,
    )
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    context = report_context(rep, method, generated)
    rep.markdown.write_text(render_markdown(context), encoding="utf-8")
    rep.html.write_text(render_html(context), encoding="utf-8")
    return rep

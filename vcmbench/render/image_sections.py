"""The sections of an image run's report: per (dataset, model) and task metric, the RD figures,
the BD-rate tables (with bootstrap intervals where the run has per-item records), then the codecs,
rate points, layers and complexity.

BD-rate follows vcmbench.metrics.bd (docs/design.md): percent bits of the codec vs the anchor at
equal mAP over the overlapping mAP range, negative = fewer bits. A comparison that cannot be
made (fewer than 4 points, mAP not rising with rate, no overlap) shows its reason in the
table instead of stopping the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from vcmbench.analysis import (
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
from vcmbench.bootstrap import BDInterval, BootstrapSettings, bootstrap_bd, items_of_sources, resamples_task
from vcmbench.errors import VcmbenchError
from vcmbench.metrics.curve_fitting import DEFAULT_CURVE, curve_heading
from vcmbench.render.report_tables import (
    _TASK_TITLES,
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
from vcmbench.render.sections import block, figure, section, slug
from vcmbench.tables import Source, codec_title, codecs_table, encoder_of, groups, text_table


@dataclass
class GroupReport:
    """One section of an image run's report: a (dataset, model) group under one task metric, with
    its BD rows against the anchor (and the image anchor), their intervals and its figures."""

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
    curve: str = DEFAULT_CURVE  # the curve rule of its BD rows (metrics.curve_fitting), named in the headings

    @property
    def title(self) -> str:
        """The section's heading: a second task metric of the same model is named in it."""
        plain = self.task == "box" and not self.task_rank
        return f"{self.dataset} / {self.model}" + ("" if plain else f" ({_TASK_TITLES[self.task]})")

    def context(self, out_dir: Path, sources: list[Source]) -> dict:
        """The section as the templates render it: figures, the BD-rate tables, then the details."""
        anchor = codec_title(self.points, self.anchor)
        answer = [
            block(
                f"BD-rate vs {anchor} (anchor){self._rule}",
                bd_display(self.bd, self.intervals, self.task) if self.bd else None,
                _bd_align(self.intervals),
                legends=[BD_LEGEND, f"Intervals: {self.bootstrap}."],
                bd=True,
                empty="(no other codec to compare)",
            )
        ]
        if self.image_anchor:
            answer.append(
                block(
                    f"BD-rate vs {codec_title(self.points, self.image_anchor)} "
                    f"(image anchor: remote inference on the decoded image){self._rule}",
                    bd_display(self.bd_image, self.intervals_image, self.task),
                    _bd_align(self.intervals_image),
                    bd=True,
                )
            )
        timing = timing_sentence(sources, self.dataset, self.model)
        rate_points = points_display(self.points, self.anchor, self.task)
        details = [
            block(
                "Codecs",
                codecs_table(self.points),
                "lll",
                legends=[
                    f"BD-rates above are against **{anchor}**: the anchor's encoder and preset are part of "
                    "every figure taken from them."
                ],
            ),
            block(
                "Rate points",
                rate_points,
                "ll" + "r" * (len(rate_points.columns) - 2),
                legends=[
                    f"{_metric_sentence(self.metric_label)}; {timing}; failed: images whose payload did not "
                    f"decode ({WARN} marks points with failures)."
                ],
            ),
        ]
        layers = layers_display(self.points)
        if len(layers):
            details.append(
                block("Layers of the joint feature + image codecs", layers, "llrrrrrr", legends=[LAYERS_LEGEND])
            )
        complexity = complexity_display(self.points)
        if len(complexity):
            details.append(block("Complexity", complexity, "llrrrrrr", legends=[COMPLEXITY_LEGEND]))
        measure = self.metric_label.split(" (")[0]  # mAP, mask mAP, keypoint mAP, mIoU
        figures = [
            figure(out_dir, paths, f"{self.dataset} / {self.model}: {_FIGURE_ALT[kind].replace('mAP', measure)}")
            for kind, paths in self.figures.items()
        ]
        return section(self.title, [_task_line(self)], self.notes, figures, answer, details)

    def summary(self) -> list[str]:
        """The BD-rate tables `vcmbench report` prints, with their intervals' settings and the notes."""
        head = f"{self.dataset} / {self.model}"
        lines = [f"{head}: BD-rate vs {codec_title(self.points, self.anchor)}{self._rule}"]
        lines.append(
            text_table(bd_display(self.bd, self.intervals, self.task), _bd_align(self.intervals))
            if self.bd
            else "  (no other codec)"
        )
        if self.image_anchor:
            lines.append(f"{head}: BD-rate vs {codec_title(self.points, self.image_anchor)} (image anchor){self._rule}")
            lines.append(
                text_table(bd_display(self.bd_image, self.intervals_image, self.task), _bd_align(self.intervals_image))
            )
        if self.intervals is not None:
            lines.append(f"  intervals: {self.bootstrap}")
        return lines + [f"  note: {n}" for n in self.notes]

    @property
    def _rule(self) -> str:
        """The curve rule as the BD tables' headings name it (nothing for the default, pareto)."""
        named = curve_heading(self.curve)
        return f", {named}" if named else ""


def _bd_align(intervals: dict[str, BDInterval] | None) -> str:
    """The BD table's column alignment: figures right, the codec and the note left."""
    return "lrrrrrrl" if intervals is not None else "lrrrrl"


def build_groups(
    points: pd.DataFrame,
    sources: list[Source],
    out_dir: Path,
    anchor: str | None,
    method: str,
    plots: bool = True,
    bootstrap: BootstrapSettings | None = None,
    include_foreign: bool = False,
    curve: str = DEFAULT_CURVE,
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
                    curve,
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
    curve: str = DEFAULT_CURVE,
) -> GroupReport:
    """One section of the report: a (dataset, model) group's points under one task metric."""
    from vcmbench.render import plots as plotting

    foreign = foreign_codecs(pts)
    compared = pts if include_foreign or not foreign else pts[~pts.codec.isin(foreign)]
    a, note = choose_anchor(compared if len(compared) else pts, anchor)
    g = GroupReport(
        dataset,
        model,
        a,
        pts,
        bd_rows(compared, a, method, curve=curve),
        task=task,
        task_rank=rank,
        task_choice=choice,
        curve=curve,
    )
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
        g.image_anchor, g.bd_image = image_anchor, bd_rows(compared, image_anchor, method, curve=curve)
    if bootstrap is not None and bootstrap.resamples and resamples_task(task):
        _add_intervals(g, sources, bootstrap, method)
    elif bootstrap is not None and bootstrap.resamples:
        g.bootstrap = (
            f"off: the bootstrap resamples box matches and mIoU only (the {task} section's BD-rates have no interval)"
        )
    g.metric_label = _metric_label(group_metric(pts, evaluator), task)
    if plots:
        stem = out_dir / "figures" / (slug(dataset, model) + ("" if task == "box" else f"__{task}"))
        title = f"{dataset} / {model}" + ("" if task == "box" else f" ({_TASK_TITLES[task]})")
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
        items = items_of_sources(sources, g.dataset, g.model, g.task)
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
            curve=g.curve,
        )
        setattr(g, attr, {iv.codec: iv for iv in found})


_FIGURE_ALT = {
    "rd": "mAP vs bpp",
    "time": "encode and decode time vs bpp",
    "layers": "per layer: mAP vs base-layer bpp, image PSNR and MS-SSIM vs total bpp",
}


def _task_line(g: GroupReport) -> str:
    """The report header's statement of the section's metric and where the choice came from."""
    role = "the task metric" if g.task_rank == 0 else "a second metric of this model"
    return (
        f"Metric of this section: {_TASK_WORDS[g.task]}, {role} (task_metric={g.task_choice}); the mAP "
        f"columns, BD-rates and curves below are {g.metric_label.split(' (')[0]}."
    )


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

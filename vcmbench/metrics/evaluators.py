"""Task metrics as registered evaluators: detection (COCO, OpenImages), instance segmentation and
tracking each declare what they compute and how, and every stage that needs a metric (the points
table, the bootstrap's per-item matches, the report's labels) asks this registry, so no stage
branches on a metric's or a dataset's kind.

An evaluator says:

* `name` and `label`: what the points table's `metric` column and a report's axis call it;
* `columns`: the points-table columns it fills for a set of items (detection: map, ap50;
  segmentation: map_segm, ap50_segm; tracking: mota, idf1, hota, id_switches);
* `headline`: which of them is the rate-distortion metric, the points' `map` that BD-rates and
  plots read (None: a figure beside it, as mask AP is); where several apply, the highest
  `precedence` wins (a tracking set's MOTA over its frames' box AP, which stays in `ap`; a box AP
  over mIoU, which is the headline only where no box metric applies: PandaSet's);
* `applies` and `evaluate_items`: whether it scores a set of items, and its figures over them from
  their records (a group of one (codec, rate), or part of it: a sequence, a class of sequences);
* for the box evaluators a dataset names (`metric: coco`): `evaluate`, which scores COCO-style
  results (boxes, and masks with `iou_type="segm"`) as percentages under `map` and `ap50`, and,
  where it can match each item's detections once (`match`) and aggregate them under item weights
  (`score`), the report's bootstrap intervals; weights of all ones must give `evaluate`'s numbers
  to the last bit;
* for the others, optionally `match_records`: (items, their records) -> per-item figures whose
  `score(weights)` gives its columns under item weights (weights of all ones: `evaluate_items`'s
  numbers to the last bit), which gives the bootstrap intervals of the task's report section
  (semantic segmentation: one confusion matrix per item).

A dataset's `metric` names the evaluator of its own task: a box evaluator (coco, oid), whose AP
the set's frames get whatever else applies, or one with a headline that needs no boxes (miou).

Adding one: a module that calls `register(Evaluator(...))`, named in `BUILTIN`
(docs/architecture.md). A box evaluator needs only name, labels and `evaluate`: it applies when a
dataset names it and scores the set's boxes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from vcmbench.errors import MetricError

if TYPE_CHECKING:
    from vcmbench.datasets.sequences import SequenceDataset

#: the modules that register the packaged evaluators (imported on the first lookup; this order is
#: the order of their columns in the points table)
BUILTIN = (
    "vcmbench.metrics.detection_evaluators",
    "vcmbench.metrics.segmentation_evaluator",
    "vcmbench.metrics.tracking_evaluator",
    "vcmbench.metrics.keypoint_evaluator",
    "vcmbench.metrics.semseg_evaluator",
)


class ItemRecord(Protocol):
    """What an evaluator reads of a record (`vcmbench.records.Record`, a layer above the metrics)."""

    status: str  # "ok", or what failed ("decode_failed", "encode_failed")

    @property
    def item_id(self) -> int: ...

    @property
    def has_masks(self) -> bool: ...

    @property
    def has_keypoints(self) -> bool: ...

    @property
    def has_semantic(self) -> bool: ...

    def frame_results(self) -> list: ...

    def semantic_maps(self) -> list: ...

    @property
    def has_embeddings(self) -> bool: ...

    def embedding_arrays(self) -> list: ...


@dataclass(frozen=True)
class ItemSet:
    """The items a group of records is scored over, and what it is scored against."""

    metric: str  # the evaluator its dataset config names: coco | oid (boxes) | miou
    annotation_file: Path
    frame_ids: list[int]  # the images, or the frames of the sequences, scored (sorted)
    #: the set the items are sequences of (None for images): its sequences and, for a tracking set,
    #: their ground-truth tracks
    sequences: SequenceDataset | None = None
    #: the `tracker:` settings for tracking sets (vision.trackers.TrackerChoice: kind, ByteTracker's, jde)
    tracker: Mapping[str, Any] | None = None


#: (items, their records, the records' detections as COCO results, a memo) -> {column: value};
#: the memo lives as long as one (codec, rate) group, for work an evaluator does once per item
#: although the item is scored in several sets (a sequence alone, then in its class)
ItemsEvaluation = Callable[[ItemSet, Sequence[ItemRecord], list[dict], dict], Mapping[str, float | str]]


@dataclass(frozen=True)
class Evaluator:
    """One task metric: what it computes for a set of items, and how."""

    name: str  # what a dataset config's `metric` says, and the points table's `metric` column
    label: str  # the metric in words, for reports: "COCO AP@[.5:.95]"
    mask_label: str = ""  # a box evaluator's metric on masks
    #: (ground truth, results, image ids, iou_type "bbox" | "segm") -> {"map": %, "ap50": %}: the
    #: box evaluators a dataset names
    evaluate: Callable[..., dict[str, float]] | None = None
    #: (ground truth, results, sorted item ids) -> per-class matches (metrics.item_matches), or None
    match: Callable[..., list] | None = None
    #: (per-class matches, item weights (resamples x items), exact) -> {"map": array, "ap50": array}
    score: Callable[..., dict] | None = None
    columns: tuple[str, ...] = ("map", "ap50")  # the points-table columns it fills, in their order
    headline: str | None = "map"  # the column that is the rate-distortion `map`; None: not one
    precedence: int = 0  # which headline is `map` when several evaluators with one apply
    #: (items, records) -> whether it scores them; None: when the set's dataset names it (`metric`)
    applies: Callable[[ItemSet, Sequence[ItemRecord]], bool] | None = None
    #: its columns for a set of items; None: `evaluate` on the results' boxes over the set's frames
    evaluate_items: ItemsEvaluation | None = None
    #: (items, their records, in the items' order) -> per-item figures with `score(weights)` ->
    #: {column: array over the weights' rows}: the bootstrap of an evaluator without `match`
    match_records: Callable[[ItemSet, Sequence[ItemRecord]], Any] | None = None
    #: how a class of sequences gets its headline, in a report's words
    class_rule: str = "recomputed over the class's frames jointly"

    def applies_to(self, items: ItemSet, records: Sequence[ItemRecord]) -> bool:
        """Whether this evaluator scores `items`."""
        return self.applies(items, records) if self.applies is not None else items.metric == self.name

    def figures(
        self, items: ItemSet, records: Sequence[ItemRecord], results: list[dict], memo: dict
    ) -> dict[str, float | str]:
        """Its columns for `items`, in the declared order (a missing one is the evaluator's bug); a
        figure is a number, or text where one column holds several (mIoU's per-category IoU)."""
        if self.evaluate_items is not None:
            values = self.evaluate_items(items, records, results, memo)
        elif self.evaluate is not None:
            values = self.evaluate(items.annotation_file, results, items.frame_ids, "bbox")
        else:
            raise MetricError(f"evaluator {self.name!r} registers neither evaluate_items nor evaluate")
        missing = [c for c in self.columns if c not in values]
        if missing:
            raise MetricError(f"evaluator {self.name!r} gave no {missing}; it declares columns {list(self.columns)}")
        return {c: values[c] for c in self.columns}


@dataclass(frozen=True)
class SetScores:
    """Every applicable evaluator's figures for one set of items."""

    metric: str  # the evaluator whose headline is `map` (the points table's `metric` column)
    map: float  # its headline value: what rate-distortion comparisons read
    columns: dict[str, float | str]  # every applicable evaluator's columns, in registration order


_REGISTRY: dict[str, Evaluator] = {}


def register(evaluator: Evaluator) -> Evaluator:
    """Make `evaluator` the one its name reaches."""
    _REGISTRY[evaluator.name] = evaluator
    return evaluator


def registered() -> dict[str, Evaluator]:
    """Every evaluator by name, the packaged ones loaded: those of BUILTIN's modules in its order
    (whichever module was imported first: one evaluator module may import another), then any
    other in registration order."""
    ordered: dict[str, Evaluator] = {}
    for module in BUILTIN:
        for value in vars(importlib.import_module(module)).values():
            if isinstance(value, Evaluator) and value.name in _REGISTRY:
                ordered.setdefault(value.name, _REGISTRY[value.name])
    return ordered | {k: e for k, e in _REGISTRY.items() if k not in ordered}


def get(name: object) -> Evaluator:
    """The box evaluator a dataset names (`metric:`); MetricError naming the choices for an unknown name."""
    found = {k: e for k, e in registered().items() if e.evaluate is not None}
    if isinstance(name, str) and name in found:
        return found[name]
    choices = ", ".join(f"'{k}' = {e.label}" for k, e in sorted(found.items()))
    raise MetricError(f"unknown detection metric {name!r}; choose one of {sorted(found)} ({choices})")


def check_dataset_metric(name: object) -> None:
    """A dataset's `metric` must name a box evaluator or one with a headline (module docstring);
    MetricError naming the choices otherwise."""
    found = {k: e for k, e in registered().items() if e.evaluate is not None or e.headline is not None}
    if not (isinstance(name, str) and name in found):
        choices = ", ".join(f"'{k}' = {e.label}" for k, e in sorted(found.items()))
        raise MetricError(f"unknown dataset metric {name!r}; choose one of {sorted(found)} ({choices})")


def score_items(items: ItemSet, records: Sequence[ItemRecord], results: list[dict], memo: dict) -> SetScores:
    """Every evaluator that applies to `items`, on their records (`results`: the records'
    detections as COCO results, made once for all), and which of them is the headline."""
    check_dataset_metric(items.metric)  # a set naming no evaluator is its config's error, told with the choices
    found = [e for e in registered().values() if e.applies_to(items, records)]
    columns: dict[str, float | str] = {}
    for evaluator in found:
        columns.update(evaluator.figures(items, records, results, memo))
    ranked = [e for e in found if e.headline is not None]
    if not ranked:
        raise MetricError(
            f"no rate-distortion metric applies to these items: the dataset's metric {items.metric!r} "
            f"({registered()[items.metric].label}) finds nothing it scores in their records; run a model "
            "whose outputs it scores (mIoU: a network that labels every pixel, model=d2_panoptic_fpn_r101)"
        )
    lead = max(ranked, key=lambda e: e.precedence)  # the first registered of equal precedence
    return SetScores(lead.name, float(columns[lead.headline]), columns)


def item_scorer(column: str) -> Evaluator | None:
    """The evaluator that fills `column` and scores it per item from records (`match_records`), if any."""
    return next((e for e in registered().values() if column in e.columns and e.match_records is not None), None)


def scores_boxes(metric: str) -> bool:
    """Whether the evaluator a points table's `metric` column names is a box metric (a dataset's
    own, as `coco`); False for one that outranks it on some sets (tracking's `mota`)."""
    evaluator = registered().get(metric)
    return evaluator is not None and evaluator.evaluate is not None


def class_rule(metric: str) -> str:
    """How the evaluator a points table's `metric` column names scores a class of sequences."""
    evaluator = registered().get(metric)
    return evaluator.class_rule if evaluator is not None else Evaluator.class_rule


def axis_label(metric: str) -> str:
    """How a report labels a points table's `map` whose `metric` column says `metric`: the
    evaluator's label in percent ("MOTA (%)", "COCO AP@[.5:.95] (%)"), else the name itself."""
    evaluator = registered().get(metric)
    return f"{evaluator.label} (%)" if evaluator is not None else metric

"""Task metrics as registered evaluators: a dataset names its evaluator (`metric: coco`), and every
stage that needs the metric (the points table, the bootstrap's per-item matches, the report's
labels) asks this registry for it, so no stage branches on a metric's name.

An evaluator scores COCO-style results (boxes, and masks with `iou_type="segm"`) against a COCO
instances json and returns percentages under `map` and `ap50`. Where it can also match each item's
detections once (`match`) and aggregate them under item weights (`score`), the report's BD-rate
intervals resample items for it; weights of all ones must give `evaluate`'s numbers to the last
bit. Adding one: a module that calls `register(Evaluator(...))`, named in `BUILTIN` (docs/architecture.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from vcmbench.errors import MetricError

#: the modules that register the packaged evaluators (imported on the first lookup)
BUILTIN = ("vcmbench.metrics.detection_evaluators",)


@dataclass(frozen=True)
class Evaluator:
    """One task metric over COCO-style results."""

    name: str  # what a dataset config's `metric` says
    label: str  # the box metric in words, for reports: "COCO AP@[.5:.95]"
    mask_label: str  # the same metric on masks
    #: (ground truth, results, image ids, iou_type "bbox" | "segm") -> {"map": %, "ap50": %}
    evaluate: Callable[..., dict[str, float]]
    #: (ground truth, results, sorted item ids) -> per-class matches (metrics.item_matches), or None
    match: Callable[..., list] | None = None
    #: (per-class matches, item weights (resamples x items), exact) -> {"map": array, "ap50": array}
    score: Callable[..., dict] | None = None


_REGISTRY: dict[str, Evaluator] = {}


def register(evaluator: Evaluator) -> Evaluator:
    """Make `evaluator` the one datasets reach by its name."""
    _REGISTRY[evaluator.name] = evaluator
    return evaluator


def registered() -> dict[str, Evaluator]:
    """Every evaluator by name, the packaged ones loaded."""
    for module in BUILTIN:
        importlib.import_module(module)
    return dict(_REGISTRY)


def get(name: object) -> Evaluator:
    """The evaluator a dataset names; MetricError naming the choices for an unknown name."""
    found = registered()
    if isinstance(name, str) and name in found:
        return found[name]
    choices = ", ".join(f"'{k}' = {e.label}" for k, e in sorted(found.items()))
    raise MetricError(f"unknown detection metric {name!r}; choose one of {sorted(found)} ({choices})")

"""Instance segmentation, registered: `map_segm` / `ap50_segm`, the set's own box evaluator run on
the detections' masks (COCO mask AP, or for an OpenImages set the instance-segmentation
challenge's mask mAP@0.5), whenever the network segments.

It is a figure beside the rate-distortion `map`, not one (no headline): a report reads it as the
mask task (`task_metric=mask`, types.TASK_COLUMNS).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from vcmbench.metrics.evaluators import Evaluator, ItemRecord, ItemSet, get, register
from vcmbench.metrics.ground_truth import load_ground_truth


def has_mask_truth(annotation_file: Path) -> bool:
    """Whether every non-crowd annotation of a set has a segmentation: mask AP can be computed."""
    anns = load_ground_truth(annotation_file)[0].get("annotations", [])
    return bool(anns) and all(a.get("segmentation") for a in anns if not a.get("iscrowd", 0))


def segments(items: ItemSet, records: Sequence[ItemRecord]) -> bool:
    """The records carry masks and the set can score them. An image set is scored whenever the
    network segments (its evaluator says what a box-only annotation means: COCO refuses it,
    OpenImages ignores the objects without a mask as the challenge does); a video set only where
    every object has a mask, since video sets may annotate boxes alone (the synthetic videos)."""
    if not any(r.has_masks for r in records):
        return False
    return items.sequences is None or has_mask_truth(items.annotation_file)


def mask_scores(items: ItemSet, records: Sequence[ItemRecord], results: list[dict], memo: dict) -> Mapping[str, float]:
    """The set's box evaluator on the results' masks, over its frames."""
    segm = get(items.metric).evaluate(items.annotation_file, results, items.frame_ids, "segm")
    return {"map_segm": segm["map"], "ap50_segm": segm["ap50"]}


SEGMENTATION = register(
    Evaluator(
        "segm",
        "mask AP",
        columns=("map_segm", "ap50_segm"),
        headline=None,
        applies=segments,
        evaluate_items=mask_scores,
    )
)

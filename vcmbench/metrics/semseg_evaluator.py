"""Semantic segmentation, registered: `miou` (mIoU in percent) and `iou_per_category` (each scored
category's IoU, a compact json object {name: percent} of the categories the ground truth has), from
the per-pixel category maps a network gives (`Detections.semantic`, kept in the records), wherever
the records carry them and the set has semantic ground truth of one of two kinds.

* **Dense, from instance masks** (any COCO set whose annotations all have masks: the synthetic
  scenes): the ground-truth map of an image (`dense_truth`) is 0 (background) everywhere, then
  IGNORE (255) where its image entry's optional `"unlabeled"` RLE says (pixels of objects too small
  or occluded to annotate) and where a crowd annotation is, then each annotation's mask in file
  order painted with its category id (an annotation wins over unlabeled pixels; a later one over an
  earlier where masks overlap, which the synthetic scenes' visible masks never do). Categories
  scored: background and the set's categories; a predicted id that is none of them is background
  (a Panoptic FPN's stuff on a COCO instances set). The set's category ids must not be 0 or 255.
* **Labelled points** (a sequence set that is `LabelledPoints`: PandaSet): each frame's points and
  the set's tables bring both sides to its categories (PandaSet: VCM), as MPEG's SEMANTICSEG-EVAL
  does; no ignore label (vcmbench.metrics.semseg).

The pairing of network and set is what the box AP already relies on: the map's ids are the ids the
detection rows carry (the model's `category_ids` applied), which a dense set compares with its own
category ids and a points set maps through its tables (PandaSet's take COCO panoptic ids, the ids of
`model=d2_panoptic_fpn_r101`'s map). ci_semseg's map holds the synthetic scenes' ids, 0 background.

Pooling, as the platform pools a sequence: one confusion matrix summed over the frames of a set
(an image set's images, a sequence's frames, a dense set's class of sequences), IoU per category
from it, mIoU the mean over the scored categories the ground truth has. A class of a points set is
the plain mean of its sequences' mIoUs (`semseg.mean_over_sequences`, the CTTC csv's rule), and its
per-category IoU the mean of its sequences' where they have the category. An item without a map (a
failed payload) is predicted as no category everywhere (background; PandaSet: unlabeled).

Headline: mIoU is the rate-distortion `map` only where no box metric applies (precedence below the
box evaluators'): on PandaSet (`metric: miou`, no boxes in its ground truth) it is the points'
`map`; on the synthetic scenes with ci_semseg, which also detects, `map` stays the box AP and mIoU
is the column beside it, the report's `task_metric=semseg` (auto picks it).

The bootstrap of an image set (`match_records`) keeps one confusion matrix per image and sums them
under the resample's weights: weights of all ones give `miou` to the last bit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol, runtime_checkable

import numpy as np

from vcmbench.errors import MetricError
from vcmbench.metrics.evaluators import Evaluator, ItemRecord, ItemSet, register
from vcmbench.metrics.ground_truth import GroundTruth, load_ground_truth
from vcmbench.metrics.segmentation_evaluator import has_mask_truth
from vcmbench.metrics.semseg import confusion_matrix, mean_over_sequences, score

COLUMNS = ("miou", "iou_per_category")
BACKGROUND = 0  # a dense map's id where no annotation is
IGNORE = 255  # a dense map's id of pixels left out of the scores (unlabeled, crowds)


@runtime_checkable
class LabelledPoints(Protocol):
    """A sequence set scored on labelled points (PandaSet): its points per frame and its tables."""

    sequences: list  # its SequenceRecords (a SequenceDataset's)
    point_categories: tuple[str, ...]  # the categories both sides are brought to (index = id)
    scored_categories: tuple[int, ...]  # those mIoU is the mean over

    def ground_truth_points(self, sequence: Any) -> dict[int, np.ndarray]: ...

    def truth_categories(self, categories: np.ndarray) -> np.ndarray: ...

    def predicted_categories(self, ids: np.ndarray) -> np.ndarray: ...


# ------------------------------------------------------------------------------------ dense truth


@dataclass(frozen=True)
class DenseTruth:
    """A COCO set as dense ground truth: its scored categories (index 0 background, then its
    category ids in id order) and each image's entry and annotations (in file order)."""

    ids: tuple[int, ...]
    names: tuple[str, ...]
    lookup: np.ndarray  # category id -> index (0..max id; an id not scored -> background's 0)
    images: dict[int, tuple[Mapping[str, Any], list[Mapping[str, Any]]]]

    def index(self, ids: np.ndarray) -> np.ndarray:
        """Category ids -> scored indices: an id that is none of the set's is background."""
        inside = (ids >= 0) & (ids < len(self.lookup))
        return np.where(inside, self.lookup[np.where(inside, ids, 0)], 0)


def dense_set(gt: GroundTruth) -> DenseTruth:
    """The set's DenseTruth, made once per version of its file."""
    data, key = load_ground_truth(gt)
    return _dense_set(key) if key is not None else _dense_of(data)


@lru_cache(maxsize=2)
def _dense_set(key: tuple) -> DenseTruth:
    return _dense_of(load_ground_truth(key[0])[0])


def _dense_of(data: Mapping[str, Any]) -> DenseTruth:
    cats = sorted(data["categories"], key=lambda c: int(c["id"]))
    ids = [int(c["id"]) for c in cats]
    clash = [i for i in ids if i in (BACKGROUND, IGNORE)]
    if clash:
        role = "background" if clash[0] == BACKGROUND else "ignore label"
        raise MetricError(
            f"category id {clash[0]} of the set is the dense map's {role}; mIoU on instance masks needs "
            f"category ids other than {BACKGROUND} and {IGNORE}"
        )
    lookup = np.zeros(max(ids, default=0) + 1, dtype=np.int64)
    lookup[ids] = np.arange(1, len(ids) + 1)
    images: dict[int, tuple[Mapping[str, Any], list]] = {int(im["id"]): (im, []) for im in data["images"]}
    for a in data["annotations"]:
        if int(a["image_id"]) in images:
            images[int(a["image_id"])][1].append(a)
    names = ("background", *(str(c.get("name", c["id"])) for c in cats))
    return DenseTruth((BACKGROUND, *ids), names, lookup, images)


def _mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A COCO segmentation (compressed or uncompressed RLE, polygons) as an (H, W) bool mask."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):  # polygons
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation, Mapping) and isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(dict(segmentation), height, width)
    else:
        rle = dict(segmentation)
        if isinstance(rle.get("counts"), str):
            rle["counts"] = rle["counts"].encode("ascii")
    return mask_utils.decode(rle).astype(bool)


def dense_truth(gt: GroundTruth, image_id: int) -> np.ndarray:
    """An image's ground-truth map from its annotations: (H, W) int64 category ids, BACKGROUND where
    none is, IGNORE where its `unlabeled` RLE and its crowd annotations are (module docstring)."""
    found = dense_set(gt).images.get(int(image_id))
    if found is None:
        raise MetricError(f"image {image_id} is not in the ground truth; score only the images of its set")
    entry, anns = found
    h, w = int(entry["height"]), int(entry["width"])
    out = np.full((h, w), BACKGROUND, dtype=np.int64)
    if entry.get("unlabeled"):
        out[_mask(entry["unlabeled"], h, w)] = IGNORE
    for a in anns:
        if a.get("iscrowd", 0):
            out[_mask(a["segmentation"], h, w)] = IGNORE
    for a in anns:
        if not a.get("iscrowd", 0):
            out[_mask(a["segmentation"], h, w)] = int(a["category_id"])
    return out


def dense_matrix(gt: GroundTruth, cats: DenseTruth, image_id: int, predicted: np.ndarray | None) -> np.ndarray:
    """One image's confusion matrix over the scored categories (ignored pixels left out)."""
    truth = dense_truth(gt, image_id)
    if predicted is None:
        predicted = np.zeros_like(truth)
    if predicted.shape != truth.shape:
        raise MetricError(
            f"image {image_id}: the semantic map is {predicted.shape[1]}x{predicted.shape[0]} pixels, the image "
            f"{truth.shape[1]}x{truth.shape[0]}; a network's map must cover the original image"
        )
    gt_index = np.where(truth == IGNORE, -1, cats.index(truth))
    return confusion_matrix(gt_index, cats.index(predicted), len(cats.ids), ignore_label=-1)


# ------------------------------------------------------------------------------------ scoring


def labelled_points(items: ItemSet) -> LabelledPoints | None:
    """The items' set if it is scored on labelled points."""
    return items.sequences if isinstance(items.sequences, LabelledPoints) else None


def has_semantic_truth(items: ItemSet, records: Sequence[ItemRecord]) -> bool:
    """The records carry semantic maps and the set has points or instance masks to score them on.
    On a points set, records that all failed (no map, the sweep went on) are scored too: mIoU is its
    only metric, so a sequence whose payload failed gets one (predicting nothing), as a failed item
    gets a box AP of no detection."""
    if any(r.has_semantic for r in records):
        return labelled_points(items) is not None or has_mask_truth(items.annotation_file)
    return labelled_points(items) is not None and bool(records) and all(r.status != "ok" for r in records)


def _points_matrix(points: LabelledPoints, record: ItemRecord, frames: set[int]) -> np.ndarray:
    """A sequence's confusion matrix over its frames' points (the platform's concatenation)."""
    by_id = {s.sequence_id: s for s in points.sequences}
    truth = points.ground_truth_points(by_id[record.item_id])
    k = len(points.point_categories)
    total = np.zeros((k, k), dtype=np.int64)
    for f, predicted in zip(record.frame_results(), record.semantic_maps(), strict=True):
        if f.frame_id not in frames:
            continue
        rows = truth[f.frame_id]
        x, y = rows[:, 0], rows[:, 1]
        if predicted is None:
            ids = np.zeros(len(rows), dtype=np.int64)
        elif len(rows) and (x.max() >= predicted.shape[1] or y.max() >= predicted.shape[0]):
            raise MetricError(
                f"frame {f.frame_id}: the semantic map is {predicted.shape[1]}x{predicted.shape[0]} pixels, smaller "
                "than the frame its ground-truth points lie in; a network's map must cover the original frame"
            )
        else:
            ids = predicted[y, x]
        total += confusion_matrix(points.truth_categories(rows[:, 2]), points.predicted_categories(ids), k)
    return total


def item_matrix(items: ItemSet, record: ItemRecord, memo: dict) -> np.ndarray:
    """One item's confusion matrix over its frames in the set: each computed once per group (`memo`)."""
    key = ("semseg", record.item_id)
    if key not in memo:
        frames = set(items.frame_ids)
        points = labelled_points(items)
        if points is not None:
            memo[key] = _points_matrix(points, record, frames)
        else:
            cats = dense_set(items.annotation_file)
            k = len(cats.ids)
            total = np.zeros((k, k), dtype=np.int64)
            for f, predicted in zip(record.frame_results(), record.semantic_maps(), strict=True):
                if f.frame_id in frames:
                    total += dense_matrix(items.annotation_file, cats, f.frame_id, predicted)
            memo[key] = total
    return memo[key]


def _per_category_json(per: Mapping[int, float], names: Sequence[str]) -> str:
    """{name: IoU} of the categories with ground truth, in the scored order, as compact json."""
    return json.dumps({names[c]: v for c, v in per.items() if not math.isnan(v)}, separators=(",", ":"))


def semseg_scores(
    items: ItemSet, records: Sequence[ItemRecord], results: list[dict], memo: dict
) -> Mapping[str, float | str]:
    """mIoU and the per-category IoU of the records over the set's frames (module docstring)."""
    points = labelled_points(items)
    if points is not None:
        names, scored = points.point_categories, tuple(points.scored_categories)
        each = [score(item_matrix(items, r, memo), scored) for r in records]  # a sequence each
        # a class: the means over its sequences (one sequence: its own figures, x / 1 being x)
        per = {c: _mean_defined([s.per_category[c] for s in each]) for c in scored}
        return {"miou": mean_over_sequences(s.miou for s in each), "iou_per_category": _per_category_json(per, names)}
    cats = dense_set(items.annotation_file)
    total = sum((item_matrix(items, r, memo) for r in records), np.zeros((len(cats.ids),) * 2, dtype=np.int64))
    pooled = score(total, range(len(cats.ids)))
    return {"miou": pooled.miou, "iou_per_category": _per_category_json(pooled.per_category, cats.names)}


def _mean_defined(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


# ------------------------------------------------------------------------------------ bootstrap


@dataclass
class ItemConfusions:
    """What each item's confusion matrix gives the IoUs (an image set's images): per item and scored
    category its true positives, ground-truth and predicted counts, from which mIoU follows under
    any item weights (3 K numbers an item, not K x K: a COCO set's 5000 images stay small)."""

    tp: np.ndarray  # (items, K) int64: the matrix's diagonal
    truth: np.ndarray  # (items, K): its row sums
    predicted: np.ndarray  # (items, K): its column sums

    @classmethod
    def of(cls, matrices: np.ndarray) -> ItemConfusions:
        """From (items, K, K) confusion matrices, rows the ground truth."""
        return cls(np.diagonal(matrices, axis1=1, axis2=2).copy(), matrices.sum(axis=2), matrices.sum(axis=1))

    def score(self, weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """{"miou": one value per row of `weights` (resamples x items; None: each item once)}. The
        weighted counts are exact (integer counts and weights, far below 2**53), each IoU one division
        and one multiplication and the mean a left-to-right sum, as `semseg.score`: weights of all
        ones give the points' miou to the last bit."""
        n, k = self.tp.shape
        w = np.ones((1, n)) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.ndim != 2 or w.shape[1] != n:
            raise ValueError(f"weights of shape {w.shape}: give (resamples, {n})")
        tp, truth, predicted = (w @ a.astype(np.float64) for a in (self.tp, self.truth, self.predicted))
        total, count = np.zeros(len(w)), np.zeros(len(w))
        for c in range(k):
            defined = truth[:, c] > 0
            union = np.where(defined, truth[:, c] + predicted[:, c] - tp[:, c], 1.0)
            total = np.where(defined, total + tp[:, c] / union * 100, total)
            count += defined
        return {"miou": np.where(count > 0, total / np.maximum(count, 1), 0.0)}


def item_confusions(items: ItemSet, records: Sequence[ItemRecord]) -> ItemConfusions:
    """The per-item counts of an image set's records (in the items' order)."""
    if labelled_points(items) is not None:
        raise MetricError("the bootstrap resamples images; a points set's items are sequences (no intervals)")
    memo: dict = {}
    return ItemConfusions.of(np.stack([item_matrix(items, r, memo) for r in records]))


SEMSEG = register(
    Evaluator(
        "miou",
        "mIoU",
        columns=COLUMNS,
        headline="miou",
        precedence=-1,
        applies=has_semantic_truth,
        evaluate_items=semseg_scores,
        match_records=item_confusions,
        class_rule="the mean of its sequences' (as the CTTC's class rows; where mIoU is the headline: points sets)",
    )
)

__all__ = ["SEMSEG", "LabelledPoints", "dense_truth", "item_confusions", "semseg_scores"]

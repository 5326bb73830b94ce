"""Semantic segmentation scored over labelled points: a confusion matrix, IoU per category, mIoU.

The set that needs it is PandaSet in the MPEG FCM conditions, whose ground truth is not a mask but
LiDAR points projected into the front camera, each with a category: a prediction is the category
of the pixel a point falls on. This module is the arithmetic only; which categories there are and
how a network's labels become them is the dataset's (`vcmbench.datasets.pandaset_categories`).

What MPEG's platform (CompressAI-Vision, HEAD 31165da, `compressai_vision/evaluators/
evaluators.py`: `calculate_mIoU`, `SemanticSegmentationEval`) computes, and so this module:

* IoU of category c = TP / (TP + FP + FN) x 100 (percent), TP the points with ground truth c
  predicted c, FP those predicted c with another ground truth, FN those with ground truth c
  predicted otherwise. Every labelled point counts: the platform has no ignore label, so a point
  whose ground truth is unlabeled (VCM 0) or an unscored category and whose prediction is a scored
  category is that category's false positive. `ignore_label` (None for the platform's rule) drops
  the points whose ground truth is that label, for sets that mark don't-care points.
* Only the listed categories are scored (VCM_EVAL_CATEGORIES for PandaSet), and of those only the
  ones that occur in the ground truth: a category absent from the ground truth has no IoU (NaN,
  left out of the mean) even when it is predicted (its false positives then count only as the
  false negatives of the points' true categories). The platform's commented-out alternative,
  "present in the ground truth or the prediction", is not what it runs.
* mIoU = the plain mean of those IoUs; 0.0 when none of the listed categories occurs (the
  platform's value for that case, though no real sequence has it).
* Pooled per sequence: SemanticSegmentationEval concatenates the points of every frame of a
  sequence and computes one mIoU over them (adding the frames' confusion matrices is the same). A
  class of sequences (PANDAM1..3 in the CTTC csv) is the plain mean of its sequences' mIoUs
  (scripts/metrics/compute_per_class_miou.py), not one mIoU over the class's points:
  `mean_over_sequences`.

The arithmetic is the platform's to the last bit: the counts are exact integers, each IoU one
division and one multiplication in float64, the mean a left-to-right sum in the listed order
divided by the count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from vcmbench.errors import MetricError


def confusion_matrix(gt, pred, num_categories: int, ignore_label: int | None = None) -> np.ndarray:
    """(num_categories, num_categories) int64 counts of points, rows the ground-truth category,
    columns the predicted one; points whose ground truth is `ignore_label` are left out.

    `gt`, `pred`: category ids of the same points (any integer array-likes of one length). An id
    outside 0..num_categories-1 (other than an ignored ground truth) is refused: it would be a
    category the scoring does not know.
    """
    g = np.asarray(gt).ravel()
    p = np.asarray(pred).ravel()
    if g.shape != p.shape:
        raise MetricError(f"ground truth has {g.size} points but the prediction {p.size}; give one category per point")
    for what, ids in (("ground truth", g), ("prediction", p)):
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise MetricError(f"{what} categories are {ids.dtype}, not integers; give category ids")
    if ignore_label is not None:
        keep = g != ignore_label
        g, p = g[keep], p[keep]
    for what, ids in (("ground truth", g), ("prediction", p)):
        bad = ids[(ids < 0) | (ids >= num_categories)]
        if bad.size:
            raise MetricError(
                f"{what} category {int(bad[0])} is outside 0..{num_categories - 1}; map the labels to the "
                f"{num_categories} scored categories first (or set ignore_label for don't-care points)"
            )
    flat = g.astype(np.int64) * num_categories + p.astype(np.int64)
    return np.bincount(flat, minlength=num_categories * num_categories).reshape(num_categories, num_categories)


@dataclass(frozen=True)
class SemsegScores:
    """mIoU and the IoU of each scored category (percent; NaN: absent from the ground truth)."""

    miou: float
    per_category: dict[int, float]


def category_iou(matrix: np.ndarray, categories: Sequence[int]) -> dict[int, float]:
    """IoU in percent of each of `categories` from a confusion matrix (rows ground truth); NaN for a
    category with no ground-truth point, as the platform has it."""
    m = np.asarray(matrix)
    out: dict[int, float] = {}
    for c in categories:
        if not 0 <= c < m.shape[0]:
            raise MetricError(f"category {c} is outside the confusion matrix's 0..{m.shape[0] - 1}")
        in_gt = int(m[c, :].sum())
        if in_gt == 0:
            out[c] = math.nan
            continue
        tp = int(m[c, c])
        union = in_gt + int(m[:, c].sum()) - tp  # TP + FN + FP
        out[c] = tp / union * 100
    return out


def mean_iou(per_category: Mapping[int, float]) -> float:
    """The mean of the IoUs that are not NaN, summed in the mapping's order; 0.0 if there are none."""
    total, count = 0.0, 0
    for iou in per_category.values():
        if not math.isnan(iou):
            total += iou
            count += 1
    return total / count if count else 0.0


def score(matrix: np.ndarray, categories: Sequence[int]) -> SemsegScores:
    """mIoU and per-category IoU of one pooled set of points (a sequence's frames)."""
    per = category_iou(matrix, categories)
    return SemsegScores(mean_iou(per), per)


def mean_over_sequences(mious: Iterable[float]) -> float:
    """A class of sequences' mIoU as the CTTC csv reports it: the plain mean of its sequences'."""
    values = [float(v) for v in mious]
    if not values:
        raise MetricError("a class with no sequence has no mIoU; give at least one sequence's")
    return sum(values) / len(values)

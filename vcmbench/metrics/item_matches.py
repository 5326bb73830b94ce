"""Detections matched to ground truth once per item, aggregated to mAP under any item weights.

Why: a bootstrap over images recomputes every rate point's mAP for 1,000 resamples of the
images. Running the evaluator per resample would take hours; but its expensive part, matching
each image's detections to that image's ground truth (IoUs, greedy assignment, crowd and
group-of rules), does not depend on which other images are in the set. Only the aggregation
does: sorting detections by score across images, cumulative TP/FP counts, the precision
envelope, the mean over classes. So each point is matched once by the real evaluators
(pycocotools' `evaluateImg`, the OID matcher of `metrics.detection`) and aggregated here with
weights: a resample is how many times each item was drawn (a copy of an image adds its
detections and its ground truth once more). Weights of all ones reproduce the evaluator's
numbers to the last bit (tested), and every resample is scored by the same arithmetic,
vectorised over resamples.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vcmbench.metrics.detection import GroundTruth, coco_evaluated, oid_matches
from vcmbench.metrics.evaluators import get as evaluator_named
from vcmbench.metrics.reference_sort import reference_argsort

__all__ = ["ItemMatches", "match_items"]

SCORE_ROWS = 32  # resamples scored at once (ItemMatches.score)
COCO_MAX_DETS = 100  # COCO AP is taken at maxDets=100, area "all"


@dataclass
class _ClassMatches:
    """One class's detections over all items, already in the evaluator's score order."""

    item: np.ndarray  # (D,) index of the item each detection belongs to
    tp: np.ndarray  # (T, D) 1.0 where a true positive at IoU threshold t (COCO: not ignored)
    fp: np.ndarray  # (T, D) 1.0 where a false positive (COCO: not ignored); OID: 1 - tp
    n_gt: np.ndarray  # (n_items,) ground truth of this class in each item (COCO: not ignored)


@dataclass
class ItemMatches:
    """Everything `score` needs to give a rate point's map/ap50 under item weights."""

    metric: str  # coco | oid
    n_items: int
    classes: list[_ClassMatches]

    def score(self, weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """map and ap50 (percent) for each row of `weights` (resamples x items; None: each item
        once, the evaluator's own number). NaN where a resample holds no ground truth."""
        exact = weights is None
        w = np.ones((1, self.n_items)) if exact else np.asarray(weights, dtype=np.float64)
        if w.ndim != 2 or w.shape[1] != self.n_items:
            raise ValueError(f"weights of shape {w.shape}: give (resamples, {self.n_items})")
        score = evaluator_named(self.metric).score
        if exact or len(w) <= SCORE_ROWS:
            return score(self.classes, w, exact)
        # resamples in blocks: each resample's arithmetic is the same, and a block's (rows x
        # thresholds x detections) arrays stay in the CPU's cache (1.4x faster on 1,000 resamples)
        parts = [score(self.classes, w[i : i + SCORE_ROWS], exact) for i in range(0, len(w), SCORE_ROWS)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def match_items(
    metric: str, gt: GroundTruth, detections: Sequence[Mapping[str, Any]], image_ids: Iterable[int]
) -> ItemMatches:
    """Match once, with the metric's registered evaluator: the items are `image_ids` in sorted order
    (the evaluators' order)."""
    ids = sorted({int(i) for i in image_ids})
    evaluator = evaluator_named(metric)
    if evaluator.match is None or evaluator.score is None:
        raise ValueError(f"no per-item matching for metric {metric!r}: its evaluator registers none")
    return ItemMatches(metric, len(ids), evaluator.match(gt, detections, ids))


# --------------------------------------------------------------------------------- COCO


def coco_classes(gt: GroundTruth, detections: Sequence[Mapping[str, Any]], ids: list[int]) -> list[_ClassMatches]:
    """Per category, the concatenation `COCOeval.accumulate` makes (area "all", maxDets 100)."""
    ev = coco_evaluated(gt, detections, ids)
    if ev is None:  # no detections at all: coco_ap gives 0 whatever the images
        return []
    p = ev.params
    n_img, n_area = len(p.imgIds), len(p.areaRng)
    area_all = p.areaRngLbl.index("all")
    out = []
    for k in range(len(p.catIds)):
        evals = [(i, ev.evalImgs[k * n_area * n_img + area_all * n_img + i]) for i in range(n_img)]
        evals = [(i, e) for i, e in evals if e is not None]
        if not evals:
            continue  # no ground truth and no detection of this category anywhere: -1, left out
        scores = np.concatenate([e["dtScores"][:COCO_MAX_DETS] for _, e in evals])
        order = np.argsort(-scores, kind="mergesort")  # pycocotools' own sort
        item = np.concatenate([np.full(len(e["dtScores"][:COCO_MAX_DETS]), i) for i, e in evals])[order]
        matched = np.concatenate([e["dtMatches"][:, :COCO_MAX_DETS] for _, e in evals], axis=1)[:, order]
        ignored = np.concatenate([e["dtIgnore"][:, :COCO_MAX_DETS] for _, e in evals], axis=1)[:, order]
        n_gt = np.zeros(n_img)
        for i, e in evals:
            n_gt[i] = np.count_nonzero(np.asarray(e["gtIgnore"]) == 0)
        tp = np.logical_and(matched, np.logical_not(ignored)).astype(np.float64)
        fp = np.logical_and(np.logical_not(matched), np.logical_not(ignored)).astype(np.float64)
        out.append(_ClassMatches(item.astype(np.int64), tp, fp, n_gt))
    return out


RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1)  # pycocotools' recThrs


def coco_score(classes: list[_ClassMatches], w: np.ndarray, exact: bool) -> dict[str, np.ndarray]:
    """COCOeval.accumulate + summarize, on weighted detections, for every resample at once.

    Per class and IoU threshold: cumulative TP/FP, recall and precision, the precision made
    non-increasing from the right, then read at the 101 recall thresholds (the precision at
    the first detection whose recall reaches the threshold, 0 past the last). A class with no
    ground truth in a resample counts as -1 and is left out of the mean, as in pycocotools.
    """
    n_b, n_r = w.shape[0], len(RECALL_THRESHOLDS)
    if not classes:
        return {"map": np.zeros(n_b), "ap50": np.zeros(n_b)}
    n_t = classes[0].tp.shape[0]
    precision = -np.ones((n_b, n_t, n_r, len(classes)))
    for k, c in enumerate(classes):
        npig = w @ c.n_gt  # (B,)
        has_gt = npig > 0
        if c.item.size == 0:
            precision[has_gt, :, :, k] = 0.0
            continue
        wd = w[:, c.item][:, None, :]  # (B, 1, D)
        tp = np.cumsum(wd * c.tp[None], axis=2)
        fp = np.cumsum(wd * c.fp[None], axis=2)
        with np.errstate(divide="ignore", invalid="ignore"):
            rc = tp / npig[:, None, None]
        pr = tp / (fp + tp + np.spacing(1))
        envelope = np.maximum.accumulate(pr[..., ::-1], axis=2)[..., ::-1]
        # index of the first detection with recall >= each threshold = how many have recall
        # below it; counted through each detection's bin among the thresholds
        n_d = c.item.size
        bins = np.searchsorted(RECALL_THRESHOLDS, rc, side="right")  # thresholds <= recall
        rows = np.arange(n_b * n_t).reshape(n_b, n_t, 1)
        counts = np.bincount((rows * (n_r + 1) + bins).ravel(), minlength=n_b * n_t * (n_r + 1))
        first = np.cumsum(counts.reshape(n_b, n_t, n_r + 1), axis=2)[..., :n_r]  # detections below threshold r
        padded = np.concatenate([envelope, np.zeros((n_b, n_t, 1))], axis=2)
        q = np.take_along_axis(padded, np.minimum(first, n_d), axis=2)
        precision[has_gt, :, :, k] = q[has_gt]
    return {"map": _mean_valid(precision, exact) * 100.0, "ap50": _mean_valid(precision[:, :1], exact) * 100.0}


def _mean_valid(s: np.ndarray, exact: bool) -> np.ndarray:
    """Per resample, the mean over the entries > -1 (pycocotools' summarize); `exact`: by
    np.mean in pycocotools' own order, so that the full set gives its number to the last bit."""
    valid = s > -1
    if not exact:
        count = valid.sum(axis=tuple(range(1, s.ndim)))
        total = np.where(valid, s, 0.0).sum(axis=tuple(range(1, s.ndim)))
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(count > 0, total / count, np.nan)
    out = np.full(s.shape[0], np.nan)
    for b in range(s.shape[0]):
        if valid[b].any():
            out[b] = np.mean(s[b][valid[b]])
    return out


# --------------------------------------------------------------------------------- Open Images


def oid_classes(gt: GroundTruth, detections: Sequence[Mapping[str, Any]], ids: list[int]) -> list[_ClassMatches]:
    m = oid_matches(gt, detections, ids)
    out = []
    for c, n_pos in m.n_pos.items():
        entries = m.entries.get(c, [])
        if entries:
            scores = np.concatenate([e[1] for e in entries])
            order = reference_argsort(scores)[::-1]  # average_precision's order
            item = np.concatenate([np.full(len(e[1]), e[0]) for e in entries])[order]
            tp = np.concatenate([e[2] for e in entries])[order].astype(np.float64)[None]
        else:
            item, tp = np.zeros(0, dtype=np.int64), np.zeros((1, 0))
        out.append(_ClassMatches(item.astype(np.int64), tp, 1.0 - tp, n_pos.astype(np.float64)))
    return out


def oid_score(classes: list[_ClassMatches], w: np.ndarray, exact: bool) -> dict[str, np.ndarray]:
    """oid_map50 on weighted detections: per class, precision at each detection (weighted TP
    over weighted count), made non-increasing, summed at the TPs over the weighted positives;
    the mean over the classes with positives in the resample. `exact`: sums in oid_map50's
    own order (the full set's number to the last bit)."""
    n_b = w.shape[0]
    aps = np.full((n_b, len(classes)), np.nan)
    for k, c in enumerate(classes):
        n_pos = w @ c.n_gt
        has = n_pos > 0
        if c.item.size == 0:
            aps[has, k] = 0.0
            continue
        wd = w[:, c.item]
        ctp = np.cumsum(wd * c.tp[0], axis=1)
        count = np.cumsum(wd, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(count > 0, ctp / count, 0.0)
            precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
            hits = c.tp[0] > 0
            if exact:
                aps[has, k] = precision[0][hits].sum() / n_pos[0]
            else:
                aps[:, k] = np.where(has, (precision * wd)[:, hits].sum(axis=1) / n_pos, np.nan)
    if exact:
        valid = aps[0][~np.isnan(aps[0])]
        out = np.array([float(np.mean(valid.tolist())) * 100.0 if valid.size else np.nan])
    else:
        with np.errstate(invalid="ignore"):
            out = np.nanmean(aps, axis=1) * 100.0 if aps.size else np.full(n_b, np.nan)
    return {"map": out, "ap50": out.copy()}

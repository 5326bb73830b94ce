"""The Open Images challenge mAP@0.5, on boxes (detection) and on masks (instance
segmentation), as MPEG's evaluator computes it.

The reference is the evaluator the MPEG platform (CompressAI-Vision) runs for the OpenImages
rows of the FCM test conditions: the TensorFlow Object Detection API's
`OpenImagesChallengeEvaluator` (with `evaluate_masks=True` for segmentation), which the platform
feeds an all-zero mask for every ground-truth object that has none, and, in mask mode, each
detection's box as the enclosing box of its mask. That evaluator lives in the TensorFlow object
detection API, far too heavy a dependency for a benchmark harness; its rules are small, so they
are written here from its behaviour and pinned by hand-computed tests and golden numbers
(tests/metrics/test_detection.py, tests/metrics/test_openimages.py).

The rules, per image and class (detections of a class neither verified nor boxed in the image
are ignored; detections are matched in the order of `np.argsort(scores)[::-1]`, numpy's own sort on
every CPU: `reference_sort`):

1. Non-group-of objects: each detection goes to its highest-IoU object; it is a TP if that IoU
   is >= 0.5 and the object is still unmatched.
2. Group-of objects: every detection not made a TP and lying inside one (IoA, intersection over
   the detection's area, >= 0.5 with its highest-IoA group) is absorbed; each group hit becomes
   one TP carrying the highest absorbed score (a hit scored exactly 0 vanishes).
3. Everything else is a FP. Recall counts every object once, group-of ones included.

On masks (`iou_type="segm"`), objects with a mask are matched by mask overlaps first (steps 1
and 2). Objects without a mask (none in the file, or an empty one) are, as in the reference,
**regions to ignore**: they are not counted in the recall, and the detections still unmatched
after the masked objects that match one by box (the enclosing box of the detection's mask
against the object's box; steps 1 and 2 again) are dropped, neither TP nor FP. A second
detection on an already matched mask-less non-group-of box stays a FP, as there. A detection
whose mask is empty has no box, so it is dropped before matching, as the reference drops boxes
without area.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from vcmbench.errors import MetricError
from vcmbench.metrics.ground_truth import (
    GroundTruth,
    clean_detections,
    evaluated_image_ids,
    load_ground_truth,
    read_json,
)
from vcmbench.metrics.reference_sort import reference_argsort

__all__ = ["OID_IOU", "OidMatches", "average_precision", "box_overlaps", "mask_overlaps", "oid_map50", "oid_matches"]

OID_IOU = 0.5  # the Open Images challenge matches at IoU (and group-of IoA) 0.5


# --------------------------------------------------------------------------- ground truth


@dataclass(frozen=True)
class _OidImage:
    """One image's GT: per class, xyxy boxes and their group-of flags; the verified labels."""

    boxes: dict[int, tuple[np.ndarray, np.ndarray]]
    verified: frozenset[int]
    #: per class, the objects' segmentations as the annotation file gives them (None where one
    #: has none): what mask mode matches instead of the boxes, decoded only then (`_class_masks`)
    segmentations: dict[int, list] = field(default_factory=dict)
    size: tuple[int, int] = (0, 0)  # (height, width) from 'images', 0 where not given
    #: per class, the decoded masks and which objects have one: decoded once per cached index,
    #: since a sweep scores the same ground truth at every rate point
    decoded: dict[int, tuple[list, np.ndarray]] = field(default_factory=dict, compare=False)


def _oid_index(data: Mapping[str, Any]) -> dict[int, _OidImage]:
    per_image: dict[int, dict[int, list]] = {int(im["id"]): {} for im in data["images"]}
    for k, a in enumerate(data["annotations"]):
        try:
            img, cat = int(a["image_id"]), int(a["category_id"])
            x, y, w, h = (float(v) for v in a["bbox"])
        except (KeyError, TypeError, ValueError) as e:
            raise MetricError(
                f"ground-truth annotation {k} is malformed ({type(e).__name__}: {e}); it needs "
                "image_id, category_id and bbox [x, y, w, h]"
            ) from None
        if img not in per_image:
            raise MetricError(f"ground-truth annotation {k} refers to image_id={img}, which is not in 'images'")
        group = a["is_group_of"] if "is_group_of" in a else a.get("iscrowd", 0)
        per_image[img].setdefault(cat, []).append((x, y, x + w, y + h, bool(group), a.get("segmentation")))
    index = {}
    for im in data["images"]:
        iid = int(im["id"])
        classes = per_image[iid]
        boxes = {
            c: (np.array([r[:4] for r in rows], dtype=np.float64), np.array([r[4] for r in rows], dtype=bool))
            for c, rows in classes.items()
        }
        segmentations = {c: [r[5] or None for r in rows] for c, rows in classes.items()}
        # Reference: a class is evaluatable in an image if it is an image-level label (positive
        # or negative; `verified_labels` where a file does not say which) or has a GT box there. Without image-level labels that reduces to the GT
        # box classes (positives) and no negatives.
        labels = {int(c) for key in ("pos_labels", "neg_labels", "verified_labels") for c in im.get(key, ())}
        size = (int(im.get("height", 0)), int(im.get("width", 0)))
        index[iid] = _OidImage(boxes, frozenset(labels | set(classes)), segmentations, size)
    return index


@lru_cache(maxsize=4)
def _oid_cached(path: str, mtime_ns: int, size: int) -> dict[int, _OidImage]:
    return _oid_index(read_json(path, mtime_ns, size))


def _gt_rle(segmentation: Any, size: tuple[int, int]):
    """A mask (COCO RLE, compressed or not, or polygons) as one pycocotools RLE."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, Mapping):
        counts = segmentation["counts"]
        rle = {"size": list(segmentation["size"]), "counts": counts.encode() if isinstance(counts, str) else counts}
        return mask_utils.frPyObjects(rle, *rle["size"]) if isinstance(counts, list) else rle
    if not all(size):
        raise MetricError("a polygon mask needs its image's height and width in 'images'")
    return mask_utils.merge(mask_utils.frPyObjects(segmentation, *size))


def _class_masks(info: _OidImage, c: int) -> tuple[list, np.ndarray]:
    """The ground-truth masks of class `c` in one image (None where an object has none) and
    which objects have one: a segmentation that is absent or covers no pixel counts as none,
    as the reference reads an all-zero mask."""
    if c not in info.decoded:
        from pycocotools import mask as mask_utils

        rles = [None if seg is None else _gt_rle(seg, info.size) for seg in info.segmentations.get(c, ())]
        present = np.array([r is not None and int(mask_utils.area(r)) > 0 for r in rles], dtype=bool)
        info.decoded[c] = (rles, present)
    return info.decoded[c]


# --------------------------------------------------------------------------- overlaps


def box_overlaps(det: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IoU and IoA (intersection over detection area) of (n,4) xyxy vs (m,4) xyxy boxes."""
    iw = np.minimum(det[:, None, 2], gt[None, :, 2]) - np.maximum(det[:, None, 0], gt[None, :, 0])
    ih = np.minimum(det[:, None, 3], gt[None, :, 3]) - np.maximum(det[:, None, 1], gt[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_d = np.clip(det[:, 2] - det[:, 0], 0, None) * np.clip(det[:, 3] - det[:, 1], 0, None)
    area_g = np.clip(gt[:, 2] - gt[:, 0], 0, None) * np.clip(gt[:, 3] - gt[:, 1], 0, None)
    union = area_d[:, None] + area_g[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
        ioa = np.where(area_d[:, None] > 0, inter / area_d[:, None], 0.0)
    return iou, ioa


def mask_overlaps(det: list, gt: list) -> tuple[np.ndarray, np.ndarray]:
    """IoU and IoA (intersection over detection area) of n detected vs m ground-truth mask RLEs:
    pycocotools' iou, whose crowd mode divides by the detection's area."""
    from pycocotools import mask as mask_utils

    if not det or not gt:
        return np.zeros((len(det), len(gt))), np.zeros((len(det), len(gt)))
    iou = np.asarray(mask_utils.iou(det, gt, [0] * len(gt)), dtype=np.float64).reshape(len(det), len(gt))
    ioa = np.asarray(mask_utils.iou(det, gt, [1] * len(gt)), dtype=np.float64).reshape(len(det), len(gt))
    return iou, ioa


# --------------------------------------------------------------------------- matching


@dataclass(frozen=True)
class _Stage:
    """One pass of the matching over one set of ground-truth objects."""

    iou: np.ndarray  # (detections, the set's non-group-of objects)
    ioa: np.ndarray  # (detections, the set's group-of objects)
    #: False for the objects without a mask in mask mode: what they match is dropped, not scored
    scored: bool = True


def _match_oid(scores: np.ndarray, stages: Sequence[_Stage]) -> tuple[np.ndarray, np.ndarray]:
    """Scores and TP flags of one image's detections of one class (sorted by score, desc) after
    the stages in turn (the module's rules 1-3; see its docstring for the mask-less objects).
    A detection settled by one stage (TP or absorbed) is not looked at again by a later one."""
    n = len(scores)
    tp = np.zeros(n, dtype=bool)
    absorbed = np.zeros(n, dtype=bool)
    dropped = np.zeros(n, dtype=bool)
    hits: list[np.ndarray] = []
    for stage in stages:
        if stage.iou.shape[1]:
            best = np.argmax(stage.iou, axis=1)
            taken = np.zeros(stage.iou.shape[1], dtype=bool)
            for i in range(n):
                j = best[i]
                if not tp[i] and not absorbed[i] and stage.iou[i, j] >= OID_IOU and not taken[j]:
                    tp[i] = taken[j] = True
                    dropped[i] = not stage.scored
        if stage.ioa.shape[1]:
            # Reference rule: each group's entry carries the highest score of the detections it
            # absorbed, starting from 0, and only entries above 0 are kept (`scores_group_of > 0`).
            best = np.argmax(stage.ioa, axis=1)
            hit_score = np.zeros(stage.ioa.shape[1], dtype=np.float64)
            for i in range(n):
                j = best[i]
                if not tp[i] and not absorbed[i] and stage.ioa[i, j] >= OID_IOU:
                    absorbed[i] = True
                    dropped[i] = not stage.scored
                    hit_score[j] = max(hit_score[j], float(scores[i]))
            if stage.scored:
                hits.append(hit_score[hit_score > 0])
    keep = ~absorbed & ~dropped
    group_hits = np.concatenate(hits) if hits else np.zeros(0)
    out_scores = np.concatenate([scores[keep], group_hits])
    out_tp = np.concatenate([tp[keep], np.ones(len(group_hits), dtype=bool)])
    return out_scores, out_tp


def _box_stage(det_boxes: np.ndarray, gt_boxes: np.ndarray, group: np.ndarray, scored: bool = True) -> _Stage:
    iou, ioa = box_overlaps(det_boxes, gt_boxes)
    return _Stage(iou[:, ~group], ioa[:, group], scored)


def _mask_stages(det_rles: list, det_boxes: np.ndarray, info: _OidImage, c: int) -> list[_Stage]:
    """Mask mode's stages: the objects with a mask by mask overlaps, then those without one by
    the boxes, dropped."""
    gt_boxes, group = info.boxes[c]
    rles, present = _class_masks(info, c)
    masked = [r for r, p in zip(rles, present) if p]
    iou, ioa = mask_overlaps(det_rles, masked)
    masked_group = group[present]
    stages = [_Stage(iou[:, ~masked_group], ioa[:, masked_group])]
    if not present.all():
        stages.append(_box_stage(det_boxes, gt_boxes[~present], group[~present], scored=False))
    return stages


def average_precision(scores: np.ndarray, tp: np.ndarray, n_pos: int) -> float:
    """VOC2010+/OID AP: area under the PR curve with precision made non-increasing.

    Recall rises by exactly 1/n_pos at each TP, so the area is the sum of the interpolated
    precision at the TPs divided by n_pos (summing ones keeps a perfect result exactly 1).
    """
    if tp.size == 0:
        return 0.0
    # Reference rule (tied scores): the order is `np.argsort(scores)[::-1]` over the whole class
    # (numpy's default sort, reversed), not the input order; ties are where the two differ. numpy's
    # own sort, not the one it picks on an AVX-512 CPU (metrics.reference_sort).
    order = reference_argsort(scores)[::-1]
    tp = tp[order]
    ctp = np.cumsum(tp)
    precision = ctp / np.arange(1, tp.size + 1)
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(precision[tp].sum() / n_pos)


@dataclass
class OidMatches:
    """Every image's detections matched to its ground truth, per class, by the challenge's rules:
    what `oid_map50` sums over the images (and `metrics.item_matches` under resampled weights)."""

    image_ids: list[int]
    #: class -> counted ground-truth objects per image (in `image_ids` order): the recall
    #: denominators (in mask mode, the objects with a mask)
    n_pos: dict[int, np.ndarray]
    #: class -> one (image index, scores, TP flags) per image with evaluated detections of it
    entries: dict[int, list[tuple[int, np.ndarray, np.ndarray]]]


def _detections(detections: Sequence[Mapping[str, Any]], known: set[int], segm: bool) -> list[dict]:
    """Validated detections; in mask mode each one's box is the enclosing box of its mask (what
    the reference is fed), so a detection with an empty mask has no area."""
    cleaned = clean_detections(detections, known, segm=segm)
    if not segm or not cleaned:
        return cleaned
    from pycocotools import mask as mask_utils

    rles = [_gt_rle(d["segmentation"], (0, 0)) for d in cleaned]
    boxes = mask_utils.toBbox(rles).reshape(-1, 4)
    return [dict(d, bbox=b.tolist(), rle=r) for d, b, r in zip(cleaned, boxes, rles)]


def oid_matches(
    gt: GroundTruth,
    detections: Sequence[Mapping[str, Any]],
    image_ids: Iterable[int] | None = None,
    iou_type: str = "bbox",
) -> OidMatches:
    """Match each image's detections to its ground truth (the module's rules)."""
    if iou_type not in ("bbox", "segm"):
        raise MetricError(f"iou_type={iou_type!r}: choose bbox or segm")
    data, key = load_ground_truth(gt)
    ids = evaluated_image_ids(data, image_ids)
    index = _oid_cached(*key) if key else _oid_index(data)
    wanted = set(ids)
    segm = iou_type == "segm"
    by_image: dict[int, dict[int, list[dict]]] = {}
    for d in _detections(detections, set(index), segm):
        if d["image_id"] in wanted:
            by_image.setdefault(d["image_id"], {}).setdefault(d["category_id"], []).append(d)

    n_pos: dict[int, np.ndarray] = {}
    entries: dict[int, list[tuple[int, np.ndarray, np.ndarray]]] = {}
    for k, iid in enumerate(ids):
        info = index[iid]
        for c, (boxes, _) in info.boxes.items():
            counted = int(_class_masks(info, c)[1].sum()) if segm else len(boxes)
            n_pos.setdefault(c, np.zeros(len(ids), dtype=np.int64))[k] += counted
        for c, cdets in by_image.get(iid, {}).items():
            if c not in info.verified:
                continue  # class not annotated in this image: neither TP nor FP
            s = np.array([d["score"] for d in cdets], dtype=np.float64)
            b = np.array([d["bbox"] for d in cdets], dtype=np.float64)
            b[:, 2:] += b[:, :2]  # xywh -> xyxy
            # Reference rules: a detection without area (x1 >= x2 or y1 >= y2) is dropped before
            # matching, neither TP nor FP; the rest are matched in the order of
            # `np.argsort(scores)[::-1]` (its NMS at IoU 1.0 only sorts), which for tied scores
            # is not the input order.
            valid = (b[:, 0] < b[:, 2]) & (b[:, 1] < b[:, 3])
            if not valid.any():
                continue
            order = np.flatnonzero(valid)[reference_argsort(s[valid])[::-1]]
            s, b = s[order], b[order]
            if c in info.boxes:
                if segm:
                    stages = _mask_stages([cdets[i]["rle"] for i in order], b, info, c)
                else:
                    stages = [_box_stage(b, *info.boxes[c])]
                s, tp = _match_oid(s, stages)
            else:  # verified negative: every detection is a FP
                tp = np.zeros(len(s), dtype=bool)
            entries.setdefault(c, []).append((k, s, tp))
    return OidMatches(ids, n_pos, entries)


def oid_map50(
    gt: GroundTruth,
    detections: Sequence[Mapping[str, Any]],
    image_ids: Iterable[int] | None = None,
    iou_type: str = "bbox",
) -> dict[str, float]:
    """Open Images challenge mAP@0.5 in percent (``map``; ``ap50`` holds the same number).

    Ground truth: COCO json; annotations may carry ``is_group_of`` (else COCO ``iscrowd`` is
    read as group-of); images may carry ``pos_labels``/``neg_labels`` (verified image-level
    category ids). Detections of a class in an image where that class is neither verified
    nor boxed are ignored, as the challenge does for unannotated classes. With `iou_type`
    "segm" (the instance-segmentation challenge) the rules run on masks, and objects without a
    mask are regions to ignore (the module's docstring). The mean is over the classes with at
    least one counted object.
    """
    m = oid_matches(gt, detections, image_ids, iou_type)
    classes = [c for c, n in m.n_pos.items() if n.sum() > 0]
    if not classes:
        what = "masks" if iou_type == "segm" else "boxes"
        raise MetricError(
            f"the {len(m.image_ids)} evaluated image(s) have no ground-truth {what}, so mAP is undefined; "
            f"evaluate images whose annotations have {what}"
        )
    aps = [
        average_precision(
            np.concatenate([e[1] for e in m.entries[c]]),
            np.concatenate([e[2] for e in m.entries[c]]),
            int(m.n_pos[c].sum()),
        )
        if c in m.entries
        else 0.0
        for c in classes
    ]
    value = float(np.mean(aps)) * 100.0
    return {"map": value, "ap50": value}

"""Detection evaluators: COCO AP (pycocotools) and, from `metrics.openimages`, the Open Images
challenge mAP@0.5; the dispatch between them and the conversion of a detector's output.

Both take detections in COCO results format (list of ``{"image_id", "category_id",
"bbox": [x, y, w, h], "score"}``) and ground truth as a COCO instances json (a path or an
already-loaded dict), and return percentages (0..100) under the keys ``map`` and ``ap50``
so the points table can hold either metric in the same columns.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Mapping, Sequence
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
from vcmbench.metrics.openimages import OidMatches, box_overlaps, oid_map50, oid_matches

__all__ = [
    "GroundTruth",
    "OidMatches",
    "box_overlaps",
    "coco_ap",
    "coco_evaluated",
    "oid_map50",
    "oid_matches",
    "evaluate",
    "detections_to_coco",
]


# --------------------------------------------------------------------------- COCO AP


def _coco_from(data: Mapping[str, Any]):
    """A pycocotools COCO over shallow copies of the annotations with the fields COCOeval needs."""
    from pycocotools.coco import COCO

    anns = []
    for k, a in enumerate(data["annotations"]):
        a = dict(a)
        a.setdefault("id", k + 1)
        a.setdefault("iscrowd", 0)
        if "area" not in a:
            a["area"] = float(a["bbox"][2]) * float(a["bbox"][3])
        anns.append(a)
    coco = COCO()
    coco.dataset = {
        "images": list(data["images"]),
        "annotations": anns,
        "categories": list(data["categories"]),
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


@lru_cache(maxsize=4)
def _coco_cached(path: str, mtime_ns: int, size: int):
    return _coco_from(read_json(path, mtime_ns, size))


def coco_evaluated(
    gt: GroundTruth,
    detections: Sequence[Mapping[str, Any]],
    image_ids: Iterable[int] | None = None,
    iou_type: str = "bbox",
):
    """pycocotools' COCOeval after `evaluate()` (every image's detections matched to its ground
    truth, `evalImgs`), or None when there are no detections; `coco_ap` accumulates it over the
    images, `metrics.item_matches` under resampled image weights. `iou_type` "segm" matches masks
    (the detections' RLE against the ground truth's polygons or RLE)."""
    from pycocotools.cocoeval import COCOeval

    data, key = load_ground_truth(gt)
    ids = evaluated_image_ids(data, image_ids)
    coco = _coco_cached(*key) if key else _coco_from(data)
    n_gt = sum(1 for i in ids for a in coco.imgToAnns.get(i, ()) if not a.get("iscrowd", 0))
    if n_gt == 0:
        raise MetricError(
            f"the {len(ids)} evaluated image(s) have no non-crowd ground-truth boxes, so AP is "
            "undefined; evaluate images that have annotations"
        )
    if iou_type not in ("bbox", "segm"):
        raise MetricError(f"iou_type={iou_type!r}: choose bbox or segm")
    if iou_type == "segm":
        bare = next((a for i in ids for a in coco.imgToAnns.get(i, ()) if not a.get("segmentation")), None)
        if bare is not None:
            raise MetricError(
                f"ground-truth annotation {bare.get('id')} (image {bare.get('image_id')}) has no "
                "segmentation; mask AP needs instance masks in the annotation file"
            )
    wanted = set(ids)
    dets = [d for d in clean_detections(detections, set(coco.imgs), iou_type == "segm") if d["image_id"] in wanted]
    if not dets:
        return None
    with contextlib.redirect_stdout(io.StringIO()):
        res = coco.loadRes(dets)
        ev = COCOeval(coco, res, iouType=iou_type)
        ev.params.imgIds = ids
        ev.evaluate()
    return ev


def coco_ap(
    gt: GroundTruth,
    detections: Sequence[Mapping[str, Any]],
    image_ids: Iterable[int] | None = None,
    iou_type: str = "bbox",
) -> dict[str, float]:
    """COCO AP@[.5:.95] (``map``) and AP@.5 (``ap50``), in percent, via pycocotools: of boxes, or
    with `iou_type` "segm" of masks."""
    ev = coco_evaluated(gt, detections, image_ids, iou_type)
    if ev is None:
        return {"map": 0.0, "ap50": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        ev.accumulate()
        ev.summarize()
    return {"map": float(ev.stats[0]) * 100.0, "ap50": float(ev.stats[1]) * 100.0}


# --------------------------------------------------------------------------- Open Images
# --------------------------------------------------------------------------- dispatch, conversion


def evaluate(
    metric: str,
    gt: GroundTruth,
    detections: Sequence[Mapping[str, Any]],
    image_ids: Iterable[int] | None = None,
    iou_type: str = "bbox",
) -> dict[str, float]:
    """Run the evaluator a dataset config names (`metrics.evaluators`: 'coco', 'oid', ...), on boxes
    or (`iou_type` "segm") on masks."""
    from vcmbench.metrics.evaluators import get as evaluator_named

    return evaluator_named(metric).evaluate(gt, detections, image_ids, iou_type)


def _as_array(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, possibly on GPU or requiring grad
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as e:
        raise MetricError(f"{name} cannot be converted to an array ({e})") from None


def detections_to_coco(
    image_id: int,
    boxes_xyxy: Any,
    scores: Any,
    labels: Any,
    category_ids: Sequence[int] | None = None,
) -> list[dict]:
    """COCO result dicts from a detector's (N,4) xyxy boxes, (N,) scores and (N,) labels.

    ``category_ids[label]`` gives the dataset category id when the model's label indices are
    contiguous (0..K-1) while the dataset's ids are not (COCO's 1..90 with gaps). Values keep
    full float precision: rounding here would move AP at the third decimal.
    """
    boxes = _as_array(boxes_xyxy, "boxes_xyxy").astype(np.float64)
    s = _as_array(scores, "scores").astype(np.float64).reshape(-1)
    lab = _as_array(labels, "labels").reshape(-1)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise MetricError(f"boxes_xyxy must have shape (N, 4), got {tuple(boxes.shape)}")
    if not (len(boxes) == len(s) == len(lab)):
        raise MetricError(f"boxes ({len(boxes)}), scores ({len(s)}) and labels ({len(lab)}) must have the same length")
    if lab.size and not np.all(np.equal(np.mod(lab, 1), 0)):
        raise MetricError("labels must be integer class indices")
    lab = lab.astype(np.int64)
    if category_ids is not None:
        cats = list(category_ids)
        bad = lab[(lab < 0) | (lab >= len(cats))]
        if bad.size:
            raise MetricError(
                f"label {int(bad[0])} has no entry in category_ids (length {len(cats)}); pass the "
                "full label-index -> category-id list of the model"
            )
        cat = [int(cats[i]) for i in lab]
    else:
        cat = [int(i) for i in lab]
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).tolist()
    iid = int(image_id)
    return [{"image_id": iid, "category_id": c, "bbox": b, "score": sc} for c, b, sc in zip(cat, xywh, s.tolist())]

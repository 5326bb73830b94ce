"""Detection evaluators: COCO AP (pycocotools) and the Open Images challenge mAP@0.5.

Both take detections in COCO results format (list of ``{"image_id", "category_id",
"bbox": [x, y, w, h], "score"}``) and ground truth as a COCO instances json (a path or an
already-loaded dict), and return percentages (0..100) under the keys ``map`` and ``ap50``
so the points table can hold either metric in the same columns.

Why a home-grown Open Images evaluator: the official one lives in the TensorFlow object
detection API, far too heavy a dependency for a benchmark harness. The protocol it
implements (verified image-level labels, group-of boxes, VOC2010+ AP) is small; it is
re-implemented here from the challenge's description and pinned by hand-computed tests.

A sweep evaluates the same annotation file once per codec and rate point, so parsed ground
truth is cached by (path, mtime, size): an edited file is reread, an unchanged one is not.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from vcmbench.errors import MetricError

__all__ = ["GroundTruth", "METRICS", "OidMatches", "coco_ap", "coco_evaluated", "oid_map50", "oid_matches", "evaluate",
           "detections_to_coco"]

GroundTruth = str | os.PathLike | Mapping[str, Any]

OID_IOU = 0.5  # the Open Images challenge matches at IoU (and group-of IoA) 0.5


# --------------------------------------------------------------------------- ground truth


def _path_key(gt: str | os.PathLike) -> tuple[str, int, int]:
    path = Path(gt).expanduser()
    try:
        st = path.stat()
        resolved = str(path.resolve())
    except OSError as e:
        raise MetricError(
            f"ground-truth annotation file {str(path)!r} cannot be read ({e.strerror}); "
            "pass the path of a COCO instances json (or the loaded dict)"
        ) from None
    return resolved, st.st_mtime_ns, st.st_size


@lru_cache(maxsize=4)
def _read_json(path: str, mtime_ns: int, size: int) -> dict:
    """Parse a GT json once per (path, mtime, size); the result is shared: never mutate it."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise MetricError(
            f"ground-truth annotation file {path!r} is not valid JSON ({e}); "
            "regenerate it or point to the right file"
        ) from None
    _check_dataset(data, path)
    return data


def _check_dataset(data: Any, where: str) -> None:
    if not isinstance(data, Mapping):
        raise MetricError(f"ground truth {where} is a {type(data).__name__}, not a COCO json object")
    missing = [k for k in ("images", "annotations", "categories") if k not in data]
    if missing:
        raise MetricError(
            f"ground truth {where} lacks COCO key(s) {missing}; it must be a COCO instances json "
            "with 'images', 'annotations' and 'categories'"
        )


def _dataset(gt: GroundTruth) -> tuple[Mapping[str, Any], tuple | None]:
    """The GT dict and, for files, the cache key that identifies its current version."""
    if isinstance(gt, Mapping):
        _check_dataset(gt, "(dict)")
        return gt, None
    if isinstance(gt, (str, os.PathLike)):
        key = _path_key(gt)
        return _read_json(*key), key
    raise MetricError(
        f"ground truth must be a COCO json path or a loaded dict, got {type(gt).__name__}"
    )


def _image_ids(data: Mapping[str, Any], image_ids: Iterable[int] | None) -> list[int]:
    """The evaluated image ids (all GT images by default); unknown ids are an error."""
    known = {int(im["id"]) for im in data["images"]}
    if image_ids is None:
        return sorted(known)
    ids = sorted({int(i) for i in image_ids})
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise MetricError(
            f"image_ids {unknown[:10]}{' ...' if len(unknown) > 10 else ''} are not in the "
            "ground truth; evaluate only images of the dataset the annotations describe"
        )
    return ids


def _clean_detections(detections: Sequence[Mapping[str, Any]], known: set[int], segm: bool = False) -> list[dict]:
    """Validated copies (pycocotools' loadRes writes into the dicts it is given). With `segm`,
    each keeps its `segmentation` (COCO RLE) and drops its box: loadRes takes a result's box over
    its mask when it has both, and derives the box from the mask when it has none."""
    if not isinstance(detections, (list, tuple)):
        raise MetricError(
            f"detections must be a list of COCO result dicts, got {type(detections).__name__}; "
            "use detections_to_coco() to build them"
        )
    out = []
    for i, d in enumerate(detections):
        try:
            bbox = [float(v) for v in d["bbox"]]
            det = {
                "image_id": int(d["image_id"]),
                "category_id": int(d["category_id"]),
                "bbox": bbox,
                "score": float(d["score"]),
            }
        except (KeyError, TypeError, ValueError) as e:
            raise MetricError(
                f"detection {i} ({d!r:.120}) is malformed ({type(e).__name__}: {e}); each needs "
                "image_id, category_id, bbox [x, y, w, h] and score"
            ) from None
        if len(bbox) != 4 or not all(math.isfinite(v) for v in (*bbox, det["score"])):
            raise MetricError(
                f"detection {i} has bbox={bbox} score={det['score']}: bbox must be 4 finite "
                "numbers [x, y, w, h] and score finite"
            )
        if det["image_id"] not in known:
            raise MetricError(
                f"detection {i} has image_id={det['image_id']}, which is not in the ground truth; "
                "the detections belong to another dataset or the image ids were remapped"
            )
        if segm:
            rle = d.get("segmentation")
            if not isinstance(rle, Mapping) or "counts" not in rle or "size" not in rle:
                raise MetricError(f"detection {i} has no segmentation RLE ({{size, counts}}); mask AP needs the "
                                  "masks of a segmenting network (Mask R-CNN)")
            det.pop("bbox")
            det["segmentation"] = {"size": [int(v) for v in rle["size"]], "counts": rle["counts"]}
        out.append(det)
    return out


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
    return _coco_from(_read_json(path, mtime_ns, size))


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

    data, key = _dataset(gt)
    ids = _image_ids(data, image_ids)
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
            raise MetricError(f"ground-truth annotation {bare.get('id')} (image {bare.get('image_id')}) has no "
                              "segmentation; mask AP needs instance masks in the annotation file")
    wanted = set(ids)
    dets = [d for d in _clean_detections(detections, set(coco.imgs), iou_type == "segm") if d["image_id"] in wanted]
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


@dataclass(frozen=True)
class _OidImage:
    """One image's GT: per class, xyxy boxes and their group-of flags; the verified labels."""

    boxes: dict[int, tuple[np.ndarray, np.ndarray]]
    verified: frozenset[int]
    #: per class, the boxes' masks as the annotation file gives them (None where one has none):
    #: what mask mode matches instead of the boxes, read only then (`_class_masks`)
    masks: dict[int, list] | None = None
    size: tuple[int, int] = (0, 0)  # (height, width) from 'images', 0 where not given


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
            raise MetricError(
                f"ground-truth annotation {k} refers to image_id={img}, which is not in 'images'"
            )
        group = a["is_group_of"] if "is_group_of" in a else a.get("iscrowd", 0)
        per_image[img].setdefault(cat, []).append((x, y, x + w, y + h, bool(group), a.get("segmentation")))
    sizes = {int(im["id"]): (int(im.get("height", 0)), int(im.get("width", 0))) for im in data["images"]}
    index = {}
    for im in data["images"]:
        iid = int(im["id"])
        classes = per_image[iid]
        boxes = {
            c: (np.array([r[:4] for r in rows], dtype=np.float64), np.array([r[4] for r in rows]))
            for c, rows in classes.items()
        }
        masks = {c: [r[5] or None for r in rows] for c, rows in classes.items()}
        # Official evaluator: a class is evaluatable in an image if it is an image-level
        # label (positive or negative) or has a GT box there. Without image-level labels
        # that reduces to the GT box classes (positives) and no negatives.
        labels = {int(c) for c in im.get("pos_labels", ())} | {int(c) for c in im.get("neg_labels", ())}
        index[iid] = _OidImage(boxes, frozenset(labels | set(classes)), masks, sizes[iid])
    return index


def _gt_rle(segmentation: Any, size: tuple[int, int]):
    """A ground-truth mask (COCO RLE, compressed or not, or polygons) as one pycocotools RLE."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, Mapping):
        counts = segmentation["counts"]
        rle = {"size": list(segmentation["size"]), "counts": counts.encode() if isinstance(counts, str) else counts}
        return mask_utils.frPyObjects(rle, *rle["size"]) if isinstance(counts, list) else rle
    if not all(size):
        raise MetricError("a polygon mask needs its image's height and width in 'images'")
    return mask_utils.merge(mask_utils.frPyObjects(segmentation, *size))


def mask_overlaps(det: list, gt: list) -> tuple[np.ndarray, np.ndarray]:
    """IoU and IoA (intersection over detection area) of n detected vs m ground-truth mask RLEs:
    pycocotools' iou, whose crowd mode divides by the detection's area."""
    from pycocotools import mask as mask_utils

    if not det or not gt:
        return np.zeros((len(det), len(gt))), np.zeros((len(det), len(gt)))
    iou = np.asarray(mask_utils.iou(det, gt, [0] * len(gt)), dtype=np.float64).reshape(len(det), len(gt))
    ioa = np.asarray(mask_utils.iou(det, gt, [1] * len(gt)), dtype=np.float64).reshape(len(det), len(gt))
    return iou, ioa


@lru_cache(maxsize=4)
def _oid_cached(path: str, mtime_ns: int, size: int) -> dict[int, _OidImage]:
    return _oid_index(_read_json(path, mtime_ns, size))


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


def _match_oid(
    iou: np.ndarray, ioa: np.ndarray, scores: np.ndarray, group: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and TP flags of one image's detections of one class (sorted by score, desc), from
    their overlaps with the class's ground truth (`box_overlaps`, or `mask_overlaps` for masks).

    Non-group-of boxes first: each detection goes to its highest-IoU box; TP if IoU >= 0.5 and
    that box is still unmatched. Every detection not made TP that way and lying (IoA >= 0.5)
    inside a group-of box is absorbed by it; each group-of box hit yields one TP entry with
    the highest score among its detections, the others vanish. Everything else is a FP.
    As in the official evaluator, a duplicate of an already-matched box is a FP unless it
    also lies inside a group-of box, in which case it is absorbed like any other.
    """
    n = len(scores)
    tp = np.zeros(n, dtype=bool)
    absorbed = np.zeros(n, dtype=bool)
    # Reference rule: each group-of box's entry carries the highest score of the detections it
    # absorbed, starting from 0, and only entries above 0 are kept (`scores_group_of > 0`): a hit
    # scored exactly 0 vanishes. Entries follow the boxes' order, after the other detections.
    single = np.flatnonzero(~group)
    if single.size:
        best = single[np.argmax(iou[:, single], axis=1)]
        taken = np.zeros(len(group), dtype=bool)
        for i in range(n):
            j = best[i]
            if iou[i, j] >= OID_IOU and not taken[j]:
                tp[i] = taken[j] = True
    groups = np.flatnonzero(group)
    hit_score = np.zeros(len(group), dtype=np.float64)
    if groups.size:
        best = groups[np.argmax(ioa[:, groups], axis=1)]
        for i in range(n):
            j = int(best[i])
            if not tp[i] and ioa[i, j] >= OID_IOU:
                absorbed[i] = True
                hit_score[j] = max(hit_score[j], float(scores[i]))
    hits = hit_score[groups][hit_score[groups] > 0]
    keep = ~absorbed
    out_scores = np.concatenate([scores[keep], hits])
    out_tp = np.concatenate([tp[keep], np.ones(len(hits), dtype=bool)])
    return out_scores, out_tp


def average_precision(scores: np.ndarray, tp: np.ndarray, n_pos: int) -> float:
    """VOC2010+/OID AP: area under the PR curve with precision made non-increasing.

    Recall rises by exactly 1/n_pos at each TP, so the area is the sum of the interpolated
    precision at the TPs divided by n_pos (summing ones keeps a perfect result exactly 1).
    """
    if tp.size == 0:
        return 0.0
    # Reference rule (tied scores): the order is `np.argsort(scores)[::-1]` over the whole class
    # (numpy's default sort, reversed), not the input order; ties are where the two differ.
    order = np.argsort(scores)[::-1]
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
    #: class -> ground-truth boxes per image (in `image_ids` order): the recall denominators
    n_pos: dict[int, np.ndarray]
    #: class -> one (image index, scores, TP flags) per image with evaluated detections of it
    entries: dict[int, list[tuple[int, np.ndarray, np.ndarray]]]


def oid_matches(
    gt: GroundTruth,
    detections: Sequence[Mapping[str, Any]],
    image_ids: Iterable[int] | None = None,
    iou_type: str = "bbox",
) -> OidMatches:
    """Match each image's detections to its ground truth (see `oid_map50` for the rules)."""
    if iou_type not in ("bbox", "segm"):
        raise MetricError(f"iou_type={iou_type!r}: choose bbox or segm")
    data, key = _dataset(gt)
    ids = _image_ids(data, image_ids)
    index = _oid_cached(*key) if key else _oid_index(data)
    wanted = set(ids)
    segm = iou_type == "segm"
    cleaned = _clean_detections(detections, set(index))
    if segm:  # the box stays (validity, as the reference checks it), the mask is what is matched
        masks = _clean_detections(detections, set(index), segm=True)
        cleaned = [dict(d, segmentation=m["segmentation"]) for d, m in zip(cleaned, masks)]
    dets = [d for d in cleaned if d["image_id"] in wanted]

    by_image: dict[int, dict[int, list[dict]]] = {}
    for d in dets:
        by_image.setdefault(d["image_id"], {}).setdefault(d["category_id"], []).append(d)

    n_pos: dict[int, np.ndarray] = {}
    entries: dict[int, list[tuple[int, np.ndarray, np.ndarray]]] = {}
    for k, iid in enumerate(ids):
        info = index[iid]
        for c, (boxes, _) in info.boxes.items():
            n_pos.setdefault(c, np.zeros(len(ids), dtype=np.int64))[k] += len(boxes)
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
            s, b = s[valid], b[valid]
            kept = [d for d, v in zip(cdets, valid) if v]
            if s.size == 0:
                continue
            order = np.argsort(s)[::-1]
            s, b = s[order], b[order]
            if c in info.boxes:
                gt_boxes, group = info.boxes[c]
                if segm:
                    det_masks = [_gt_rle(kept[i]["segmentation"], (0, 0)) for i in order]
                    overlaps = mask_overlaps(det_masks, _class_masks(info, c, iid, tuple(det_masks[0]["size"])))
                else:
                    overlaps = box_overlaps(b, gt_boxes)
                s, tp = _match_oid(*overlaps, s, group)
            else:  # verified negative: every detection is a FP
                tp = np.zeros(len(s), dtype=bool)
            entries.setdefault(c, []).append((k, s, tp))
    return OidMatches(ids, n_pos, entries)


def _class_masks(info: _OidImage, c: int, image_id: int, det_size: tuple[int, int]) -> list:
    """The ground-truth masks of class `c` in one image as RLEs of the detections' mask size; a
    group-of box without a mask stands as its rectangle (it only absorbs detections inside it),
    any other missing mask is an error."""
    from pycocotools import mask as mask_utils

    size = info.size if all(info.size) else det_size
    boxes, group = info.boxes[c]
    out = []
    for k, seg in enumerate((info.masks or {}).get(c, [None] * len(boxes))):
        if seg is None:
            if not group[k]:
                raise MetricError(f"image {image_id}: a ground-truth object of category {c} has no segmentation; "
                                  "mask mAP needs every non-group-of object's mask")
            x1, y1, x2, y2 = boxes[k]
            out.append(mask_utils.frPyObjects(np.array([[x1, y1, x2 - x1, y2 - y1]], dtype=np.float64), *size)[0])
        else:
            out.append(_gt_rle(seg, size))
    return out


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
    "segm" (the instance-segmentation challenge) the same rules run on masks: mask IoU against
    the non-group-of objects, mask IoA (intersection over the detected mask's area) against the
    group-of ones; a detection's box still decides its validity.
    """
    m = oid_matches(gt, detections, image_ids, iou_type)
    classes = [c for c, n in m.n_pos.items() if n.sum() > 0]
    if not classes:
        raise MetricError(
            f"the {len(m.image_ids)} evaluated image(s) have no ground-truth boxes, so mAP is undefined; "
            "evaluate images that have annotations"
        )
    aps = [
        average_precision(np.concatenate([e[1] for e in m.entries[c]]), np.concatenate([e[2] for e in m.entries[c]]),
                          int(m.n_pos[c].sum()))
        if c in m.entries
        else 0.0
        for c in classes
    ]
    value = float(np.mean(aps)) * 100.0
    return {"map": value, "ap50": value}


# --------------------------------------------------------------------------- dispatch, conversion

METRICS: dict[str, Callable[..., dict[str, float]]] = {"coco": coco_ap, "oid": oid_map50}


def evaluate(
    metric: str,
    gt: GroundTruth,
    detections: Sequence[Mapping[str, Any]],
    image_ids: Iterable[int] | None = None,
    iou_type: str = "bbox",
) -> dict[str, float]:
    """Run the evaluator a dataset config names ('coco' or 'oid'), on boxes or (`iou_type`
    "segm") on masks."""
    try:
        fn = METRICS[metric]
    except (KeyError, TypeError):
        raise MetricError(
            f"unknown detection metric {metric!r}; choose one of {sorted(METRICS)} "
            "('coco' = COCO AP@[.5:.95], 'oid' = Open Images challenge mAP@0.5)"
        ) from None
    return fn(gt, detections, image_ids, iou_type)


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
        raise MetricError(
            f"boxes ({len(boxes)}), scores ({len(s)}) and labels ({len(lab)}) must have the same length"
        )
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
    return [
        {"image_id": iid, "category_id": c, "bbox": b, "score": sc}
        for c, b, sc in zip(cat, xywh, s.tolist())
    ]

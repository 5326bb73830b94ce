"""Ground truth and detections as the evaluators receive them: a COCO json read once per
version, the evaluated image ids, and validated copies of the detections.

A sweep evaluates the same annotation file once per codec and rate point, so parsed ground
truth is cached by (path, mtime, size): an edited file is reread, an unchanged one is not.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from vcmbench.errors import MetricError

__all__ = ["GroundTruth", "clean_detections", "evaluated_image_ids", "load_ground_truth", "read_json"]

GroundTruth = str | os.PathLike | Mapping[str, Any]


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
def read_json(path: str, mtime_ns: int, size: int) -> dict:
    """Parse a GT json once per (path, mtime, size); the result is shared: never mutate it."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise MetricError(
            f"ground-truth annotation file {path!r} is not valid JSON ({e}); regenerate it or point to the right file"
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


def load_ground_truth(gt: GroundTruth) -> tuple[Mapping[str, Any], tuple | None]:
    """The GT dict and, for files, the cache key that identifies its current version."""
    if isinstance(gt, Mapping):
        _check_dataset(gt, "(dict)")
        return gt, None
    if isinstance(gt, (str, os.PathLike)):
        key = _path_key(gt)
        return read_json(*key), key
    raise MetricError(f"ground truth must be a COCO json path or a loaded dict, got {type(gt).__name__}")


def evaluated_image_ids(data: Mapping[str, Any], image_ids: Iterable[int] | None) -> list[int]:
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


def clean_detections(detections: Sequence[Mapping[str, Any]], known: set[int], segm: bool = False) -> list[dict]:
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
                raise MetricError(
                    f"detection {i} has no segmentation RLE ({{size, counts}}); mask AP needs the "
                    "masks of a segmenting network (Mask R-CNN)"
                )
            det.pop("bbox")
            det["segmentation"] = {"size": [int(v) for v in rle["size"]], "counts": rle["counts"]}
        out.append(det)
    return out

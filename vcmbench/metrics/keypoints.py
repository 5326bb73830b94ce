"""COCO keypoint AP (pose estimation) through pycocotools' COCOeval with ``iouType="keypoints"``.

Keypoint detections come in COCO's results format, a list of ``{"image_id", "category_id",
"keypoints": [x1, y1, v1, ..., xK, yK, vK], "score"}`` (COCOeval reads only the x and y; the v of
a result is carried, not used), and are scored against a COCO-format ground truth whose keypoint
categories name their keypoints (``"keypoints": [names]``) and whose annotations carry
``keypoints`` triplets. The match is OKS (object keypoint similarity), pycocotools' own; this module
chooses the sigmas, validates the inputs and keeps the computation quiet.

Where the per-keypoint OKS sigmas come from, per keypoint category of the json:

* the category's own ``sigmas`` (the name pose toolkits give them) or ``kpt_oks_sigmas`` (the name
  of pycocotools' parameter): K positive numbers, one per keypoint name, in the names' order;
* else, for a category whose keypoints are COCO's 17 person keypoints (the names, in COCO's
  order), COCO's person sigmas (pycocotools' default, taken from pycocotools itself);
* else one error: the sigmas belong to the body parts, so a category of other keypoints (even
  17 of them) must state its own rather than borrow the person's.

COCOeval scores every category with one sigma list, so the keypoint categories of one ground truth
must agree on it (a json with one, person, is the usual case). Only keypoint categories are
evaluated: the other categories of an instances json are left out, not counted as missed.

What the ground truth needs beyond COCO's minimum, and what is filled in: every non-crowd
annotation of a keypoint category has 3K finite keypoint values and a ``bbox`` (COCOeval reads it
for an object with no labelled keypoint); a crowd one without keypoints gets K unlabelled (0, 0, 0)
triplets, as COCO's own crowd annotations have. A missing ``area`` is the box's w x h (COCO's is
the segmentation's area: keep it in the json where there is one), a missing ``num_keypoints`` the
count of labelled (v > 0) keypoints; an object with none is ignored, as COCOeval has it.

Returned, in percent like `metrics.detection`'s: ``map`` (AP@[.5:.95] OKS), ``ap50``, ``ap75``,
``apm`` and ``apl`` (medium, 32^2..96^2, and large objects by area; NaN where the evaluated images
have no object of that size, where pycocotools says -1), with ``n_images``, the number of images
evaluated. COCOeval keeps the 20 highest-scored results per image and category (``maxDets``).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from vcmbench.errors import MetricError
from vcmbench.metrics.ground_truth import GroundTruth, evaluated_image_ids, load_ground_truth, read_json

__all__ = [
    "COCO_PERSON_KEYPOINTS",
    "KeypointCategory",
    "clean_keypoint_results",
    "coco_person_sigmas",
    "keypoint_ap",
    "keypoint_categories",
    "oks_sigmas",
]

#: COCO's 17 person keypoints, in the order of person_keypoints_*.json
COCO_PERSON_KEYPOINTS = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)

_SIGMA_FIELDS = ("sigmas", "kpt_oks_sigmas")


def coco_person_sigmas() -> np.ndarray:
    """COCO's person OKS sigmas as pycocotools has them (its keypoint default), a fresh copy."""
    from pycocotools.cocoeval import Params

    return np.array(Params(iouType="keypoints").kpt_oks_sigmas, dtype=np.float64)


@dataclass(frozen=True)
class KeypointCategory:
    """A category that names keypoints, and the OKS sigmas it is scored with."""

    id: int
    name: str
    keypoints: tuple[str, ...]  # its keypoint names, in the order of every keypoints triplet list
    sigmas: tuple[float, ...]
    sigmas_from: str  # where the sigmas come from: the json field's name, or "COCO person default"


def _category_sigmas(cat: Mapping[str, Any], names: tuple[str, ...], where: str) -> tuple[tuple[float, ...], str]:
    label = f"category {cat.get('id')} {cat.get('name', '')!r}"
    given = [f for f in _SIGMA_FIELDS if f in cat]
    if len(given) == 2 and cat[given[0]] != cat[given[1]]:
        raise MetricError(
            f"ground truth {where}: {label} gives both 'sigmas' and 'kpt_oks_sigmas' and they differ; keep one"
        )
    if given:
        field = given[0]
        raw = cat[field]
        try:
            sigmas = tuple(float(s) for s in raw)
        except (TypeError, ValueError):
            sigmas = ()
        if len(sigmas) != len(names) or not all(math.isfinite(s) and s > 0 for s in sigmas):
            raise MetricError(
                f"ground truth {where}: {label} has {field}={raw!r:.120}; give {len(names)} positive numbers, one "
                "OKS sigma per keypoint name in the names' order"
            )
        return sigmas, field
    if names == COCO_PERSON_KEYPOINTS:
        return tuple(float(s) for s in coco_person_sigmas()), "COCO person default"
    raise MetricError(
        f"ground truth {where}: {label} has {len(names)} keypoints that are not COCO's 17 person keypoints and "
        f"no OKS sigmas; add 'sigmas': [{len(names)} per-keypoint values] to the category"
    )


def keypoint_categories(gt: GroundTruth) -> dict[int, KeypointCategory]:
    """The ground truth's keypoint categories (those that name keypoints) by id, with their sigmas;
    MetricError when there is none or a category's sigmas cannot be settled."""
    data, key = load_ground_truth(gt)
    return _keypoint_categories(data, key[0] if key else "(dict)")


def _keypoint_categories(data: Mapping[str, Any], where: str) -> dict[int, KeypointCategory]:
    found: dict[int, KeypointCategory] = {}
    for cat in data["categories"]:
        names = cat.get("keypoints") if isinstance(cat, Mapping) else None
        if not names:
            continue
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            raise MetricError(
                f"ground truth {where}: category {cat.get('id')} has keypoints={names!r:.120}; it must list "
                "the keypoint names (strings)"
            )
        names = tuple(names)
        sigmas, source = _category_sigmas(cat, names, where)
        cid = int(cat["id"])
        found[cid] = KeypointCategory(cid, str(cat.get("name", "")), names, sigmas, source)
    if not found:
        raise MetricError(
            f"ground truth {where} has no category that names its keypoints ('keypoints': [names]); keypoint AP "
            "needs a COCO person_keypoints-style json"
        )
    return found


def _shared_sigmas(cats: Mapping[int, KeypointCategory], where: str) -> np.ndarray:
    first, *others = cats.values()
    for c in others:
        if c.sigmas != first.sigmas:
            raise MetricError(
                f"ground truth {where}: categories {first.id} {first.name!r} and {c.id} {c.name!r} have different "
                "keypoints or OKS sigmas, but COCOeval scores all categories with one sigma list; score them "
                "from separate annotation files"
            )
    sigmas = np.array(first.sigmas, dtype=np.float64)
    sigmas.setflags(write=False)
    return sigmas


def oks_sigmas(gt: GroundTruth) -> np.ndarray:
    """The one OKS sigma list (read-only, float64) the ground truth's keypoint categories are scored with."""
    data, key = load_ground_truth(gt)
    where = key[0] if key else "(dict)"
    return _shared_sigmas(_keypoint_categories(data, where), where)


def _is_finite_list(values: Any, length: int) -> bool:
    return (
        isinstance(values, (list, tuple))
        and len(values) == length
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
    )


def _keypoint_annotations(data: Mapping[str, Any], cats: Mapping[int, KeypointCategory], where: str) -> list[dict]:
    """Shallow copies of the keypoint categories' annotations with the fields COCOeval reads, checked."""
    anns = []
    for k, a in enumerate(data["annotations"]):
        if int(a.get("category_id", -1)) not in cats:
            continue
        a = dict(a)
        a.setdefault("id", k + 1)
        a.setdefault("iscrowd", 0)
        n = len(cats[int(a["category_id"])].keypoints)
        label = f"ground truth {where}: annotation {a['id']} (image {a.get('image_id')})"
        if "keypoints" not in a and a["iscrowd"]:
            a["keypoints"] = [0] * (3 * n)
        if not _is_finite_list(a.get("keypoints"), 3 * n):
            raise MetricError(
                f"{label} has keypoints={a.get('keypoints')!r:.80}; its category has {n} keypoints: give "
                f"{3 * n} finite numbers x1, y1, v1, ..."
            )
        if not _is_finite_list(a.get("bbox"), 4):
            raise MetricError(f"{label} has bbox={a.get('bbox')!r:.80}; give its box as 4 finite numbers [x, y, w, h]")
        if "area" not in a:
            a["area"] = float(a["bbox"][2]) * float(a["bbox"][3])
        if "num_keypoints" not in a:
            a["num_keypoints"] = sum(1 for v in a["keypoints"][2::3] if v > 0)
        anns.append(a)
    return anns


@dataclass(frozen=True)
class _KeypointTruth:
    coco: Any  # pycocotools COCO over the keypoint categories' annotations
    categories: dict[int, KeypointCategory]
    sigmas: np.ndarray


def _truth_from(data: Mapping[str, Any], where: str) -> _KeypointTruth:
    from pycocotools.coco import COCO

    cats = _keypoint_categories(data, where)
    sigmas = _shared_sigmas(cats, where)
    coco = COCO()
    coco.dataset = {
        "images": list(data["images"]),
        "annotations": _keypoint_annotations(data, cats, where),
        "categories": list(data["categories"]),
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return _KeypointTruth(coco, cats, sigmas)


@lru_cache(maxsize=4)
def _truth_cached(path: str, mtime_ns: int, size: int) -> _KeypointTruth:
    return _truth_from(read_json(path, mtime_ns, size), path)


def clean_keypoint_results(
    results: Sequence[Mapping[str, Any]], known_images: set[int], categories: Mapping[int, KeypointCategory]
) -> list[dict]:
    """Validated copies holding only image_id, category_id, keypoints and score (pycocotools'
    loadRes writes into the dicts it is given, and would read a result with a ``bbox`` as a box)."""
    if not isinstance(results, (list, tuple)):
        raise MetricError(
            f"keypoint results must be a list of COCO result dicts, got {type(results).__name__}; give "
            "[{image_id, category_id, keypoints: [x1, y1, v1, ...], score}, ...]"
        )
    out = []
    for i, r in enumerate(results):
        try:
            kps = r["keypoints"]
            if not isinstance(kps, (list, tuple)):
                raise TypeError(f"keypoints is a {type(kps).__name__}, not a list")
            res = {
                "image_id": int(r["image_id"]),
                "category_id": int(r["category_id"]),
                "keypoints": [float(v) for v in kps],
                "score": float(r["score"]),
            }
        except (KeyError, TypeError, ValueError) as e:
            raise MetricError(
                f"keypoint result {i} ({r!r:.120}) is malformed ({type(e).__name__}: {e}); each needs image_id, "
                "category_id, keypoints [x1, y1, v1, ...] and score"
            ) from None
        values = res["keypoints"]
        if len(values) % 3:
            raise MetricError(
                f"keypoint result {i} has {len(values)} keypoint values, not a multiple of 3; give x, y, v per keypoint"
            )
        cat = categories.get(res["category_id"])
        if cat is None:
            raise MetricError(
                f"keypoint result {i} has category_id={res['category_id']}, which is not a keypoint category of "
                f"the ground truth {sorted(categories)}; map the network's labels to the dataset's category ids"
            )
        if len(values) != 3 * len(cat.keypoints):
            raise MetricError(
                f"keypoint result {i} has {len(values) // 3} keypoints but category {cat.id} {cat.name!r} has "
                f"{len(cat.keypoints)}; give one x, y, v per keypoint of the category, in its order"
            )
        if not all(math.isfinite(v) for v in (*values, res["score"])):
            raise MetricError(
                f"keypoint result {i} (image {res['image_id']}) has a non-finite keypoint value or score "
                f"{res['score']}; keypoints and score must be finite numbers"
            )
        if res["image_id"] not in known_images:
            raise MetricError(
                f"keypoint result {i} has image_id={res['image_id']}, which is not in the ground truth; the results "
                "belong to another dataset or the image ids were remapped"
            )
        out.append(res)
    return out


def _empty_results(coco: Any) -> Any:
    """A results COCO with no annotation (loadRes refuses an empty list): every object is missed."""
    from pycocotools.coco import COCO

    res = COCO()
    res.dataset = {"images": list(coco.dataset["images"]), "annotations": [], "categories": coco.dataset["categories"]}
    res.createIndex()
    return res


def _percent(stat: float) -> float:
    return float(stat) * 100.0 if stat >= 0 else math.nan  # pycocotools' -1: no object in that range


def keypoint_ap(
    gt: GroundTruth,
    results: Sequence[Mapping[str, Any]],
    image_ids: Iterable[int] | None = None,
) -> dict[str, float]:
    """COCO keypoint AP in percent (``map``, ``ap50``, ``ap75``, ``apm``, ``apl``) of `results` over
    `image_ids` (every ground-truth image by default), and ``n_images``, how many were evaluated.
    Results on other images are left out; no results at all score 0 (NaN for an empty size range)."""
    from pycocotools.cocoeval import COCOeval

    data, key = load_ground_truth(gt)
    truth = _truth_cached(*key) if key else _truth_from(data, "(dict)")
    coco = truth.coco
    ids = evaluated_image_ids(data, image_ids)
    scored = [a for i in ids for a in coco.imgToAnns.get(i, ()) if not a["iscrowd"] and a["num_keypoints"] > 0]
    if not scored:
        raise MetricError(
            f"the {len(ids)} evaluated image(s) have no non-crowd ground-truth object with a labelled keypoint, so "
            "keypoint AP is undefined; evaluate images that have keypoint annotations"
        )
    wanted = set(ids)
    dets = [r for r in clean_keypoint_results(results, set(coco.imgs), truth.categories) if r["image_id"] in wanted]
    with contextlib.redirect_stdout(io.StringIO()):
        res = coco.loadRes(dets) if dets else _empty_results(coco)
        ev = COCOeval(coco, res, iouType="keypoints")
        ev.params.imgIds = ids
        ev.params.catIds = sorted(truth.categories)
        ev.params.kpt_oks_sigmas = truth.sigmas
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    s = ev.stats
    return {
        "map": _percent(s[0]),
        "ap50": _percent(s[1]),
        "ap75": _percent(s[2]),
        "apm": _percent(s[3]),
        "apl": _percent(s[4]),
        "n_images": len(ids),
    }

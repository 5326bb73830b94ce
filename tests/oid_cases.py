"""Generated Open Images evaluation cases: small images whose objects have masks or not, are
group-of or not, with image-level labels, and detections near and away from them (empty masks,
tied and zero scores, wrong classes).

tests/expected/oid_reference.json holds, for `generated_cases(SEED, COUNT)`, the mAP that the
MPEG platform's evaluator (CompressAI-Vision's vendored TensorFlow Object Detection API,
`OpenImagesChallengeEvaluator`, HEAD 31165da) gave on them, fed as its OIC evaluator feeds it
(an all-zero mask for an object without one; in mask mode each detection's box is the enclosing
box of its mask), with coordinates in pixels. The generator draws from numpy's PCG64, whose
stream is the same on every machine, so the cases are too.
"""

from __future__ import annotations

import numpy as np

SEED, COUNT = 20261206, 60
HEIGHT, WIDTH = 24, 32


def rle(mask: np.ndarray) -> dict:
    """A boolean mask as COCO compressed RLE."""
    from pycocotools import mask as mask_utils

    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(mask.shape), "counts": r["counts"].decode("ascii")}


def enclosing_box(mask: np.ndarray) -> list[float]:
    """[x, y, w, h] of the mask's pixels (a unit box at the origin for an empty mask)."""
    ys, xs = np.nonzero(mask)
    if not xs.size:
        return [0.0, 0.0, 1.0, 1.0]
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()), float(ys.max() + 1 - ys.min())]


def _blob(rng: np.random.Generator, big: bool) -> np.ndarray:
    m = np.zeros((HEIGHT, WIDTH), bool)
    for _ in range(rng.integers(1, 3)):
        x0, y0 = rng.integers(0, WIDTH - 4), rng.integers(0, HEIGHT - 4)
        w, h = rng.integers(2, 16 if big else 10), rng.integers(2, 12 if big else 8)
        m[y0 : y0 + h, x0 : x0 + w] = True
    return m


def _case(rng: np.random.Generator, n_images: int = 3, n_classes: int = 3) -> tuple[dict, list[dict]]:
    images, anns, dets = [], [], []
    for iid in range(1, n_images + 1):
        positive = set()
        for _ in range(rng.integers(1, 5)):
            c, group = int(rng.integers(1, n_classes + 1)), bool(rng.random() < 0.35)
            m = _blob(rng, big=group)
            a = {
                "id": len(anns) + 1,
                "image_id": iid,
                "category_id": c,
                "is_group_of": int(group),
                "bbox": enclosing_box(m),
            }
            if rng.random() < 0.3:  # a box wider than the mask
                a["bbox"] = [
                    max(0.0, a["bbox"][0] - float(rng.integers(0, 3))),
                    a["bbox"][1],
                    a["bbox"][2] + float(rng.integers(0, 4)),
                    a["bbox"][3],
                ]
            if rng.random() >= 0.4:
                a["segmentation"] = rle(m)
            anns.append(a)
            positive.add(c)
            for _ in range(rng.integers(0, 3)):  # detections near the object
                dm = m.copy() if rng.random() < 0.4 else _blob(rng, big=False)
                if rng.random() < 0.5:
                    dm = np.roll(dm, int(rng.integers(-2, 3)), axis=1)
                if rng.random() < 0.05:
                    dm[:] = False
                dets.append((iid, c if rng.random() < 0.85 else int(rng.integers(1, n_classes + 1)), dm))
        negative = {int(x) for x in rng.integers(1, n_classes + 1, size=rng.integers(0, 2))} - positive
        images.append(
            {
                "id": iid,
                "height": HEIGHT,
                "width": WIDTH,
                "pos_labels": sorted(positive),
                "neg_labels": sorted(negative),
            }
        )
        for _ in range(rng.integers(0, 3)):  # detections anywhere
            dets.append((iid, int(rng.integers(1, n_classes + 1)), _blob(rng, big=False)))
    if rng.random() < 0.5:
        scores = rng.choice([0.0, 0.3, 0.5, 0.5, 0.7, 0.9], size=len(dets))
    else:
        scores = rng.random(len(dets))
    detections = [
        {"image_id": iid, "category_id": c, "score": float(s), "bbox": enclosing_box(m), "segmentation": rle(m)}
        for (iid, c, m), s in zip(dets, scores)
    ]
    gt = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": c, "name": f"class{c}"} for c in range(1, n_classes + 1)],
    }
    return gt, detections


def generated_cases(seed: int = SEED, count: int = COUNT) -> list[tuple[dict, list[dict]]]:
    """`count` (ground truth, detections) pairs from `seed`."""
    rng = np.random.default_rng(seed)
    return [_case(rng) for _ in range(count)]

"""Detection evaluators: hand-computed Open Images cases and round trips on real COCO annotations."""

from __future__ import annotations

import copy
import json
import os
import random

import numpy as np
import pytest

from tests.assets import COCO_MINI_JSON
from vcmbench.errors import MetricError
from vcmbench.metrics import ground_truth
from vcmbench.metrics.detection import coco_ap, detections_to_coco, evaluate, oid_map50

COCO_JSON = COCO_MINI_JSON

CAT, DOG, CAR = 1, 2, 3


def _ann(i, img, cat, bbox, group=False):
    return {"id": i, "image_id": img, "category_id": cat, "bbox": bbox, "is_group_of": group}


# Three 100x100 images.
#   image 1: verified labels cat, dog (positive) and car (negative).
#            GT: cat A [0,0,10,10], cat B [50,50,10,10], dog group-of G [20,20,40,40].
#   image 2: no image-level labels -> its GT classes (cat, car) are the verified labels.
#            GT: cat C [0,0,20,20], car D [60,60,20,20].
#   image 3: verified negative cat, no boxes.
OID_GT = {
    "images": [
        {"id": 1, "width": 100, "height": 100, "pos_labels": [CAT, DOG], "neg_labels": [CAR]},
        {"id": 2, "width": 100, "height": 100},
        {"id": 3, "width": 100, "height": 100, "pos_labels": [], "neg_labels": [CAT]},
    ],
    "annotations": [
        _ann(1, 1, CAT, [0, 0, 10, 10]),
        _ann(2, 1, CAT, [50, 50, 10, 10]),
        _ann(3, 1, DOG, [20, 20, 40, 40], group=True),
        _ann(4, 2, CAT, [0, 0, 20, 20]),
        _ann(5, 2, CAR, [60, 60, 20, 20]),
    ],
    "categories": [{"id": CAT, "name": "cat"}, {"id": DOG, "name": "dog"}, {"id": CAR, "name": "car"}],
}


def _det(img, cat, bbox, score):
    return {"image_id": img, "category_id": cat, "bbox": bbox, "score": score}


OID_DETS = [
    # cat: 3 positives (A, B, C)
    _det(1, CAT, [0, 0, 10, 10], 0.9),  # TP (A)
    _det(1, CAT, [1, 0, 10, 10], 0.8),  # IoU 90/110 with A, A already matched -> duplicate FP
    _det(2, CAT, [0, 0, 20, 20], 0.7),  # TP (C)
    _det(3, CAT, [0, 0, 5, 5], 0.6),  # FP: cat is a verified negative of image 3
    _det(1, CAT, [80, 80, 10, 10], 0.5),  # FP: overlaps nothing
    # ranked 0.9 TP, 0.8 FP, 0.7 TP, 0.6 FP, 0.5 FP; precision 1, 1/2, 2/3, 2/4, 2/5
    # interpolated precision at the TPs: 1 and 2/3 -> AP_cat = (1 + 2/3) / 3 = 5/9
    #
    # dog: 1 positive (group-of G, counted once)
    _det(1, DOG, [0, 80, 10, 10], 0.7),  # FP: outside G
    _det(1, DOG, [40, 40, 10, 10], 0.6),  # inside G (IoA 1) -> G's single TP, score 0.6
    _det(1, DOG, [25, 25, 10, 10], 0.3),  # inside G -> absorbed, ignored
    _det(1, DOG, [30, 30, 5, 5], 0.2),  # inside G -> absorbed, ignored
    _det(1, DOG, [50, 50, 20, 20], 0.4),  # IoA 100/400 = 0.25 with G -> FP
    _det(2, DOG, [0, 0, 10, 10], 0.95),  # ignored: dog is not verified in image 2
    _det(3, DOG, [0, 0, 10, 10], 0.99),  # ignored: dog is not verified in image 3
    # ranked 0.7 FP, 0.6 TP, 0.4 FP; precision at the TP 1/2 -> AP_dog = 1/2
    # (were the two unverified detections counted, they would be FPs ranked first: AP 1/4)
    #
    # car: 1 positive (D)
    _det(1, CAR, [60, 60, 20, 20], 0.9),  # FP: car is a verified negative of image 1
    _det(2, CAR, [62, 62, 20, 20], 0.8),  # IoU 324/476 = 0.68 with D -> TP
    # ranked 0.9 FP, 0.8 TP -> AP_car = 1/2
]
# mAP = (5/9 + 1/2 + 1/2) / 3 = 14/27
OID_EXPECTED = 14 / 27 * 100


def test_oid_hand_computed():
    r = oid_map50(OID_GT, OID_DETS)
    assert abs(r["map"] - OID_EXPECTED) < 1e-9
    assert r["ap50"] == r["map"]
    # input order of the detections does not matter
    shuffled = OID_DETS[:]
    random.Random(0).shuffle(shuffled)
    assert abs(oid_map50(OID_GT, shuffled)["map"] - OID_EXPECTED) < 1e-9


def test_oid_unverified_detections_are_ignored():
    without = [d for d in OID_DETS if not (d["category_id"] == DOG and d["image_id"] in (2, 3))]
    assert abs(oid_map50(OID_GT, without)["map"] - OID_EXPECTED) < 1e-9


def test_oid_group_of_counts_once():
    # Only the three detections inside G: one TP with score 0.6 -> AP_dog = 1.
    # cat and car have no detections -> AP 0.  mAP = 1/3.
    inside = [d for d in OID_DETS if d["category_id"] == DOG and d["score"] in (0.6, 0.3, 0.2)]
    assert abs(oid_map50(OID_GT, inside)["map"] - 100 / 3) < 1e-9


def test_oid_iscrowd_is_group_of_fallback():
    gt = copy.deepcopy(OID_GT)
    for a in gt["annotations"]:
        a["iscrowd"] = int(a.pop("is_group_of"))
    assert abs(oid_map50(gt, OID_DETS)["map"] - OID_EXPECTED) < 1e-9


def test_oid_image_ids_restrict():
    # image 2 only: cat C found (AP 1), car D found (AP 1); dog has no GT there -> excluded.
    assert abs(oid_map50(OID_GT, OID_DETS, image_ids=[2])["map"] - 100.0) < 1e-12
    # images 1 and 3: cat positives A, B; ranked 0.9 TP, 0.8 FP, 0.6 FP, 0.5 FP -> AP 1/2;
    # dog AP 1/2 as before; car has no GT there -> excluded.  mAP = 1/2.
    assert abs(oid_map50(OID_GT, OID_DETS, image_ids=[1, 3])["map"] - 50.0) < 1e-9


def test_oid_empty_and_errors():
    assert oid_map50(OID_GT, []) == {"map": 0.0, "ap50": 0.0}
    with pytest.raises(MetricError, match="no ground-truth boxes"):
        oid_map50(OID_GT, OID_DETS, image_ids=[3])
    with pytest.raises(MetricError, match="not in the ground truth"):
        oid_map50(OID_GT, [_det(7, CAT, [0, 0, 1, 1], 0.5)])
    with pytest.raises(MetricError, match="not in the ground truth"):
        oid_map50(OID_GT, [], image_ids=[9])
    with pytest.raises(MetricError, match="malformed"):
        oid_map50(OID_GT, [{"image_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}])


def _gt_as_detections(gt: dict, include_crowd: bool) -> list[dict]:
    return [
        _det(a["image_id"], a["category_id"], list(a["bbox"]), 1.0)
        for a in gt["annotations"]
        if include_crowd or not a.get("iscrowd", 0)
    ]


def test_coco_gt_fed_back_is_perfect():
    gt = json.loads(COCO_JSON.read_text())
    dets = _gt_as_detections(gt, include_crowd=False)  # crowd regions are ignored, not targets
    r = coco_ap(str(COCO_JSON), dets)
    assert r == {"map": 100.0, "ap50": 100.0}
    # dict input too (on a few images: pycocotools takes ~1 s per 100 images)
    few = [im["id"] for im in gt["images"][:20]]
    assert coco_ap(gt, dets, image_ids=few) == {"map": 100.0, "ap50": 100.0}


def test_oid_gt_fed_back_is_perfect():
    # COCO crowd boxes read as group-of boxes: they are positives, so they are fed back too
    # (after the single boxes, so that every single box is claimed by its own copy first).
    gt = json.loads(COCO_JSON.read_text())
    single = _gt_as_detections(gt, include_crowd=False)
    crowd = [d for d in _gt_as_detections(gt, include_crowd=True) if d not in single]
    r = oid_map50(COCO_JSON, single + crowd)
    assert r == {"map": 100.0, "ap50": 100.0}


def test_coco_perturbed_and_shuffled_score_lower():
    gt = json.loads(COCO_JSON.read_text())
    few = {im["id"] for im in gt["images"][:20]}  # keeps pycocotools' share of the test short
    dets = [d for d in _gt_as_detections(gt, include_crowd=False) if d["image_id"] in few]
    rng = np.random.default_rng(0)
    jittered = [
        {**d, "bbox": [v + float(rng.normal(0, 0.1 * max(d["bbox"][2], d["bbox"][3], 1))) for v in d["bbox"]]}
        for d in dets
    ]
    cats = [d["category_id"] for d in dets]
    rng.shuffle(cats)
    relabelled = [{**d, "category_id": c} for d, c in zip(dets, cats)]
    for name, fn in (("coco", coco_ap), ("oid", oid_map50)):
        # (below 100 for oid: crowd boxes are group-of positives and are not fed back here)
        base = fn(COCO_JSON, dets, image_ids=few)
        assert base["map"] > 99.0, name
        for worse in (jittered, relabelled):
            r = fn(COCO_JSON, worse, image_ids=few)
            assert 0.0 <= r["map"] < base["map"] - 5, name
            assert r["ap50"] < base["ap50"], name


def test_coco_image_ids_empty_and_errors():
    gt = json.loads(COCO_JSON.read_text())
    dets = _gt_as_detections(gt, include_crowd=False)
    assert coco_ap(COCO_JSON, []) == {"map": 0.0, "ap50": 0.0}
    one = gt["images"][0]["id"]
    r = coco_ap(COCO_JSON, dets, image_ids=[one])
    assert r == {"map": 100.0, "ap50": 100.0}
    # detections only on other images -> nothing left to score on image `one`
    others = [d for d in dets if d["image_id"] != one]
    assert coco_ap(COCO_JSON, others, image_ids=[one]) == {"map": 0.0, "ap50": 0.0}
    with pytest.raises(MetricError, match="not in the ground truth"):
        coco_ap(COCO_JSON, [_det(-5, 1, [0, 0, 1, 1], 0.5)])
    with pytest.raises(MetricError, match="cannot be read"):
        coco_ap(COCO_JSON.with_name("missing.json"), dets)


def test_coco_does_not_mutate_inputs_and_prints_nothing(capsys):
    gt = json.loads(COCO_JSON.read_text())
    dets = _gt_as_detections(gt, include_crowd=False)[:50]
    before = copy.deepcopy(dets)
    coco_ap(COCO_JSON, dets, image_ids={d["image_id"] for d in dets})
    assert dets == before  # loadRes adds fields to the dicts it gets: we pass copies
    assert capsys.readouterr().out == ""


def test_gt_file_is_cached_by_mtime(tmp_path):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(OID_GT))
    dets = [d for d in OID_DETS if d["category_id"] == CAT]
    ground_truth.read_json.cache_clear()
    coco_ap(path, dets)
    coco_ap(path, dets)
    oid_map50(path, dets)
    assert ground_truth.read_json.cache_info().misses == 1  # read once, for both evaluators
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # "edited"
    coco_ap(path, dets)
    assert ground_truth.read_json.cache_info().misses == 2


def test_coco_small_hand_case():
    # cat: A, B, C with dets TP(.9), dup(.8), TP(.7), FP(.6, image 3), FP(.5). COCO
    # matches at every IoU threshold in the same way for the exact boxes, so AP50
    # over 101 recall points: recall 1/3 and 2/3 reached at precision 1 and 2/3;
    # thresholds 0..0.33 (34 points) -> 1, 0.34..0.66 (33 points) -> 2/3, rest 0:
    # (34 + 22) / 101 = 56/101 for cat; dog and car have no detections -> AP 0
    # (dog's group-of box is a COCO crowd region here: only non-crowd GT counts, and dog has
    # none, so dog is excluded). mAP50 over cat and car = (56/101 + 0) / 2.
    gt = copy.deepcopy(OID_GT)
    for a in gt["annotations"]:
        a["iscrowd"] = int(a.pop("is_group_of"))
    dets = [d for d in OID_DETS if d["category_id"] == CAT]
    r = coco_ap(gt, dets)
    assert abs(r["ap50"] - 56 / 101 / 2 * 100) < 1e-9


def test_evaluate_dispatch():
    assert evaluate("oid", OID_GT, OID_DETS) == oid_map50(OID_GT, OID_DETS)
    with pytest.raises(MetricError, match=r"unknown detection metric 'voc'.*\['coco', 'oid'\]"):
        evaluate("voc", OID_GT, OID_DETS)


def test_detections_to_coco_numpy():
    boxes = np.array([[10.25, 20.5, 30.125, 60.0], [0.0, 0.0, 1.0, 2.0]], dtype=np.float32)
    out = detections_to_coco(np.int64(7), boxes, np.array([0.123456789, 0.5]), np.array([0, 2]), [1, 2, 5])
    assert out[0] == {"image_id": 7, "category_id": 1, "bbox": [10.25, 20.5, 19.875, 39.5], "score": 0.123456789}
    assert out[1]["category_id"] == 5 and out[1]["bbox"] == [0.0, 0.0, 1.0, 2.0]
    assert all(type(v) is float for v in out[0]["bbox"]) and type(out[0]["score"]) is float
    assert detections_to_coco(1, np.zeros((0, 4)), [], []) == []
    assert detections_to_coco(1, boxes, [0.1, 0.2], [3, 4])[1]["category_id"] == 4
    with pytest.raises(MetricError, match="no entry in category_ids"):
        detections_to_coco(1, boxes, [0.1, 0.2], [0, 3], [1, 2, 5])
    with pytest.raises(MetricError, match=r"shape \(N, 4\)"):
        detections_to_coco(1, np.zeros((2, 5)), [0.1, 0.2], [0, 1])
    with pytest.raises(MetricError, match="same length"):
        detections_to_coco(1, boxes, [0.1], [0, 1])


def test_detections_to_coco_torch():
    torch = pytest.importorskip("torch")
    boxes = torch.tensor([[1.0, 2.0, 4.0, 8.0]], requires_grad=True)
    out = detections_to_coco(3, boxes, torch.tensor([0.75]), torch.tensor([1]))
    assert out == [{"image_id": 3, "category_id": 1, "bbox": [1.0, 2.0, 3.0, 6.0], "score": 0.75}]


# -- parity with the OpenImages challenge reference evaluator (TF Object Detection API) on its edge cases

ONE_CAT = {
    "images": [{"id": 1, "width": 100, "height": 100}],
    "annotations": [_ann(1, 1, CAT, [0, 0, 20, 20])],
    "categories": [{"id": CAT, "name": "cat"}],
}


def test_oid_tied_scores_follow_the_reference_order():
    """Two detections of one box with the same score. The reference matches them in the order of
    np.argsort(scores)[::-1] (the second first: it takes the box, the first is a duplicate FP),
    then ranks the class the same way (the FP first): precision 1/2 at the only TP, AP 50.
    Input order would have made the first the TP and ranked it first: AP 100."""
    dets = [
        _det(1, CAT, [0, 0, 20, 24], 0.5),  # IoU 400/480 with the box
        _det(1, CAT, [0, 0, 20, 20], 0.5),
    ]  # IoU 1
    assert oid_map50(ONE_CAT, dets)["map"] == pytest.approx(50.0, abs=1e-12)


def test_oid_group_of_hit_scored_zero_is_dropped():
    """The reference keeps a group-of box's entry only if its highest score is above 0."""
    gt = {
        "images": [{"id": 1, "width": 100, "height": 100}],
        "annotations": [_ann(1, 1, CAT, [0, 0, 50, 50], group=True)],
        "categories": [{"id": CAT, "name": "cat"}],
    }
    assert oid_map50(gt, [_det(1, CAT, [10, 10, 10, 10], 0.0)])["map"] == 0.0
    assert oid_map50(gt, [_det(1, CAT, [10, 10, 10, 10], 0.1)])["map"] == pytest.approx(100.0)


def test_oid_zero_area_detections_are_dropped_not_false_positives():
    """A zero-width detection ranked above the TP: the reference drops it (AP 100); counted as a
    FP it would halve the precision at the TP (AP 50)."""
    dets = [_det(1, CAT, [5, 5, 0, 10], 0.9), _det(1, CAT, [0, 0, 20, 20], 0.5)]
    assert oid_map50(ONE_CAT, dets)["map"] == pytest.approx(100.0, abs=1e-12)
    dets = [_det(1, CAT, [5, 5, 10, 0], 0.9)]  # zero height, alone: nothing detected
    assert oid_map50(ONE_CAT, dets)["map"] == 0.0

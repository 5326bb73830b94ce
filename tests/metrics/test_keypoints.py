"""COCO keypoint AP (vcmbench.metrics.keypoints) against pycocotools' COCOeval run directly on the same
json, results and sigmas; where the sigmas come from; one-line refusals of bad results and ground truth."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from vcmbench.errors import MetricError
from vcmbench.metrics.keypoints import (
    COCO_PERSON_KEYPOINTS,
    coco_person_sigmas,
    keypoint_ap,
    keypoint_categories,
    oks_sigmas,
)

HAND, BALL = 1, 2
SIGMAS = [0.05, 0.08, 0.1, 0.12]


def _kp(img, ann_id, bbox, keypoints, crowd=0):
    return {
        "id": ann_id,
        "image_id": img,
        "category_id": HAND,
        "bbox": bbox,
        "area": bbox[2] * bbox[3],
        "iscrowd": crowd,
        "keypoints": keypoints,
        "num_keypoints": sum(1 for v in keypoints[2::3] if v > 0),
    }


# Three 200x200 images; a 4-keypoint category with its own sigmas in the json, and a box-only category
# (ball) that keypoint AP leaves out. Areas: 32^2..96^2 is medium, above is large.
GT = {
    "images": [{"id": i, "width": 200, "height": 200} for i in (1, 2, 3)],
    "annotations": [
        _kp(1, 1, [20, 20, 50, 80], [30, 30, 2, 40, 50, 2, 50, 70, 1, 60, 90, 2]),  # A: 4000, medium
        _kp(1, 2, [100, 20, 90, 170], [120, 40, 2, 140, 80, 2, 160, 120, 2, 180, 170, 2]),  # B: 15300, large
        _kp(2, 3, [10, 10, 40, 60], [20, 20, 2, 30, 35, 2, 0, 0, 0, 45, 65, 2]),  # C: 2400, one unlabelled keypoint
        _kp(2, 4, [100, 100, 80, 80], [0] * 12, crowd=1),  # D: a crowd region
        _kp(3, 5, [10, 10, 30, 30], [0] * 12),  # E: no labelled keypoint, ignored
        _kp(3, 6, [60, 40, 120, 140], [80, 60, 2, 100, 90, 2, 130, 120, 2, 160, 170, 2]),  # F: 16800, large
        {"id": 7, "image_id": 1, "category_id": BALL, "bbox": [5, 150, 20, 20], "area": 400, "iscrowd": 0},
    ],
    "categories": [
        {"id": HAND, "name": "hand", "keypoints": ["a", "b", "c", "d"], "skeleton": [[1, 2]], "sigmas": SIGMAS},
        {"id": BALL, "name": "ball"},
    ],
}


def _res(img, keypoints, score, cat=HAND):
    return {"image_id": img, "category_id": cat, "keypoints": keypoints, "score": score}


RESULTS = [
    _res(1, [32, 31, 1, 41, 53, 1, 52, 66, 1, 58, 93, 1], 0.9),  # A, a few pixels off
    _res(1, [125, 44, 1, 150, 86, 1, 150, 128, 1, 175, 160, 1], 0.8),  # B, further off
    _res(1, [10, 150, 1, 15, 160, 1, 20, 170, 1, 25, 180, 1], 0.85),  # on the ball: a false positive
    _res(2, [21, 22, 1, 29, 37, 1, 40, 50, 1, 44, 63, 1], 0.7),  # C
    _res(2, [120, 120, 1, 130, 130, 1, 140, 140, 1, 150, 150, 1], 0.95),  # inside the crowd region: ignored
    _res(2, [24, 26, 1, 33, 40, 1, 10, 10, 1, 48, 70, 1], 0.6),  # C again: a duplicate
    _res(3, [85, 62, 1, 96, 95, 1, 138, 115, 1, 150, 180, 1], 0.75),  # F
    _res(3, [15, 15, 1, 20, 20, 1, 25, 25, 1, 30, 30, 1], 0.5),  # on E, which has no labelled keypoint
]


def _direct(tmp_path, gt, results, sigmas):
    """pycocotools on its own: the json from a file, the results as given, the keypoint category."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    path = tmp_path / "direct.json"
    path.write_text(json.dumps(gt))
    coco = COCO(str(path))
    ev = COCOeval(coco, coco.loadRes(copy.deepcopy(results)), iouType="keypoints")
    ev.params.catIds = [HAND]
    ev.params.kpt_oks_sigmas = np.array(sigmas)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return [float(v) * 100.0 for v in ev.stats[:5]]


def _ours(r):
    return [r["map"], r["ap50"], r["ap75"], r["apm"], r["apl"]]


@pytest.mark.timeout(30)
def test_equals_a_direct_cocoeval_run_with_the_json_s_sigmas(tmp_path):
    r = keypoint_ap(GT, RESULTS)
    assert _ours(r) == _direct(tmp_path, GT, RESULTS, SIGMAS)
    assert r["n_images"] == 3
    assert 0 < r["map"] < r["ap50"] < 100  # not a vacuous case: misses, a false positive, a duplicate
    assert oks_sigmas(GT).tolist() == SIGMAS and keypoint_categories(GT)[HAND].sigmas_from == "sigmas"
    # from a file, the same numbers
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(GT))
    assert keypoint_ap(path, RESULTS) == r


@pytest.mark.timeout(30)
def test_the_sigmas_are_the_ones_used(tmp_path):
    base = keypoint_ap(GT, RESULTS)
    for field, sigmas in (("sigmas", [s / 2 for s in SIGMAS]), ("kpt_oks_sigmas", [0.2, 0.02, 0.2, 0.02])):
        gt = copy.deepcopy(GT)
        del gt["categories"][0]["sigmas"]
        gt["categories"][0][field] = sigmas
        r = keypoint_ap(gt, RESULTS)
        assert r["map"] != base["map"], field
        assert _ours(r) == _direct(tmp_path, gt, RESULTS, sigmas), field


@pytest.mark.timeout(30)
def test_coco_person_keypoints_without_sigmas_take_pycocotools_person_defaults():
    gt = {
        "images": [{"id": 1}],
        "annotations": [],
        "categories": [{"id": 1, "name": "person", "keypoints": list(COCO_PERSON_KEYPOINTS)}],
    }
    expected = np.array([0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87])
    expected = np.concatenate([expected, [0.89, 0.89]]) / 10.0
    assert np.array_equal(oks_sigmas(gt), coco_person_sigmas()) and np.array_equal(oks_sigmas(gt), expected)
    assert keypoint_categories(gt)[1].sigmas_from == "COCO person default"
    # a person category's own sigmas win over the default
    gt["categories"][0]["sigmas"] = [0.1] * 17
    assert oks_sigmas(gt).tolist() == [0.1] * 17


@pytest.mark.timeout(30)
def test_a_perfect_prediction_scores_100_and_none_scores_0():
    scored = [a for a in GT["annotations"] if a.get("num_keypoints") and not a["iscrowd"]]
    perfect = [_res(a["image_id"], a["keypoints"], 1.0) for a in scored]
    r = keypoint_ap(GT, perfect)
    assert _ours(r) == [100.0] * 5 and r["n_images"] == 3
    nothing = keypoint_ap(GT, [])
    assert _ours(nothing) == [0.0] * 5
    # image 2 holds medium objects only: no large AP there (pycocotools' -1), not -100. (Not 100 to
    # the last bit: COCOeval's precision is tp / (tp + fp + eps), and 1 / (1 + eps) rounds below 1.)
    one = keypoint_ap(GT, perfect, image_ids=[2])
    assert one["map"] == one["apm"] == pytest.approx(100.0, abs=1e-12)
    assert np.isnan(one["apl"]) and one["n_images"] == 1


@pytest.mark.timeout(30)
def test_ground_truth_defaults_are_filled_as_documented(tmp_path):
    gt = copy.deepcopy(GT)
    for a in gt["annotations"]:
        a.pop("area")  # the box's w x h, as the complete json has it
        a.pop("num_keypoints", None)  # the count of v > 0
        a.pop("id")
        if a["iscrowd"]:
            a.pop("keypoints")  # a crowd region without keypoints: K unlabelled triplets
    assert keypoint_ap(gt, RESULTS) == keypoint_ap(GT, RESULTS)


@pytest.mark.timeout(30)
def test_prints_nothing_and_leaves_its_inputs_alone(capsys):
    gt, results = copy.deepcopy(GT), copy.deepcopy(RESULTS)
    keypoint_ap(gt, results)
    assert gt == GT and results == RESULTS  # loadRes writes bbox, area and id into the dicts it gets
    assert capsys.readouterr().out == ""


def _one_line(call, text):
    with pytest.raises(MetricError) as err:
        call()
    message = str(err.value)
    assert text in message, message
    assert "\n" not in message


def _with(i, **change):
    results = copy.deepcopy(RESULTS)
    results[i].update(change)
    for k, v in change.items():
        if v is None:
            del results[i][k]
    return results


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("results", "text"),
    [
        ({"image_id": 1}, "must be a list of COCO result dicts, got dict"),
        (_with(2, score=None), "keypoint result 2 ({'image_id': 1"),
        (_with(0, keypoints="1,2,3"), "keypoints is a str, not a list"),
        (_with(0, score="high"), "keypoint result 0 ("),
        (_with(1, keypoints=[1.0] * 10), "keypoint result 1 has 10 keypoint values, not a multiple of 3"),
        (_with(3, keypoints=[1.0] * 9), "keypoint result 3 has 3 keypoints but category 1 'hand' has 4"),
        (_with(4, keypoints=[1.0] * 11 + [float("nan")]), "keypoint result 4 (image 2) has a non-finite keypoint"),
        (_with(5, score=float("inf")), "has a non-finite keypoint value or score inf"),
        (_with(6, category_id=BALL), "category_id=2, which is not a keypoint category of the ground truth [1]"),
        (_with(7, image_id=99), "keypoint result 7 has image_id=99, which is not in the ground truth"),
    ],
)
def test_bad_results_are_refused_in_one_line(results, text):
    _one_line(lambda: keypoint_ap(GT, results), text)


def _gt_with(edit):
    gt = copy.deepcopy(GT)
    edit(gt)
    return gt


def _hand(gt):
    """The hand category of a copy of GT, to edit."""
    return gt["categories"][0]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("edit", "text"),
    [
        (lambda gt: _hand(gt).pop("keypoints"), "has no category that names its keypoints"),
        (lambda gt: _hand(gt).update(sigmas=[0.1] * 3), "category 1 'hand' has sigmas=[0.1, 0.1, 0.1]; give 4"),
        (lambda gt: _hand(gt).update(sigmas=[0.1, 0.1, 0.0, 0.1]), "give 4 positive numbers"),
        (lambda gt: _hand(gt).update(kpt_oks_sigmas=[0.1] * 4), "gives both 'sigmas' and 'kpt_oks_sigmas'"),
        (
            lambda gt: _hand(gt).pop("sigmas"),
            "category 1 'hand' has 4 keypoints that are not COCO's 17 person keypoints and no OKS sigmas; "
            "add 'sigmas': [4 per-keypoint values]",
        ),
        (
            lambda gt: (_hand(gt).pop("sigmas"), _hand(gt).update(keypoints=[f"k{i}" for i in range(17)])),
            "has 17 keypoints that are not COCO's 17 person keypoints",
        ),
        (
            lambda gt: gt["categories"].append(
                {"id": 3, "name": "paw", "keypoints": ["a", "b", "c", "d"], "sigmas": [0.2] * 4}
            ),
            "categories 1 'hand' and 3 'paw' have different keypoints or OKS sigmas",
        ),
        (
            lambda gt: gt["annotations"][0].update(keypoints=[1] * 9),
            "annotation 1 (image 1) has keypoints=[1, 1, 1, 1, 1, 1, 1, 1, 1]; its category has 4 keypoints",
        ),
        (lambda gt: gt["annotations"][1].pop("bbox"), "annotation 2 (image 1) has bbox=None; give its box"),
    ],
)
def test_bad_ground_truth_is_refused_in_one_line(edit, text):
    gt = _gt_with(edit)
    _one_line(lambda: keypoint_ap(gt, RESULTS), text)


@pytest.mark.timeout(30)
def test_images_without_a_scored_object_have_no_keypoint_ap(tmp_path):
    _one_line(lambda: keypoint_ap(GT, RESULTS, image_ids=[]), "the 0 evaluated image(s) have no non-crowd ground-truth")
    only_ignored = _gt_with(lambda gt: gt["annotations"].pop(5))  # image 3 keeps E alone
    _one_line(lambda: keypoint_ap(only_ignored, RESULTS, image_ids=[3]), "the 1 evaluated image(s) have no")
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(_gt_with(lambda gt: _hand(gt).pop("sigmas"))))
    _one_line(lambda: keypoint_ap(path, RESULTS), f"ground truth {path.resolve()}: category 1 'hand' has 4")

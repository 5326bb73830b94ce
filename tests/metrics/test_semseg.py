"""Semantic segmentation over labelled points (vcmbench.metrics.semseg) against cases computed by
hand, and the PandaSet / VCM category tables against the MPEG platform's values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vcmbench.datasets import pandaset_categories as cats
from vcmbench.errors import MetricError
from vcmbench.metrics.semseg import (
    category_iou,
    confusion_matrix,
    mean_iou,
    mean_over_sequences,
    score,
)

# Twelve points, categories 0..3; 0 plays the platform's unlabeled: in the matrix, never scored.
GT = [1, 1, 1, 1, 2, 2, 2, 3, 3, 0, 0, 0]
PRED = [1, 1, 2, 0, 2, 2, 1, 3, 1, 1, 2, 0]
# rows: ground truth 0..3, columns: prediction 0..3, counted by hand from GT / PRED
MATRIX = [
    [1, 1, 1, 0],  # gt 0: predicted 1, 2, 0
    [1, 2, 1, 0],  # gt 1: predicted 1, 1, 2, 0
    [0, 1, 2, 0],  # gt 2: predicted 2, 2, 1
    [0, 1, 0, 1],  # gt 3: predicted 3, 1
]
SCORED = (1, 2, 3)


@pytest.mark.timeout(30)
def test_matrix_iou_and_miou_are_the_hand_computed_ones():
    m = confusion_matrix(GT, PRED, 4)
    assert m.dtype == np.int64 and m.tolist() == MATRIX
    per = category_iou(m, SCORED)
    # IoU = TP / (TP + FP + FN) x 100; the unlabeled points predicted 1 and 2 are FPs of 1 and 2
    assert per == {
        1: 2 / (2 + 3 + 2) * 100,  # TP 2; FP: column 1 holds 5, 3 of them not gt 1; FN: row 1 holds 4, 2 missed
        2: 2 / (2 + 2 + 1) * 100,  # 40: TP 2, FP 2 (gt 0 and gt 1), FN 1
        3: 1 / (1 + 0 + 1) * 100,  # 50: TP 1, FP 0, FN 1
    }
    assert per[2] == 40.0 and per[3] == 50.0
    expected = (2 / 7 * 100 + 40.0 + 50.0) / 3
    assert mean_iou(per) == expected
    assert score(m, SCORED) == score(np.array(MATRIX), SCORED)
    assert score(m, SCORED).miou == expected and math.isclose(expected, 39.523809523809526)


@pytest.mark.timeout(30)
def test_an_ignore_label_drops_those_points_and_none_drops_nothing():
    m = confusion_matrix(GT, PRED, 4, ignore_label=0)
    assert m.tolist() == [[0, 0, 0, 0], MATRIX[1], MATRIX[2], MATRIX[3]]  # gt-0 row gone; predictions of 0 stay
    assert category_iou(m, SCORED) == {1: 2 / (2 + 2 + 2) * 100, 2: 50.0, 3: 50.0}
    # an ignore label outside the categories (255, as other sets mark don't-care points)
    gt = [1, 255, 2, 255]
    pred = [1, 1, 2, 3]
    m = confusion_matrix(gt, pred, 4, ignore_label=255)
    per = category_iou(m, SCORED)
    assert m.sum() == 2 and (per[1], per[2]) == (100.0, 100.0) and math.isnan(per[3])
    with pytest.raises(MetricError, match="ground truth category 255 is outside 0..3"):
        confusion_matrix(gt, pred, 4)  # the platform's rule: no point is dropped


@pytest.mark.timeout(30)
def test_categories_absent_from_the_ground_truth_are_left_out_even_when_predicted():
    # category 4 is predicted once but never true; category 3 is neither: both NaN, out of the mean
    gt = [1, 1, 2]
    pred = [1, 4, 2]
    per = category_iou(confusion_matrix(gt, pred, 5), (1, 2, 3, 4))
    assert per[1] == 50.0 and per[2] == 100.0  # the point predicted 4 is a false negative of 1
    assert math.isnan(per[3]) and math.isnan(per[4])
    assert mean_iou(per) == 75.0
    # no scored category in the ground truth at all: the platform's mIoU is 0
    nothing = score(confusion_matrix([0, 0], [1, 2], 3), (1, 2))
    assert nothing.miou == 0.0 and all(math.isnan(v) for v in nothing.per_category.values())


@pytest.mark.timeout(30)
def test_a_sequence_pools_its_frames_and_a_class_averages_its_sequences():
    # frames' matrices add up to the matrix of their points together: one mIoU per sequence
    frames = [(GT[:5], PRED[:5]), (GT[5:], PRED[5:])]
    pooled = sum(confusion_matrix(g, p, 4) for g, p in frames)
    assert pooled.tolist() == MATRIX
    # a class is the mean of its sequences' mIoUs, not one mIoU over its points
    a = score(confusion_matrix([1, 1], [1, 1], 4), SCORED).miou  # 100
    b = score(confusion_matrix([2, 2, 2, 2], [2, 1, 1, 1], 4), SCORED).miou  # IoU 2: 25; IoU 1: gt-absent
    assert (a, b) == (100.0, 25.0)
    assert mean_over_sequences([a, b]) == 62.5
    together = score(confusion_matrix([1, 1, 2, 2, 2, 2], [1, 1, 2, 1, 1, 1], 4), SCORED).miou
    assert together == (2 / 5 * 100 + 25.0) / 2 != 62.5
    with pytest.raises(MetricError, match="no sequence"):
        mean_over_sequences([])


@pytest.mark.timeout(30)
def test_bad_inputs_are_refused_in_one_line():
    cases = [
        (([1, 2], [1], 3), "ground truth has 2 points but the prediction 1"),
        (([1, 2], [1, 3], 3), "prediction category 3 is outside 0..2"),
        (([1.0, 2.0], [1, 2], 3), "not integers"),
        (([-1, 2], [1, 2], 3), "ground truth category -1"),
    ]
    for args, text in cases:
        with pytest.raises(MetricError) as err:
            confusion_matrix(*args)
        assert text in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(MetricError, match="category 7 is outside the confusion matrix"):
        category_iou(np.zeros((4, 4), dtype=np.int64), (1, 7))


@pytest.mark.timeout(30)
def test_tables_have_the_platforms_shape():
    # compressai_vision/evaluators/config.py (CompressAI-Vision 31165da)
    assert len(cats.PANDASET_CATEGORIES) == 43 and cats.PANDASET_CATEGORIES[42] == "Other Static Object"
    assert len(cats.VCM_CATEGORIES) == 19 and cats.VCM_CATEGORIES[17] == "building"
    assert len(cats.PANDASET_TO_VCM) == 43 and len(cats.COCO_THING_TO_PANDASET) == 80 and len(cats.COCO_STUFF) == 53
    assert cats.VCM_EVAL_CATEGORIES == (1, 3, 4, 5, 6, 7, 8, 10, 12, 17)
    assert [c for c, _, _ in cats.COCO_STUFF] == sorted(c for c, _, _ in cats.COCO_STUFF)  # the head's order


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("pandaset", "vcm"),
    [(0, 0), (2, 5), (7, 3), (10, 3), (12, 4), (17, 5), (24, 7), (28, 0), (29, 11), (31, 12), (34, 16), (38, 15)]
    + [(40, 18), (41, 17), (42, 18)],
)
def test_pandaset_to_vcm_spot_checks(pandaset, vcm):
    assert cats.vcm_of_pandaset(pandaset) == vcm


@pytest.mark.timeout(30)
def test_segment_labels_to_pandaset_spot_checks():
    # things by detectron2's 0-based index: person, truck, bird, dog, backpack, chair, potted plant, toothbrush
    assert [cats.pandaset_of_thing(k) for k in (0, 7, 14, 16, 24, 56, 58, 79)] == [30, 14, 32, 33, 0, 42, 5, 0]
    # stuff by Panoptic FPN's semantic index: background, 'things', banner, road, sky, pavement, rug
    assert [cats.pandaset_of_stuff(k) for k in (-1, 0, 1, 21, 40, 44, 53)] == [0, 0, 42, 7, 0, 11, 0]
    for bad, call in ((80, cats.pandaset_of_thing), (54, cats.pandaset_of_stuff), (43, cats.vcm_of_pandaset)):
        with pytest.raises(MetricError):
            call(bad)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("coco_id", "vcm"),
    [
        (0, 0),  # no segment (the panoptic format's void)
        (1, 12),  # person -> Pedestrian -> pedestrian
        (2, 8),  # bicycle
        (3, 5),  # car
        (4, 7),  # motorcycle
        (6, 10),  # bus
        (7, 11),  # train
        (8, 6),  # truck -> Pickup Truck -> truck
        (9, 9),  # boat -> Other Vehicle - Uncommon -> other vehicle
        (10, 18),  # traffic light -> Other Static Object
        (13, 15),  # stop sign -> Signs
        (16, 13),  # bird
        (18, 14),  # dog -> Animals - Other
        (27, 0),  # backpack -> unlabeled
        (64, 1),  # potted plant -> Vegetation
        (90, 0),  # toothbrush
        (92, 18),  # banner -> Other Static Object
        (133, 0),  # mirror-stuff -> Reflection -> unlabeled
        (149, 3),  # road
        (184, 1),  # tree-merged -> Vegetation
        (185, 16),  # fence-merged -> Temporary Construction Barriers -> road barriers
        (187, 0),  # sky-other-merged
        (191, 4),  # pavement-merged -> Sidewalk
        (194, 2),  # dirt-merged -> Ground
        (197, 17),  # building-other-merged
        (199, 17),  # wall-other-merged -> Building
    ],
)
def test_coco_panoptic_to_vcm_spot_checks(coco_id, vcm):
    assert cats.vcm_of_coco(coco_id) == vcm


@pytest.mark.timeout(30)
@pytest.mark.parametrize("coco_id", [12, 83, 91, 94, 201, -1])
def test_ids_outside_coco_panoptic_are_refused(coco_id):
    with pytest.raises(MetricError) as err:
        cats.vcm_of_coco(coco_id)
    assert f"id {coco_id}:" in str(err.value) and "\n" not in str(err.value)

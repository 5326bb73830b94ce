"""Task metrics are registered evaluators: a new one is reached by its name everywhere a metric is needed."""

from __future__ import annotations

import pytest

from tests.assets import COCO_MINI_JSON
from vcmbench.errors import MetricError
from vcmbench.metrics import evaluators
from vcmbench.metrics.detection import coco_ap, evaluate
from vcmbench.metrics.evaluators import Evaluator
from vcmbench.metrics.item_matches import match_items
from vcmbench.render.report_tables import _metric_label


@pytest.fixture
def toy(monkeypatch):
    seen = []

    def toy_ap(gt, detections, image_ids, iou_type):
        seen.append((len(detections), iou_type))
        return {"map": 12.5, "ap50": 25.0}

    monkeypatch.setitem(evaluators._REGISTRY, "toy", Evaluator("toy", "toy AP", "toy mask AP", toy_ap))
    return seen


def test_a_registered_evaluator_scores_the_points_and_labels_the_report(toy):
    assert evaluate("toy", COCO_MINI_JSON, [], None, "segm") == {"map": 12.5, "ap50": 25.0}
    assert toy == [(0, "segm")]
    assert _metric_label("toy") == "mAP (%, toy AP)" and _metric_label("toy", "mask") == "mask mAP (%, toy mask AP)"
    with pytest.raises(ValueError, match="no per-item matching for metric 'toy'"):  # no bootstrap without match/score
        match_items("toy", COCO_MINI_JSON, [], [1])


def test_the_packaged_evaluators_are_the_registry_s():
    assert set(evaluators.registered()) >= {"coco", "oid"}
    assert evaluators.get("coco").evaluate is coco_ap
    with pytest.raises(MetricError, match=r"unknown detection metric 'voc'.*'coco' = COCO AP@\[\.5:\.95\]"):
        evaluators.get("voc")

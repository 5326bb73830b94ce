"""Task metrics are registered evaluators: a new one is reached by its name everywhere a metric is needed."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tests.assets import COCO_MINI_JSON
from vcmbench.errors import MetricError
from vcmbench.metrics import evaluators
from vcmbench.metrics.detection import coco_ap, evaluate
from vcmbench.metrics.evaluators import Evaluator
from vcmbench.metrics.item_matches import match_items
from vcmbench.points import build_points
from vcmbench.records import Record
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


def test_detection_segmentation_and_tracking_are_the_packaged_task_metrics():
    found = evaluators.registered()
    assert list(found)[:4] == ["coco", "oid", "segm", "mota"]  # registration order = column order
    assert found["coco"].columns == ("map", "ap50") and found["coco"].headline == "map"
    assert found["segm"].columns == ("map_segm", "ap50_segm") and found["segm"].headline is None
    assert found["mota"].columns == ("mota", "idf1", "hota", "id_switches") and found["mota"].headline == "mota"
    assert found["mota"].precedence > found["coco"].precedence  # a tracking set's `map` is MOTA
    with pytest.raises(MetricError, match=r"unknown detection metric 'mota'.*\['coco', 'oid'\]"):
        evaluators.get("mota")  # not a box evaluator a dataset can name


def test_axis_label_comes_from_the_registry():
    assert evaluators.axis_label("mota") == "MOTA (%)"
    assert evaluators.axis_label("coco") == "COCO AP@[.5:.95] (%)"
    assert evaluators.axis_label("oid") == "OpenImages challenge mAP@0.5 (%)"
    assert evaluators.axis_label("something") == "something"


def _records(codec: str = "c") -> list[Record]:
    """One record per image of the mini set, detecting its ground truth exactly."""
    gt = json.loads(COCO_MINI_JSON.read_text())
    out = []
    for im in gt["images"]:
        rows = [[*a["bbox"], 0.9, a["category_id"]] for a in gt["annotations"] if a["image_id"] == im["id"]]
        out.append(
            Record(im["id"], codec, "q=1", "s", 100, im["width"] * im["height"], 0.0, 0.0, 0.0, 0.0, detections=rows)
        )
    return out


def _points(recs: list[Record]):
    ids = sorted(r.image_id for r in recs)
    return build_points(recs, "mini", "m", "coco", COCO_MINI_JSON, ids)


def test_a_registered_task_metric_reaches_the_points_table(monkeypatch):
    """One registration and the points table has the metric's columns; with a headline that
    outranks the box AP, it is the rate-distortion `map` and the `metric` column names it."""
    evaluators.registered()  # the packaged ones first: the toy's columns come after theirs

    def count(items, records, results, memo):
        return {"n_boxes": float(len(results))}

    toy = Evaluator("boxes", "boxes", columns=("n_boxes",), headline=None, applies=lambda items, recs: True)
    monkeypatch.setitem(evaluators._REGISTRY, "boxes", dataclasses.replace(toy, evaluate_items=count))
    recs = _records()
    n = float(sum(len(r.detections) for r in recs))
    points = _points(recs)
    assert points.n_boxes.tolist() == [n] and points["map"].iloc[0] == pytest.approx(100.0)
    assert points.metric.tolist() == ["coco"]

    ranked = dataclasses.replace(toy, evaluate_items=count, headline="n_boxes", precedence=5)
    monkeypatch.setitem(evaluators._REGISTRY, "boxes", ranked)
    points = _points(recs)
    assert points["map"].tolist() == [n] and points.metric.tolist() == ["boxes"]
    assert points.ap50.iloc[0] == pytest.approx(100.0)  # the box AP50 stays


def test_an_evaluator_missing_a_declared_column_is_refused(monkeypatch):
    evaluators.registered()
    bad = Evaluator(
        "bad", "bad", columns=("x",), headline=None, applies=lambda i, r: True, evaluate_items=lambda *a: {}
    )
    monkeypatch.setitem(evaluators._REGISTRY, "bad", bad)
    with pytest.raises(MetricError, match=r"evaluator 'bad' gave no \['x'\]"):
        _points(_records())

"""Keypoints through a run's records and points table: stored per detection, given to pycocotools as
COCO keypoint results, scored by the registered `keypoints` evaluator (map_kp / ap50_kp) exactly as a
direct COCOeval run scores them."""

from __future__ import annotations

import json

import pytest

from tests.metrics.test_keypoints import GT, RESULTS, SIGMAS, _direct
from vcmbench.metrics.evaluators import registered
from vcmbench.points import build_points
from vcmbench.records import Record, RecordStore, coco_results, read_records


def _box(keypoints: list[float]) -> list[float]:
    xs, ys = keypoints[0::3], keypoints[1::3]
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def _records(results, codec="c", rate="q=1") -> list[Record]:
    """One image record per ground-truth image: detection rows and their keypoints."""
    out = []
    for im in GT["images"]:
        mine = [r for r in results if r["image_id"] == im["id"]]
        out.append(
            Record(
                im["id"],
                codec,
                rate,
                "s",
                100,
                im["width"] * im["height"],
                0.0,
                0.0,
                0.0,
                0.0,
                detections=[[*_box(r["keypoints"]), r["score"], r["category_id"]] for r in mine],
                keypoints=[[float(v) for v in r["keypoints"]] for r in mine],
            )
        )
    return out


@pytest.mark.timeout(60)
def test_keypoints_survive_the_records_file_and_box_only_lines_do_not_change(tmp_path):
    path = tmp_path / "records.jsonl"
    store = RecordStore(path)
    with_kp = _records(RESULTS)[0]
    box_only = Record(9, "c", "q=1", "s", 10, 100, 0.0, 0.0, 0.0, 0.0, detections=[[1, 2, 3, 4, 0.5, 1]])
    sequence = Record(
        10, "c", "q=1", "s", 10, 100, 0.0, 0.0, 0.0, 0.0, frames=2, frame_ids=[11, 12],
        frame_detections=[[[1, 2, 3, 4, 0.5, 1]], []], frame_keypoints=[[[1.0, 2.0, 1.0] * 4], []],
    )  # fmt: skip
    for r in (with_kp, box_only, sequence):
        store.append(r)
    store.close()
    back = {r.image_id: r for r in read_records(path)}
    assert back[with_kp.image_id] == with_kp and back[10] == sequence and back[9] == box_only
    assert back[with_kp.image_id].has_keypoints and back[10].has_keypoints and not back[9].has_keypoints
    lines = {json.loads(x)["image_id"]: json.loads(x) for x in path.read_text().splitlines()}
    assert "keypoints" not in lines[9] and "frame_keypoints" not in lines[9]  # a box-only line as before
    frames = back[10].frame_results()
    assert frames[0].keypoints == [[1.0, 2.0, 1.0] * 4] and frames[1].keypoints == []


@pytest.mark.timeout(60)
def test_the_registered_evaluator_scores_the_records_keypoints_as_cocoeval_does(tmp_path):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(GT))
    assert "keypoints" in registered()
    records = _records(RESULTS)
    results = coco_results(records)
    assert sum("keypoints" in r for r in results) == len(RESULTS)
    points = build_points(records, "hands", "m", "coco", gt, [1, 2, 3])
    (row,) = points.itertuples()
    direct = _direct(tmp_path, GT, RESULTS, SIGMAS)
    assert (row.map_kp, row.ap50_kp) == (direct[0], direct[1])
    assert row.metric == "coco"  # the boxes stay the rate-distortion map; keypoint AP is a figure beside it
    # exact keypoints: 100; a network without keypoints: no keypoint columns at all
    perfect = [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 0.9}
        for a in GT["annotations"]
        if a.get("keypoints") and not a.get("iscrowd") and any(a["keypoints"][2::3])
    ]
    (best,) = build_points(_records(perfect), "hands", "m", "coco", gt, [1, 2, 3]).itertuples()
    assert best.map_kp == pytest.approx(100.0)
    boxes = [Record(**{**r.__dict__, "keypoints": []}) for r in records]
    assert "map_kp" not in build_points(boxes, "hands", "m", "coco", gt, [1, 2, 3]).columns


@pytest.mark.timeout(120)
def test_a_keypoint_run_s_report_leads_with_keypoint_ap_and_keeps_the_boxes(tmp_path):
    """task_metric=auto: a points table with keypoint AP gets a keypoint section first (its BD-rates
    and plots on map_kp), then the boxes; task_metric=keypoints on a box-only table is refused."""
    import pandas as pd

    from tests.assets import REPO
    from vcmbench.analysis import task_metrics
    from vcmbench.errors import MetricError
    from vcmbench.render.report import write_report

    pts = pd.read_csv(REPO / "anchors" / "ci" / "points.csv")
    with pytest.raises(MetricError, match="task_metric=keypoints: these points have no map_kp"):
        task_metrics(pts, "keypoints")
    pts = pts.assign(map_kp=pts["map"] * 0.8, ap50_kp=pts["ap50"] * 0.9)
    assert task_metrics(pts, "auto") == ["keypoints", "box"] and task_metrics(pts, "box") == ["box", "keypoints"]
    table = tmp_path / "points.csv"
    pts.to_csv(table, index=False)
    write_report([table], tmp_path / "report", bootstrap=None)
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## synthetic_val / ci_frcnn (keypoints)" in md and "keypoint mAP: COCO keypoint AP (OKS), in percent" in md
    assert md.index("keypoints (pose estimation)") < md.index("boxes (detection)")

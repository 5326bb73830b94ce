"""Semantic segmentation as a registered task metric (vcmbench.metrics.semseg_evaluator): mIoU of the
records' semantic maps against dense ground truth built from instance masks (with its ignore label)
and against PandaSet's labelled points, each equal to a confusion matrix worked out by hand; the
headline rule; the bootstrap's per-item matrices; the maps in records.jsonl."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from vcmbench.datasets import pandaset
from vcmbench.errors import MetricError
from vcmbench.metrics import evaluators
from vcmbench.metrics.evaluators import ItemSet, score_items
from vcmbench.metrics.semseg_evaluator import IGNORE, dense_truth, item_confusions, semseg_scores
from vcmbench.points import build_points, build_sequence_points
from vcmbench.records import Record, coco_results, encode_semantic, read_records, write_records

MINI = Path(__file__).parents[1] / "data" / "pandaset-mini"
X = IGNORE  # an ignored pixel in the maps below


def rle(mask: list[list[int]]) -> dict:
    encoded = mask_utils.encode(np.asfortranarray(np.array(mask, dtype=np.uint8)))
    return {"size": [int(v) for v in encoded["size"]], "counts": encoded["counts"].decode("ascii")}


def annotation(ann_id: int, image_id: int, category: int, mask: list[list[int]], crowd: int = 0) -> dict:
    m = np.array(mask)
    ys, xs = np.nonzero(m)
    box = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
    seg = rle(mask)
    return {"id": ann_id, "image_id": image_id, "category_id": category, "segmentation": seg, "area": float(m.sum()),
            "bbox": box, "iscrowd": crowd}  # fmt: skip


def dense_set(tmp_path: Path) -> Path:
    """Two tiny images, categories 1 ('a') and 2 ('b'). Image 1 (2x4) has one unlabeled pixel, image 2
    (2x2) a crowd region; their ground-truth maps are GT1 and GT2 below."""
    data = {
        "images": [
            {"id": 1, "width": 4, "height": 2, "file_name": "1.png", "unlabeled": rle([[0, 0, 0, 0], [0, 1, 0, 0]])},
            {"id": 2, "width": 2, "height": 2, "file_name": "2.png"},
        ],
        "annotations": [
            annotation(1, 1, 1, [[1, 1, 0, 0], [1, 0, 0, 0]]),
            annotation(2, 1, 2, [[0, 0, 0, 0], [0, 0, 1, 1]]),
            annotation(3, 2, 2, [[1, 1], [0, 0]]),
            annotation(4, 2, 1, [[0, 0], [1, 0]], crowd=1),
        ],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    path = tmp_path / "dense.json"
    path.write_text(json.dumps(data))
    return path


GT1 = [[1, 1, 0, 0], [1, X, 2, 2]]
GT2 = [[2, 2], [X, 0]]
PRED1 = [[1, 0, 0, 2], [1, 1, 2, 0]]
PRED2 = [[2, 7], [0, 1]]  # 7 is no category of the set: background
# rows: ground truth (background, a, b), columns: prediction, over the pixels that are not ignored
HAND = np.array([[1, 1, 1], [1, 2, 0], [2, 0, 2]])
HAND_IOU = {"background": 1 / (3 + 4 - 1) * 100, "a": 2 / (3 + 3 - 2) * 100, "b": 2 / (4 + 3 - 2) * 100}
HAND_MIOU = (((0.0 + HAND_IOU["background"]) + HAND_IOU["a"]) + HAND_IOU["b"]) / 3


def image_record(image_id: int, pred: list[list[int]] | None, codec: str = "c", rows=()) -> Record:
    h, w = (len(pred), len(pred[0])) if pred else (2, 2)
    return Record(image_id, codec, "q=1", "s", 10, h * w, 0.0, 0.0, 0.0, 0.0, detections=[list(r) for r in rows],
                  semantic=encode_semantic(np.array(pred)) if pred is not None else "")  # fmt: skip


def perfect_boxes(path: Path, image_id: int) -> list[list[float]]:
    anns = json.loads(path.read_text())["annotations"]
    return [[*a["bbox"], 0.9, a["category_id"]] for a in anns if a["image_id"] == image_id and not a["iscrowd"]]


@pytest.mark.timeout(60)
def test_dense_truth_paints_annotations_over_unlabeled_and_crowd_pixels(tmp_path):
    gt = dense_set(tmp_path)
    assert dense_truth(gt, 1).tolist() == GT1 and dense_truth(gt, 2).tolist() == GT2
    assert dense_truth(gt, 1).dtype == np.int64


@pytest.mark.timeout(60)
def test_dense_miou_is_the_hand_computed_confusion_matrix_s(tmp_path):
    gt = dense_set(tmp_path)
    recs = [image_record(1, PRED1), image_record(2, PRED2)]
    items = ItemSet("coco", gt, [1, 2])
    confusions = item_confusions(items, recs)
    assert confusions.tp.sum(axis=0).tolist() == np.diagonal(HAND).tolist()
    assert confusions.truth.sum(axis=0).tolist() == HAND.sum(axis=1).tolist()
    assert confusions.predicted.sum(axis=0).tolist() == HAND.sum(axis=0).tolist()
    got = semseg_scores(items, recs, [], {})
    assert got["miou"] == HAND_MIOU  # exactly: integer counts, one division and one product per IoU
    assert json.loads(got["iou_per_category"]) == HAND_IOU
    assert confusions.score()["miou"].tolist() == [HAND_MIOU]  # the bootstrap's arithmetic, weights of ones
    # a resample holding image 1 twice and image 2 not at all is image 1's matrix doubled: the same IoUs
    alone = semseg_scores(ItemSet("coco", gt, [1]), recs[:1], [], {})["miou"]
    assert confusions.score(np.array([[2.0, 0.0]]))["miou"].tolist() == [alone]


@pytest.mark.timeout(60)
def test_on_a_box_set_miou_is_a_column_beside_the_box_ap_headline(tmp_path):
    gt = dense_set(tmp_path)
    recs = [image_record(i, p, rows=perfect_boxes(gt, i)) for i, p in ((1, PRED1), (2, PRED2))]
    points = build_points(recs, "dense", "m", "coco", gt, [1, 2])
    assert points.metric.tolist() == ["coco"] and points["map"].iloc[0] == pytest.approx(100.0)
    assert points.miou.tolist() == [HAND_MIOU]
    assert json.loads(points.iou_per_category.iloc[0]) == HAND_IOU
    # a network without semantic maps: no mIoU column, as before
    plain = [Record(**{**asdict(r), "semantic": ""}) for r in recs]
    assert "miou" not in build_points(plain, "dense", "m", "coco", gt, [1, 2]).columns
    # a failed item has no map: predicted as background everywhere
    failed = score_items(ItemSet("coco", gt, [1, 2]), [recs[0], image_record(2, None)], coco_results(recs[:1]), {})
    background = np.zeros((2, 2), dtype=np.int64)
    want = semseg_scores(ItemSet("coco", gt, [1, 2]), [recs[0], image_record(2, background.tolist())], [], {})
    assert failed.columns["miou"] == want["miou"]


@pytest.mark.timeout(60)
def test_the_miou_evaluator_is_registered_below_the_box_metrics():
    found = evaluators.registered()
    assert "vcmbench.metrics.semseg_evaluator" in evaluators.BUILTIN
    assert found["miou"].columns == ("miou", "iou_per_category")
    assert found["miou"].headline == "miou" and found["miou"].precedence < found["coco"].precedence
    assert evaluators.item_scorer("miou") is found["miou"] and evaluators.item_scorer("map") is None
    with pytest.raises(MetricError, match=r"unknown dataset metric 'voc'.*'miou' = mIoU"):
        evaluators.check_dataset_metric("voc")


# ------------------------------------------------------------------------------------- PandaSet points

W, H = 64, 36
#: COCO ids a panoptic map gives at each fixture point (tests/datasets/test_pandaset.py: POINTS), and the
#: VCM categories of both sides: road 149 -> 3, car 3 -> 5, truck 8 -> 6, person 1 -> 12, tree 184 -> 1,
#: pavement 191 -> 4, sky 187 -> 0, void 0 -> 0
PREDICTED = {
    "057": [{(0, 0): 149, (63, 35): 8, (10, 20): 1, (5, 5): 3}, {(1, 2): 184, (2, 3): 0}, {}],
    "003": [{(30, 10): 3, (31, 11): 3}, {(32, 12): 149, (0, 35): 187}],
}
# 057: road 1/1, car 0 of (1 true + 1 false positive from an unlabeled point), pedestrian 1/1, vegetation 1/1,
# building 0/1; truck is predicted but not in the ground truth: left out. Means in VCM_EVAL_CATEGORIES' order.
MIOU_057 = ((((0.0 + 100.0) + 100.0) + 0.0) + 100.0 + 0.0) / 5
# 003: road 1/1, sidewalk 0/1, car 1 of (1 + 1 truck predicted car) = 50, truck 0/1
MIOU_003 = (((0.0 + 100.0) + 0.0) + 50.0 + 0.0) / 4


def panda_records(ds, codec: str = "c") -> list[Record]:
    out = []
    for seq in ds.sequences:
        maps = []
        for frame in PREDICTED[seq.name]:
            m = np.full((H, W), 187, dtype=np.int64)  # sky elsewhere: unlabeled
            for (x, y), cid in frame.items():
                m[y, x] = cid
            maps.append(encode_semantic(m))
        n = len(seq.frames)
        head = (seq.sequence_id, codec, "qp=1", "s", 100, W * H * n, 0.0, 0.0, 0.0, 0.0)
        frames = {"frames": n, "frame_ids": seq.frame_ids, "frame_detections": [[] for _ in range(n)]}
        out.append(Record(*head, **frames, frame_semantic=maps))
    return out


@pytest.fixture
def panda(tmp_path):
    return pandaset.build("pandaset", str(MINI), cache_dir=str(tmp_path / "cache"))


@pytest.mark.timeout(60)
def test_points_miou_per_sequence_and_class_are_the_hand_computed_ones(panda):
    recs = panda_records(panda)
    names = [s.name for s in panda.sequences]
    assert names == ["057", "003"]
    points, classes = build_sequence_points(recs, panda, "d2_panoptic_fpn_r101")
    assert points.metric.tolist() == ["miou", "miou"]  # no box metric applies: mIoU is the headline
    assert points["map"].tolist() == [MIOU_057, MIOU_003] and points.miou.tolist() == [MIOU_057, MIOU_003]
    assert points.ap.isna().all() and points.ap50.isna().all()
    assert json.loads(points.iou_per_category.iloc[1]) == {"road": 100.0, "sidewalk": 0.0, "car": 50.0, "truck": 0.0}
    assert classes["class"].tolist() == ["PANDAM1", "PANDAM2"] and classes["map"].tolist() == [MIOU_057, MIOU_003]
    # a class of both: the plain mean of its sequences' mIoUs, as the CTTC csv's class rows are
    both = ItemSet("miou", panda.annotation_file, sorted(panda.frame_ids), panda)
    got = semseg_scores(both, recs, [], {})
    assert got["miou"] == (MIOU_057 + MIOU_003) / 2
    assert json.loads(got["iou_per_category"])["car"] == (0.0 + 50.0) / 2


@pytest.mark.timeout(60)
def test_points_runs_without_semantic_maps_are_refused_in_one_line(panda):
    recs = [Record(**{**asdict(r), "frame_semantic": []}) for r in panda_records(panda)]
    with pytest.raises(MetricError, match=r"dataset's metric 'miou' \(mIoU\) finds nothing it scores") as err:
        build_sequence_points(recs, panda, "ci_frcnn")
    assert "\n" not in str(err.value)
    # a sequence whose payload failed has no map but is scored, predicting nothing: the sweep goes on
    failed = panda_records(panda)
    failed[1] = Record(**{**asdict(failed[1]), "frame_semantic": [], "status": "decode_failed"})
    points, _ = build_sequence_points(failed, panda, "d2_panoptic_fpn_r101")
    assert points.n_failed.tolist() == [0, 1] and points.miou.tolist() == [MIOU_057, 0.0]


# ------------------------------------------------------------------------------------- records


@pytest.mark.timeout(60)
def test_semantic_maps_round_trip_through_records_jsonl_and_other_lines_keep_their_fields(tmp_path):
    rng = np.random.default_rng(0)
    small = rng.integers(0, 201, size=(36, 64))
    wide = rng.integers(0, 70000, size=(5, 7)).clip(0, 65535)  # ids past 255: a 16-bit PNG
    image = image_record(1, small.tolist())
    seq = Record(2, "c", "q=1", "s", 10, 100, 0.0, 0.0, 0.0, 0.0, frames=2, frame_ids=[5, 6],
                 frame_detections=[[], []], frame_semantic=[encode_semantic(wide), encode_semantic(small)])  # fmt: skip
    plain = Record(3, "c", "q=1", "s", 10, 100, 0.0, 0.0, 0.0, 0.0, detections=[[1.0, 2.0, 3.0, 4.0, 0.5, 1]])
    path = tmp_path / "records.jsonl"
    write_records(path, [image, seq, plain])
    back = {r.image_id: r for r in read_records(path)}
    assert back[1].has_semantic and np.array_equal(back[1].semantic_maps()[0], small)
    a, b = back[2].semantic_maps()
    assert np.array_equal(a, wide) and np.array_equal(b, small) and a.dtype == np.int64
    assert not back[3].has_semantic and back[3].semantic_maps() == [None]
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["semantic"].startswith("png:") and len(lines[1]["frame_semantic"]) == 2
    # a line without a map holds the fields it held before maps were kept, in their order
    assert list(lines[2]) == [
        "image_id", "codec", "rate", "setup", "bytes", "pixels", "enc_s", "dec_s", "front_s", "back_s", "status",
        "error", "detections", "masks", "mask_size", "extra", "layer_bytes", "workers", "frames", "frame_ids",
        "frame_detections", "feature_hash", "decoded_hash",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="ids span -1..3"):
        encode_semantic(np.array([[-1, 3]]))
    assert math.isfinite(len(lines[0]["semantic"]))


# ------------------------------------------------------------------------------------- bootstrap, report


def random_dense_set(tmp_path: Path, n_images: int = 6, size: int = 16, n_cats: int = 5, seed: int = 0):
    """Images whose every pixel is background or one of `n_cats` categories (one annotation per category
    present), some pixels unlabeled, and a codec's noisy predictions of them at three rate points."""
    rng = np.random.default_rng(seed)
    images, anns, truths = [], [], []
    for i in range(1, n_images + 1):
        truth = rng.integers(0, n_cats + 1, size=(size, size))
        unlabeled = rng.random((size, size)) < 0.05
        images.append({"id": i, "width": size, "height": size, "unlabeled": rle(unlabeled.astype(int).tolist())})
        for c in range(1, n_cats + 1):
            if (truth == c).any():
                anns.append(annotation(len(anns) + 1, i, c, (truth == c).astype(int).tolist()))
        truths.append(np.where(unlabeled & (truth == 0), IGNORE, truth))
    cats = [{"id": c, "name": f"c{c}"} for c in range(1, n_cats + 1)]
    path = tmp_path / "random.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    recs = []
    for k, noise in enumerate((0.6, 0.3, 0.1)):
        for i, truth in enumerate(truths, start=1):
            pred = np.where(rng.random(truth.shape) < noise, rng.integers(0, n_cats + 1, truth.shape), truth)
            recs.append(Record(i, "c", f"q={k}", "s", 100 * (k + 1) + i, size * size, 0.0, 0.0, 0.0, 0.0,
                               semantic=encode_semantic(np.where(pred == IGNORE, 0, pred))))  # fmt: skip
    return path, recs, truths


@pytest.mark.timeout(60)
def test_bootstrap_weights_of_ones_give_the_points_miou_to_the_last_bit(tmp_path):
    from vcmbench.bootstrap import item_points, resample_weights, resamples_task

    gt, recs, truths = random_dense_set(tmp_path)
    assert dense_truth(gt, 1).tolist() == truths[0].tolist()
    ids = list(range(1, len(truths) + 1))
    points = build_points(recs, "random", "m", "coco", gt, ids)
    assert points.metric.tolist() == ["coco"] * 3 and points.miou.notna().all()  # a box set: mIoU beside its AP
    per = item_points(recs, "coco", gt, ids, points, task="semseg")["c"]
    for p in per:
        want = float(points.loc[points.rate == p.rate, "miou"].iloc[0])
        assert p.values(None)[1].tolist() == [want]  # exactly
        assert len({round(v, 6) for v in json.loads(points.iou_per_category.iloc[0]).values()}) > 3
    weights = resample_weights(len(ids), 50, seed=1)
    _bpp, drawn = per[0].values(weights)
    assert drawn.shape == (50,) and np.isfinite(drawn).all() and drawn.std() > 0
    assert resamples_task("semseg") and resamples_task("box") and not resamples_task("mask")
    bad = points.assign(miou=points.miou + 1e-9)
    with pytest.raises(Exception, match="its records give miou"):
        item_points(recs, "coco", gt, ids, bad, task="semseg")


@pytest.mark.timeout(120)
def test_a_semseg_run_s_report_leads_with_miou_and_keeps_the_boxes(tmp_path):
    """task_metric=auto: a points table with mIoU gets its mIoU section first (BD-rates and plots on
    miou, no AP50 column), then the boxes; task_metric=semseg on a box-only table is refused."""
    import pandas as pd

    from tests.assets import REPO
    from vcmbench.analysis import task_metrics
    from vcmbench.render.report import write_report

    pts = pd.read_csv(REPO / "anchors" / "ci" / "points.csv")
    with pytest.raises(MetricError, match="task_metric=semseg: these points have no miou"):
        task_metrics(pts, "semseg")
    pts = pts.assign(miou=pts["map"] * 0.7 + 10.0)
    assert task_metrics(pts, "auto") == ["semseg", "box"] and task_metrics(pts, "box") == ["box", "semseg"]
    table = tmp_path / "points.csv"
    pts.to_csv(table, index=False)
    write_report([table], tmp_path / "report", bootstrap=None)
    md = (tmp_path / "report" / "report.md").read_text()
    section = md[
        md.index("## synthetic_val / ci_frcnn (semantic segmentation)") : md.index(
            "## synthetic_val / ci_frcnn (boxes)"
        )
    ]
    assert "semantic segmentation (mIoU), the task metric" in section and "mIoU in percent" in section
    assert "| mIoU (%) |" in section and "AP50" not in section.split("Rate points")[1].split("\n\n")[1]
    assert "| BD-mIoU | mIoU range used |" in section  # the BD columns name the section's measure
    assert (tmp_path / "report" / "figures" / "synthetic_val__ci_frcnn__semseg-rd.png").is_file()
    # the BD-rates are the box ones' (mIoU is an affine map of the box mAP here, BD-rate is invariant to it)
    assert section.split("BD-rate vs")[1].split("\n\n")[0].count("| not computed") < 3

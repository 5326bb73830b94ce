"""Instance segmentation through the split: Mask R-CNN's masks are kept,
exactly, and travel in the records as COCO RLE."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.assets import coco_mini_image_paths
from vcmbench.records import Record, coco_results, encode_masks, read_records

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def small_maskrcnn():
    """torchvision Mask R-CNN R50-FPN with random weights at a 160-px input, every box kept."""
    from vcmbench.vision.torchvision_split import build

    det = build(
        arch="maskrcnn_resnet50_fpn",
        weights="none",
        seed=0,
        min_size=160,
        max_size=240,
        score_thresh=0.0,
        detections_per_img=100,
    )
    det.model.rpn._pre_nms_top_n["testing"] = 300
    det.model.rpn._post_nms_top_n["testing"] = 150
    return det


@pytest.fixture(scope="module")
def images():
    from vcmbench.datasets.images import read_rgb

    return [read_rgb(p) for p in coco_mini_image_paths(2)]


def test_split_masks_equal_the_unsplit_model(small_maskrcnn, images):
    for image in images:
        split = small_maskrcnn.back(*_front(small_maskrcnn, image))
        whole = small_maskrcnn.full(image)
        assert len(split) >= 50  # enough instances that an ordering or pasting slip would show
        assert split.masks is not None and split.masks.dtype == torch.bool
        assert split.masks.shape == (len(split), image.shape[1], image.shape[2])  # original-image pixels
        assert torch.equal(split.boxes, whole.boxes) and torch.equal(split.scores, whole.scores)
        assert torch.equal(split.labels, whole.labels) and torch.equal(split.masks, whole.masks)


def _front(det, image):
    out = det.front(image)
    return out.features, out.meta


def test_masks_travel_as_rle_and_score_as_coco_segmentation(small_maskrcnn, images):
    from pycocotools import mask as mask_utils

    dets = small_maskrcnn.back(*_front(small_maskrcnn, images[0]))
    masks = dets.masks.numpy()
    counts = encode_masks(masks)
    assert len(counts) == len(dets) and all(isinstance(c, str) for c in counts)
    size = list(masks.shape[1:])
    decoded = mask_utils.decode([{"size": size, "counts": c.encode()} for c in counts]).transpose(2, 0, 1)
    assert np.array_equal(decoded.astype(bool), masks)
    rec = Record(
        image_id=7,
        codec="raw",
        rate="r",
        setup="s",
        bytes=1,
        pixels=1,
        enc_s=0,
        dec_s=0,
        front_s=0,
        back_s=0,
        detections=[[0, 0, 1, 1, 0.5, 1]] * len(counts),
        masks=counts,
        mask_size=size,
    )
    rows = coco_results([rec])
    assert rows[0]["segmentation"] == {"size": size, "counts": counts[0]} and rows[0]["image_id"] == 7
    # RLE is compact: far smaller than the dense masks
    assert sum(len(c) for c in counts) < masks.size / 8


def test_records_store_masks_packed_and_read_them_back_exactly(tmp_path):
    from vcmbench.records import MASKS_PACKED, RecordStore

    counts = encode_masks(
        np.stack([np.pad(np.ones((20, 30 + i), bool), ((i, 100 - i), (5, 65 - i))) for i in range(9)])
    )
    rec = Record(
        image_id=7,
        codec="raw",
        rate="r",
        setup="s",
        bytes=1,
        pixels=1,
        enc_s=0,
        dec_s=0,
        front_s=0,
        back_s=0,
        detections=[[0, 0, 1, 1, 0.5, 1]] * len(counts),
        masks=counts,
        mask_size=[120, 100],
    )
    store = RecordStore(tmp_path / "records.jsonl")
    store.append(rec)
    store.close()
    line = (tmp_path / "records.jsonl").read_text()
    assert f'"masks":"{MASKS_PACKED}' in line and len(line) < len(json.dumps(counts)) + 400
    assert RecordStore(tmp_path / "records.jsonl").records[rec.key] == rec


def test_box_only_networks_keep_no_masks(small_detector, images):
    dets = small_detector.back(*_front(small_detector, images[0]))
    assert dets.masks is None


def test_ground_truth_masks_fed_back_score_100_and_boxes_alone_are_refused():
    import json

    from tests.assets import COCO_MINI_JSON
    from vcmbench.errors import MetricError
    from vcmbench.metrics.detection import coco_ap

    data = json.loads(COCO_MINI_JSON.read_text())
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    coco.createIndex()
    results = []
    for a in data["annotations"]:
        if a.get("iscrowd"):
            continue
        rle = coco.annToRLE(a)
        results.append(
            {
                "image_id": a["image_id"],
                "category_id": a["category_id"],
                "bbox": a["bbox"],
                "score": 1.0,
                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
            }
        )
    scores = coco_ap(COCO_MINI_JSON, results, iou_type="segm")
    assert scores["map"] == pytest.approx(100.0) and scores["ap50"] == pytest.approx(100.0)
    # a mask shifted off its object no longer matches: mask AP sees masks, not boxes
    shifted = [
        dict(
            r,
            segmentation={
                "size": r["segmentation"]["size"],
                "counts": encode_masks(np.roll(mask_decode(r["segmentation"]), 40, axis=1)[None])[0],
            },
        )
        for r in results
    ]
    assert coco_ap(COCO_MINI_JSON, shifted, iou_type="segm")["map"] < 60
    assert coco_ap(COCO_MINI_JSON, shifted)["map"] == pytest.approx(100.0)  # the boxes still match
    with pytest.raises(MetricError, match="segmentation RLE"):
        coco_ap(COCO_MINI_JSON, [{k: v for k, v in r.items() if k != "segmentation"} for r in results], iou_type="segm")


def mask_decode(rle: dict) -> np.ndarray:
    from pycocotools import mask as mask_utils

    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


def test_masks_through_the_sweep_match_the_unsplit_model(tmp_path):
    """raw and image_lossless carry the features or the image exactly: their mask AP is the unsplit model's."""
    import pandas as pd
    from hydra.utils import instantiate

    from vcmbench.config import compose_config
    from vcmbench.metrics.detection import coco_ap, detections_to_coco
    from vcmbench.run import run_sweep

    cfg = compose_config(
        "config",
        [
            "dataset.count=2",
            "model=ci_maskrcnn",
            "model.weights=none",
            "model.score_thresh=0.0",
            "codec=[raw,image_lossless]",
            "sweep.workers=1",
            "sweep.progress=false",
            "report=false",
            "complexity=false",
            "fidelity=false",
        ],
    )
    points = run_sweep(cfg, tmp_path / "run").set_index("codec")
    ds, det = instantiate(cfg.dataset), instantiate(cfg.model)
    records = read_records(tmp_path / "run" / "records.jsonl")
    whole = []
    for rec in ds.records:
        d = det.full(ds.load(rec).image)
        counts = encode_masks(d.masks.numpy())
        for r in (r for r in records if r.image_id == rec.image_id):  # every mask, as the unsplit model's
            assert r.masks == counts and r.mask_size == list(d.masks.shape[1:]), r.codec
        rows = detections_to_coco(rec.image_id, d.boxes, d.scores, det.to_category_id(d.labels))
        for row, c in zip(rows, counts):
            row["segmentation"] = {"size": list(d.masks.shape[1:]), "counts": c}
        whole += rows
    # (random weights: the AP itself is about 0; the masks' equality above is what is exact)
    expected = coco_ap(ds.annotation_file, whole, image_ids=ds.image_ids, iou_type="segm")
    for codec in ("raw", "image_lossless"):
        assert points.loc[codec, "map_segm"] == pytest.approx(expected["map"], abs=1e-9)
        assert points.loc[codec, "ap50_segm"] == pytest.approx(expected["ap50"], abs=1e-9)
    assert len(records) == 4 and all(len(r.masks) == len(r.detections) > 0 for r in records)
    assert not pd.isna(points.loc["raw", "map"])


# ---- OpenImages instance-segmentation mAP@0.5 on hand-made masks (32 x 32 images)


def _rect(x0: int, y0: int, x1: int, y1: int, size: int = 32) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[y0:y1, x0:x1] = True
    return m


def _oid_gt(objects: list[tuple[int, np.ndarray, bool]]) -> dict:
    """One 32x32 image; objects (category, mask, group-of), each with its mask's bounding box."""
    anns = []
    for k, (cat, m, group) in enumerate(objects):
        ys, xs = np.nonzero(m)
        anns.append(
            {
                "id": k + 1,
                "image_id": 1,
                "category_id": cat,
                "is_group_of": int(group),
                "bbox": [
                    float(xs.min()),
                    float(ys.min()),
                    float(xs.max() - xs.min() + 1),
                    float(ys.max() - ys.min() + 1),
                ],
                "segmentation": {"size": [32, 32], "counts": encode_masks(m[None])[0]},
            }
        )
    return {
        "images": [{"id": 1, "height": 32, "width": 32}],
        "annotations": anns,
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }


def _det(cat: int, box: list[float], mask: np.ndarray, score: float) -> dict:
    return {
        "image_id": 1,
        "category_id": cat,
        "bbox": box,
        "score": score,
        "segmentation": {"size": [32, 32], "counts": encode_masks(mask[None])[0]},
    }


def test_oid_mask_map_by_hand():
    from vcmbench.metrics.detection import oid_map50

    a, b = _rect(0, 0, 10, 10), _rect(16, 16, 26, 26)
    gt = _oid_gt([(1, a, False), (1, b, False)])
    # ground truth fed back scores 100
    fed = [_det(1, ann["bbox"], m, 1.0) for ann, m in zip(gt["annotations"], (a, b))]
    assert oid_map50(gt, fed, iou_type="segm")["map"] == pytest.approx(100.0)
    # right box, wrong mask: the box metric counts it, the mask metric does not.
    # det 1 (0.9) matches a exactly; det 2 (0.8) has b's box but a mask of a quarter of it (IoU 0.25).
    quarter = _rect(16, 16, 21, 21)
    dets = [_det(1, gt["annotations"][0]["bbox"], a, 0.9), _det(1, gt["annotations"][1]["bbox"], quarter, 0.8)]
    assert oid_map50(gt, dets)["map"] == pytest.approx(100.0)
    # masks: TP, FP; 2 objects -> precision at the one TP is 1, recall 1/2 -> AP 0.5
    assert oid_map50(gt, dets, iou_type="segm")["map"] == pytest.approx(50.0)


def test_oid_mask_group_of_absorbs_masks_inside_it():
    from vcmbench.metrics.detection import oid_map50

    crowd, single = _rect(0, 0, 20, 20), _rect(24, 24, 30, 30)
    gt = _oid_gt([(1, crowd, True), (1, single, False)])
    inside1, inside2 = _rect(1, 1, 6, 6), _rect(10, 10, 16, 16)  # IoA 1 with the group-of mask
    outside = _rect(0, 24, 6, 30)  # overlaps nothing: a false positive
    dets = [
        _det(1, [1, 1, 5, 5], inside1, 0.7),
        _det(1, [10, 10, 6, 6], inside2, 0.6),
        _det(1, [0, 24, 6, 6], outside, 0.9),
        _det(1, [24, 24, 6, 6], single, 0.5),
    ]
    # entries: FP 0.9, TP 0.5 (single), and one TP for the group at max(0.7, 0.6) = 0.7;
    # sorted: 0.9 FP, 0.7 TP, 0.5 TP -> precision 1/2, 2/3 at the TPs -> (2/3 + 2/3) / 2 objects
    # (precision made non-increasing from the right: 2/3, 2/3)
    assert oid_map50(gt, dets, iou_type="segm")["map"] == pytest.approx(100 * (2 / 3 + 2 / 3) / 2)
    # a detection whose box covers the group but whose mask lies mostly outside it is not absorbed
    spill = _rect(12, 12, 32, 32)
    ioa_dets = [_det(1, [0, 0, 20, 20], spill, 0.8)]
    assert oid_map50(gt, ioa_dets, iou_type="segm")["map"] == pytest.approx(0.0)
    assert oid_map50(gt, ioa_dets)["map"] > 0  # by its box it lies inside the group-of box


def test_oid_mask_objects_without_masks_are_not_counted():
    from vcmbench.errors import MetricError
    from vcmbench.metrics.detection import oid_map50

    gt = _oid_gt([(1, _rect(0, 0, 10, 10), False)])
    del gt["annotations"][0]["segmentation"]
    # its only object has no mask: nothing is counted, so the mask mAP is undefined (the reference
    # gives NaN); the box mAP still counts it
    det = [_det(1, [0, 0, 10, 10], _rect(0, 0, 10, 10), 1.0)]
    with pytest.raises(MetricError, match="no ground-truth masks"):
        oid_map50(gt, det, iou_type="segm")
    assert oid_map50(gt, det)["map"] == pytest.approx(100.0)


# The two minimal cases of the issue, with the values of MPEG's evaluator: one masked object and
# one group-of box without a mask, in one image and one class.
def _masked_object_and_maskless_group() -> dict:
    gt = _oid_gt([(1, _rect(2, 2, 8, 8), False), (1, _rect(14, 4, 30, 20), True)])
    del gt["annotations"][1]["segmentation"]
    return gt


def test_oid_mask_detection_inside_a_maskless_group_of_box_is_ignored():
    from vcmbench.metrics.detection import oid_map50

    # the group-of box is a region to ignore: the detection inside it is neither TP nor FP and the
    # box is not a positive; the masked object is missed -> 0 (the former rectangle rule gave 50)
    dets = [_det(1, [16, 6, 6, 6], _rect(16, 6, 22, 12), 0.9)]
    assert oid_map50(_masked_object_and_maskless_group(), dets, iou_type="segm")["map"] == 0.0


def test_oid_mask_maskless_group_of_box_is_not_a_positive():
    from vcmbench.metrics.detection import oid_map50

    # a detection exactly on the masked object: 1 TP of 1 counted object -> 100 (formerly 50)
    dets = [_det(1, [2, 2, 6, 6], _rect(2, 2, 8, 8), 0.9)]
    assert oid_map50(_masked_object_and_maskless_group(), dets, iou_type="segm")["map"] == 100.0


def test_oid_mask_maskless_box_absorbs_by_the_detections_enclosing_box():
    from vcmbench.metrics.detection import oid_map50

    gt = _oid_gt([(1, _rect(24, 0, 32, 6), False), (1, _rect(0, 0, 10, 10), True)])
    del gt["annotations"][1]["segmentation"]
    # two 4x4 squares, one inside the group-of box and one outside it: half its pixels lie inside
    # (what the former rule looked at), but its enclosing box (0..20)^2 overlaps the group-of box
    # by a quarter, so it is not absorbed: a FP before the TP on the masked object
    split = _rect(0, 0, 4, 4) | _rect(16, 16, 20, 20)
    dets = [_det(1, [0, 0, 20, 20], split, 0.9), _det(1, [24, 0, 8, 6], _rect(24, 0, 32, 6), 0.8)]
    assert oid_map50(gt, dets, iou_type="segm")["map"] == pytest.approx(50.0)
    # a square wholly inside it is absorbed and dropped: the TP alone -> 100
    dets[0] = _det(1, [1, 1, 4, 4], _rect(1, 1, 5, 5), 0.9)
    assert oid_map50(gt, dets, iou_type="segm")["map"] == pytest.approx(100.0)


def test_oid_mask_maskless_single_box_ignores_one_match_and_its_duplicate_is_a_fp():
    from vcmbench.metrics.detection import oid_map50

    gt = _oid_gt([(1, _rect(0, 0, 10, 10), False), (1, _rect(16, 16, 26, 26), False)])
    del gt["annotations"][1]["segmentation"]
    on_masked = _det(1, [0, 0, 10, 10], _rect(0, 0, 10, 10), 0.5)
    on_maskless = _det(1, [16, 16, 10, 10], _rect(16, 16, 26, 26), 0.9)
    # the detection on the mask-less object is dropped: 1 TP of 1 counted object
    assert oid_map50(gt, [on_masked, on_maskless], iou_type="segm")["map"] == pytest.approx(100.0)
    # a second one on it finds it taken and stays a FP, ranked above the TP: precision 1/2
    dup = dict(on_maskless, score=0.8)
    assert oid_map50(gt, [on_masked, on_maskless, dup], iou_type="segm")["map"] == pytest.approx(50.0)


def test_oid_mask_detection_with_an_empty_mask_is_dropped():
    from vcmbench.metrics.detection import oid_map50

    gt = _oid_gt([(1, _rect(0, 0, 10, 10), False)])
    empty = _det(1, [20, 20, 5, 5], np.zeros((32, 32), bool), 0.9)  # its box is valid, its mask empty
    dets = [empty, _det(1, [0, 0, 10, 10], _rect(0, 0, 10, 10), 0.5)]
    assert oid_map50(gt, dets, iou_type="segm")["map"] == pytest.approx(100.0)
    assert oid_map50(gt, dets)["map"] == pytest.approx(50.0)  # on boxes it is a FP


@pytest.mark.timeout(120)
def test_oid_map_equals_mpeg_evaluator_on_generated_cases():
    from tests.oid_cases import COUNT, SEED, generated_cases
    from vcmbench.errors import MetricError
    from vcmbench.metrics.detection import oid_map50

    expected = json.loads((Path(__file__).parents[1] / "expected" / "oid_reference.json").read_text())
    assert (expected["seed"], expected["count"]) == (SEED, COUNT)
    got: dict[str, list] = {"segm": [], "bbox": []}
    for gt, dets in generated_cases():
        for kind in got:
            try:
                got[kind].append(oid_map50(gt, dets, iou_type=kind)["map"])
            except MetricError:  # no counted ground truth: the reference's NaN
                got[kind].append(None)
    for kind in got:
        assert [v is None for v in got[kind]] == [v is None for v in expected[kind]]
        pairs = [(g, e) for g, e in zip(got[kind], expected[kind]) if e is not None]
        assert max(abs(g - e) for g, e in pairs) < 1e-9, kind
        # the cases do exercise the rules: most score, some are 0
        assert sum(e > 0 for _, e in pairs) > COUNT // 2

"""The MPEG OpenImages sets in the forms contributors hold: MPEG's 5k CSV files (real rows, in
tests/data/mpeg-vcm-5k) and the FCM test data's COCO json, beside the original OpenImages CSVs
(tests/datasets/test_datasets.py)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from vcmbench.datasets.openimages_mpeg import build
from vcmbench.errors import DatasetError
from vcmbench.metrics.detection import oid_map50

pytestmark = pytest.mark.timeout(120)

FILES = Path(__file__).parents[1] / "data" / "mpeg-vcm-5k"
REPO = Path(__file__).resolve().parents[2]
SIZE = (64, 48)  # stand-in images (width, height): the boxes are normalised, any size will do


def _stand_in(path: Path, seed: int) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def _encoded(mask: np.ndarray) -> str:
    """A mask as MPEG's masks CSV carries it: base64 of the zlib-compressed COCO RLE counts."""
    from pycocotools import mask as mask_utils

    counts = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"]
    return base64.b64encode(zlib.compress(counts)).decode("ascii")


def _box_mask(row: pd.Series) -> np.ndarray:
    w, h = SIZE
    m = np.zeros((h, w), bool)
    m[
        int(row.YMin * h) : max(int(row.YMin * h) + 1, int(row.YMax * h)),
        int(row.XMin * w) : max(int(row.XMin * w) + 1, int(row.XMax * w)),
    ] = True
    return m


def mpeg_csv_folder(root: Path, task: str, images_in: str = ".") -> Path:
    """MPEG's 5k files of `task` (real rows) with stand-in images; for segmentation a masks CSV in
    MPEG's format with a mask for every non-group-of box (coordinates rounded to 6 decimals)."""
    root.mkdir(parents=True)
    for f in FILES.glob(f"{task}_*"):
        shutil.copy(f, root / f.name)
    (root / images_in).mkdir(exist_ok=True)
    for k, name in enumerate((root / f"{task}_validation_input_5k.lst").read_text().split()):
        _stand_in(root / images_in / name, k)
    if task == "segmentation":
        boxes = pd.read_csv(root / "segmentation_validation_bbox_5k.csv")
        rows = [
            [
                r.ImageID,
                r.LabelName,
                SIZE[0],
                SIZE[1],
                *(round(v, 6) for v in (r.XMin, r.YMin, r.XMax, r.YMax)),
                0,
                _encoded(_box_mask(r)),
                f"{r.ImageID}_m_{k}.png",
            ]
            for k, r in enumerate(boxes.itertuples())
            if not r.IsGroupOf
        ]
        pd.DataFrame(
            rows,
            columns=[
                "ImageID",
                "LabelName",
                "ImageWidth",
                "ImageHeight",
                "XMin",
                "YMin",
                "XMax",
                "YMax",
                "IsGroupOf",
                "Mask",
                "MaskPath",
            ],
        ).to_csv(root / "segmentation_validation_masks_5k.csv", index=False)
    return root


def fcm_folder(fcm_testdata: Path, task: str) -> Path:
    """`fcm_testdata/mpeg-oiv6` with the json in the form the MPEG platform's evaluator reads
    (COCO + oic_labelmap + oic_annotations), built from the same real rows."""
    src = mpeg_csv_folder(fcm_testdata.parent / f"src-{task}", task)
    oiv6 = fcm_testdata / "mpeg-oiv6"
    (oiv6 / "annotations").mkdir(parents=True)
    (oiv6 / "images").mkdir()
    names = (src / f"{task}_validation_input_5k.lst").read_text().split()
    boxes = pd.read_csv(next(src.glob(f"{task}_validation*bbox*.csv")))
    labels = pd.read_csv(src / f"{task}_validation_labels_5k.csv")
    classes = sorted(set(boxes.LabelName) | set(labels.LabelName))
    labelmap = [{"id": k, "name": c} for k, c in enumerate(classes, start=1)]
    from vcmbench.datasets.coco_categories import coco_category_dicts

    images, oic = [], []
    for k, name in enumerate(names):
        shutil.copy(src / name, oiv6 / "images" / name)
        iid = name.split(".")[0]
        images.append({"id": k, "file_name": name, "height": SIZE[1], "width": SIZE[0]})
        rows = boxes[boxes.ImageID == iid]
        ann = {
            "bbox": [[r.YMin, r.XMin, r.YMax, r.XMax] for r in rows.itertuples()],
            "cls": [classes.index(r.LabelName) + 1 for r in rows.itertuples()],
            "group_of": [int(r.IsGroupOf) for r in rows.itertuples()],
            "img_cls": sorted(set(labels[labels.ImageID == iid].LabelName)),
        }
        if task == "segmentation":
            ann["mask"] = ["nan" if r.IsGroupOf else _encoded(_box_mask(r)) for r in rows.itertuples()]
            ann["img_size"] = [{"img_height": SIZE[1], "img_width": SIZE[0]} for _ in ann["mask"]]
        oic.append({"image_id": k, "annotations": ann})
    data = {
        "images": images,
        "annotations": [],
        "categories": [c | {"supercategory": ""} for c in coco_category_dicts()],
        "oic_labelmap": labelmap,
        "oic_annotations": oic,
    }
    (oiv6 / "annotations" / f"mpeg-oiv6-{task}-coco.json").write_text(json.dumps(data))
    return fcm_testdata


def _gt(ds) -> dict:
    return json.loads(ds.annotation_file.read_text())


def _fed_back(gt: dict, segm: bool) -> list[dict]:
    """Every counted object as a detection of score 1: on boxes all, on masks those with one."""
    return [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
        | ({"segmentation": a["segmentation"]} if segm else {})
        for a in gt["annotations"]
        if not segm or "segmentation" in a
    ]


def test_mpeg_5k_detection_files_alone_load_with_coco_ids(tmp_path):
    root = mpeg_csv_folder(tmp_path / "oi", "detection")
    ds = build(str(root))
    gt = _gt(ds)
    assert len(ds) == 3 and ds.metric == "oid" and ds.image_dir == root
    assert [im["file_name"] for im in gt["images"]] == (root / "detection_validation_input_5k.lst").read_text().split()
    # the 10 real rows, class names -> COCO ids (airplane 5, keyboard 76, laptop 73, person 1, car 3)
    assert [(a["image_id"], a["category_id"], a["is_group_of"]) for a in gt["annotations"]] == [
        (1, 5, False),
        (2, 76, False),
        (2, 73, False),
        (2, 1, False),
        (2, 1, False),
        (2, 1, True),
        (3, 3, False),
        (3, 3, False),
        (3, 3, False),
        (3, 1, True),
    ]
    assert gt["annotations"][0]["bbox"] == pytest.approx(
        [0.022673031 * 64, 0.07103825 * 48, (0.9642004999999999 - 0.022673031) * 64, (0.80054647 - 0.07103825) * 48]
    )
    labels = pd.read_csv(root / "detection_validation_labels_5k.csv")
    negatives = labels[(labels.ImageID == "09ea349ee555b61d") & (labels.Confidence == 0)].LabelName
    from vcmbench.datasets.coco_categories import coco_id

    assert gt["images"][1]["neg_labels"] == sorted({coco_id(n) for n in negatives})
    assert oid_map50(ds.annotation_file, _fed_back(gt, False))["map"] == pytest.approx(100.0)


def test_mpeg_5k_segmentation_files_attach_masks_to_their_boxes(tmp_path):
    root = mpeg_csv_folder(tmp_path / "oi", "segmentation", images_in="images")
    ds = build(str(root), task="segmentation", name="openimages_mpeg_segmentation")
    gt = _gt(ds)
    assert ds.image_dir == root / "images" and [im["file_name"][-4:] for im in gt["images"]] == [".png"] * 3
    # one object per bbox row: the 6 non-group-of ones carry their mask (matched despite the masks
    # CSV's 6-decimal coordinates), the 2 group-of boxes have none
    anns = gt["annotations"]
    assert len(anns) == 8
    assert [("segmentation" in a, a["is_group_of"]) for a in anns].count((True, False)) == 6
    assert [("segmentation" in a, a["is_group_of"]) for a in anns].count((False, True)) == 2
    dets = _fed_back(gt, True)
    assert oid_map50(ds.annotation_file, dets, iou_type="segm")["map"] == pytest.approx(100.0)


def test_fcm_testdata_json_gives_the_same_ground_truth_as_the_5k_files(tmp_path):
    for task in ("detection", "segmentation"):
        fcm = fcm_folder(tmp_path / f"fcm-{task}" / "fcm_testdata", task)
        csv = _gt(build(str(tmp_path / f"fcm-{task}" / f"src-{task}"), task=task))
        for root in (fcm, fcm / "mpeg-oiv6"):  # root = fcm_testdata, or its mpeg-oiv6 folder
            ds = build(str(root), task=task, cache_file=f"cache-{root.name}.json")
            assert ds.image_dir == fcm / "mpeg-oiv6" / "images" and len(ds) == 3
            gt = _gt(ds)
            key = [
                (a["image_id"], a["category_id"], a["is_group_of"], a.get("segmentation")) for a in gt["annotations"]
            ]
            assert key == [
                (a["image_id"] - 1, a["category_id"], a["is_group_of"], a.get("segmentation"))
                for a in csv["annotations"]
            ]
            for mine, theirs in zip(gt["annotations"], csv["annotations"]):
                assert mine["bbox"] == pytest.approx(theirs["bbox"])
            # the image-level labels are kept (as verified labels: the json does not say which are negative)
            assert set(gt["images"][0]["verified_labels"]) == set(csv["images"][0]["pos_labels"]) | set(
                csv["images"][0]["neg_labels"]
            )


def test_layout_key_and_errors_name_the_file(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="holds none of the OpenImages forms"):
        build(str(empty))
    with pytest.raises(DatasetError, match="dataset.layout='nope'"):
        build(str(empty), layout="nope")
    root = mpeg_csv_folder(tmp_path / "oi", "detection")
    with pytest.raises(DatasetError, match="annotation json not found"):
        build(str(root), layout="fcm")
    bad = root / "detection_validation_5k_bbox.csv"
    bad.write_text(bad.read_text() + "0aacbdb54e853a0a,unicorn,0.1,0.2,0.1,0.2,0\n")
    with pytest.raises(DatasetError, match="class 'unicorn' .*not one of the 80 COCO classes"):
        build(str(root))
    (root / "09ea349ee555b61d.jpg").unlink()
    with pytest.raises(DatasetError, match="09ea349ee555b61d.jpg"):
        build(str(root))


@pytest.mark.timeout(600)
@pytest.mark.parametrize("form", ["fcm", "mpeg_csv"])
def test_a_run_on_a_folder_of_mpeg_files(tmp_path, form):
    if form == "fcm":
        root = fcm_folder(tmp_path / "fcm_testdata", "detection")
    else:  # MPEG's 5k files and the images, nothing else
        root = mpeg_csv_folder(tmp_path / "5k", "detection")
        assert sorted(p.suffix for p in root.iterdir()) == [".csv", ".csv", ".jpg", ".jpg", ".jpg", ".lst"]
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vcmbench",
            "run",
            "sweep.progress=false",
            f"hydra.run.dir={out}",
            "dataset=openimages_mpeg",
            f"dataset.root={root}",
            "codec=raw",
            "complexity=false",
            "fidelity=false",
            "report=false",
            "sweep.workers=1",  # the dataset is what is tested: no worker processes to start
        ],
        capture_output=True,
        text=True,
        timeout=500,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    points = pd.read_csv(out / "points.csv")
    assert list(points.n_images) == [3] and (points.n_failed == 0).all() and (points.bpp > 0).all()

"""Datasets: COCO mini set, errors naming path and field, OpenImages -> COCO conversion, Hydra configs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue

from tests.assets import COCO_MINI, COCO_MINI_COUNT, COCO_MINI_JSON, CONF
from vcmbench.datasets import coco, openimages
from vcmbench.errors import DatasetError

MINI = COCO_MINI
MINI_JSON = COCO_MINI_JSON


def build_mini(**kw) -> coco.Dataset:
    args = dict(root=str(MINI), annotation_file=str(MINI_JSON.relative_to(MINI)), image_dir="val2017")
    return coco.build(**(args | kw))


# ---------------------------------------------------------------- (a) COCO mini


def test_coco_mini_loads_all_images():
    ds = build_mini(name="coco_mini")
    assert len(ds) == COCO_MINI_COUNT
    assert ds.metric == "coco"
    assert ds.annotation_file == MINI_JSON
    assert ds.image_ids == sorted(ds.image_ids)


def test_coco_mini_max_images_keeps_first_by_id_and_decodes():
    data = json.loads(MINI_JSON.read_text())
    by_id = {img["id"]: img for img in data["images"]}
    ds = build_mini(max_images=3)
    assert ds.image_ids == sorted(by_id)[:3]
    samples = list(ds)
    assert len(samples) == 3
    for s in samples:
        meta = by_id[s.image_id]
        assert s.image.dtype == torch.uint8
        assert tuple(s.image.shape) == (3, meta["height"], meta["width"])
        assert (s.height, s.width) == (meta["height"], meta["width"])
        assert s.pixels == meta["height"] * meta["width"]
        assert s.file_name == meta["file_name"]


def test_coco_max_images_must_be_positive():
    with pytest.raises(DatasetError, match="max_images"):
        build_mini(max_images=0)


# ---------------------------------------------------------------- (b) COCO errors


def test_coco_missing_root(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as err:
        coco.build(root=str(root), annotation_file="a.json", image_dir="img")
    assert str(root.resolve()) in str(err.value)
    assert "dataset.root" in str(err.value)


def test_coco_missing_annotation_file():
    with pytest.raises(DatasetError) as err:
        build_mini(annotation_file="annotations/missing.json")
    assert str((MINI / "annotations" / "missing.json").resolve()) in str(err.value)
    assert "dataset.annotation_file" in str(err.value)


def test_coco_missing_image_dir():
    with pytest.raises(DatasetError) as err:
        build_mini(image_dir="no_such_dir")
    assert str((MINI / "no_such_dir").resolve()) in str(err.value)
    assert "dataset.image_dir" in str(err.value)


def test_coco_missing_image_names_its_path(tmp_path):
    data = json.loads(MINI_JSON.read_text())
    imgs = sorted(data["images"], key=lambda i: i["id"])[:2]
    data["images"] = imgs
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in {i["id"] for i in imgs}]
    (tmp_path / "val").mkdir()
    (tmp_path / "ann.json").write_text(json.dumps(data))
    shutil.copy(MINI / "val2017" / imgs[0]["file_name"], tmp_path / "val")
    ds = coco.build(root=str(tmp_path), annotation_file="ann.json", image_dir="val")
    ds.load(ds.records[0])
    with pytest.raises(DatasetError) as err:
        ds.load(ds.records[1])
    assert str((tmp_path / "val" / imgs[1]["file_name"]).resolve()) in str(err.value)


# ---------------------------------------------------------------- (c) OpenImages conversion

# Three real JPEGs renamed as OpenImages ids, with their real sizes (checked against the COCO json below).
ID_A, ID_B, ID_C, ID_X = "0001eeaf4aed83f9", "000595fe6fee6369", "00075905539074f2", "0009bad4d8539bb4"
SOURCES = {ID_A: "000000000139.jpg", ID_B: "000000000802.jpg", ID_C: "000000005001.jpg", ID_X: "000000006818.jpg"}
SIZES = {ID_A: (640, 426), ID_B: (424, 640), ID_C: (640, 480)}  # (width, height)

PERSON, CAR, DOG, MAN = "/m/01g317", "/m/0k4j", "/m/0bt9lr", "/m/04yx4"
CLASSES_CSV = f"{PERSON},Person\n{CAR},Car\n{DOG},Dog\n{MAN},Man\n"
# Mixed MID / DisplayName / other case; the order sets category ids: Dog=1, Person=2, Car=3. Man is not kept.
CLASS_LIST = f"# MPEG classes\nDog\n{PERSON}\n\ncar\n"
# List order B, A, C (not alphabetical) -> image ids 1, 2, 3; X has a file and CSV rows but is not listed.
IMAGE_LIST = f"{ID_B}\n{ID_A}.jpg\n\nvalidation/{ID_C}.jpg\n"

BBOX_HEADER = (
    "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside\n"
)
BBOX_ROWS = [
    f"{ID_A},xclick,{PERSON},1,0.25,0.75,0.5,1.0,1,0,0,0,0",
    f"{ID_X},xclick,{PERSON},1,0.1,0.2,0.1,0.2,0,0,0,0,0",  # image not in the list: dropped
    f"{ID_B},xclick,{DOG},1,0.0,0.5,0.25,0.75,0,1,1,0,0",  # group-of box
    f"{ID_B},xclick,{MAN},1,0.5,1.0,0.0,0.5,0,0,0,0,0",  # class not in the class list: dropped
    f"{ID_C},activemil,{CAR},1,0.125,0.375,0.5,0.625,0,-1,0,1,1",
    f"{ID_A},xclick,{DOG},1,0.0,0.125,0.0,0.25,0,0,0,0,0",
]
LABELS_CSV = (
    "ImageID,Source,LabelName,Confidence\n"
    f"{ID_A},verification,{PERSON},1\n{ID_A},verification,{DOG},1\n{ID_A},verification,{CAR},0\n"
    f"{ID_A},verification,{MAN},1\n"
    f"{ID_B},verification,{DOG},1\n{ID_B},verification,{CAR},0\n{ID_B},verification,{PERSON},0\n"
    f"{ID_C},crowdsource-verification,{CAR},1\n{ID_X},verification,{PERSON},1\n"
)


def make_openimages(root: Path) -> Path:
    """A tiny OpenImages layout using the default file names of `openimages.build` / openimages_mpeg.yaml."""
    (root / "validation").mkdir(parents=True)
    for oid, src in SOURCES.items():
        shutil.copy(MINI / "val2017" / src, root / "validation" / f"{oid}.jpg")
    (root / "validation-annotations-bbox.csv").write_text(BBOX_HEADER + "\n".join(BBOX_ROWS) + "\n")
    (root / "validation-annotations-human-imagelabels-boxable.csv").write_text(LABELS_CSV)
    (root / "class-descriptions-boxable.csv").write_text(CLASSES_CSV)
    (root / "mpeg_vcm_classes.txt").write_text(CLASS_LIST)
    (root / "detection_validation_input_5k.lst").write_text(IMAGE_LIST)
    return root


def box(oid: str, x0: float, x1: float, y0: float, y1: float) -> tuple[list[float], float]:
    w, h = SIZES[oid]
    bw, bh = (x1 - x0) * w, (y1 - y0) * h
    return [x0 * w, y0 * h, bw, bh], bw * bh


def flags(group=False, occluded=False, truncated=False, depiction=False, inside=False) -> dict:
    return {
        "is_group_of": group,
        "is_occluded": occluded,
        "is_truncated": truncated,
        "is_depiction": depiction,
        "is_inside": inside,
    }


def expected_coco() -> dict:
    def img(i, oid, pos, neg):
        w, h = SIZES[oid]
        return {
            "id": i,
            "file_name": f"{oid}.jpg",
            "height": h,
            "width": w,
            "oid_image_id": oid,
            "pos_labels": pos,
            "neg_labels": neg,
        }

    def ann(i, image_id, cat, oid, coords, **kw):
        bbox, area = box(oid, *coords)
        base = {"id": i, "image_id": image_id, "category_id": cat, "bbox": bbox, "area": area, "iscrowd": 0}
        return base | flags(**kw)

    return {
        "images": [img(1, ID_B, [1], [2, 3]), img(2, ID_A, [1, 2], [3]), img(3, ID_C, [3], [])],
        "annotations": [
            ann(1, 1, 1, ID_B, (0.0, 0.5, 0.25, 0.75), truncated=True, group=True),
            ann(2, 2, 2, ID_A, (0.25, 0.75, 0.5, 1.0), occluded=True),
            ann(3, 2, 1, ID_A, (0.0, 0.125, 0.0, 0.25)),
            ann(4, 3, 3, ID_C, (0.125, 0.375, 0.5, 0.625), depiction=True, inside=True),
        ],
        "categories": [
            {"id": 1, "name": "Dog", "mid": DOG},
            {"id": 2, "name": "Person", "mid": PERSON},
            {"id": 3, "name": "Car", "mid": CAR},
        ],
    }


def test_fake_sizes_are_the_real_image_sizes():
    data = json.loads(MINI_JSON.read_text())
    by_file = {i["file_name"]: (i["width"], i["height"]) for i in data["images"]}
    for oid, size in SIZES.items():
        assert by_file[SOURCES[oid]] == size


def test_openimages_conversion_exact(tmp_path):
    root = make_openimages(tmp_path / "oi")
    ds = openimages.build(str(root))
    assert ds.metric == "oid"
    assert ds.name == "openimages_mpeg"
    assert ds.annotation_file == root / "vcmbench_coco.json"
    assert ds.image_dir == root / "validation"
    data = json.loads(ds.annotation_file.read_text())
    exp = expected_coco()
    assert data["categories"] == exp["categories"]
    assert data["images"] == exp["images"]
    assert data["annotations"] == exp["annotations"]
    # hand check of one box: ID_B is 424x640, XMin 0 XMax .5 YMin .25 YMax .75
    assert data["annotations"][0]["bbox"] == [0.0, 160.0, 212.0, 320.0]
    assert data["annotations"][0]["area"] == 212.0 * 320.0
    assert data["info"]["vcmbench_fingerprint"]
    assert [(r.image_id, r.file_name, r.width, r.height) for r in ds.records] == [
        (1, f"{ID_B}.jpg", 424, 640),
        (2, f"{ID_A}.jpg", 640, 426),
        (3, f"{ID_C}.jpg", 640, 480),
    ]
    for s in ds:  # header sizes agree with the decoded images
        assert tuple(s.image.shape) == (3, s.height, s.width)


MASKS_HEADER = "MaskPath,ImageID,LabelName,BoxID,BoxXMin,BoxXMax,BoxYMin,BoxYMax,PredictedIoU,Clicks\n"


def make_openimages_segmentation(root: Path):
    """The tiny layout plus the segmentation subset's CSV and PNGs: a person mask on A at A's size,
    a car mask on C stored at half C's size (resized to it on conversion), a row of an unlisted image."""
    import numpy as np
    from PIL import Image

    make_openimages(root)
    (root / "validation-masks").mkdir()
    masks = {}
    for name, oid, (w, h), (x0, y0, x1, y1) in (
        ("a_person.png", ID_A, SIZES[ID_A], (160, 213, 480, 426)),
        ("c_car.png", ID_C, (320, 240), (40, 120, 120, 150)),
        ("x_person.png", ID_X, (64, 64), (0, 0, 8, 8)),
    ):
        m = np.zeros((h, w), np.uint8)
        m[y0:y1, x0:x1] = 255
        Image.fromarray(m).save(root / "validation-masks" / name)
        masks[oid] = m
    (root / "validation-annotations-object-segmentation.csv").write_text(
        MASKS_HEADER + f"a_person.png,{ID_A},{PERSON},b1,0.25,0.75,0.5,1.0,0.9,\n"
        f"c_car.png,{ID_C},{CAR},b2,0.125,0.375,0.5,0.625,0.8,\nx_person.png,{ID_X},{PERSON},b3,0,0.1,0,0.1,0.7,\n"
    )
    return root, masks


def test_openimages_segmentation_subset_converts_masks_to_rle_beside_the_group_of_boxes(tmp_path):
    import numpy as np
    from pycocotools import mask as mask_utils

    from vcmbench.metrics.detection import evaluate

    root, masks = make_openimages_segmentation(tmp_path / "oi")
    ds = openimages.build(str(root), masks_csv="validation-annotations-object-segmentation.csv", cache_file="seg.json")
    data = json.loads(ds.annotation_file.read_text())
    anns = data["annotations"]
    # image order (B, A, C): B's group-of dog box (no mask), A's person mask, C's car mask; A's dog box
    # and C's car box (not group-of) are the detection subset's, not instances here
    assert [(a["image_id"], a["category_id"], "segmentation" in a, a["is_group_of"]) for a in anns] == [
        (1, 1, False, True),
        (2, 2, True, False),
        (3, 3, True, False),
    ]
    assert [a["id"] for a in anns] == [1, 2, 3]
    person, car = anns[1], anns[2]
    assert person["bbox"] == box(ID_A, 0.25, 0.75, 0.5, 1.0)[0]
    assert np.array_equal(
        mask_utils.decode(
            {"size": person["segmentation"]["size"], "counts": person["segmentation"]["counts"].encode()}
        ),
        masks[ID_A] > 0,
    )
    w, h = SIZES[ID_C]
    car_mask = mask_utils.decode({"size": [h, w], "counts": car["segmentation"]["counts"].encode()})
    assert car["segmentation"]["size"] == [h, w] and car["area"] == 160 * 60 == int(car_mask.sum())
    assert car_mask[240:300, 80:240].all()  # the half-size PNG's rectangle, nearest-neighbour upscaled
    # ground truth fed back scores 100 on masks (the group-of box as a detection of its rectangle's mask)
    img = {i["id"]: i for i in data["images"]}
    results = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": 1.0,
            "segmentation": a.get("segmentation") or _rectangle_rle(a["bbox"], img[a["image_id"]]),
        }
        for a in anns
    ]
    assert evaluate("oid", ds.annotation_file, results, iou_type="segm")["map"] == pytest.approx(100.0)


def _rectangle_rle(bbox: list[float], image: dict) -> dict:
    import numpy as np
    from pycocotools import mask as mask_utils

    rle = mask_utils.frPyObjects(np.array([bbox], dtype=np.float64), image["height"], image["width"])[0]
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def test_openimages_segmentation_names_a_missing_mask(tmp_path):
    root, _ = make_openimages_segmentation(tmp_path / "oi")
    (root / "validation-masks" / "c_car.png").unlink()
    with pytest.raises(DatasetError, match="c_car.png"):
        openimages.build(str(root), masks_csv="validation-annotations-object-segmentation.csv")


def test_openimages_json_loads_in_pycocotools(tmp_path):
    from pycocotools.coco import COCO

    ds = openimages.build(str(make_openimages(tmp_path / "oi")))
    api = COCO(str(ds.annotation_file))
    assert sorted(api.getImgIds()) == [1, 2, 3]
    assert len(api.getAnnIds(imgIds=[2])) == 2


def test_openimages_cache_reused_then_rebuilt_on_change(tmp_path):
    root = make_openimages(tmp_path / "oi")
    cache = openimages.build(str(root)).annotation_file
    first = cache.stat().st_mtime_ns
    first_text = cache.read_text()
    ds = openimages.build(str(root), max_images=2)
    assert cache.stat().st_mtime_ns == first  # not rewritten
    assert ds.image_ids == [1, 2]  # max_images cuts the records, not the cached json
    assert cache.read_text() == first_text

    bbox = root / "validation-annotations-bbox.csv"
    bbox.write_text(bbox.read_text() + f"{ID_C},xclick,{PERSON},1,0.5,1.0,0.5,1.0,0,0,1,0,0\n")
    openimages.build(str(root))
    data = json.loads(cache.read_text())
    assert cache.read_text() != first_text
    assert data["annotations"][-1] == {
        "id": 5,
        "image_id": 3,
        "category_id": 2,
        "iscrowd": 0,
        "bbox": [320.0, 240.0, 320.0, 240.0],
        "area": 320.0 * 240.0,
    } | flags(group=True)


def test_openimages_custom_cache_file_and_headed_class_csv(tmp_path):
    root = make_openimages(tmp_path / "oi")
    (root / "class-descriptions-boxable.csv").write_text("LabelName,DisplayName\n" + CLASSES_CSV)
    out = tmp_path / "out" / "oi.json"
    ds = openimages.build(str(root), cache_file=str(out), name="oi_small")
    assert ds.annotation_file == out and out.is_file()
    assert not (root / "vcmbench_coco.json").exists()
    assert json.loads(out.read_text())["categories"] == expected_coco()["categories"]


@pytest.mark.parametrize(
    "field, value",
    [
        ("image_dir", "no_images"),
        ("bbox_csv", "nope-bbox.csv"),
        ("labels_csv", "nope-labels.csv"),
        ("classes_csv", "nope-classes.csv"),
        ("class_list", "nope-classes.txt"),
        ("image_list", "nope.lst"),
    ],
)
def test_openimages_missing_input_names_path_and_field(tmp_path, field, value):
    root = make_openimages(tmp_path / "oi")
    with pytest.raises(DatasetError) as err:
        openimages.build(str(root), **{field: value})
    msg = str(err.value)
    assert str((root / value).resolve()) in msg
    assert f"dataset.{field}" in msg
    assert "Open Images V6" in msg or "MPEG VCM" in msg


def test_openimages_missing_root(tmp_path):
    with pytest.raises(DatasetError) as err:
        openimages.build(str(tmp_path / "absent"))
    assert str((tmp_path / "absent").resolve()) in str(err.value)
    assert "dataset.root" in str(err.value)


def test_openimages_missing_images_listed_upfront(tmp_path):
    root = make_openimages(tmp_path / "oi")
    extra = [f"{i:016x}" for i in range(7)]
    (root / "detection_validation_input_5k.lst").write_text(IMAGE_LIST + "\n".join(extra) + "\n")
    (root / "validation" / f"{ID_C}.jpg").unlink()
    with pytest.raises(DatasetError) as err:
        openimages.build(str(root))
    msg = str(err.value)
    assert str((root / "validation" / f"{ID_C}.jpg").resolve()) in msg
    assert "8 of 10 images" in msg and "and 3 more" in msg
    assert extra[3] in msg and extra[4] not in msg  # C + extra[0..3] shown


def test_openimages_unknown_class(tmp_path):
    root = make_openimages(tmp_path / "oi")
    (root / "mpeg_vcm_classes.txt").write_text(CLASS_LIST + "Unicorn\n")
    with pytest.raises(DatasetError, match="Unicorn") as err:
        openimages.build(str(root))
    assert "dataset.classes_csv" in str(err.value)


def test_openimages_duplicate_image_in_list(tmp_path):
    root = make_openimages(tmp_path / "oi")
    (root / "detection_validation_input_5k.lst").write_text(IMAGE_LIST + f"{ID_B}.jpg\n")
    with pytest.raises(DatasetError, match=ID_B):
        openimages.build(str(root))


def test_openimages_missing_csv_column(tmp_path):
    root = make_openimages(tmp_path / "oi")
    (root / "validation-annotations-bbox.csv").write_text("ImageID,LabelName,XMin,XMax,YMin,YMax\n")
    with pytest.raises(DatasetError, match="IsGroupOf"):
        openimages.build(str(root))


# ---------------------------------------------------------------- (d) Hydra configs


@pytest.fixture
def assets_env(monkeypatch, tmp_path) -> Path:
    """An assets folder laid out like the project's shared one (coco-val2017-mini/val2017 and
    annotations/instances_val2017_subset.json), made of the mini set, named by VCMBENCH_ASSETS."""
    folder = tmp_path / "assets" / "coco-val2017-mini"
    (folder / "annotations").mkdir(parents=True)
    (folder / "val2017").symlink_to(MINI / "val2017")
    (folder / "annotations" / "instances_val2017_subset.json").symlink_to(MINI_JSON)
    monkeypatch.setenv("VCMBENCH_ASSETS", str(folder.parent))
    return folder


def test_hydra_yaml_coco_mini(assets_env):
    cfg = OmegaConf.load(CONF / "dataset" / "coco_val2017_mini.yaml")
    ds = instantiate(cfg)
    assert ds.name == "coco_val2017_mini"
    assert len(ds) == COCO_MINI_COUNT
    assert ds.metric == "coco"


def test_hydra_compose_dataset_group(assets_env):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=None, overrides=["+dataset=coco_val2017_mini", "dataset.max_images=2"])
    assert Path(cfg.dataset.root) == assets_env
    ds = instantiate(cfg.dataset)
    assert len(ds) == 2


def test_hydra_coco_folder_needs_root(tmp_path):
    cfg = OmegaConf.load(CONF / "dataset" / "coco_folder.yaml")
    with pytest.raises(MissingMandatoryValue):
        instantiate(cfg)
    cfg.root, cfg.annotation_file, cfg.image_dir = str(MINI), str(MINI_JSON), "val2017"
    cfg.max_images = 5
    assert len(instantiate(cfg)) == 5


def test_hydra_openimages_yaml(tmp_path):
    cfg = OmegaConf.load(CONF / "dataset" / "openimages_mpeg.yaml")
    with pytest.raises(MissingMandatoryValue):
        instantiate(cfg)
    cfg.root = str(make_openimages(tmp_path / "oi"))
    ds = instantiate(cfg)
    assert ds.metric == "oid" and len(ds) == 3
    assert json.loads(ds.annotation_file.read_text())["annotations"] == expected_coco()["annotations"]

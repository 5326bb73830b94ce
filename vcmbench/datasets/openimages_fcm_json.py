"""The FCM test data's OpenImages json (`mpeg-oiv6-detection-coco.json`,
`mpeg-oiv6-segmentation-coco.json`) -> vcmbench's COCO json for the challenge metric.

The file is a COCO instances json (what the MPEG platform hands detectron2 for the images and
classes) with two extra keys that its OpenImages evaluator reads for the ground truth:
`oic_labelmap` (the evaluated classes, `{id, name}`) and `oic_annotations`, one entry per image:
`{"image_id", "annotations": {"bbox": [[ymin, xmin, ymax, xmax], ...] normalised to the image,
"cls": [labelmap ids], "group_of": [0/1], "img_cls": [verified class names], and for
segmentation "mask": [base64 zlib RLE counts or "nan"], "img_size": [{"img_height",
"img_width"}]}}`. Those are what vcmbench scores against, as the platform does: group-of boxes,
verified labels, and objects without a mask ("nan", regions the mask metric ignores). A file
without them is read as plain COCO (`iscrowd` as group-of). Classes are matched by name to the
file's own `categories`, which carry the ids a COCO-trained detector outputs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vcmbench.datasets.coco_categories import class_key
from vcmbench.datasets.openimages_masks import encoded_mask_rle
from vcmbench.errors import DatasetError


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(
            f"annotation json not found: {path} (dataset.annotation_json); the FCM test data has it "
            "at mpeg-oiv6/annotations/ (the MPEG platform's data/mpeg-fcm/README.md)"
        ) from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path} (dataset.annotation_json): not a readable json ({exc})") from None
    missing = [k for k in ("images", "categories") if k not in data]
    if missing:
        raise DatasetError(f"{path} (dataset.annotation_json): lacks the COCO key(s) {missing}")
    return data


def json_image_names(path: Path) -> list[str]:
    """The images' file names, in the file's order."""
    return [str(im["file_name"]) for im in _load(path)["images"]]


def _image_ids(images: list[dict]) -> dict[Any, int]:
    """The file's image ids -> vcmbench's integer ids: the file's own where they are integers, else 1..N."""
    ids = [im["id"] for im in images]
    if all(isinstance(i, int) or (isinstance(i, float) and i.is_integer()) for i in ids) and len(set(ids)) == len(ids):
        return {i: int(i) for i in ids}
    return {i: k for k, i in enumerate(ids, start=1)}


def convert_fcm_json(path: Path, image_dir: Path) -> dict[str, Any]:
    """The COCO dict vcmbench evaluates (module docstring); `image_dir` is where the images are."""
    data = _load(path)
    id_of = _image_ids(data["images"])
    images = [
        {
            "id": id_of[im["id"]],
            "file_name": str(im["file_name"]),
            "height": int(im["height"]),
            "width": int(im["width"]),
            "oid_image_id": Path(str(im["file_name"])).stem,
            "pos_labels": [],
            "neg_labels": [],
        }
        for im in data["images"]
    ]
    missing = [im["file_name"] for im in images if not (image_dir / im["file_name"]).is_file()]
    if missing:
        raise DatasetError(
            f"{len(missing)} image(s) of {path.name} are missing from {image_dir} (dataset.image_dir), "
            f"e.g. {missing[0]}; copy the OpenImages images there"
        )
    categories = [{"id": int(c["id"]), "name": str(c["name"])} for c in data["categories"]]
    if "oic_annotations" not in data:
        return {"info": {}, "images": images, "annotations": _plain(data, id_of), "categories": categories}
    cat_of_key = {class_key(c["name"]): c["id"] for c in categories}
    label_of = {}
    for item in data.get("oic_labelmap", []):
        cid = cat_of_key.get(class_key(item["name"]))
        if cid is None:
            raise DatasetError(f"{path}: oic_labelmap class {item['name']!r} is not among the file's categories")
        label_of[item["id"]] = cid
    by_id = {im["id"]: im for im in images}
    annotations: list[dict] = []
    for entry in data["oic_annotations"]:
        iid = id_of.get(entry["image_id"])
        if iid is None:
            raise DatasetError(f"{path}: oic_annotations refers to image_id {entry['image_id']!r}, not in 'images'")
        annotations += _image_annotations(
            entry["annotations"], by_id[iid], label_of, cat_of_key, path, len(annotations)
        )
    return {"info": {}, "images": images, "annotations": annotations, "categories": categories}


def _image_annotations(a: dict, image: dict, label_of: dict, cat_of_key: dict, path: Path, start: int) -> list[dict]:
    """One image's objects (normalised [ymin, xmin, ymax, xmax] -> pixel [x, y, w, h]) and its
    verified labels, which go to `verified_labels` (the file does not say which are negative)."""
    w, h = image["width"], image["height"]
    masks = a.get("mask")
    sizes = a.get("img_size")
    out = []
    for k, (box, cls, group) in enumerate(zip(a["bbox"], a["cls"], a["group_of"])):
        if cls not in label_of:
            raise DatasetError(f"{path}: image {image['file_name']} has class id {cls}, not in oic_labelmap")
        y0, x0, y1, x1 = (float(v) for v in box)
        if max(y0, x0, y1, x1) > 1.0 + 1e-6:
            raise DatasetError(
                f"{path}: image {image['file_name']} box {box} is not normalised to [0, 1] "
                "([ymin, xmin, ymax, xmax], as the MPEG platform's evaluator reads it)"
            )
        bw, bh = (x1 - x0) * w, (y1 - y0) * h
        ann = {
            "id": start + len(out) + 1,
            "image_id": image["id"],
            "category_id": label_of[cls],
            "bbox": [x0 * w, y0 * h, bw, bh],
            "area": bw * bh,
            "iscrowd": 0,
            "is_group_of": bool(group),
        }
        if masks is not None and masks[k] not in (None, "nan", ""):
            size = sizes[k] if sizes else {"img_width": w, "img_height": h}
            ann["segmentation"], ann["area"] = encoded_mask_rle(
                masks[k], int(size["img_width"]), int(size["img_height"]), (w, h)
            )
        out.append(ann)
    verified = {cat_of_key[class_key(n)] for n in a.get("img_cls", []) if class_key(n) in cat_of_key}
    image["verified_labels"] = sorted(verified)
    return out


def _plain(data: dict, id_of: dict) -> list[dict]:
    """A plain COCO file's annotations, `iscrowd` read as group-of."""
    out = []
    for k, a in enumerate(data.get("annotations", []), start=1):
        ann = {key: a[key] for key in ("category_id", "bbox", "segmentation", "area") if key in a}
        out.append(
            ann
            | {
                "id": k,
                "image_id": id_of[a["image_id"]],
                "iscrowd": 0,
                "is_group_of": bool(a.get("is_group_of", a.get("iscrowd", 0))),
            }
        )
    return out

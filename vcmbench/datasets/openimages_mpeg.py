"""The MPEG OpenImages sets as contributors hold them, in any of three forms, behind one dataset.

- `fcm`: the FCM test data (`fcm_testdata/mpeg-oiv6/`): `annotations/mpeg-oiv6-<task>-coco.json`
  (one COCO json per use case, with the OpenImages challenge fields the MPEG platform's
  evaluator reads) and `images/`. Converted by `openimages_fcm_json`.
- `mpeg_csv`: MPEG's 5k files (`<task>_validation_input_5k.lst`, the `..._bbox` and `..._labels`
  CSVs, for segmentation `segmentation_validation_masks_5k.csv` with the masks inline) and the
  images. Their `LabelName` holds COCO class names (`airplane`, `cell_phone`), so the classes are
  the 80 COCO categories with COCO ids, and no class-descriptions file is needed.
- `openimages`: the original OpenImages V6 CSVs (MIDs) with MPEG's lists (`openimages.build`).

`layout: auto` looks for the files of each form under `dataset.root`, in that order; one key
(`dataset.layout`) forces a form. Every form is converted once to a cached COCO json that keeps
what the challenge metric needs: group-of flags, verified image-level labels, masks.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from vcmbench.datasets import openimages
from vcmbench.datasets.base import Dataset, ImageRecord
from vcmbench.datasets.cache import read_cached, write_cached
from vcmbench.datasets.coco_categories import coco_category_dicts, coco_id
from vcmbench.datasets.images import image_size
from vcmbench.datasets.openimages import OpenImagesMpeg
from vcmbench.datasets.shards import shardable
from vcmbench.errors import DatasetError

log = logging.getLogger(__name__)

LAYOUTS = ("auto", "fcm", "mpeg_csv", "openimages")
TASKS = ("detection", "segmentation")
CACHE_FORMAT = 1

#: MPEG's file names per task (data/mpeg-vcm of the MPEG platform, "as per 9.2022"; the FCM test
#: data's json names from its data/mpeg-fcm/README.md)
MPEG_FILES: dict[str, dict[str, str]] = {
    "detection": {
        "json": "annotations/mpeg-oiv6-detection-coco.json",
        "image_list": "detection_validation_input_5k.lst",
        "bbox_csv": "detection_validation_5k_bbox.csv",
        "labels_csv": "detection_validation_labels_5k.csv",
    },
    "segmentation": {
        "json": "annotations/mpeg-oiv6-segmentation-coco.json",
        "image_list": "segmentation_validation_input_5k.lst",
        "bbox_csv": "segmentation_validation_bbox_5k.csv",
        "labels_csv": "segmentation_validation_labels_5k.csv",
        "masks_csv": "segmentation_validation_masks_5k.csv",
    },
}
#: a mask row and a box row are one object when their coordinates agree to this (the masks CSV
#: rounds them to 6 decimals, the bbox CSV does not)
BOX_MATCH_TOLERANCE = 1e-5
_MASK_COLUMNS = [
    "ImageID",
    "LabelName",
    "ImageWidth",
    "ImageHeight",
    "XMin",
    "XMax",
    "YMin",
    "YMax",
    "IsGroupOf",
    "Mask",
]


def detect_layout(root: Path, task: str) -> tuple[str, Path]:
    """(form, folder holding its files): the FCM json under root or root/mpeg-oiv6, else MPEG's
    5k CSVs in root, else the original OpenImages CSVs."""
    for folder in (root, root / "mpeg-oiv6"):
        if (folder / MPEG_FILES[task]["json"]).is_file():
            return "fcm", folder
    if (root / MPEG_FILES[task]["bbox_csv"]).is_file():
        return "mpeg_csv", root
    if (root / "validation-annotations-bbox.csv").is_file():
        return "openimages", root
    raise DatasetError(
        f"dataset.root={root}: holds none of the OpenImages forms vcmbench reads for {task}: the FCM test data "
        f"({MPEG_FILES[task]['json']} under root or root/mpeg-oiv6), MPEG's 5k files ({MPEG_FILES[task]['bbox_csv']} "
        "...) or the OpenImages V6 CSVs (validation-annotations-bbox.csv ...); point dataset.root at the folder "
        "that holds them (docs/datasets.md)"
    )


def _image_dir(folder: Path, given: str | None, first_file: str) -> Path:
    """The image folder: as given, else `images/` (the FCM layout) or the folder itself."""
    if given:
        return folder / Path(given).expanduser()
    for candidate in (folder / "images", folder / "validation", folder):
        if (candidate / first_file).is_file():
            return candidate
    return folder / "images"


def read_file_list(path: Path) -> list[str]:
    """Image file names in list order (`<ImageID>.jpg` / `.png`; a bare id means `.jpg`)."""
    if not path.is_file():
        raise DatasetError(
            f"image list not found: {path} (dataset.image_list); it is MPEG's "
            f"{path.name} of the 5k subset (the MPEG platform's data/mpeg-vcm/)"
        )
    names, seen = [], set()
    for n, line in openimages.list_lines(path):
        name = Path(line).name
        name = name if Path(name).suffix else f"{name}.jpg"
        if name in seen:
            raise DatasetError(f"{path}: line {n} repeats image {name!r}; keep each image once")
        seen.add(name)
        names.append(name)
    if not names:
        raise DatasetError(f"{path} (dataset.image_list): lists no image")
    return names


def _read_csv(path: Path, field: str, columns: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise DatasetError(
            f"{field} not found: {path} (dataset.{field}); it is MPEG's {path.name} of the 5k "
            "subset (the MPEG platform's data/mpeg-vcm/)"
        )
    header = list(pd.read_csv(path, nrows=0).columns)
    absent = [c for c in columns if c not in header]
    if absent:
        raise DatasetError(
            f"{path} (dataset.{field}): missing column(s) {absent}; found {header}; MPEG's file has {columns}"
        )
    return pd.read_csv(
        path, usecols=columns, dtype={"ImageID": str, "LabelName": str, "Mask": str}, keep_default_na=False
    )


def _category_ids(df: pd.DataFrame, path: Path) -> pd.Series:
    """Each row's COCO category id from its class name; a name COCO lacks is an error naming it."""
    ids = df["LabelName"].map(coco_id)
    bad = df.loc[ids.isna(), "LabelName"]
    if len(bad):
        raise DatasetError(
            f"{path}: class {bad.iloc[0]!r} (row {int(bad.index[0]) + 2}) is not one of the 80 COCO "
            "classes MPEG's OpenImages files use; fix the row or use layout=openimages with MIDs"
        )
    return ids.astype(int)


def _attach_masks(boxes: pd.DataFrame, masks: pd.DataFrame) -> list[tuple[dict, str | None]]:
    """Box rows with their mask where a mask row has the same image, class, group-of flag and box
    (to BOX_MATCH_TOLERANCE), as the challenge merges its box and mask files; a mask row without a
    box row is an object of its own."""
    objects: list[tuple[dict, str | None]] = [(row, None) for row in boxes.to_dict("records")]
    free: dict[tuple, list[int]] = {}
    for k, (row, _) in enumerate(objects):
        free.setdefault((row["ImageID"], row["cat"], bool(row["IsGroupOf"])), []).append(k)
    coords = ["XMin", "XMax", "YMin", "YMax"]
    for row in masks.to_dict("records"):
        key = (row["ImageID"], row["cat"], bool(row["IsGroupOf"]))
        hit = next(
            (
                k
                for k in free.get(key, [])
                if max(abs(objects[k][0][c] - row[c]) for c in coords) <= BOX_MATCH_TOLERANCE
            ),
            None,
        )
        if hit is None:
            objects.append((row, row["Mask"]))
        else:
            free[key].remove(hit)
            objects[hit] = (objects[hit][0] | {"_mask_row": row}, row["Mask"])
    return objects


def convert_mpeg_csv(files: dict[str, Path], image_dir: Path, names: list[str], task: str) -> dict[str, Any]:
    """MPEG's 5k CSVs -> COCO dict: images 1..N in list order, the 80 COCO categories, boxes in pixels."""
    idx_of = {Path(n).stem: i for i, n in enumerate(names, start=1)}
    images = []
    for name, i in zip(names, idx_of.values()):
        w, h = image_size(image_dir / name)
        images.append(
            {
                "id": i,
                "file_name": name,
                "height": h,
                "width": w,
                "oid_image_id": Path(name).stem,
                "pos_labels": [],
                "neg_labels": [],
            }
        )
    labels = _read_csv(files["labels_csv"], "labels_csv", ["ImageID", "LabelName", "Confidence"])
    labels = labels[labels["ImageID"].isin(idx_of)]
    labels = labels.assign(cat=_category_ids(labels, files["labels_csv"]))
    for key, conf in (("pos_labels", 1), ("neg_labels", 0)):
        for image_id, cats in labels[labels["Confidence"].astype(float) == conf].groupby("ImageID")["cat"]:
            images[idx_of[image_id] - 1][key] = sorted(set(cats.tolist()))
    boxes = _read_csv(
        files["bbox_csv"], "bbox_csv", ["ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax", "IsGroupOf"]
    )
    boxes = boxes[boxes["ImageID"].isin(idx_of)]
    boxes = boxes.assign(cat=_category_ids(boxes, files["bbox_csv"]))
    masks = pd.DataFrame(columns=[*_MASK_COLUMNS, "cat"])
    if task == "segmentation":
        masks = _read_csv(files["masks_csv"], "masks_csv", _MASK_COLUMNS)
        masks = masks[masks["ImageID"].isin(idx_of)]
        masks = masks.assign(cat=_category_ids(masks, files["masks_csv"]))
    return {
        "info": {},
        "images": images,
        "annotations": _annotations(boxes, masks, images, idx_of),
        "categories": coco_category_dicts(),
    }


def _annotations(boxes: pd.DataFrame, masks: pd.DataFrame, images: list[dict], idx_of: dict[str, int]) -> list[dict]:
    from vcmbench.datasets.openimages_masks import encoded_mask_rle

    objects = _attach_masks(boxes, masks)
    objects.sort(key=lambda o: idx_of[o[0]["ImageID"]])  # image order, file order within an image
    out = []
    for row, encoded in objects:
        img = images[idx_of[row["ImageID"]] - 1]
        w, h = img["width"], img["height"]
        bw, bh = (row["XMax"] - row["XMin"]) * w, (row["YMax"] - row["YMin"]) * h
        ann = {
            "id": len(out) + 1,
            "image_id": img["id"],
            "category_id": int(row["cat"]),
            "bbox": [row["XMin"] * w, row["YMin"] * h, bw, bh],
            "area": bw * bh,
            "iscrowd": 0,
            "is_group_of": bool(int(row["IsGroupOf"])),
        }
        if encoded:
            mask_row = row.get("_mask_row", row)
            ann["segmentation"], ann["area"] = encoded_mask_rle(
                encoded, int(mask_row["ImageWidth"]), int(mask_row["ImageHeight"]), (w, h)
            )
        out.append(ann)
    return out


def _fingerprint(files: dict[str, Path], image_dir: Path, names: list[str]) -> str:
    stats = []
    for name in names:
        try:
            st = (image_dir / name).stat()
        except OSError:
            raise DatasetError(
                f"image {name} of dataset.image_list is missing from {image_dir} (dataset.image_dir); "
                "copy the set's images there"
            ) from None
        stats.append([name, st.st_size, st.st_mtime_ns])
    blob = {
        "format": CACHE_FORMAT,
        "images": stats,
        "image_dir": str(image_dir.resolve()),
        "files": {k: [str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for k, p in files.items()},
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def _cached(cache_file: Path, fp: str, make: Any, what: str) -> dict[str, Any]:
    data = read_cached(cache_file, fp)
    if data is None:
        log.info("converting %s to COCO json %s", what, cache_file)
        data = make()
        data["info"] = {"description": f"vcmbench: {what}", "vcmbench_fingerprint": fp, "vcmbench_format": CACHE_FORMAT}
        write_cached(cache_file, data, "dataset.cache_file")
    return data


@shardable
def build(
    root: str,
    layout: str = "auto",
    task: str = "detection",
    name: str = "openimages_mpeg",
    image_dir: str | None = None,
    image_list: str | None = None,
    bbox_csv: str | None = None,
    labels_csv: str | None = None,
    masks_csv: str | None = None,
    annotation_json: str | None = None,
    cache_file: str | None = None,
    max_images: int | None = None,
    metric: str = "oid",
    **openimages_keys: Any,
) -> Dataset:
    """Hydra target of `openimages_mpeg` and `openimages_mpeg_segmentation`: the set in whichever
    form `root` holds (module docstring). Paths are relative to the form's folder unless absolute;
    a key left null takes MPEG's file name. `openimages_keys` are the original form's
    (`openimages.build`: classes_csv, class_list, mask_dir, ...)."""
    if layout not in LAYOUTS:
        raise DatasetError(f"dataset.layout={layout!r}: choose one of {list(LAYOUTS)}")
    if task not in TASKS:
        raise DatasetError(f"dataset.task={task!r}: choose one of {list(TASKS)}")
    if max_images is not None and int(max_images) < 1:
        raise DatasetError(f"dataset.max_images={max_images}: must be >= 1 or null")
    rootp = Path(root).expanduser()
    if not rootp.is_dir():
        raise DatasetError(
            f"OpenImages folder not found: {rootp} (dataset.root); point it at the folder holding "
            "the set (docs/datasets.md)"
        )
    form, folder = detect_layout(rootp, task) if layout == "auto" else (layout, rootp)
    if form == "fcm" and layout != "auto" and not (folder / MPEG_FILES[task]["json"]).is_file():
        folder = rootp / "mpeg-oiv6" if (rootp / "mpeg-oiv6").is_dir() else rootp
    if form == "openimages":
        return _original(
            root,
            name,
            task,
            image_dir,
            image_list,
            bbox_csv,
            labels_csv,
            masks_csv,
            cache_file,
            max_images,
            metric,
            openimages_keys,
        )
    default = MPEG_FILES[task]
    cache = folder / (cache_file or f"vcmbench_coco_{task}.json")
    if form == "fcm":
        from vcmbench.datasets.openimages_fcm_json import convert_fcm_json, json_image_names

        json_path = folder / (annotation_json or default["json"])
        names = json_image_names(json_path)
        images = _image_dir(folder, image_dir, names[0] if names else "")
        fp = _fingerprint({"annotation_json": json_path}, images, names)
        data = _cached(cache, fp, lambda: convert_fcm_json(json_path, images), f"{json_path.name} ({name})")
    else:
        names = read_file_list(folder / (image_list or default["image_list"]))
        images = _image_dir(folder, image_dir, names[0])
        files = {
            "labels_csv": folder / (labels_csv or default["labels_csv"]),
            "bbox_csv": folder / (bbox_csv or default["bbox_csv"]),
        }
        if task == "segmentation":
            files["masks_csv"] = folder / (masks_csv or default["masks_csv"])
        for field, path in files.items():
            if not path.is_file():
                raise DatasetError(
                    f"{field} not found: {path} (dataset.{field}); it is MPEG's {path.name} of the "
                    "5k subset (the MPEG platform's data/mpeg-vcm/)"
                )
        fp = _fingerprint(files, images, names)
        data = _cached(cache, fp, lambda: convert_mpeg_csv(files, images, names, task), f"MPEG 5k files ({name})")
    recs = sorted(
        (ImageRecord(int(i["id"]), str(i["file_name"]), int(i["height"]), int(i["width"])) for i in data["images"]),
        key=lambda r: r.image_id,
    )
    if max_images is not None:
        recs = recs[: int(max_images)]
    ds = OpenImagesMpeg(name, cache, images, recs)
    ds.metric = metric
    return ds


def _original(
    root: str,
    name: str,
    task: str,
    image_dir: str | None,
    image_list: str | None,
    bbox_csv: str | None,
    labels_csv: str | None,
    masks_csv: str | None,
    cache_file: str | None,
    max_images: int | None,
    metric: str,
    keys: dict[str, Any],
) -> Dataset:
    """The original OpenImages V6 CSVs (MIDs) through `openimages.build`, with its defaults where null."""
    given = {
        "image_dir": image_dir,
        "image_list": image_list,
        "bbox_csv": bbox_csv,
        "labels_csv": labels_csv,
        "cache_file": cache_file,
        **keys,
    }
    if task == "segmentation":
        given["masks_csv"] = masks_csv or "validation-annotations-object-segmentation.csv"
        given.setdefault("class_list", "mpeg_vcm_segmentation_classes.txt")
        given["image_list"] = image_list or MPEG_FILES["segmentation"]["image_list"]
        given["cache_file"] = cache_file or "vcmbench_coco_segmentation.json"
    return openimages.build(
        root, name=name, max_images=max_images, metric=metric, **{k: v for k, v in given.items() if v is not None}
    )

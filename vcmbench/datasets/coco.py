"""Any COCO-format folder: an image folder and an instances json."""

from __future__ import annotations

import json
from pathlib import Path

from vcmbench.datasets.base import Dataset, ImageRecord, require_path
from vcmbench.datasets.shards import shardable
from vcmbench.errors import DatasetError


def load_coco_records(annotation_file: Path) -> list[ImageRecord]:
    annotation_file = Path(annotation_file)
    try:
        data = json.loads(annotation_file.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{annotation_file}: not valid JSON ({exc})") from exc
    if "images" not in data or "categories" not in data:
        raise DatasetError(f"{annotation_file}: not a COCO instances file (needs 'images' and 'categories')")
    recs = []
    for img in data["images"]:
        for field in ("id", "file_name", "height", "width"):
            if field not in img:
                raise DatasetError(f"{annotation_file}: an entry of 'images' lacks '{field}': {img}")
        recs.append(ImageRecord(int(img["id"]), str(img["file_name"]), int(img["height"]), int(img["width"])))
    recs.sort(key=lambda r: r.image_id)
    return recs


class CocoFolder(Dataset):
    metric = "coco"


@shardable
def build(
    root: str,
    annotation_file: str,
    image_dir: str,
    name: str = "coco",
    max_images: int | None = None,
    metric: str = "coco",
    how_to_get: str = "Point dataset.root at a COCO-format folder (images + instances json).",
) -> Dataset:
    """Hydra target: `dataset=coco_folder dataset.root=... dataset.annotation_file=...`.

    `annotation_file` and `image_dir` are relative to `root` unless absolute.
    `max_images` keeps the first N images by id (deterministic subsets for CI).
    """
    rootp = require_path(Path(root), f"dataset {name}: folder (dataset.root)", how_to_get)
    ann_what = f"dataset {name}: annotation file (dataset.annotation_file)"
    ann = require_path(rootp / annotation_file, ann_what, how_to_get)
    imgs = require_path(rootp / image_dir, f"dataset {name}: image folder (dataset.image_dir)", how_to_get)
    recs = load_coco_records(ann)
    if max_images is not None:
        if int(max_images) < 1:
            raise DatasetError(f"dataset.max_images={max_images}: must be >= 1 or null")
        recs = recs[: int(max_images)]
    ds = CocoFolder(name, ann, imgs, recs)
    ds.metric = metric
    return ds

"""OpenImages instance masks -> COCO annotations with RLE segmentations.

The OpenImages V6 segmentation subset (the MPEG instance-segmentation conditions) gives one CSV
row per mask (`MaskPath, ImageID, LabelName, BoxID, BoxXMin, BoxXMax, BoxYMin, BoxYMax, ...`)
and a folder of binary PNGs, one per row. Each row becomes one COCO annotation: the box in pixels
and the mask as compressed RLE at the image's size (a PNG of another size is resized to it by
nearest neighbour, as the challenge's evaluation does). Group-of objects have no masks: the
converter keeps the detection CSV's group-of boxes beside these, and the mask metric treats each
as a region to ignore, as MPEG's evaluator does (vcmbench.metrics.openimages).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vcmbench.errors import DatasetError

MASK_COLUMNS = ["MaskPath", "ImageID", "LabelName", "BoxXMin", "BoxXMax", "BoxYMin", "BoxYMax"]


def read_mask_rows(path: Path, ids: set[str], mids: set[str]) -> pd.DataFrame:
    """The mask CSV's rows of listed images and kept classes, in file order."""
    header = list(pd.read_csv(path, nrows=0).columns)
    absent = [c for c in MASK_COLUMNS if c not in header]
    if absent:
        raise DatasetError(
            f"{path} (dataset.masks_csv): missing column(s) {absent}; found {header}. It is the "
            "OpenImages segmentation CSV (e.g. validation-annotations-object-segmentation.csv)"
        )
    df = pd.read_csv(path, usecols=MASK_COLUMNS, dtype={c: str for c in MASK_COLUMNS[:3]})
    return df[df["ImageID"].isin(ids) & df["LabelName"].isin(mids)].reset_index(drop=True)


def mask_rle(png: Path, width: int, height: int) -> tuple[dict[str, Any], int]:
    """A mask PNG (non-zero = object) as COCO compressed RLE at width x height, and its area."""
    from PIL import Image
    from pycocotools import mask as mask_utils

    try:
        with Image.open(png) as im:
            im = im.convert("L")
            if im.size != (width, height):
                im = im.resize((width, height), Image.Resampling.NEAREST)
            binary = np.asfortranarray((np.asarray(im) > 0).astype(np.uint8))
    except OSError as exc:
        raise DatasetError(
            f"{png} (dataset.mask_dir): cannot read the mask PNG ({exc}); unpack the OpenImages "
            "segmentation masks (validation-masks-*.zip) into dataset.mask_dir"
        ) from None
    rle = mask_utils.encode(binary)
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}, int(mask_utils.area(rle))


def mask_annotations(
    rows: pd.DataFrame, mask_dir: Path, images: list[dict], idx_of: dict[str, int], cat_of: dict[str, int]
) -> list[dict]:
    """COCO annotations (ids from 1, image order, CSV order within an image) of the mask rows."""
    missing = [mask_dir / p for p in rows["MaskPath"] if not (mask_dir / p).is_file()]
    if missing:
        raise DatasetError(
            f"{len(missing)} mask PNG(s) of dataset.masks_csv are missing from dataset.mask_dir, "
            f"e.g. {missing[0].resolve()}: unpack the OpenImages segmentation masks there"
        )
    rows = rows.assign(img_idx=rows["ImageID"].map(idx_of)).sort_values("img_idx", kind="stable")
    out = []
    for row in rows.itertuples(index=False):
        img = images[row.img_idx - 1]
        w, h = img["width"], img["height"]
        segmentation, area = mask_rle(mask_dir / row.MaskPath, w, h)
        out.append(
            {
                "id": len(out) + 1,
                "image_id": img["id"],
                "category_id": cat_of[row.LabelName],
                "bbox": [
                    row.BoxXMin * w,
                    row.BoxYMin * h,
                    (row.BoxXMax - row.BoxXMin) * w,
                    (row.BoxYMax - row.BoxYMin) * h,
                ],
                "area": area,
                "iscrowd": 0,
                "segmentation": segmentation,
                "is_group_of": False,
            }
        )
    return out


def encoded_mask_rle(encoded: str, width: int, height: int, image_wh: tuple[int, int]) -> tuple[dict[str, Any], int]:
    """A mask as the OpenImages challenge files carry it inline (base64 of the zlib-compressed COCO
    RLE counts at width x height; MPEG's segmentation_validation_masks_5k.csv `Mask` column) as
    COCO compressed RLE at the image's size (resized by nearest neighbour if it differs), and its area."""
    import base64
    import zlib

    from pycocotools import mask as mask_utils

    rle = {"size": [int(height), int(width)], "counts": zlib.decompress(base64.b64decode(encoded))}
    if image_wh != (int(width), int(height)):
        from PIL import Image

        small = Image.fromarray(mask_utils.decode(rle) * 255)
        binary = np.asarray(small.resize(image_wh, Image.Resampling.NEAREST)) > 0
        rle = mask_utils.encode(np.asfortranarray(binary.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}, int(mask_utils.area(rle))

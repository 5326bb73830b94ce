"""The MPEG-VCM OpenImages V6 validation subset, converted once to a COCO json.

MPEG evaluates feature codecs on a fixed list of 5k OpenImages V6 validation
images and a fixed class list. The rest of vcmbench only speaks COCO json, so
this module converts the user's local OpenImages copy (image folder + the
official CSVs + the MPEG lists) into one, keeping what the OpenImages challenge
metric needs and COCO lacks: group-of flags on boxes and the verified
positive/negative image-level labels (`pos_labels`/`neg_labels` on images).

The conversion reads multi-hundred-MB CSVs, so its result is cached and only
rebuilt when an input changes (fingerprint of paths, sizes and mtimes stored in
the json's `info`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from vcmbench.datasets.base import Dataset, ImageRecord
from vcmbench.datasets.cache import read_cached, write_cached
from vcmbench.datasets.images import image_size
from vcmbench.datasets.shards import shardable
from vcmbench.errors import DatasetError

log = logging.getLogger(__name__)

#: Bump when the json layout changes, so old caches are rebuilt.
CACHE_FORMAT = 1

_OID_PAGE = "the Open Images V6 download page (Google's Open Images dataset website, 'Download' section, version V6)"
_MPEG_LISTS = (
    "the MPEG VCM common test conditions (CTC) for OpenImages object detection, which provide the "
    "5k validation image list and the class list used by the MPEG feature anchor"
)
HOW_TO_GET: dict[str, str] = {
    "root": f"Set dataset.root to the folder holding your OpenImages V6 copy; images and CSVs come from {_OID_PAGE}.",
    "image_dir": f"Download the OpenImages V6 validation images (<ImageID>.jpg) from {_OID_PAGE}.",
    "bbox_csv": f"Download the validation boxes CSV (validation-annotations-bbox.csv) from {_OID_PAGE}.",
    "labels_csv": (
        "Download the validation human-verified image labels CSV "
        f"(validation-annotations-human-imagelabels-boxable.csv) from {_OID_PAGE}."
    ),
    "classes_csv": f"Download the boxable class names CSV (class-descriptions-boxable.csv) from {_OID_PAGE}.",
    "class_list": f"Get the class list (one LabelName or DisplayName per line) from {_MPEG_LISTS}.",
    "image_list": f"Get the image list (one ImageID or <ImageID>.jpg per line) from {_MPEG_LISTS}.",
    "masks_csv": f"Download the validation segmentation CSV (validation-annotations-object-segmentation.csv) from "
    f"{_OID_PAGE}.",
    "mask_dir": f"Download the validation segmentation masks (validation-masks-*.zip) from {_OID_PAGE} and unpack "
    "them into one folder.",
}

_BOX_COORDS = ["XMin", "XMax", "YMin", "YMax"]
#: OpenImages box flag column -> COCO annotation key. Values are 1/0 (and -1 = unknown, kept as False).
_BOX_FLAGS = {
    "IsGroupOf": "is_group_of",
    "IsOccluded": "is_occluded",
    "IsTruncated": "is_truncated",
    "IsDepiction": "is_depiction",
    "IsInside": "is_inside",
}
_CHUNK_ROWS = 500_000


@dataclass(frozen=True)
class OpenImagesPaths:
    """Resolved input locations, keyed by the config field that sets each one."""

    root: Path
    image_dir: Path
    bbox_csv: Path
    labels_csv: Path
    classes_csv: Path
    class_list: Path
    image_list: Path
    cache_file: Path
    masks_csv: Path | None = None  # the segmentation subset's mask CSV (its PNGs in mask_dir)
    mask_dir: Path | None = None

    def inputs(self) -> dict[str, Path]:
        """The files whose content determines the converted json (the image folder is fingerprinted per image)."""
        return {
            "bbox_csv": self.bbox_csv,
            "labels_csv": self.labels_csv,
            "classes_csv": self.classes_csv,
            "class_list": self.class_list,
            "image_list": self.image_list,
            **({"masks_csv": self.masks_csv} if self.masks_csv is not None else {}),
        }


def _missing(path: Path, field: str, what: str) -> DatasetError:
    return DatasetError(f"{what} not found: {path.resolve()} (dataset.{field}). {HOW_TO_GET[field]}")


def resolve_paths(
    root: str | Path,
    image_dir: str,
    bbox_csv: str,
    labels_csv: str,
    classes_csv: str,
    class_list: str,
    image_list: str,
    cache_file: str | None,
    masks_csv: str | None = None,
    mask_dir: str | None = None,
) -> OpenImagesPaths:
    """Join every path onto root (absolute ones stay) and fail early, naming the field, if one is missing."""
    rootp = Path(root).expanduser()
    if not rootp.is_dir():
        raise _missing(rootp, "root", "OpenImages folder")

    def under_root(p: str | Path) -> Path:
        return rootp / Path(p).expanduser()

    paths = OpenImagesPaths(
        root=rootp,
        image_dir=under_root(image_dir),
        bbox_csv=under_root(bbox_csv),
        labels_csv=under_root(labels_csv),
        classes_csv=under_root(classes_csv),
        class_list=under_root(class_list),
        image_list=under_root(image_list),
        cache_file=under_root(cache_file) if cache_file else rootp / "vcmbench_coco.json",
        masks_csv=under_root(masks_csv) if masks_csv else None,
        mask_dir=under_root(mask_dir or "validation-masks") if masks_csv else None,
    )
    if not paths.image_dir.is_dir():
        raise _missing(paths.image_dir, "image_dir", "OpenImages image folder")
    if paths.mask_dir is not None and not paths.mask_dir.is_dir():
        raise _missing(paths.mask_dir, "mask_dir", "OpenImages mask folder")
    for field, path in paths.inputs().items():
        if not path.is_file():
            raise _missing(path, field, f"OpenImages {field.replace('_', ' ')}")
    return paths


def list_lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank, non-comment lines with their 1-based line numbers (lists are often hand-edited)."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        line = line.strip()
        if line and not line.startswith("#"):
            out.append((n, line))
    return out


def read_image_list(path: Path) -> list[str]:
    """ImageIDs in list order; accepts bare ids, `<id>.jpg` and paths ending in `<id>.jpg`."""
    ids: list[str] = []
    seen: dict[str, int] = {}
    for n, line in list_lines(path):
        name = Path(line).name
        # MPEG's segmentation list names PNGs; the OpenImages download holds the same images as JPEGs
        image_id = name[:-4] if name.lower().endswith((".jpg", ".png")) else name
        if image_id in seen:
            raise DatasetError(
                f"{path}: line {n} repeats image '{image_id}' (first on line {seen[image_id]}); "
                "fix dataset.image_list so each image appears once"
            )
        seen[image_id] = n
        ids.append(image_id)
    if not ids:
        raise DatasetError(
            f"{path}: the image list (dataset.image_list) holds no image ids. {HOW_TO_GET['image_list']}"
        )
    return ids


def read_class_descriptions(path: Path) -> dict[str, str]:
    """MID -> DisplayName. The official file has no header row; a 'LabelName,DisplayName' header is accepted too."""
    df = pd.read_csv(
        path, header=None, names=["LabelName", "DisplayName"], usecols=[0, 1], dtype=str, keep_default_na=False
    )
    if len(df) and df.iloc[0]["LabelName"] == "LabelName":
        df = df.iloc[1:]
    return dict(zip(df["LabelName"].str.strip(), df["DisplayName"].str.strip(), strict=True))


def resolve_classes(class_list: Path, descriptions: dict[str, str], classes_csv: Path) -> list[tuple[str, str]]:
    """(MID, DisplayName) of the kept classes in list order; category id k+1 is entry k.

    A line may be a MID or a DisplayName (exact, else case-insensitive), because
    published class lists use either.
    """
    by_name: dict[str, list[str]] = {}
    by_lower: dict[str, list[str]] = {}
    for mid, name in descriptions.items():
        by_name.setdefault(name, []).append(mid)
        by_lower.setdefault(name.lower(), []).append(mid)
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for n, entry in list_lines(class_list):
        if entry in descriptions:
            mids = [entry]
        else:
            mids = by_name.get(entry) or by_lower.get(entry.lower(), [])
        where = f"{class_list}: line {n}"
        if not mids:
            raise DatasetError(
                f"{where}: class '{entry}' is not in the class descriptions {classes_csv} (dataset.classes_csv); "
                "use a LabelName (MID such as /m/01g317) or DisplayName from that file"
            )
        if len(mids) > 1:
            raise DatasetError(f"{where}: DisplayName '{entry}' matches several MIDs {mids}; write the MID instead")
        if mids[0] in seen:
            raise DatasetError(f"{where}: class '{entry}' ({mids[0]}) is listed twice; keep one line per class")
        seen.add(mids[0])
        out.append((mids[0], descriptions[mids[0]]))
    if not out:
        raise DatasetError(f"{class_list}: the class list (dataset.class_list) is empty. {HOW_TO_GET['class_list']}")
    return out


def stat_images(image_dir: Path, image_ids: list[str]) -> list[tuple[int, int]]:
    """(size, mtime_ns) of every listed image; raises upfront, listing up to 5 missing, so a sweep never dies midway."""
    stats: list[tuple[int, int]] = []
    missing: list[Path] = []
    for image_id in image_ids:
        path = image_dir / f"{image_id}.jpg"
        try:
            st = path.stat()
        except OSError:
            missing.append(path)
            continue
        stats.append((st.st_size, st.st_mtime_ns))
    if missing:
        shown = ", ".join(str(p.resolve()) for p in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DatasetError(
            f"{len(missing)} of {len(image_ids)} images of the image list (dataset.image_list) are missing from "
            f"the image folder (dataset.image_dir): {shown}{more}. {HOW_TO_GET['image_dir']}"
        )
    return stats


def fingerprint(paths: OpenImagesPaths, image_ids: list[str], image_stats: list[tuple[int, int]]) -> str:
    """Digest of every input's path, size and mtime: a change in any of them invalidates the cache."""
    files = {}
    for field, path in paths.inputs().items():
        st = path.stat()
        files[field] = [str(path.resolve()), st.st_size, st.st_mtime_ns]
    images = hashlib.sha256(json.dumps([image_ids, image_stats]).encode()).hexdigest()
    blob = {"format": CACHE_FORMAT, "files": files, "image_dir": str(paths.image_dir.resolve()), "images": images}
    if paths.mask_dir is not None:  # the folder's mtime moves when masks are added or removed
        blob["mask_dir"] = [str(paths.mask_dir.resolve()), paths.mask_dir.stat().st_mtime_ns]
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def _check_columns(path: Path, field: str, needed: list[str]) -> list[str]:
    header = list(pd.read_csv(path, nrows=0).columns)
    absent = [c for c in needed if c not in header]
    if absent:
        raise DatasetError(f"{path} (dataset.{field}): missing column(s) {absent}; found {header}. {HOW_TO_GET[field]}")
    return header


def _read_filtered(
    path: Path, usecols: list[str], dtype: dict[str, Any], ids: set[str], mids: set[str]
) -> pd.DataFrame:
    """Stream the CSV in chunks, keeping rows of listed images and kept classes (full files do not fit comfortably)."""
    parts = []
    for chunk in pd.read_csv(path, usecols=usecols, dtype=dtype, chunksize=_CHUNK_ROWS):
        parts.append(chunk[chunk["ImageID"].isin(ids) & chunk["LabelName"].isin(mids)])
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=dtype.get(c, float)) for c in usecols})
    return pd.concat(parts, ignore_index=True)


def read_boxes(path: Path, ids: set[str], mids: set[str]) -> pd.DataFrame:
    header = _check_columns(path, "bbox_csv", ["ImageID", "LabelName", *_BOX_COORDS, "IsGroupOf"])
    flags = [c for c in _BOX_FLAGS if c in header]
    dtype: dict[str, Any] = {"ImageID": str, "LabelName": str, **{c: float for c in _BOX_COORDS + flags}}
    df = _read_filtered(path, ["ImageID", "LabelName", *_BOX_COORDS, *flags], dtype, ids, mids)
    for c in _BOX_FLAGS:
        df[c] = (df[c] == 1) if c in df.columns else False
    return df


def read_image_labels(path: Path, ids: set[str], mids: set[str]) -> pd.DataFrame:
    _check_columns(path, "labels_csv", ["ImageID", "LabelName", "Confidence"])
    dtype = {"ImageID": str, "LabelName": str, "Confidence": float}
    return _read_filtered(path, ["ImageID", "LabelName", "Confidence"], dtype, ids, mids)


def convert(paths: OpenImagesPaths, image_ids: list[str]) -> dict[str, Any]:
    """Build the COCO dict: images 1..N in list order, categories 1..K in class-list order, boxes in pixels."""
    classes = resolve_classes(paths.class_list, read_class_descriptions(paths.classes_csv), paths.classes_csv)
    cat_of = {mid: k for k, (mid, _) in enumerate(classes, start=1)}
    idx_of = {image_id: i for i, image_id in enumerate(image_ids, start=1)}
    ids, mids = set(image_ids), set(cat_of)

    images = []
    for image_id, i in idx_of.items():
        w, h = image_size(paths.image_dir / f"{image_id}.jpg")
        images.append(
            {
                "id": i,
                "file_name": f"{image_id}.jpg",
                "height": h,
                "width": w,
                "oid_image_id": image_id,
                "pos_labels": [],
                "neg_labels": [],
            }
        )

    labels = read_image_labels(paths.labels_csv, ids, mids)
    for key, conf in (("pos_labels", 1.0), ("neg_labels", 0.0)):
        sel = labels[labels["Confidence"] == conf]
        for image_id, mids_of in sel.groupby("ImageID")["LabelName"]:
            images[idx_of[image_id] - 1][key] = sorted({cat_of[m] for m in mids_of})

    boxes = read_boxes(paths.bbox_csv, ids, mids)
    masks: list[dict] = []
    if paths.masks_csv is not None:  # the segmentation subset: masks, plus the group-of boxes (which have none)
        from vcmbench.datasets.openimages_masks import mask_annotations, read_mask_rows

        masks = mask_annotations(read_mask_rows(paths.masks_csv, ids, mids), paths.mask_dir, images, idx_of, cat_of)
        boxes = boxes[boxes["IsGroupOf"]]
    boxes["img_idx"] = boxes["ImageID"].map(idx_of)
    boxes = boxes.sort_values("img_idx", kind="stable")  # image order, CSV order within an image
    annotations = []
    for row in boxes.itertuples(index=False):
        img = images[row.img_idx - 1]
        w, h = img["width"], img["height"]
        bw, bh = (row.XMax - row.XMin) * w, (row.YMax - row.YMin) * h
        ann = {
            "id": len(annotations) + 1,
            "image_id": img["id"],
            "category_id": cat_of[row.LabelName],
            "bbox": [row.XMin * w, row.YMin * h, bw, bh],
            "area": bw * bh,
            "iscrowd": 0,
        }
        ann.update({key: bool(getattr(row, col)) for col, key in _BOX_FLAGS.items()})
        annotations.append(ann)
    if masks:  # image order, each image's masks before its group-of boxes; ids renumbered from 1
        annotations = sorted(masks + annotations, key=lambda a: (a["image_id"], "segmentation" not in a))
        for i, ann in enumerate(annotations, start=1):
            ann["id"] = i

    categories = [{"id": k, "name": name, "mid": mid} for k, (mid, name) in enumerate(classes, start=1)]
    return {"info": {}, "images": images, "annotations": annotations, "categories": categories}


def load_or_convert(paths: OpenImagesPaths, name: str) -> dict[str, Any]:
    """The COCO dict for these inputs, from the cache when its fingerprint matches, else converted and cached."""
    image_ids = read_image_list(paths.image_list)
    fp = fingerprint(paths, image_ids, stat_images(paths.image_dir, image_ids))
    data = read_cached(paths.cache_file, fp)
    if data is not None:
        return data
    log.info("converting %d OpenImages images of %s to COCO json %s", len(image_ids), name, paths.cache_file)
    data = convert(paths, image_ids)
    data["info"] = {
        "description": f"vcmbench {name}: OpenImages V6 subset converted to COCO format",
        "vcmbench_fingerprint": fp,
        "vcmbench_format": CACHE_FORMAT,
        "sources": {field: str(p.resolve()) for field, p in paths.inputs().items()}
        | {"image_dir": str(paths.image_dir.resolve())},
    }
    write_cached(paths.cache_file, data, "dataset.cache_file")
    return data


class OpenImagesMpeg(Dataset):
    """OpenImages subset as COCO json; evaluated with the OpenImages challenge mAP@0.5 (group-of aware)."""

    metric = "oid"


@shardable
def build(
    root: str,
    image_dir: str = "validation",
    bbox_csv: str = "validation-annotations-bbox.csv",
    labels_csv: str = "validation-annotations-human-imagelabels-boxable.csv",
    classes_csv: str = "class-descriptions-boxable.csv",
    class_list: str = "mpeg_vcm_classes.txt",
    image_list: str = "detection_validation_input_5k.lst",
    name: str = "openimages_mpeg",
    max_images: int | None = None,
    cache_file: str | None = None,
    metric: str = "oid",
    how_to_get: str | None = None,
    masks_csv: str | None = None,
    mask_dir: str = "validation-masks",
) -> Dataset:
    """Hydra target: `dataset=openimages_mpeg dataset.root=/data/openimages`.

    Paths are relative to `root` unless absolute. `cache_file` defaults to
    `<root>/vcmbench_coco.json`. `max_images` keeps the first N images of the
    list (ids 1..N); the cached json always holds the whole list.
    `how_to_get` is accepted for config symmetry with the COCO datasets; the
    error messages carry their own per-file instructions. `masks_csv` (the segmentation
    subset's mask CSV, its PNGs in `mask_dir`): the instances are the masks (COCO RLE), with the
    detection CSV's group-of boxes beside them (openimages_mpeg_segmentation.yaml).
    """
    del how_to_get
    if max_images is not None and int(max_images) < 1:
        raise DatasetError(f"dataset.max_images={max_images}: must be >= 1 or null")
    paths = resolve_paths(
        root, image_dir, bbox_csv, labels_csv, classes_csv, class_list, image_list, cache_file, masks_csv, mask_dir
    )
    data = load_or_convert(paths, name)
    recs = [ImageRecord(int(i["id"]), str(i["file_name"]), int(i["height"]), int(i["width"])) for i in data["images"]]
    recs.sort(key=lambda r: r.image_id)
    if max_images is not None:
        recs = recs[: int(max_images)]
    ds = OpenImagesMpeg(name, paths.cache_file, paths.image_dir, recs)
    ds.metric = metric
    return ds

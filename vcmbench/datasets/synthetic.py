"""Synthetic scenes: procedural images with COCO annotations, deterministic from a seed.

Each image is a pure function of (seed, height, width, backgrounds): the same seed gives
the same pixels and, written as PNG here, the same bytes. Image ``i`` of a set uses seed
``seed_start + i`` and gets that seed as its COCO image id, so sets drawn from disjoint
seed ranges (training from 0, validation from 1_000_000) never share an image.

A scene is a textured background (smooth colour field, grain, clutter strokes, or a crop of
a real photograph when a background folder is given) with 4..16 objects of
``len(CATEGORIES)`` shape classes, each 12 px to half the image in size, randomly rotated
and squashed, filled with a texture (solid, stripes, checks, gradient, grain) in a hue near
its class's (``CLASS_HUE_PROB`` of the objects; 1.0: all) with random saturation and
brightness: classes differ in shape and in colour, as "strong but learnable" classes should. Objects drawn later occlude earlier ones; the annotation
is the *visible* part: bbox = visible extent, area = visible pixel count, segmentation = the
visible pixels (COCO RLE, for mask AP), keypoints = the four extreme pixels of the whole shape
(top, right, bottom, left; visible, hidden or off the image: COCO's v = 2, 1, 0), and objects with
less than ``MIN_VISIBLE`` of their pixels visible (occluded or off the image) are not annotated:
their pixels are the image's ``unlabeled`` ones, which a semantic map scores as don't-care.
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from vcmbench.atomic import write_bytes
from vcmbench.datasets.base import Dataset, ImageRecord
from vcmbench.datasets.cache import cache_root
from vcmbench.datasets.shards import shardable
from vcmbench.errors import DatasetError
from vcmbench.paths import is_none

GENERATOR_VERSION = 2
ANNOTATION_VERSION = 3  # 2: every object's visible mask as COCO RLE; 3: keypoints and unlabeled pixels; same pixels
"""GENERATOR_VERSION: bump when the drawing changes (it is part of the image cache key);
ANNOTATION_VERSION: when only the annotations do (it names the annotation file)."""

CATEGORIES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring", "crescent", "arrow")
"""Category id ``k + 1`` is ``CATEGORIES[k]``."""

VAL_SEED_START = 1_000_000
"""Validation scenes start here; training scenes use seeds below it."""

MIN_SIZE = 12  # smallest object extent in pixels
MAX_FRACTION = 0.5  # largest object extent as a fraction of the shorter image side
MIN_OBJECTS, MAX_OBJECTS = 4, 16
MIN_VISIBLE = 0.3  # annotate an object only if at least this fraction of it is visible
MIN_BOX = 6  # ... and its visible box is at least this many pixels wide and high
KEYPOINTS: tuple[str, ...] = ("top", "right", "bottom", "left")
"""Every shape's keypoints: the extreme pixels of its whole (unoccluded) mask, in image directions."""
KEYPOINT_SIGMA = 0.08  # per-keypoint OKS sigma (COCO's person sigmas span 0.025..0.107)
CLASS_HUE_PROB = 1.0  # fraction of objects whose hue is their class's hue (the rest: random)
PHOTO_PROB = 0.5  # with a background folder: fraction of scenes on a photograph


@dataclass(frozen=True)
class Annotation:
    category_id: int
    bbox: tuple[int, int, int, int]  # x, y, w, h of the visible pixels (inclusive extent)
    area: int  # visible pixel count
    visible: float  # visible fraction of the object's full mask
    # the visible pixels as COCO compressed RLE {"size": [h, w], "counts": str}: instance masks
    segmentation: dict | None = None
    # COCO keypoint triplets (x, y, v) of KEYPOINTS: v = 2 visible, 1 hidden behind a later object,
    # 0 (with x = y = 0) off the image; x, y are the pixel's centre (column + 0.5, row + 0.5)
    keypoints: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Scene:
    """One drawn scene: the image, its annotated objects, and the pixels of the objects too small or
    too hidden to annotate (`unlabeled`, image-sized bool): a semantic map scores them as don't-care,
    since calling them background or their class would both be defensible."""

    image: np.ndarray
    annotations: list[Annotation]
    unlabeled: np.ndarray


def categories(keypoints: bool = True) -> list[dict]:
    """The shape classes; with `keypoints` (the scenes' json) each names the four extreme-point
    keypoints and their OKS sigmas, so the set scores keypoint AP (metrics.keypoints) as it scores
    box and mask AP. The videos annotate boxes only, and their categories name no keypoints."""
    named = {
        "keypoints": list(KEYPOINTS),
        "skeleton": [[1, 2], [2, 3], [3, 4], [4, 1]],
        "sigmas": [KEYPOINT_SIGMA] * len(KEYPOINTS),
    }
    return [
        {"id": k + 1, "name": n, "supercategory": "shape", **(named if keypoints else {})}
        for k, n in enumerate(CATEGORIES)
    ]


def _extreme_points(mask: np.ndarray) -> list[tuple[int, int]]:
    """(row, column) in the tight crop `mask` of its top, right, bottom and left extreme pixels: the
    middle one of the run of mask pixels on the first row, last column, last row, first column."""
    h, w = mask.shape
    top, bottom = np.flatnonzero(mask[0]), np.flatnonzero(mask[h - 1])
    left, right = np.flatnonzero(mask[:, 0]), np.flatnonzero(mask[:, w - 1])
    return [
        (0, int(top[top.size // 2])),
        (int(right[right.size // 2]), w - 1),
        (h - 1, int(bottom[bottom.size // 2])),
        (int(left[left.size // 2]), 0),
    ]


def _keypoints(mask: np.ndarray, y0: int, x0: int, owner: np.ndarray, index: int) -> tuple[float, ...]:
    """COCO triplets of an object drawn with its crop's corner at (y0, x0), `owner` the final map of
    which object each pixel shows."""
    height, width = owner.shape
    out: list[float] = []
    for r, c in _extreme_points(mask):
        y, x = y0 + r, x0 + c
        if 0 <= y < height and 0 <= x < width:
            out += [x + 0.5, y + 0.5, 2.0 if owner[y, x] == index else 1.0]
        else:
            out += [0.0, 0.0, 0.0]
    return tuple(out)


# --------------------------------------------------------------------------- drawing


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32) * 255.0


def _polygon(kind: str, rng: np.random.Generator) -> np.ndarray:
    """Vertices in unit coordinates (inside the unit disc) of a polygon class."""
    if kind == "square":
        return np.array([[-0.72, -0.72], [0.72, -0.72], [0.72, 0.72], [-0.72, 0.72]])
    if kind == "triangle":
        a = np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        return np.stack([np.cos(a), np.sin(a)], 1)
    if kind == "star":
        inner = rng.uniform(0.38, 0.5)
        a = np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, inner)
        return np.stack([r * np.cos(a), r * np.sin(a)], 1)
    if kind == "cross":
        t = rng.uniform(0.22, 0.34)
        c = 0.95
        return np.array(
            [[-t, -c], [t, -c], [t, -t], [c, -t], [c, t], [t, t], [t, c], [-t, c], [-t, t], [-c, t], [-c, -t], [-t, -t]]
        )
    if kind == "arrow":
        t, h = rng.uniform(0.16, 0.26), rng.uniform(0.5, 0.65)
        return np.array([[-0.95, -t], [0.1, -t], [0.1, -h], [0.95, 0.0], [0.1, h], [0.1, t], [-0.95, t]])
    raise ValueError(kind)


def _shape_mask(kind: str, size: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of one object, about `size` pixels across, tightly cropped."""
    from PIL import Image, ImageDraw

    r = size / 2.0
    sx, sy = np.exp(rng.uniform(-0.22, 0.22, 2))  # mild squash
    theta = rng.uniform(0, 2 * np.pi)
    c, s = math.cos(theta), math.sin(theta)
    n = int(math.ceil(2 * r * max(sx, sy))) + 3
    half = n / 2.0
    if kind in ("circle", "ring", "crescent"):
        yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) + 0.5 - half
        u = (c * xx + s * yy) / (r * sx)
        v = (-s * xx + c * yy) / (r * sy)
        d2 = u * u + v * v
        mask = d2 <= 1.0
        if kind == "ring":
            inner = rng.uniform(0.45, 0.65)
            mask &= d2 >= inner * inner
        elif kind == "crescent":
            off, rad = rng.uniform(0.35, 0.55), rng.uniform(0.75, 0.9)
            mask &= (u - off) ** 2 + v * v > rad * rad
    else:
        p = _polygon(kind, rng) * np.array([r * sx, r * sy])
        x = c * p[:, 0] - s * p[:, 1] + half
        y = s * p[:, 0] + c * p[:, 1] + half
        img = Image.new("L", (n, n), 0)
        ImageDraw.Draw(img).polygon(list(zip(x.tolist(), y.tolist())), fill=255)
        mask = np.asarray(img) > 127
    ys, xs = np.nonzero(mask)
    if ys.size == 0:  # degenerate (cannot happen for sizes >= 12, kept for safety)
        mask = np.ones((1, 1), bool)
        return mask
    return mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def _texture(h: int, w: int, c1: np.ndarray, c2: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An (h, w, 3) float32 fill: solid, stripes, checks, gradient or grain."""
    kind = rng.integers(0, 5)
    if kind == 0:
        return np.broadcast_to(c1, (h, w, 3)).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind in (1, 2):
        period = rng.uniform(3.0, 9.0)
        if kind == 1:
            a = rng.uniform(0, np.pi)
            t = (np.cos(a) * xx + np.sin(a) * yy) / period
            sel = np.floor(t) % 2 == 0
        else:
            sel = (np.floor(xx / period) + np.floor(yy / period)) % 2 == 0
        return np.where(sel[..., None], c1, c2).astype(np.float32)
    if kind == 3:
        a = rng.uniform(0, 2 * np.pi)
        t = np.cos(a) * xx + np.sin(a) * yy
        t = (t - t.min()) / max(float(np.ptp(t)), 1.0)
        return (c1 * (1 - t[..., None]) + c2 * t[..., None]).astype(np.float32)
    noise = rng.normal(0.0, rng.uniform(12, 30), (h, w, 1)).astype(np.float32)
    return c1 + noise


def _background(h: int, w: int, rng: np.random.Generator, photos: tuple[str, ...]) -> np.ndarray:
    from PIL import Image, ImageDraw

    if photos and rng.random() < PHOTO_PROB:
        path = photos[int(rng.integers(0, len(photos)))]
        photo = _load_photo(path)
        ph, pw = photo.shape[:2]
        scale = rng.uniform(0.5, 1.0)
        ch, cw = max(8, int(ph * scale)), max(8, int(pw * scale))
        ch, cw = min(ch, ph), min(cw, pw)
        y0, x0 = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
        crop = Image.fromarray(photo[y0 : y0 + ch, x0 : x0 + cw]).resize((w, h), Image.BILINEAR)
        bg = np.asarray(crop).astype(np.float32)
    else:
        g = int(rng.integers(2, 7))
        grid = rng.uniform(0, 255, (g, g, 3)).astype(np.uint8)
        bg = np.asarray(Image.fromarray(grid).resize((w, h), Image.BICUBIC)).astype(np.float32)
        # clutter: strokes that are no object class
        img = Image.fromarray(bg.clip(0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(0, 9))):
            pts = rng.uniform(0, 1, (int(rng.integers(2, 5)), 2)) * np.array([w, h])
            col = tuple(int(v) for v in rng.integers(0, 256, 3))
            draw.line([tuple(p) for p in pts.tolist()], fill=col, width=int(rng.integers(1, 4)))
        bg = np.asarray(img).astype(np.float32)
    grain = rng.uniform(2, 10)
    return bg + rng.normal(0.0, grain, (h, w, 1)).astype(np.float32)


@lru_cache(maxsize=64)
def _load_photo(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def render(
    seed: int, height: int = 320, width: int = 320, photos: tuple[str, ...] = ()
) -> tuple[np.ndarray, list[Annotation]]:
    """One scene: uint8 (H, W, 3) RGB image and the annotations of its visible objects."""
    scene = render_scene(seed, height, width, photos)
    return scene.image, scene.annotations


def render_scene(seed: int, height: int = 320, width: int = 320, photos: tuple[str, ...] = ()) -> Scene:
    """One scene with everything known about it (`render` keeps the image and annotations)."""
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    img = _background(height, width, rng, photos)
    owner = np.full((height, width), -1, np.int32)
    objects = []  # (category_id, full pixel count, region it was drawn into, full mask, its corner)
    max_size = max(MIN_SIZE + 1.0, MAX_FRACTION * min(height, width))
    for i in range(int(rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1))):
        k = int(rng.integers(0, len(CATEGORIES)))
        size = math.exp(rng.uniform(math.log(MIN_SIZE), math.log(max_size)))
        mask = _shape_mask(CATEGORIES[k], size, rng)
        mh, mw = mask.shape
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        y0, x0 = int(round(cy - mh / 2)), int(round(cx - mw / 2))
        # clip the object's crop to the image
        sy0, sx0 = max(0, -y0), max(0, -x0)
        sy1, sx1 = min(mh, height - y0), min(mw, width - x0)
        hue = k / len(CATEGORIES) + rng.uniform(-0.04, 0.04) if rng.random() < CLASS_HUE_PROB else rng.random()
        c1 = _hsv(hue, rng.uniform(0.55, 1.0), rng.uniform(0.45, 1.0))
        c2 = _hsv(hue + rng.uniform(-0.08, 0.08), rng.uniform(0.2, 1.0), rng.uniform(0.15, 1.0))
        tex = _texture(mh, mw, c1, c2, rng)
        region = (slice(y0 + sy0, y0 + max(sy0, sy1)), slice(x0 + sx0, x0 + max(sx0, sx1)))
        objects.append((k + 1, int(mask.sum()), region, mask, (y0, x0)))
        if sy1 <= sy0 or sx1 <= sx0:
            continue
        m = mask[sy0:sy1, sx0:sx1]
        img[region][m] = tex[sy0:sy1, sx0:sx1][m]
        owner[region][m] = i
    anns = []
    ids = owner.ravel()
    counts = np.bincount(ids[ids >= 0], minlength=len(objects))
    labelled = np.zeros(len(objects) + 1, bool)  # index -1 (no object) stays False
    for i, (cat, full, region, mask, (y0, x0)) in enumerate(objects):
        vis = int(counts[i])
        if vis == 0 or vis < MIN_VISIBLE * full:
            continue
        ys, xs = np.nonzero(owner[region] == i)
        x, y = int(xs.min()) + region[1].start, int(ys.min()) + region[0].start
        w, h = int(xs.max()) + region[1].start - x + 1, int(ys.max()) + region[0].start - y + 1
        if w < MIN_BOX or h < MIN_BOX:
            continue
        labelled[i] = True
        keypoints = _keypoints(mask, y0, x0, owner, i)
        anns.append(Annotation(cat, (x, y, w, h), vis, vis / full, _rle(owner == i), keypoints))
    unlabeled = (owner >= 0) & ~labelled[owner]
    return Scene(np.clip(np.rint(img), 0, 255).astype(np.uint8), anns, unlabeled)


def _rle(mask: np.ndarray) -> dict:
    """A boolean image-sized mask as COCO compressed RLE (pycocotools), counts as text for json."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


# --------------------------------------------------------------------------- dataset


def list_photos(backgrounds: str | os.PathLike | None) -> tuple[str, ...]:
    if is_none(backgrounds):
        return ()
    folder = Path(str(backgrounds)).expanduser()
    if not folder.is_dir():
        raise DatasetError(
            f"dataset.backgrounds={backgrounds}: no such folder ({folder.resolve()}); point it at a folder "
            f"of photographs (jpg/png), e.g. tests/data/coco-mini/val2017 of the repository, or set it to null"
        )
    photos = tuple(sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")))
    if not photos:
        raise DatasetError(f"dataset.backgrounds={backgrounds}: the folder holds no .jpg/.png images")
    return photos


def default_cache_dir() -> Path:
    return cache_root("synthetic")


def _scene_key(height: int, width: int, photos: tuple[str, ...]) -> str:
    h = hashlib.sha1(f"v{GENERATOR_VERSION}|{height}x{width}|".encode())
    for p in photos:  # names and sizes: a changed folder gives a new cache
        h.update(f"{Path(p).name}:{os.path.getsize(p)}|".encode())
    return h.hexdigest()[:12]


def png_bytes(image: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def coco_annotations(
    records: list[tuple[int, str, list[Annotation]] | tuple[int, str, list[Annotation], np.ndarray]],
    height: int,
    width: int,
) -> dict:
    """The COCO json of scenes given as (seed, file name, annotations[, unlabeled pixels]): an image
    with unlabeled pixels lists them as RLE under its `unlabeled` key (absent: none)."""
    images, anns = [], []
    for seed, file_name, objs, *rest in records:
        image = {"id": seed, "file_name": file_name, "height": height, "width": width}
        if rest and rest[0] is not None and rest[0].any():
            image["unlabeled"] = _rle(rest[0])
        images.append(image)
        for a in objs:
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": seed,
                    "category_id": a.category_id,
                    "bbox": list(a.bbox),
                    "area": a.area,
                    "iscrowd": 0,
                    "visible": round(a.visible, 4),
                    **({"segmentation": a.segmentation} if a.segmentation is not None else {}),
                    **(
                        {"keypoints": list(a.keypoints), "num_keypoints": sum(v > 0 for v in a.keypoints[2::3])}
                        if a.keypoints is not None
                        else {}
                    ),
                }
            )
    return {
        "info": {"description": "vcmbench synthetic scenes", "version": GENERATOR_VERSION},
        "images": images,
        "annotations": anns,
        "categories": categories(),
    }


class SyntheticScenes(Dataset):
    metric = "coco"


@shardable
def build(
    name: str = "synthetic",
    seed_start: int = VAL_SEED_START,
    count: int = 50,
    height: int = 320,
    width: int = 320,
    cache_dir: str | None = None,
    backgrounds: str | None = None,
    max_images: int | None = None,
) -> Dataset:
    """Hydra target (`dataset=synthetic_val`): scenes ``seed_start .. seed_start+count-1``.

    Images go to ``<cache_dir>/<key>/<seed>.png`` (key: generator version, size and
    background folder) and are drawn only when missing, so sets that share seeds share
    files; the annotation file is ``instances_<seed_start>_<count>_a<ANNOTATION_VERSION>.json``
    beside them, with each object's box, visible area, visible mask (RLE) and keypoints, and each
    image's unlabeled pixels (RLE).
    ``cache_dir`` defaults to ``$VCMBENCH_CACHE/synthetic`` or ``~/.cache/vcmbench/synthetic``.
    """
    count, height, width, seed_start = int(count), int(height), int(width), int(seed_start)
    if count < 1:
        raise DatasetError(f"dataset.count={count}: must be >= 1")
    if min(height, width) < 2 * MIN_SIZE + 8:
        raise DatasetError(f"dataset.height/width={height}x{width}: scenes need at least {2 * MIN_SIZE + 8} px a side")
    if seed_start < 0:
        raise DatasetError(f"dataset.seed_start={seed_start}: must be >= 0")
    photos = list_photos(backgrounds)
    root = default_cache_dir() if is_none(cache_dir) else Path(cache_dir).expanduser()
    folder = root / _scene_key(height, width, photos)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(
            f"dataset.cache_dir={root}: cannot create {folder} ({exc}); choose a writable folder"
        ) from exc
    ann_file = folder / f"instances_{seed_start}_{count}_a{ANNOTATION_VERSION}.json"
    seeds = range(seed_start, seed_start + count)
    if not ann_file.is_file() or any(not (folder / f"{s:08d}.png").is_file() for s in seeds):
        recs = []
        for s in seeds:
            scene = render_scene(s, height, width, photos)
            path = folder / f"{s:08d}.png"
            if not path.is_file():
                write_bytes(path, png_bytes(scene.image))
            recs.append((s, path.name, scene.annotations, scene.unlabeled))
        data = coco_annotations(recs, height, width)
        write_bytes(ann_file, json.dumps(data).encode())
    records = [ImageRecord(s, f"{s:08d}.png", height, width) for s in seeds]
    if max_images is not None:
        if int(max_images) < 1:
            raise DatasetError(f"dataset.max_images={max_images}: must be >= 1 or null")
        records = records[: int(max_images)]
    return SyntheticScenes(name, ann_file, folder, records)

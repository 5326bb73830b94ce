"""Synthetic videos: moving synthetic-scene objects over a (panning) background, with track ids.

The offline default video set (`dataset=synthetic_video`). A sequence is a pure function of
(seed, its index in the list, its spec, frame size, background folder, generator version):
the same settings give the same pixels and, written as PNG here, the same bytes.

Each frame looks like a scene of `vcmbench.datasets.synthetic` (the detector ci_frcnn is trained
on those): the same shape classes, sizes, textures and colours, drawn with the same helpers, over
the same kinds of background. What a video adds:

* every object is drawn once (mask, texture, colours) and keeps that look in every frame;
* it moves at its own constant velocity (``speed`` px/frame, log-uniform, so some are slow and
  some fast; 0.5..4 by default) in world coordinates; some start outside the frame and enter,
  some leave, the rest cross it;
* objects are drawn in a fixed depth order, so they occlude each other as they pass;
* with ``pan: [dx, dy]`` the camera pans: the background is larger than the frame and the view
  window moves by ``pan`` pixels per frame (rounded to whole pixels), so a static background
  point moves by ``-pan`` in the frame.

Annotations follow synthetic.py: bbox = the visible extent, area = the visible pixel count, and
an object is annotated in a frame only if at least ``MIN_VISIBLE`` of it is visible and its box
is at least ``MIN_BOX`` pixels wide and high; ``track_id`` is the object's id (1, 2, ... in depth
order, unique within its sequence). The json's top-level ``tracks`` lists every object's class
and world velocity.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vcmbench.atomic import write_bytes
from vcmbench.datasets.cache import cache_root, plain
from vcmbench.datasets.sequences import SequenceDataset, sequences_from_coco
from vcmbench.datasets.shards import shardable
from vcmbench.datasets.synthetic import (
    CATEGORIES,
    CLASS_HUE_PROB,
    GENERATOR_VERSION,
    MAX_FRACTION,
    MIN_BOX,
    MIN_SIZE,
    MIN_VISIBLE,
    _background,
    _hsv,
    _shape_mask,
    _texture,
    categories,
    list_photos,
    png_bytes,
)
from vcmbench.errors import ConfigError, DatasetError
from vcmbench.paths import is_none

VIDEO_GENERATOR_VERSION = 1
"""Bump when the motion or compositing changes: it is part of the cache key (with synthetic.py's)."""

FRAME_ID_STRIDE = 100_000
"""Frame ``t`` of sequence ``i`` (0-based) has image id ``(i + 1) * FRAME_ID_STRIDE + t``."""

DEFAULT_OBJECTS = (6, 10)
DEFAULT_SPEED = (0.5, 4.0)
DEFAULT_FPS = 30.0
ENTER_PROB = 0.25  # fraction of objects that start outside the frame and enter
LEAVE_PROB = 0.25  # ... that leave it; the rest are inside the frame mid-sequence
SPEC_KEYS = ("name", "class", "frames", "fps", "objects", "pan", "speed")


@dataclass(frozen=True)
class SequenceSpec:
    """A validated sequence spec (see `build`)."""

    name: str
    seq_class: str
    frames: int
    fps: float
    objects: tuple[int, int]
    pan: tuple[float, float]
    speed: tuple[float, float]

    def pixel_key(self) -> dict:
        """What determines the sequence's pixels (name, class and fps do not)."""
        return {"frames": self.frames, "objects": list(self.objects), "pan": list(self.pan), "speed": list(self.speed)}


@dataclass(frozen=True)
class MovingObject:
    track_id: int
    category_id: int
    mask: np.ndarray  # (mh, mw) bool, the object's full shape
    texture: np.ndarray  # (mh, mw, 3) float32 fill
    start: tuple[float, float]  # world (x, y) of the mask centre at frame 0
    velocity: tuple[float, float]  # world (vx, vy) in pixels per frame


@dataclass(frozen=True)
class FrameAnnotation:
    track_id: int
    category_id: int
    bbox: tuple[int, int, int, int]  # x, y, w, h of the visible pixels
    area: int
    visible: float


# --------------------------------------------------------------------------- specs


def _where(i: int, key: str | None = None) -> str:
    return f"dataset.sequences[{i}]" + (f".{key}" if key else "")


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        return None
    return float(value)


def _integer(value: object) -> int | None:
    v = _number(value)
    return int(v) if v is not None and v == int(v) else None


def _pair(value: object) -> tuple[object, object] | None:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        return None
    return value[0], value[1]


def parse_sequences(sequences: object) -> list[SequenceSpec]:
    """Validate the `sequences` setting; every error names ``dataset.sequences[i].KEY`` and the fix."""
    sequences = plain(sequences)
    if isinstance(sequences, (str, bytes, Mapping)) or not isinstance(sequences, Sequence) or not sequences:
        raise ConfigError(
            f"dataset.sequences={sequences!r}: give a non-empty list of sequence specs, e.g. "
            "[{name: walk, class: A, frames: 16, fps: 30, objects: [4, 8], pan: [0, 0]}]"
        )
    specs: list[SequenceSpec] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(sequences):
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{_where(i)}={raw!r}: a sequence spec is a mapping with keys {list(SPEC_KEYS)}")
        unknown = [k for k in raw if k not in SPEC_KEYS]
        if unknown:
            raise ConfigError(
                f"{_where(i, str(unknown[0]))}={raw[unknown[0]]!r}: not a sequence setting; "
                f"the settings are {list(SPEC_KEYS)}"
            )
        name = raw.get("name")
        if is_none(name) or not isinstance(name, (str, int)) or isinstance(name, bool):
            raise ConfigError(
                f"{_where(i, 'name')}={name!r}: every sequence needs a name (a non-empty string), e.g. name: walk"
            )
        name = str(name).strip()
        if name in seen:
            raise ConfigError(
                f"{_where(i, 'name')}={name!r}: the same name as dataset.sequences[{seen[name]}]; "
                "give every sequence its own name"
            )
        seen[name] = i
        seq_class = raw.get("class", "all")
        if is_none(seq_class) or isinstance(seq_class, bool) or not isinstance(seq_class, (str, int)):
            raise ConfigError(
                f"{_where(i, 'class')}={seq_class!r}: give the class the sequence is reported "
                "under as a string, e.g. class: A, or leave it out ('all')"
            )
        if "frames" not in raw:
            raise ConfigError(f"{_where(i, 'frames')}: missing; give the sequence's frame count, e.g. frames: 16")
        frames = _integer(raw["frames"])
        if frames is None or not 1 <= frames < FRAME_ID_STRIDE:
            raise ConfigError(
                f"{_where(i, 'frames')}={raw['frames']!r}: must be a whole number from 1 to "
                f"{FRAME_ID_STRIDE - 1}, e.g. frames: 16"
            )
        fps = _number(raw.get("fps", DEFAULT_FPS))
        if fps is None or fps <= 0:
            raise ConfigError(f"{_where(i, 'fps')}={raw.get('fps')!r}: must be a positive frame rate, e.g. fps: 30")
        objects = raw.get("objects", list(DEFAULT_OBJECTS))
        pair = _pair(objects)
        lo, hi = (_integer(pair[0]), _integer(pair[1])) if pair else (_integer(objects),) * 2
        if lo is None or hi is None or lo < 0 or hi < lo:
            raise ConfigError(
                f"{_where(i, 'objects')}={objects!r}: give an object count (>= 0) or an inclusive "
                "range [min, max] with 0 <= min <= max, e.g. objects: [4, 8]"
            )
        pan = raw.get("pan", [0, 0])
        pair = _pair(pan)
        dx, dy = (_number(pair[0]), _number(pair[1])) if pair else (None, None)
        if dx is None or dy is None:
            raise ConfigError(
                f"{_where(i, 'pan')}={pan!r}: give the camera pan as [dx, dy] pixels per frame, "
                "e.g. pan: [2, 1], or [0, 0] for a still camera"
            )
        speed = raw.get("speed", list(DEFAULT_SPEED))
        pair = _pair(speed)
        s0, s1 = (_number(pair[0]), _number(pair[1])) if pair else (None, None)
        if s0 is None or s1 is None or s0 <= 0 or s1 < s0:
            raise ConfigError(
                f"{_where(i, 'speed')}={speed!r}: give the objects' speed range as [min, max] "
                f"pixels per frame with 0 < min <= max, e.g. speed: {list(DEFAULT_SPEED)}"
            )
        specs.append(SequenceSpec(name, str(seq_class), frames, fps, (lo, hi), (dx, dy), (s0, s1)))
    return specs


# --------------------------------------------------------------------------- drawing


def _view_offsets(spec: SequenceSpec) -> np.ndarray:
    """(frames, 2) integer world (x, y) of the view's top-left corner in each frame."""
    t = np.arange(spec.frames, dtype=np.float64)
    off = np.rint(np.stack([spec.pan[0] * t, spec.pan[1] * t], 1)).astype(np.int64)
    return off - off.min(0)


def _border_hit(p: np.ndarray, d: np.ndarray, width: int, height: int) -> np.ndarray:
    """Where the ray p + s*d (s >= 0) from a point p inside [0, width] x [0, height] leaves it."""
    s = math.inf
    for k, size in ((0, width), (1, height)):
        if d[k] > 1e-9:
            s = min(s, (size - p[k]) / d[k])
        elif d[k] < -1e-9:
            s = min(s, -p[k] / d[k])
    return p + s * d


class SequencePlan:
    """The world of one sequence: background, objects and their motion; `frame(t)` draws frame t."""

    def __init__(
        self, seed: int, index: int, spec: SequenceSpec, height: int, width: int, photos: tuple[str, ...] = ()
    ):
        self.spec, self.height, self.width = spec, height, width
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(index)])))
        self.offsets = _view_offsets(spec)
        world_w = width + int(self.offsets[:, 0].max())
        world_h = height + int(self.offsets[:, 1].max())
        self.background = _background(world_h, world_w, rng, photos)
        pan = np.array(spec.pan, dtype=np.float64)
        last = max(spec.frames - 1, 0)
        max_size = max(MIN_SIZE + 1.0, MAX_FRACTION * min(height, width))
        lo, hi = spec.objects
        self.objects: list[MovingObject] = []
        for i in range(int(rng.integers(lo, hi + 1))):
            # the object's look: as synthetic.render draws a scene's objects
            k = int(rng.integers(0, len(CATEGORIES)))
            size = math.exp(rng.uniform(math.log(MIN_SIZE), math.log(max_size)))
            mask = _shape_mask(CATEGORIES[k], size, rng)
            mh, mw = mask.shape
            hue = k / len(CATEGORIES) + rng.uniform(-0.04, 0.04) if rng.random() < CLASS_HUE_PROB else rng.random()
            c1 = _hsv(hue, rng.uniform(0.55, 1.0), rng.uniform(0.45, 1.0))
            c2 = _hsv(hue + rng.uniform(-0.08, 0.08), rng.uniform(0.2, 1.0), rng.uniform(0.15, 1.0))
            tex = _texture(mh, mw, c1, c2, rng)
            # its motion: constant world velocity; where it is when is set in view coordinates
            s0, s1 = spec.speed
            speed = math.exp(rng.uniform(math.log(s0), math.log(s1))) if s1 > s0 else s0
            angle = rng.uniform(0, 2 * np.pi)
            vel = np.array([speed * math.cos(angle), speed * math.sin(angle)])
            rel = vel - pan  # velocity in the frame
            role = rng.random()
            inside = rng.uniform(0, 1, 2) * np.array([width, height])
            moving = float(np.hypot(*rel)) > 1e-6 and last > 0
            if moving and role < ENTER_PROB + LEAVE_PROB:
                # the centre crosses the frame's border at t_c: from outside (enter) or to outside (leave)
                t_c = rng.uniform(0.3, 0.7) * last
                d = -rel if role < ENTER_PROB else rel
                at = _border_hit(inside, d / np.hypot(*d), width, height)
            else:
                t_c, at = 0.5 * last, inside
            start_view = at - rel * t_c  # frame-0 view coordinates of the centre
            start = start_view + self.offsets[0]
            self.objects.append(
                MovingObject(
                    i + 1, k + 1, mask, tex, (float(start[0]), float(start[1])), (float(vel[0]), float(vel[1]))
                )
            )

    def frame(self, t: int) -> tuple[np.ndarray, list[FrameAnnotation]]:
        """Frame t: uint8 (H, W, 3) RGB and the annotations of its visible objects."""
        h, w = self.height, self.width
        ox, oy = (int(v) for v in self.offsets[t])
        img = self.background[oy : oy + h, ox : ox + w].copy()
        owner = np.full((h, w), -1, np.int32)
        placed = []
        for i, ob in enumerate(self.objects):
            mh, mw = ob.mask.shape
            cx = ob.start[0] + ob.velocity[0] * t - ox
            cy = ob.start[1] + ob.velocity[1] * t - oy
            y0, x0 = int(round(cy - mh / 2)), int(round(cx - mw / 2))
            sy0, sx0 = max(0, -y0), max(0, -x0)
            sy1, sx1 = min(mh, h - y0), min(mw, w - x0)
            if sy1 <= sy0 or sx1 <= sx0:
                placed.append(None)
                continue
            region = (slice(y0 + sy0, y0 + sy1), slice(x0 + sx0, x0 + sx1))
            placed.append(region)
            m = ob.mask[sy0:sy1, sx0:sx1]
            img[region][m] = ob.texture[sy0:sy1, sx0:sx1][m]
            owner[region][m] = i
        ids = owner.ravel()
        counts = np.bincount(ids[ids >= 0], minlength=len(self.objects))
        anns = []
        for i, (ob, region) in enumerate(zip(self.objects, placed)):
            full, vis = int(ob.mask.sum()), int(counts[i])
            if region is None or vis == 0 or vis < MIN_VISIBLE * full:
                continue
            ys, xs = np.nonzero(owner[region] == i)
            x, y = int(xs.min()) + region[1].start, int(ys.min()) + region[0].start
            bw, bh = int(xs.max()) + region[1].start - x + 1, int(ys.max()) + region[0].start - y + 1
            if bw < MIN_BOX or bh < MIN_BOX:
                continue
            anns.append(FrameAnnotation(ob.track_id, ob.category_id, (x, y, bw, bh), vis, vis / full))
        return np.clip(np.rint(img), 0, 255).astype(np.uint8), anns


# --------------------------------------------------------------------------- dataset


def default_cache_dir() -> Path:
    return cache_root("synthetic_video")


def _pixel_key(seed: int, specs: list[SequenceSpec], height: int, width: int, photos: tuple[str, ...]) -> str:
    h = hashlib.sha1(f"video v{VIDEO_GENERATOR_VERSION}|scenes v{GENERATOR_VERSION}|{height}x{width}|{seed}|".encode())
    h.update(json.dumps([s.pixel_key() for s in specs], sort_keys=True).encode())
    for p in photos:  # names and sizes: a changed folder gives a new cache
        h.update(f"|{Path(p).name}:{os.path.getsize(p)}".encode())
    return h.hexdigest()[:12]


def _meta_key(specs: list[SequenceSpec], max_frames: int | None) -> str:
    meta = [[s.name, s.seq_class, s.fps] for s in specs]
    return hashlib.sha1(json.dumps([meta, max_frames]).encode()).hexdigest()[:10]


def frame_file(index: int, t: int) -> str:
    return f"{index + 1:03d}/{t:05d}.png"


class SyntheticVideo(SequenceDataset):
    metric = "coco"


@shardable
def build(
    name: str = "synthetic_video",
    seed: int = 2_000_000,
    sequences: object = None,
    height: int = 256,
    width: int = 256,
    cache_dir: str | None = None,
    backgrounds: str | None = None,
    max_frames: int | None = None,
) -> SequenceDataset:
    """Hydra target (`dataset=synthetic_video`): one synthetic video per spec of `sequences`.

    A spec is ``{name, class, frames, fps, objects, pan, speed}``: ``name`` (required, unique),
    ``class`` (the class it is reported under; default 'all'), ``frames`` (required, >= 1),
    ``fps`` (> 0; default 30), ``objects`` (a count or an inclusive [min, max]; default
    [6, 10]), ``pan`` ([dx, dy] camera pan in pixels per frame; default [0, 0]) and ``speed``
    ([min, max] object speed in pixels per frame; default [0.5, 4]).

    Frames go to ``<cache_dir>/<key>/<sequence id>/<frame index>.png`` (key: generator versions, size,
    seed, the specs' pixel settings and the background folder), drawn only when missing; the
    annotation file ``instances_<names/fps/max_frames key>.json`` lies beside them. ``max_frames``
    keeps each sequence's first N frames (the same pixels as the full sequence's).
    ``cache_dir`` defaults to ``$VCMBENCH_CACHE/synthetic_video`` or ``~/.cache/vcmbench/synthetic_video``.
    """
    specs = parse_sequences(sequences)
    try:
        height, width, seed = int(height), int(width), int(seed)
    except (TypeError, ValueError):
        raise ConfigError(f"dataset.height/width/seed={height}/{width}/{seed}: must be whole numbers") from None
    if min(height, width) < 2 * MIN_SIZE + 8:
        raise ConfigError(f"dataset.height/width={height}x{width}: frames need at least {2 * MIN_SIZE + 8} px a side")
    if seed < 0:
        raise ConfigError(f"dataset.seed={seed}: must be >= 0")
    if is_none(max_frames):
        max_frames = None
    else:
        mf = _integer(max_frames) if not isinstance(max_frames, str) else None
        if mf is None or mf < 1:
            raise ConfigError(f"dataset.max_frames={max_frames!r}: must be a whole number >= 1, or null for all frames")
        max_frames = mf
    photos = list_photos(backgrounds)
    root = default_cache_dir() if is_none(cache_dir) else Path(str(cache_dir)).expanduser()
    folder = root / _pixel_key(seed, specs, height, width, photos)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(
            f"dataset.cache_dir={root}: cannot create {folder} ({exc}); choose a writable folder"
        ) from exc
    ann_file = folder / f"instances_{_meta_key(specs, max_frames)}.json"
    kept = [min(s.frames, max_frames) if max_frames else s.frames for s in specs]
    files = [folder / frame_file(i, t) for i, n in enumerate(kept) for t in range(n)]
    if not ann_file.is_file() or not all(f.is_file() for f in files):
        write_bytes(ann_file, json.dumps(_render_all(seed, specs, kept, height, width, photos, folder)).encode())
    try:
        coco = json.loads(ann_file.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{ann_file}: unreadable ({exc}); delete it and build again") from exc
    return SyntheticVideo(name, ann_file, folder, sequences_from_coco(coco, ann_file), tracking=True)


def _render_all(
    seed: int,
    specs: list[SequenceSpec],
    kept: list[int],
    height: int,
    width: int,
    photos: tuple[str, ...],
    folder: Path,
) -> dict:
    seqs, images, anns, tracks = [], [], [], []
    for i, (spec, n) in enumerate(zip(specs, kept)):
        sid = i + 1
        plan = SequencePlan(seed, i, spec, height, width, photos)
        seqs.append(
            {"id": sid, "name": spec.name, "class": spec.seq_class, "fps": spec.fps, "frames": n, "pan": list(spec.pan)}
        )
        tracks += [
            {
                "sequence_id": sid,
                "track_id": ob.track_id,
                "category_id": ob.category_id,
                "velocity": [round(v, 6) for v in ob.velocity],
            }
            for ob in plan.objects
        ]
        (folder / f"{sid:03d}").mkdir(exist_ok=True)
        for t in range(n):
            image_id = sid * FRAME_ID_STRIDE + t
            image, objs = plan.frame(t)
            path = folder / frame_file(i, t)
            if not path.is_file():
                write_bytes(path, png_bytes(image))
            images.append(
                {
                    "id": image_id,
                    "file_name": frame_file(i, t),
                    "height": height,
                    "width": width,
                    "sequence_id": sid,
                    "frame_index": t,
                }
            )
            for a in objs:
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": image_id,
                        "category_id": a.category_id,
                        "bbox": list(a.bbox),
                        "area": a.area,
                        "iscrowd": 0,
                        "track_id": a.track_id,
                        "visible": round(a.visible, 4),
                    }
                )
    return {
        "info": {
            "description": "vcmbench synthetic videos",
            "version": VIDEO_GENERATOR_VERSION,
            "scene_version": GENERATOR_VERSION,
            "seed": seed,
        },
        "sequences": seqs,
        "images": images,
        "annotations": anns,
        "categories": categories(keypoints=False),
        "tracks": tracks,
    }

"""Features of a front on an image set, extracted once and cached on disk for codec training.

Training a feature codec needs p2..p5 of thousands of images many times over; running the
front each time would cost more than the codec itself. `feature_set(model_cfg,
dataset_cfg)` runs the front once per image and stores its levels as float16 tensors:

    <cache>/<model name>-<dataset name>-<key>/<image_id>.pt   {"p2".."p5": fp16 (C,H,W), "pixels": int}
    <cache>/<model name>-<dataset name>-<key>/index.json     image ids, pixels, level shapes, statistics

`key` hashes the model's front settings (not those that only shape the back: RPN, ROI
heads, thresholds), the dataset config, the front's weight file (sha256) and this module's
version, so a retrained detector or another image set never reuses stale
features. The cache root is `cache_dir`, else `$VCMBENCH_CACHE/features`, else
`~/.cache/vcmbench/features`. An interrupted extraction resumes where it stopped (each
image is written atomically; the index is written last).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from vcmbench.atomic import torch_save
from vcmbench.errors import DatasetError
from vcmbench.paths import file_sha256, is_none, resolve_data_path
from vcmbench.types import LEVELS

CACHE_VERSION = 1


def default_cache_root() -> Path:
    root = os.environ.get("VCMBENCH_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "vcmbench") / "features"


def front_fingerprint(model_cfg: DictConfig) -> dict:
    """Name, weights path and sha256 of a front's weights ('random-seed-<n>' without a file)."""
    name = str(model_cfg.get("name", "model"))
    weights = model_cfg.get("weights")
    seed = model_cfg.get("seed", 0)
    if is_none(weights):
        return {"name": name, "weights": "none", "sha256": f"random-seed-{seed}"}
    path = _resolve(str(weights))
    if path is None:  # e.g. 'coco' (torchvision download) or a missing file: the name stands in
        return {"name": name, "weights": str(weights), "sha256": f"unresolved:{weights}"}
    return {"name": name, "weights": str(weights), "sha256": file_sha256(path)}


#: the state-dict prefix of the front of every split network here (torchvision's and detectron2's
#: GeneralizedRCNN, ci_frcnn): the backbone with its FPN
FRONT_PREFIX = "backbone."


def front_digest(model_cfg: DictConfig) -> str | None:
    """A digest of the front's weights alone (the `backbone.*` tensors of the weights file), or
    None where the file cannot be read as a state dict. Two networks whose heads differ but whose
    fronts are the same tensors (ci_maskrcnn: ci_frcnn's front, frozen, with a mask head) give the
    same digest: their features are the same, so a codec trained on one fits the other."""
    weights = model_cfg.get("weights")
    if is_none(weights):
        return f"random-seed-{model_cfg.get('seed', 0)}"
    path = _resolve(str(weights))
    return None if path is None else weights_front_digest(path)


def weights_front_digest(path: Path) -> str | None:
    """`front_digest` of one weights file, cached by (path, size, mtime)."""
    st = path.stat()
    return _front_digest(str(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=16)
def _front_digest(path: str, size: int, mtime_ns: int) -> str | None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not a torch state dict (a detectron2 .pkl): no digest, the file's sha256 serves
        return None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        return None
    names = sorted(
        k for k, v in state.items() if isinstance(k, str) and k.startswith(FRONT_PREFIX) and isinstance(v, torch.Tensor)
    )
    if not names:
        return None
    h = hashlib.sha256()
    for name in names:
        t = state[name].contiguous().reshape(-1)
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _resolve(weights: str) -> Path | None:
    """The weights file a config names (working directory first, then the package), or None."""
    path = resolve_data_path(weights)
    return path if path.is_file() else None


@dataclass
class FeatureSet:
    """Cached features of one (front, image set): `load(i)` gives float32 [p2, p3, p4, p5]."""

    folder: Path
    image_ids: list[int]
    pixels: list[int]
    shapes: list[list[list[int]]]
    stats: dict
    front: dict

    def __len__(self) -> int:
        return len(self.image_ids)

    def path(self, i: int) -> Path:
        return self.folder / f"{self.image_ids[i]}.pt"

    def load(self, i: int) -> list[torch.Tensor]:
        d = torch.load(self.path(i), map_location="cpu", weights_only=True)
        return [d[k].float() for k in LEVELS]


#: model settings that only shape the back (RPN, ROI heads, postprocessing): changing them
#: does not change p2..p5, so they stay out of the cache key
BACK_ONLY = (
    "name",
    "score_thresh",
    "detections_per_img",
    "anchor_",
    "aspect_",
    "rpn_",
    "box_",
    "roi_",
    "representation",
    "category_ids",
    "num_keypoints",
)


def front_settings(model_cfg: DictConfig) -> dict:
    c = OmegaConf.to_container(model_cfg, resolve=True)
    return {k: v for k, v in c.items() if not str(k).startswith(BACK_ONLY)}


def _key(model_cfg: DictConfig, dataset_cfg: DictConfig, front: dict, max_images: int | None) -> str:
    h = hashlib.sha1(f"v{CACHE_VERSION}|".encode())
    h.update(json.dumps(front_settings(model_cfg), sort_keys=True, default=str).encode())
    h.update(OmegaConf.to_yaml(dataset_cfg, resolve=True, sort_keys=True).encode())
    h.update(json.dumps(front, sort_keys=True).encode())
    h.update(f"|{max_images}".encode())
    return h.hexdigest()[:12]


def feature_set(
    model_cfg: DictConfig,
    dataset_cfg: DictConfig,
    cache_dir: str | None = None,
    max_images: int | None = None,
    progress: bool = True,
    detector=None,
) -> FeatureSet:
    """Features of `model_cfg`'s front on `dataset_cfg`'s images (first `max_images`), cached."""
    from hydra.utils import instantiate
    from tqdm import tqdm

    front = front_fingerprint(model_cfg)
    root = default_cache_root() if is_none(cache_dir) else Path(cache_dir).expanduser()
    name = f"{model_cfg.get('name', 'model')}-{dataset_cfg.get('name', 'dataset')}-{_key(model_cfg, dataset_cfg, front, max_images)}"
    folder = root / name
    index = folder / "index.json"
    if index.is_file():
        info = json.loads(index.read_text())
        fs = FeatureSet(folder, info["image_ids"], info["pixels"], info["shapes"], info["stats"], info["front"])
        if all(fs.path(i).is_file() for i in range(len(fs))):
            return fs
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(
            f"feature cache {folder}: cannot create it ({exc}); set features.cache_dir to a writable folder"
        ) from exc
    dataset = instantiate(dataset_cfg)
    records = list(dataset.records)
    if max_images is not None:
        records = records[: int(max_images)]
    if not records:
        raise DatasetError(f"dataset {dataset_cfg.get('name')}: no images to extract features from")
    ids, pixels, shapes = [], [], []
    sq = torch.zeros(len(LEVELS), dtype=torch.float64)
    cnt = torch.zeros(len(LEVELS), dtype=torch.float64)
    absmax = torch.zeros(len(LEVELS), dtype=torch.float64)
    for rec in tqdm(records, desc=f"features {name}", unit="img", disable=not progress):
        path = folder / f"{rec.image_id}.pt"
        d = None
        if path.is_file():
            try:
                d = torch.load(path, map_location="cpu", weights_only=True)
            except Exception:  # a torn file from an interrupted run: redo it
                d = None
        if d is None:
            if detector is None:
                detector = instantiate(model_cfg)
            sample = dataset.load(rec)
            feats = detector.front(sample.image).features
            d = {k: feats[k].detach().to("cpu", torch.float16).contiguous() for k in LEVELS}
            d["pixels"] = int(sample.pixels)
            torch_save(d, path)
        ids.append(int(rec.image_id))
        pixels.append(int(d["pixels"]))
        shapes.append([list(d[k].shape) for k in LEVELS])
        for j, k in enumerate(LEVELS):
            t = d[k].double()
            sq[j] += (t * t).sum()
            cnt[j] += t.numel()
            absmax[j] = max(float(absmax[j]), float(t.abs().max()))
    stats = {"rms": (sq / cnt).sqrt().tolist(), "absmax": absmax.tolist(), "images": len(ids)}
    info = {
        "version": CACHE_VERSION,
        "model": OmegaConf.to_container(model_cfg, resolve=True),
        "dataset": OmegaConf.to_container(dataset_cfg, resolve=True),
        "front": front,
        "image_ids": ids,
        "pixels": pixels,
        "shapes": shapes,
        "stats": stats,
    }
    tmp = index.with_suffix(".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(index)
    return FeatureSet(folder, ids, pixels, shapes, stats, front)

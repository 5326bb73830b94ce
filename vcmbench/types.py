"""The shared vocabulary, at the bottom of the data flow: imported by every stage, importing none.

Feature levels and tensors, the preprocessing metadata the back needs, the front's output,
task outputs (detections), the p6 rule and the features check. The cut is after the FPN
(MPEG-VCM's split point for Faster R-CNN): the front yields p2..p5 and the back rebuilds p6
from the *decoded* p5 by max-pool (kernel 1, stride 2), so p6 is never transmitted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

LEVELS: tuple[str, ...] = ("p2", "p3", "p4", "p5")
"""Transmitted FPN levels, largest first (strides 4, 8, 16, 32). A model split before its FPN
(`model.split=backbone`) sends its backbone's C2..C5 in the same four slots (same strides)."""

Features = dict[str, Tensor]
"""One image's tensors at the split: name -> float32 tensor of shape (C, H, W). An FPN's (or a
backbone's) four levels are named `LEVELS`; another split (JDE's three route tensors) names its own,
in the order its front gives them (`feature_names`)."""

MAX_FEATURE_NAME = 32
"""Longest tensor name a split may use: names of other splits travel in the payload (codecs.base)."""

TASK_COLUMNS: dict[str, tuple[str, str | None]] = {
    "box": ("map", "ap50"),
    "mask": ("map_segm", "ap50_segm"),
    "keypoints": ("map_kp", "ap50_kp"),
    "semseg": ("miou", None),
}
"""Task metric -> its points-table columns (the accuracy, and its AP50 where it has one): boxes
(detection), masks (instance segmentation), keypoints (pose estimation) or semantic segmentation
(mIoU, no AP50). Config `task_metric` picks the one a report's BD-rates and RD plots use."""


@dataclass(frozen=True)
class ImageMeta:
    """Preprocessing facts the back needs and the receiver is assumed to know.

    They are not part of the feature payload: MPEG-VCM treats the input image size
    as known at the decoder side, and everything else follows from it.
    """

    original_size: tuple[int, int]  # (height, width) of the input image, before any resize
    resized_size: tuple[int, int]  # (height, width) after the detector's resize, before padding
    padded_size: tuple[int, int]  # (height, width) of the padded batch tensor the FPN saw


@dataclass
class Detections:
    """Detections of one image in original-image pixel coordinates (x1, y1, x2, y2), with masks
    when the task network segments, keypoints when it estimates poses, a semantic map when it
    also labels every pixel and appearance embeddings when it re-identifies (a tracker's input)."""

    boxes: Tensor  # (N, 4) float32
    scores: Tensor  # (N,) float32
    labels: Tensor  # (N,) int64, in the model's own label space
    # (N, H, W) bool instance masks in original-image pixels (Mask R-CNN: its mask probabilities
    # pasted into the image and thresholded at 0.5, as its own postprocessing does); None: boxes only
    masks: Tensor | None = None
    # (N, K, 3) float32 keypoints in original-image pixels: x, y and visibility as the network returns
    # it (torchvision's Keypoint R-CNN: always 1); None: no keypoint head. New fields go last, with
    # defaults: callers build Detections positionally as (boxes, scores, labels, masks).
    keypoints: Tensor | None = None
    # (N, K) float32 per-keypoint scores (torchvision: the heatmap maximum, a logit, not a probability)
    keypoint_scores: Tensor | None = None
    # (H, W) int64 per-pixel category of the original image, in the ids the detection rows carry
    # (the model's category_ids applied: dataset category ids), 0 where no category is (background,
    # or no segment); None: the network labels no pixel. Panoptic FPN: its panoptic result
    # (detectron2's combine_semantic_and_instance_outputs: things' instance masks over the semantic
    # head's stuff), things as COCO ids 1..90 and stuff as COCO panoptic ids 92..200; ci_semseg:
    # 0 background, 1..8 the synthetic categories
    semantic: Tensor | None = None
    # (N, D) float32 appearance embeddings, one unit-length row per detection (JDE: its YOLO heads'
    # embedding branch, L2-normalised inside the network as its tracker takes them); None: no
    # embedding head
    embeddings: Tensor | None = None

    def __len__(self) -> int:
        return int(self.scores.numel())


@dataclass
class FrontOutput:
    features: Features
    meta: ImageMeta


def p6_from_p5(p5: Tensor) -> Tensor:
    """The FPN's LastLevelMaxPool, applied at the receiver to the decoded p5."""
    return F.max_pool2d(p5, kernel_size=1, stride=2, padding=0)


def feature_names(features: Features) -> tuple[str, ...]:
    """The order a split's tensors are coded in: p2..p5 for an FPN's (or a backbone's, in the same
    slots), whatever order the dict has; another split's in its front's order."""
    return LEVELS if set(features) == set(LEVELS) else tuple(features)


def is_pyramid(features: Features) -> bool:
    """Whether the tensors are the four levels p2..p5: what the learned and hybrid codecs were
    trained on and the FPN backs take."""
    return set(features) == set(LEVELS)


def check_features(features: Features, expected_channels: int | Sequence[int] | None = None) -> None:
    """Shared guard for backs and codecs: fail early with a message that says what is wrong.
    `expected_channels`: one count for every level (an FPN's), or one per level (a backbone's C2..C5).
    Tensors named otherwise than p2..p5 (a split of another shape) are checked each on its own: 3-d,
    floating point, not empty, a short ASCII name."""
    from vcmbench.errors import ShapeError

    if features and not set(features) & set(LEVELS):
        _check_named_tensors(features)
        return
    missing = [k for k in LEVELS if k not in features]
    if missing:
        raise ShapeError(f"features lack levels {missing}; a front must produce {list(LEVELS)}")
    prev = None
    per_level = (
        [expected_channels] * len(LEVELS)
        if isinstance(expected_channels, int) or expected_channels is None
        else list(expected_channels)
    )
    for name, expected in zip(LEVELS, per_level):
        t = features[name]
        if t.dim() != 3:
            raise ShapeError(f"feature level {name} has shape {tuple(t.shape)}; expected (C, H, W)")
        if expected is not None and t.shape[0] != expected:
            raise ShapeError(f"feature level {name} has {t.shape[0]} channels; this model expects {expected}")
        if prev is not None and (t.shape[1] * 2 < prev[0] or t.shape[2] * 2 < prev[1]):
            raise ShapeError(f"feature level {name} is {tuple(t.shape[1:])}, not half of the previous level {prev}")
        prev = (t.shape[1], t.shape[2])
    if not torch.is_floating_point(features[LEVELS[0]]):
        raise ShapeError("features must be floating point tensors")


def _check_named_tensors(features: Features) -> None:
    from vcmbench.errors import ShapeError

    if len(features) > 127:
        raise ShapeError(f"a split sends {len(features)} tensors; the payload container holds at most 127")
    for name, t in features.items():
        if not (isinstance(name, str) and 0 < len(name) <= MAX_FEATURE_NAME and name.isascii() and name.isprintable()):
            raise ShapeError(
                f"feature tensor name {name!r}: use 1..{MAX_FEATURE_NAME} printable ASCII characters (it is coded)"
            )
        if t.dim() != 3:
            raise ShapeError(f"feature tensor {name} has shape {tuple(t.shape)}; expected (C, H, W)")
        if 0 in t.shape:
            raise ShapeError(f"feature tensor {name} is empty: shape {tuple(t.shape)}")
        if not torch.is_floating_point(t):
            raise ShapeError("features must be floating point tensors")


def feature_digest(features: Features, into=None):
    """blake2b over the tensors (p2..p5, or a split's own in its order) as contiguous float32 bytes
    (with their shapes): `into` (a running hash, e.g. over a sequence's frames) is updated and
    returned; otherwise a new one."""
    import hashlib

    h = into if into is not None else hashlib.blake2b(digest_size=16)
    for k in feature_names(features):
        t = features[k].detach().to("cpu", torch.float32).contiguous()
        h.update(repr(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h

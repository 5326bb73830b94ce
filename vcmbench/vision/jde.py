"""JDE (`model=jde_1088x608`), the MPEG FCM tracking network, split where the CTTC splits it.

The network is Towards-Realtime-MOT's YOLOv3 with an embedding branch (`jde_cfg`, `jde_net`).
Around it, this module does what JDE's inference does for one frame:

* **Letterbox** (its `utils/datasets.py`): resize keeping the aspect ratio to fit 1088x608
  (`round` of the scaled sides, OpenCV INTER_AREA on the uint8 frame), pad both sides with colour
  127.5 (128 once OpenCV rounds it into uint8; the odd pixel of padding goes bottom/right), then
  RGB / 255 as float32. OpenCV is JDE's own resizer and comes with trackeval.
* **Detections** (its `tracker/multitracker.py` JDETracker.update): every YOLO cell's anchors with
  object confidence > `conf_thres` (0.5, the platform's and track.py's default), corners from
  (centre, size), torchvision NMS at IoU `nms_thres` (0.4), boxes mapped back to the frame by
  `scale_coords` (subtract the padding, divide by the letterbox gain, clamp at 0; JDE clamps
  nothing at the right or bottom edge and neither does this). Scores are the object confidence,
  labels all 0 (JDE's one class, person: COCO category 1), embeddings the 512-d unit vectors the
  network produced for each kept box (its tracker re-normalises them, a no-op up to rounding).

The split (the MPEG platform's `jde_1088x608` wrapper, `cfgs/vision_model/default.yaml`): the
front runs the layers the split layers depend on and transmits their outputs, in the order listed;
the back runs every layer the three YOLO heads still need from them. TVD's [36, 61, 74] are the
body's stride-8/16/32 outputs (256, 512, 1024 channels): the back is the whole head. HiEve's
[105, 90, 75] are each head's first 1x1 convolution (128, 256, 512 channels): the back is the rest
of each head, and the routes to layers 61 and 36 are never needed (their consumers 90 and 105 are
sent). Any list of layer indices may be given; one that leaves a head reachable only from the
image, or sends a layer the back never reads, is refused in one line.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import nms

from vcmbench.errors import ConfigError, MissingDependencyError, ShapeError
from vcmbench.paths import is_none, resolve_data_path
from vcmbench.types import Detections, Features, FrontOutput, ImageMeta
from vcmbench.vision.base import SplitDetector
from vcmbench.vision.jde_cfg import JDE_HEIGHT, JDE_WIDTH, Yolo, layer_inputs
from vcmbench.vision.jde_net import IMAGE, JDENetwork, calibrate_random_batch_norm, head_candidates, load_jde_weights

SPLIT_PRESETS: dict[str, tuple[int, ...]] = {
    "tvd": (36, 61, 74),  # MPEG FCM CTTC, JDE on TVD: the body's three outputs
    "hieve": (105, 90, 75),  # MPEG FCM CTTC, JDE on HiEve: each head's first convolution
}
PAD_VALUE = 127.5  # JDE's letterbox colour
PERSON_CATEGORY_ID = 1  # COCO's person, the MOT sets' only class


def letterbox(image: Tensor, width: int = JDE_WIDTH, height: int = JDE_HEIGHT) -> tuple[Tensor, ImageMeta]:
    """uint8 RGB (3, H, W) -> float32 (1, 3, height, width) in [0, 1], JDE's letterbox (module doc)."""
    try:
        import cv2
    except ImportError as exc:
        raise MissingDependencyError(
            "JDE's letterbox needs OpenCV (its resizer): pip install opencv-python (trackeval brings it)"
        ) from exc
    if image.dim() != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
        raise ShapeError(f"JDE takes a uint8 RGB frame (3, H, W); got {image.dtype} {tuple(image.shape)}")
    h0, w0 = int(image.shape[1]), int(image.shape[2])
    ratio = min(float(height) / h0, float(width) / w0)
    new_w, new_h = round(w0 * ratio), round(h0 * ratio)
    dw, dh = (width - new_w) / 2, (height - new_h) / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    hwc = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
    resized = cv2.resize(hwc, (new_w, new_h), interpolation=cv2.INTER_AREA)
    padded = cv2.copyMakeBorder(resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    tensor = torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1))).float().div_(255.0)
    meta = ImageMeta(original_size=(h0, w0), resized_size=(new_h, new_w), padded_size=(height, width))
    return tensor.unsqueeze(0), meta


def scale_to_frame(boxes: Tensor, meta: ImageMeta) -> Tensor:
    """(N, 4) x1, y1, x2, y2 in letterboxed pixels -> the original frame's, as JDE's scale_coords:
    the gain recomputed from the sizes (not the rounded resize), padding removed, clamped at 0."""
    height, width = meta.padded_size
    h0, w0 = meta.original_size
    gain = min(float(width) / w0, float(height) / h0)
    pad_x = (width - w0 * gain) / 2
    pad_y = (height - h0 * gain) / 2
    out = boxes.clone()
    out[:, [0, 2]] -= pad_x
    out[:, [1, 3]] -= pad_y
    out[:, 0:4] /= gain
    return torch.clamp(out, min=0)


def parse_split(split: object) -> tuple[str, tuple[int, ...]]:
    """`model.split`: a preset name (tvd, hieve) or layer indices (a list, or "a,b,c" / "[a,b,c]")
    -> (tag for the model's name, indices in transmission order)."""
    hint = "choose tvd [36, 61, 74], hieve [105, 90, 75] or a list of layer indices [a,b,c]"
    if isinstance(split, str):
        key = split.strip().lower()
        if key in SPLIT_PRESETS:
            return key, SPLIT_PRESETS[key]
        parts = [p for p in key.strip("[]() ").split(",") if p.strip()]
    elif isinstance(split, Sequence) or hasattr(split, "__iter__"):
        parts = list(split)  # a list, tuple or Hydra ListConfig
    else:
        raise ConfigError(f"model.split={split!r}: {hint}")
    try:
        layers = tuple(int(str(p).strip()) for p in parts)
    except ValueError:
        raise ConfigError(f"model.split={split!r}: {hint}") from None
    if not layers:
        raise ConfigError(f"model.split={split!r}: {hint}")
    for name, preset in SPLIT_PRESETS.items():
        if layers == preset:
            return name, layers
    return "l" + "-".join(str(i) for i in layers), layers


class JDESplit(SplitDetector):
    """JDE cut at `split_layers`: front = letterbox + the layers they need, back = the rest + decoding.

    `feature_names` (l{index}, in transmission order), `feature_channels`, `feature_strides` and
    `feature_shapes` describe what the front sends; the back checks decoded tensors against them.
    """

    category_ids = [PERSON_CATEGORY_ID]  # label 0 -> COCO person
    embeds = True  # its detections carry the embedding branch's vectors (JDE's tracker runs on them)

    def __init__(
        self,
        net: JDENetwork,
        split_layers: Sequence[int],
        name: str = "jde_1088x608",
        conf_thres: float = 0.5,
        nms_thres: float = 0.4,
        width: int = JDE_WIDTH,
        height: int = JDE_HEIGHT,
        split_tag: str | None = None,
    ):
        self.net = net.eval()
        self.split_layers = tuple(int(i) for i in split_layers)
        self.conf_thres = float(conf_thres)
        self.nms_thres = float(nms_thres)
        self.width, self.height = int(width), int(height)
        #: what the points table's `split` column says: the preset (tvd, hieve) or l<a>-<b>-<c>
        self.split = split_tag or parse_split(list(self.split_layers))[0]
        self.name = f"{name}@{self.split}"
        self._check_split()
        self.feature_names = tuple(f"l{i}" for i in self.split_layers)
        shapes = [net.shapes[i] for i in self.split_layers]
        self.feature_channels = {n: s.channels for n, s in zip(self.feature_names, shapes)}
        self.feature_strides = {n: s.stride for n, s in zip(self.feature_names, shapes)}
        self.feature_shapes = {
            n: (s.channels, self.height // s.stride, self.width // s.stride) for n, s in zip(self.feature_names, shapes)
        }

    def _check_split(self) -> None:
        """Refuse a cut the back cannot finish from, or one that sends what the back never reads."""
        layers, n = self.split_layers, len(self.net.layers)
        setting = f"model.split={list(layers)}"
        if len(set(layers)) != len(layers):
            raise ConfigError(f"{setting}: a layer is listed twice")
        for i in layers:
            if not 0 <= i < n:
                raise ConfigError(f"{setting}: layer {i} does not exist; JDE's layers are 0..{n - 1}")
            if isinstance(self.net.layers[i], Yolo):
                raise ConfigError(f"{setting}: layer {i} is a YOLO block (decoding, no feature map); split before it")
        steps = self.net.plan(self.net.heads, layers)
        available = set(layers) | set(steps)
        blocked = [i for i in steps if any(j not in available for j in layer_inputs(self.net.layers, i))]
        if blocked:
            raise ConfigError(
                f"{setting}: the back cannot reach the YOLO heads from these layers: layer {blocked[0]} still needs "
                f"the image; send layers that cut every path from the image (tvd [36, 61, 74], hieve [105, 90, 75])"
            )
        read = {j for i in steps for j in layer_inputs(self.net.layers, i)}
        unused = [i for i in layers if i not in read]
        if unused:
            raise ConfigError(
                f"{setting}: layer {unused[0]} is never read by the back once the others are sent; drop it"
            )

    def _preprocess(self, image: Tensor) -> tuple[Tensor, ImageMeta]:
        return letterbox(image, self.width, self.height)

    @torch.inference_mode()
    def front(self, image: Tensor) -> FrontOutput:
        x, meta = self._preprocess(image)
        out = self.net.compute(self.split_layers, {IMAGE: x})
        return FrontOutput({n: out[i][0] for n, i in zip(self.feature_names, self.split_layers)}, meta)

    def check_features(self, features: Features) -> None:
        """The transmitted tensors' names, dtype and (C, H, W), each refused in one line."""
        names = list(features)
        if sorted(names) != sorted(self.feature_names):
            raise ShapeError(f"JDE features are {names}; this split ({self.name}) sends {list(self.feature_names)}")
        for name in self.feature_names:
            t = features[name]
            if not torch.is_floating_point(t):
                raise ShapeError(f"JDE feature {name} is {t.dtype}; expected floating point")
            if tuple(t.shape) != self.feature_shapes[name]:
                raise ShapeError(
                    f"JDE feature {name} has shape {tuple(t.shape)}; {self.name} expects {self.feature_shapes[name]} (C, H, W)"
                )

    @torch.inference_mode()
    def back(self, features: Features, meta: ImageMeta) -> Detections:
        self.check_features(features)
        known = {i: features[n].unsqueeze(0).float() for n, i in zip(self.feature_names, self.split_layers)}
        return self._detect(self.net.compute(self.net.heads, known), meta)

    @torch.inference_mode()
    def full(self, image: Tensor) -> Detections:
        x, meta = self._preprocess(image)
        return self._detect(self.net.compute(self.net.heads, {IMAGE: x}), meta)

    def _detect(self, heads: dict[int, Tensor], meta: ImageMeta) -> Detections:
        """YOLO maps -> NMS'd detections in frame pixels (JDETracker.update's steps, module doc)."""
        rows = torch.cat(
            [
                head_candidates(heads[h], self.net.head_anchors(h), self.net.shapes[h].stride, self.conf_thres)
                for h in self.net.heads
            ]
        )
        x, y, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
        corners = torch.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], dim=1)
        keep = nms(corners, rows[:, 4], self.nms_thres)
        scores = rows[keep, 4].contiguous()
        return Detections(
            boxes=scale_to_frame(corners[keep], meta),
            scores=scores,
            labels=torch.zeros(len(keep), dtype=torch.int64),
            embeddings=rows[keep, 6:].contiguous(),
        )


def build(
    name: str = "jde_1088x608",
    weights: str | None = "none",
    seed: int = 0,
    split: object = "tvd",
    conf_thres: float = 0.5,
    nms_thres: float = 0.4,
    width: int = JDE_WIDTH,
    height: int = JDE_HEIGHT,
) -> JDESplit:
    """Hydra target of `model=jde_1088x608`.

    `weights`: the user's JDE checkpoint, or 'none' for random init from `seed` (BN statistics set
    on seeded noise, `calibrate_random_batch_norm`). `split`: tvd | hieve | [a, b, c].
    `width`/`height`: the letterbox size, multiples of 32 (JDE's 864x480 and 576x320 cfgs have the
    same layers).
    """
    if int(width) % 32 or int(height) % 32:
        raise ConfigError(
            f"model.width={width}, model.height={height}: JDE's input must be a multiple of 32 on both sides"
        )
    tag, layers = parse_split(split)
    torch.manual_seed(int(seed))
    net = JDENetwork()
    if is_none(weights):
        calibrate_random_batch_norm(net, int(seed))
    else:
        load_jde_weights(net, resolve_data_path(str(weights)), str(weights))
    return JDESplit(net, layers, name, conf_thres, nms_thres, int(width), int(height), split_tag=tag)

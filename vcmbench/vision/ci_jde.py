"""The offline CI JDE (`model=ci_jde`): JDE's architecture family, scaled down for synthetic videos.

JDE (`model=jde_1088x608`, `jde_cfg`) is a Darknet-53 YOLOv3 whose three heads also predict a
512-d appearance embedding per cell; the MPEG FCM tracking conditions split it at the body's three
route tensors (TVD) or at each head's first convolution (HiEve). `ci_jde` is the same network
*shape* in the same layer vocabulary (`jde_cfg.Conv`, `Shortcut`, `Route`, `Upsample`, `Yolo`),
built by the same `JDENetwork`, decoded by the same `head_candidates` and split by the same
`JDESplit`, so everything that runs JDE runs it; only the sizes differ (`ci_jde_layers`):

* **body**: a 3x3 stem, then five stride-2 stages with residual blocks (1x1 to half the width, 3x3
  back, shortcut), Darknet-53's widths divided by 4 and fewer blocks (1, 1, 2, 2, 1 instead of
  1, 2, 8, 8, 4); its stride-8, -16 and -32 stage ends are the three route tensors;
* **heads**: JDE's, at a quarter of its widths: per scale five alternating 1x1/3x3 convolutions, a
  3x3, the linear 1x1 prediction (4 anchors x 6 = 24 channels), the linear 3x3 embedding
  convolution (`embedding_dim`, 64 here), the route joining them and the YOLO block; the finer
  scales start from the coarser one's fifth convolution, 1x1, 2x upsample and the body's route;
* **anchors**: twelve (width, height) pairs, four per scale, by k-means (IoU distance) on the
  visible boxes of synthetic training videos at 256x256, as YOLOv3 chose its own (JDE's 1:3
  pedestrian anchors would not fit shapes that are about square);
* **input**: the synthetic videos' 256x256 frames through JDE's letterbox (an identity resize
  there; any multiple of 32 works, other frame sizes are letterboxed as JDE does).

Split presets (`model.split`), the CTTC's two cuts transposed to this network: ``tvd`` = the body's
stride-8/16/32 outputs (64, 128, 256 channels at 256x256: 32x32, 16x16, 8x8), ``hieve`` = each
head's first 1x1 convolution, stride 8, 16, 32 (32, 64, 128 channels); any list of layer indices
works as for JDE. The network has one class (label 0; `category_ids` [1]: tracking is scored
class-agnostically, so the label only matters to the box AP column). `tracker` (the yaml's): the JDE
tracker settings the network is scored with, on the split as `tracker_settings` (JDE's output filter
is for pedestrians, area > 200 px and w/h <= 1.6; the synthetic objects are small and of any aspect);
its `conf_thres` is the model's unless the yaml sets it.

Size: 2.38 M parameters (JDE: 65.7 M); 483 M multiply-accumulates per 256x256 frame, 255 M in the
``tvd`` front and 228 M in its back (``hieve``: 349 M + 134 M). Measured on the 2-core machine with
another job running, one thread: front 0.018 s and back 0.027 s a frame in torch's float kernels,
0.045 s and 0.060 s under determinism=exact (ci_frcnn there: 0.119 s and 0.142 s), so a default
video run spends well under half of ci_frcnn's time in the network. `conf_thres` is JDE's 0.5 until
`vcmbench train-jde` has measured a better one for the trained network (its json's `calibration`).

Weights: `checkpoints/ci_jde/ci_jde.pt` (fp16 state dict written by `vcmbench train-jde`,
`vcmbench.train.jde`), or ``none`` for a random network (BN statistics calibrated on seeded noise,
as the random JDE's are). The checkpoint's json beside it records the architecture it was trained
with; `build` refuses a checkpoint whose tensors do not fit the configured one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vcmbench.errors import CheckpointError, ConfigError
from vcmbench.paths import is_none, resolve_data_path
from vcmbench.vision.jde import JDESplit
from vcmbench.vision.jde_cfg import Conv, Layer, Route, Shortcut, Upsample, Yolo, head_layers
from vcmbench.vision.jde_net import IMAGE, JDENetwork, calibrate_random_batch_norm
from vcmbench.vision.jde_tracker import JDETrackerSettings

DEFAULT_WEIGHTS = "checkpoints/ci_jde/ci_jde.pt"
TRAIN_COMMAND = "vcmbench train-jde copy_to=vcmbench/checkpoints/ci_jde"

STEM = 8  # JDE: 32
WIDTHS = (16, 32, 64, 128, 256)  # per stride 2..32; JDE: 64, 128, 256, 512, 1024
BLOCKS = (1, 1, 2, 2, 1)  # residual blocks per stage; JDE: 1, 2, 8, 8, 4
HEAD_WIDTHS = (128, 64, 32)  # stride-32, -16, -8 heads' 1x1 width; JDE: 512, 256, 128
EMBEDDING_DIM = 64  # JDE: 512
ANCHORS_PER_SCALE = 4
# (width, height) in input pixels, finest scale first (JDE's order): k-means on the visible boxes
# of 600 synthetic training frames (256x256, 3849 boxes, 1st..99th percentile 8..118 px); 97% of
# the boxes overlap their best anchor with IoU > 0.5
ANCHORS: tuple[tuple[float, float], ...] = (
    (12, 12), (16, 15), (19, 19), (24, 20),
    (19, 27), (27, 29), (36, 36), (50, 32),
    (44, 49), (66, 56), (44, 84), (96, 88),
)  # fmt: skip
SIZE = 256  # letterbox width and height: the synthetic videos' frame size
SPLIT_NAMES = ("tvd", "hieve")


def ci_jde_layers(
    stem: int = STEM,
    widths: Sequence[int] = WIDTHS,
    blocks: Sequence[int] = BLOCKS,
    head_widths: Sequence[int] = HEAD_WIDTHS,
    embedding_dim: int = EMBEDDING_DIM,
    anchors_per_scale: int = ANCHORS_PER_SCALE,
) -> tuple[tuple[Layer, ...], dict[str, tuple[int, ...]]]:
    """The layers (JDE's vocabulary and order: body, stride-32 head, stride-16, stride-8) and the
    split presets ``tvd`` (the body's stride-8/16/32 stage ends) and ``hieve`` (each head's first
    convolution, stride 8, 16, 32), as layer indices."""
    if len(widths) != 5 or len(blocks) != 5 or len(head_widths) != 3:
        raise ConfigError(
            f"model.widths={list(widths)}, model.blocks={list(blocks)}, model.head_widths={list(head_widths)}: "
            f"give 5 stage widths, 5 block counts (strides 2..32) and 3 head widths (strides 32, 16, 8)"
        )
    if min(stem, *widths, *head_widths, embedding_dim, anchors_per_scale) < 1 or min(blocks) < 0:
        raise ConfigError("model: widths, embedding_dim and anchors_per_scale must be >= 1, blocks >= 0")
    if any(int(w) % 2 for w in widths):
        raise ConfigError(f"model.widths={list(widths)}: residual blocks halve a width; give even widths")
    layers: list[Layer] = [Conv(int(stem), 3)]
    stage_ends = []
    for width, count in zip(widths, blocks):
        layers.append(Conv(int(width), 3, stride=2))
        for _ in range(int(count)):
            layers += [Conv(int(width) // 2, 1), Conv(int(width), 3), Shortcut(-3)]
        stage_ends.append(len(layers) - 1)
    routes = stage_ends[2:]  # strides 8, 16, 32
    a = int(anchors_per_scale)
    ids = [tuple(range(k * a, (k + 1) * a)) for k in range(3)]  # anchors finest scale first
    head_starts = [len(layers)]
    layers += head_layers(int(head_widths[0]), ids[2], int(embedding_dim))
    for width, body_layer, anchor_ids in ((head_widths[1], routes[1], ids[1]), (head_widths[2], routes[0], ids[0])):
        layers += [Route((-7,)), Conv(int(width), 1), Upsample(2), Route((-1, body_layer))]
        head_starts.append(len(layers))
        layers += head_layers(int(width), anchor_ids, int(embedding_dim))
    presets = {"tvd": tuple(routes), "hieve": tuple(reversed(head_starts))}
    return tuple(layers), presets


class CIJDENetwork(JDENetwork):
    """`JDENetwork` over `ci_jde_layers`, with its own anchors (JDE's are pedestrians')."""

    def __init__(self, layers: tuple[Layer, ...], anchors: Sequence[Sequence[float]]):
        super().__init__(layers)
        self.anchors = tuple((float(w), float(h)) for w, h in anchors)
        used = max(k for i in self.heads for k in layers[i].anchor_ids)  # type: ignore[union-attr]
        if used >= len(self.anchors):
            raise ConfigError(
                f"model.anchors: {len(self.anchors)} given; the heads use {used + 1} "
                f"(3 scales x anchors_per_scale), listed finest scale first"
            )

    def head_anchors(self, head: int) -> Tensor:
        layer = self.layers[head]
        assert isinstance(layer, Yolo)
        return torch.tensor([self.anchors[k] for k in layer.anchor_ids], dtype=torch.float32)

    def train_forward(self, x: Tensor) -> list[Tensor]:
        """Every YOLO block's input maps (N, A * 6 + D, H, W), coarsest first, with autograd (the
        inference `compute` runs under inference mode): the training loss's input."""
        out: dict[int, Tensor] = {IMAGE: x}
        for i in range(len(self.layers)):
            out[i] = self._run(i, out)
        return [out[h] for h in self.heads]


def parse_ci_split(split: object, presets: dict[str, tuple[int, ...]]) -> tuple[str, tuple[int, ...]]:
    """`model.split`: tvd | hieve (this network's presets) or layer indices -> (tag, indices)."""
    if isinstance(split, str) and split.strip().lower() in presets:
        key = split.strip().lower()
        return key, presets[key]
    from vcmbench.vision.jde import parse_split

    tag, layers = parse_split(split)  # a list; JDE's preset names mean JDE's indices: not ours
    for name, preset in presets.items():
        if layers == preset:
            return name, layers
    if tag in SPLIT_NAMES:
        tag = "l" + "-".join(str(i) for i in layers)
    return tag, layers


def build_network(
    seed: int = 0,
    stem: int = STEM,
    widths: Sequence[int] = WIDTHS,
    blocks: Sequence[int] = BLOCKS,
    head_widths: Sequence[int] = HEAD_WIDTHS,
    embedding_dim: int = EMBEDDING_DIM,
    anchors: Sequence[Sequence[float]] = ANCHORS,
    anchors_per_scale: int = ANCHORS_PER_SCALE,
) -> tuple[CIJDENetwork, dict[str, tuple[int, ...]]]:
    """The network with PyTorch's / JDE's initialisation from `seed` (uncalibrated) and its presets."""
    layers, presets = ci_jde_layers(stem, widths, blocks, head_widths, embedding_dim, anchors_per_scale)
    torch.manual_seed(int(seed))
    return CIJDENetwork(layers, anchors), presets


def resolve_weights(weights: str | None) -> Path | None:
    """None for random init; else the checkpoint (relative: working directory, then the package)."""
    if is_none(weights):
        return None
    path = resolve_data_path(str(weights))
    if not path.is_file():
        raise CheckpointError(
            f"model.weights={weights}: no such checkpoint ({path}); train it with `{TRAIN_COMMAND}` "
            f"(its output folder holds ci_jde.pt), pass a ci_jde.pt it wrote, or use model.weights=none for random weights"
        )
    return path


def load_weights(net: nn.Module, path: Path, setting: str) -> None:
    """A `vcmbench train-jde` checkpoint (fp16 state dict) into `net`, strictly."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and IO errors come in many types
        raise CheckpointError(
            f"model.weights={setting}: cannot read the checkpoint ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"model.weights={setting}: holds no state dict; give a ci_jde.pt of `vcmbench train-jde`")
    try:
        net.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in state.items()})
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise CheckpointError(
            f"model.weights={setting}: does not fit this ci_jde configuration (were model.* settings changed "
            f"since it was trained? its .json says how): {' '.join(line.strip() for line in first[:3])}"
        ) from exc


def tracker_settings(tracker: Mapping[str, Any] | None) -> JDETrackerSettings:
    """`model.tracker` -> JDETrackerSettings (JDE's defaults for what it does not set), checked."""
    from vcmbench.vision.jde_tracker import SETTING_NAMES

    given = dict(tracker or {})
    unknown = sorted(set(given) - set(SETTING_NAMES))
    if unknown:
        raise ConfigError(
            f"model.tracker.{unknown[0]}: not a JDE tracker setting; valid keys: {', '.join(SETTING_NAMES)}"
        )
    return JDETrackerSettings(**given)


def build(
    name: str = "ci_jde",
    weights: str | None = DEFAULT_WEIGHTS,
    seed: int = 0,
    split: object = "tvd",
    conf_thres: float = 0.5,
    nms_thres: float = 0.4,
    width: int = SIZE,
    height: int = SIZE,
    stem: int = STEM,
    widths: Sequence[int] = WIDTHS,
    blocks: Sequence[int] = BLOCKS,
    head_widths: Sequence[int] = HEAD_WIDTHS,
    embedding_dim: int = EMBEDDING_DIM,
    anchors: Sequence[Sequence[float]] = ANCHORS,
    anchors_per_scale: int = ANCHORS_PER_SCALE,
    tracker: Mapping[str, Any] | None = None,
    run_defaults: Mapping[str, Any] | None = None,
) -> JDESplit:
    """Hydra target of `model=ci_jde`: the split network (module doc). `weights`: a checkpoint of
    `vcmbench train-jde` (default: the committed one) or 'none' (random from `seed`). `run_defaults`:
    the run's, not the network's (config.model_run_defaults)."""
    if int(width) % 32 or int(height) % 32:
        raise ConfigError(f"model.width={width}, model.height={height}: the input must be a multiple of 32 both ways")
    # the tracker keeps what the network outputs: JDE's thresholds are the same (0.5)
    settings = tracker_settings({"conf_thres": float(conf_thres), **dict(tracker or {})})
    path = resolve_weights(weights)
    net, presets = build_network(
        seed, stem, tuple(widths), tuple(blocks), tuple(head_widths), embedding_dim, anchors, anchors_per_scale
    )
    tag, layers = parse_ci_split(split, presets)
    if path is None:
        calibrate_random_batch_norm(net, int(seed))
    else:
        load_weights(net, path, str(weights))
    net.eval()
    split_model = JDESplit(net, layers, name, conf_thres, nms_thres, int(width), int(height), split_tag=tag)
    #: the JDE tracker settings this network is scored with (frame_rate: each sequence's fps)
    split_model.tracker_settings = settings
    return split_model

"""ci_frcnn: a small Faster R-CNN FPN detector trained on synthetic scenes, for CI and offline runs.

torchvision's FasterRCNN around a compact backbone, so the torchvision split
(`TorchvisionSplit`) cuts it exactly like the R50-FPN models:

- body: a small ResNet-style CNN (BatchNorm, basic residual blocks) with 32, 64, 128, 256
  channels at strides 4, 8, 16, 32;
- FPN: torchvision's `FeaturePyramidNetwork` (1x1 laterals, top-down sum,
  `LastLevelMaxPool` for p6) with 256 output channels, so p2..p5 have the shapes of the
  MPEG anchor's features and the anchor's tiling applies unchanged. Its 3x3 output convs
  are depthwise-separable by default (3x3 depthwise + 1x1 full 256x256): a full 3x3
  256->256 conv on p2 alone costs 8x the whole body and would double the checkpoint;
  ``fpn_block: conv3x3`` restores torchvision's standard block;
- RPN: anchors 16..362 px (two sizes per level, a half octave apart; ratios 0.5/1/2) for
  12..128 px objects, and
  a light head (1x1 256->64, 3x3 64->64) instead of torchvision's 3x3 256->256 one;
- ROI head: MultiScaleRoIAlign 7x7 on p2..p5, then 1x1 256->64, 3x3 64->64 and two FC
  layers of 256 (torchvision's TwoMLPHead would be 12544x1024 weights);
- no resize: min_size = max_size = the scene size (256), so features are at strides 4..32
  of the input image;
- lighter proposal settings than torchvision's defaults (300 -> 150 proposals at test) so
  a back pass takes tens of milliseconds on one CPU core.

Labels 1..K are the synthetic dataset's category ids (identity mapping).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from vcmbench.atomic import torch_save
from vcmbench.errors import CheckpointError, ConfigError
from vcmbench.paths import is_none, resolve_data_path
from vcmbench.vision.torchvision_split import TorchvisionSplit

DEFAULT_WEIGHTS = "checkpoints/ci_frcnn/ci_frcnn.pt"
TRAIN_COMMAND = "vcmbench train-detector copy_to=checkpoints/ci_frcnn"


def _conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = _conv_bn(channels, channels)
        self.conv2 = _conv_bn(channels, channels, act=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.conv2(self.conv1(x)))


class BottleneckBlock(nn.Module):
    """1x1 down, 3x3, 1x1 up: the cheap block for the widest (stride-32) stage."""

    def __init__(self, channels: int, mid: int):
        super().__init__()
        self.body = nn.Sequential(_conv_bn(channels, mid, 1), _conv_bn(mid, mid), _conv_bn(mid, channels, 1, act=False))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.body(x))


class CompactBody(nn.Sequential):
    """stem (stride 4) + layer1..layer4 with `widths` channels at strides 4, 8, 16, 32."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 256), blocks: tuple[int, ...] = (1, 2, 2, 1)):
        w1, w2, w3, w4 = widths
        stem = nn.Sequential(_conv_bn(3, w1 // 2, stride=2), _conv_bn(w1 // 2, w1, stride=2))
        layers: list[tuple[str, nn.Module]] = [("stem", stem)]
        prev = w1
        for i, (w, n) in enumerate(zip(widths, blocks)):
            mods: list[nn.Module] = [] if i == 0 else [_conv_bn(prev, w, stride=2)]
            for _ in range(n):
                mods.append(BottleneckBlock(w, w // 4) if w >= 256 else BasicBlock(w))
            layers.append((f"layer{i + 1}", nn.Sequential(*mods)))
            prev = w
        super().__init__(OrderedDict(layers))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        # zero-init the last BN of each residual branch: blocks start as identities
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.conv2[1].weight)
            elif isinstance(m, BottleneckBlock):
                nn.init.zeros_(m.body[-1][1].weight)


class DepthwiseSeparable(nn.Sequential):
    """FPN output block: 3x3 depthwise then 1x1 pointwise (linear, like torchvision's)."""

    def __init__(self, channels: int):
        super().__init__(
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
            nn.Conv2d(channels, channels, 1),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)


class LightRPNHead(nn.Module):
    """torchvision RPNHead interface (list of maps -> objectness, deltas) at a fraction of the cost."""

    def __init__(self, in_channels: int, num_anchors: int, mid: int = 64):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, mid, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.cls_logits = nn.Conv2d(mid, num_anchors, 1)
        self.bbox_pred = nn.Conv2d(mid, num_anchors * 4, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        for m in self.conv:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        logits, deltas = [], []
        for feature in x:
            t = self.conv(feature)
            logits.append(self.cls_logits(t))
            deltas.append(self.bbox_pred(t))
        return logits, deltas


class ConvFCBoxHead(nn.Module):
    """ROI features (N, C, 7, 7) -> (N, rep): 1x1 C->mid, 3x3 mid->mid, FC, FC."""

    def __init__(self, in_channels: int, mid: int = 64, representation: int = 256, resolution: int = 7):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, mid, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.fc6 = nn.Linear(mid * resolution * resolution, representation)
        self.fc7 = nn.Linear(representation, representation)
        for m in self.convs:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x).flatten(1)
        return torch.relu(self.fc7(torch.relu(self.fc6(x))))


def build_model(
    num_classes: int = 9,
    fpn_channels: int = 256,
    widths: tuple[int, ...] = (32, 64, 128, 256),
    blocks: tuple[int, ...] = (1, 2, 2, 1),
    fpn_block: str = "dwsep",
    anchor_sizes: tuple = ((16, 23), (32, 45), (64, 91), (128, 181), (256, 362)),
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0),
    rpn_mid: int = 64,
    box_mid: int = 64,
    representation: int = 256,
    image_size: int = 256,
    score_thresh: float = 0.05,
    detections_per_img: int = 100,
    rpn_pre_nms_top_n_train: int = 600,
    rpn_post_nms_top_n_train: int = 300,
    rpn_pre_nms_top_n_test: int = 300,
    rpn_post_nms_top_n_test: int = 150,
    box_batch_size_per_image: int = 64,
    roi_sampling_ratio: int = 1,
    box_positive_fraction: float = 0.5,
    mask_head: bool = False,
    mask_mid: int = 64,
    mask_convs: int = 2,
    keypoint_head: bool = False,
    num_keypoints: int = 4,
    keypoint_mid: int = 32,
    keypoint_convs: int = 4,
    semantic_head: bool = False,
    semantic_mid: int = 64,
) -> nn.Module:
    """The torchvision FasterRCNN (random init; seed torch before calling for a fixed one), or with
    `mask_head` its MaskRCNN (ci_maskrcnn): 14x14 RoIAlign on p2..p5, `mask_convs` 3x3 convs of
    `mask_mid` channels (torchvision's head: four of 256) and the usual 2x deconv predictor; with
    `keypoint_head` its KeypointRCNN (ci_keypoints), with `semantic_head` the Faster R-CNN plus a
    semantic FPN head (ci_semseg): `vision.ci_heads`. One head at most."""
    from torchvision.models.detection import FasterRCNN, KeypointRCNN, MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    from vcmbench.vision.ci_heads import SemanticFPNHead, SemanticRCNN, keypoint_modules

    widths, blocks = tuple(int(w) for w in widths), tuple(int(b) for b in blocks)
    if len(widths) != 4 or len(blocks) != 4:
        raise ConfigError(f"model.widths={list(widths)} / model.blocks={list(blocks)}: need 4 entries (strides 4..32)")
    if len(anchor_sizes) != 5:
        raise ConfigError(f"model.anchor_sizes={anchor_sizes}: need 5 levels (p2..p6), each a size or a list of sizes")
    if sum(map(bool, (mask_head, keypoint_head, semantic_head))) > 1:
        raise ConfigError("model.mask_head / keypoint_head / semantic_head: a ci network has one extra head at most")
    if fpn_block not in ("dwsep", "conv3x3"):
        raise ConfigError(f"model.fpn_block={fpn_block!r}: choose 'dwsep' or 'conv3x3'")
    body = CompactBody(widths, blocks)
    backbone = BackboneWithFPN(
        body,
        return_layers={"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
        in_channels_list=list(widths),
        out_channels=int(fpn_channels),
        extra_blocks=LastLevelMaxPool(),
    )
    if fpn_block == "dwsep":
        backbone.fpn.layer_blocks = nn.ModuleList(DepthwiseSeparable(int(fpn_channels)) for _ in widths)
    sizes = tuple(tuple(int(v) for v in s) if isinstance(s, (list, tuple)) else (int(s),) for s in anchor_sizes)
    if len({len(s) for s in sizes}) != 1:
        raise ConfigError(f"model.anchor_sizes={anchor_sizes}: every level needs the same number of sizes")
    anchors = AnchorGenerator(sizes=sizes, aspect_ratios=(tuple(float(a) for a in aspect_ratios),) * 5)
    rpn_head = LightRPNHead(int(fpn_channels), anchors.num_anchors_per_location()[0], int(rpn_mid))
    roi_pool = MultiScaleRoIAlign(
        featmap_names=["0", "1", "2", "3"], output_size=7, sampling_ratio=int(roi_sampling_ratio)
    )
    box_head = ConvFCBoxHead(int(fpn_channels), int(box_mid), int(representation))
    masks: dict = {}
    model_class: type = FasterRCNN
    if keypoint_head:
        masks = keypoint_modules(fpn_channels, keypoint_mid, keypoint_convs, num_keypoints, roi_sampling_ratio)
        model_class = KeypointRCNN
    if semantic_head:
        masks = {"semantic_head": SemanticFPNHead(int(fpn_channels), int(semantic_mid), int(num_classes))}
        model_class = SemanticRCNN
    if mask_head:
        model_class = MaskRCNN
        from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

        masks = {
            "mask_roi_pool": MultiScaleRoIAlign(
                featmap_names=["0", "1", "2", "3"], output_size=14, sampling_ratio=int(roi_sampling_ratio)
            ),
            "mask_head": MaskRCNNHeads(int(fpn_channels), [int(mask_mid)] * int(mask_convs), 1),
            "mask_predictor": MaskRCNNPredictor(int(mask_mid), int(mask_mid), int(num_classes)),
        }
    return model_class(
        backbone,
        num_classes=None,
        min_size=int(image_size),
        max_size=int(image_size),
        rpn_anchor_generator=anchors,
        rpn_head=rpn_head,
        box_roi_pool=roi_pool,
        box_head=box_head,
        box_predictor=FastRCNNPredictor(int(representation), int(num_classes)),
        box_score_thresh=float(score_thresh),
        box_detections_per_img=int(detections_per_img),
        rpn_pre_nms_top_n_train=int(rpn_pre_nms_top_n_train),
        rpn_post_nms_top_n_train=int(rpn_post_nms_top_n_train),
        rpn_pre_nms_top_n_test=int(rpn_pre_nms_top_n_test),
        rpn_post_nms_top_n_test=int(rpn_post_nms_top_n_test),
        box_batch_size_per_image=int(box_batch_size_per_image),
        box_positive_fraction=float(box_positive_fraction),
        **masks,
    )


def train_command(name: str) -> str:
    return TRAIN_COMMAND if name == "ci_frcnn" else f"vcmbench train-detector model={name} copy_to=checkpoints/{name}"


def resolve_weights(weights: str | None, name: str = "ci_frcnn") -> Path | None:
    """None for random init; else the checkpoint path (relative: working dir first, then the package's)."""
    if is_none(weights):
        return None
    path = resolve_data_path(str(weights))
    if not path.is_file():
        shipped = f"vcmbench ships {DEFAULT_WEIGHTS}; recreate it" if name == "ci_frcnn" else "train it"
        raise CheckpointError(
            f"model.weights={weights}: no such checkpoint ({path}). {shipped} with `{train_command(name)}`, pass "
            f"the path of a checkpoint that command wrote (its output folder holds {name}.pt), or use "
            f"model.weights=none for random weights"
        )
    return path


def save_state(model: nn.Module, path: str | Path) -> None:
    """fp16 storage of the floating point tensors (integers, e.g. BN counters, stay as they are)."""
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    torch_save(state, path)


def load_state(model: nn.Module, path: str | Path) -> None:
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and IO errors come in many types
        raise CheckpointError(
            f"model.weights={path}: cannot read the checkpoint ({type(exc).__name__}: {exc})"
        ) from exc
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    try:
        model.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in state.items()})
    except RuntimeError as exc:
        raise CheckpointError(
            f"model.weights={path}: checkpoint does not fit this ci_frcnn configuration "
            f"(were model.* settings changed since it was trained?): {exc}"
        ) from exc


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build(
    name: str = "ci_frcnn",
    weights: str | None = DEFAULT_WEIGHTS,
    seed: int = 0,
    num_classes: int = 9,
    category_ids: list[int] | None = None,
    split: str = "fpn",
    **arch,
) -> TorchvisionSplit:
    """Hydra target of `model=ci_frcnn` and `model=ci_maskrcnn`; `arch` are `build_model`'s settings.

    `weights`: checkpoint path (default: the committed one) or 'none' (random init from
    `seed`). `category_ids` None = identity (label k is synthetic category id k). `split`: fpn
    (P2..P5) | backbone (the body's C2..C5: 32, 64, 128, 256 channels).
    """
    import inspect

    known = set(inspect.signature(build_model).parameters)
    unknown = sorted(set(arch) - known)
    if unknown:
        raise ConfigError(f"model.{unknown[0]}: not a ci_frcnn setting; the settings are {sorted(known)}")
    path = resolve_weights(weights, name)
    for key in ("widths", "blocks", "aspect_ratios"):
        if key in arch and arch[key] is not None:
            arch[key] = tuple(arch[key])
    if arch.get("anchor_sizes") is not None:
        arch["anchor_sizes"] = tuple(
            tuple(s) if isinstance(s, (list, tuple)) or hasattr(s, "__len__") else s for s in arch["anchor_sizes"]
        )
    torch.manual_seed(int(seed))
    model = build_model(num_classes=int(num_classes), **arch)
    if path is not None:
        load_state(model, path)
    return TorchvisionSplit(model, name, list(category_ids) if category_ids else None, split)

"""torchvision Faster R-CNN, Mask R-CNN (v1 and v2) and Keypoint R-CNN R50-FPN cut after the FPN, or before it.

`split="fpn"` (MPEG-VCM's cut): the front runs GeneralizedRCNNTransform + backbone (ResNet
body + FPN) and keeps levels '0'..'3' (p2..p5). The back rebuilds 'pool' (p6) from p5 and
runs the RPN, ROI heads and postprocess, exactly the calls GeneralizedRCNN.forward makes.
`split="backbone"`: the front stops after the body (C2..C5, ResNet-50's 256/512/1024/2048
channels at strides 4..32) and the back starts with the FPN (BackboneWithFPN.forward is
body then fpn, so the cut changes no arithmetic); the four levels travel in the same slots. Mask R-CNN's
back keeps its masks: the mask head's probabilities, pasted into the original image by the
same postprocess, thresholded at 0.5 (torchvision's and COCO's convention). Keypoint R-CNN's back
keeps its keypoints: (x, y, visibility) per keypoint, rescaled to the original image by the same
postprocess, and the keypoint head's heatmap scores, exactly as the unsplit model returns them.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor
from torchvision.models.detection.image_list import ImageList

from vcmbench.errors import CheckpointError, ConfigError
from vcmbench.paths import is_none
from vcmbench.types import LEVELS, Detections, Features, FrontOutput, ImageMeta, check_features, p6_from_p5
from vcmbench.vision.base import SplitDetector

_TV_KEYS = ("0", "1", "2", "3")
SPLITS = ("fpn", "backbone")
ARCHS = (
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "maskrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn_v2",
    "keypointrcnn_resnet50_fpn",
)
KEYPOINT_ARCHS = ("keypointrcnn_resnet50_fpn",)
COCO_KEYPOINTS = 17  # COCO's person keypoints, the number torchvision's COCO weights predict
MASK_THRESHOLD = 0.5


def build_torchvision_frcnn(arch: str, weights: str | None, num_classes: int, **kwargs) -> torch.nn.Module:
    """Build the detector; `weights` is 'coco' (torchvision's enum), a local path, or 'none'."""
    from torchvision.models import detection

    if arch not in ARCHS:
        raise ConfigError(f"model.arch={arch!r} is not supported; choose one of {ARCHS}")
    builder = getattr(detection, arch)
    weights = "none" if is_none(weights) else str(weights)
    if weights == "coco":
        enum = {
            "fasterrcnn_resnet50_fpn": detection.FasterRCNN_ResNet50_FPN_Weights.COCO_V1,
            "fasterrcnn_resnet50_fpn_v2": detection.FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1,
            "maskrcnn_resnet50_fpn": detection.MaskRCNN_ResNet50_FPN_Weights.COCO_V1,
            "maskrcnn_resnet50_fpn_v2": detection.MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1,
            "keypointrcnn_resnet50_fpn": detection.KeypointRCNN_ResNet50_FPN_Weights.COCO_V1,
        }[arch]
        # torchvision rejects another keypoint count with a ValueError, which the download guard
        # below would misreport as a network failure: say what is wrong before trying
        if kwargs.get("num_keypoints", COCO_KEYPOINTS) != COCO_KEYPOINTS:
            raise ConfigError(
                f"model.num_keypoints={kwargs['num_keypoints']}: torchvision's COCO weights predict "
                f"{COCO_KEYPOINTS} keypoints; use {COCO_KEYPOINTS}, or a local checkpoint (model.weights=PATH)"
            )
        try:
            return builder(weights=enum, **kwargs)
        except Exception as exc:  # network errors come in many types (URLError, socket, SSL)
            raise CheckpointError(
                f"model.weights=coco: could not download torchvision's {enum} ({type(exc).__name__}: {exc}). "
                f"Without network access, download {enum.url} elsewhere and pass "
                f"model.weights=/path/to/{Path(enum.url).name}"
            ) from exc
    model = builder(weights=None, weights_backbone=None, num_classes=num_classes, **kwargs)
    if weights != "none":
        path = Path(weights)
        if not path.is_file():
            raise CheckpointError(
                f"model.weights={weights}: no such file. Pass a local checkpoint path, 'coco' "
                f"(downloads torchvision's weights) or 'none' (random init)"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]
        try:
            model.load_state_dict({k: v.float() for k, v in state.items()})
        except RuntimeError as exc:
            raise CheckpointError(f"model.weights={weights}: checkpoint does not fit {arch}: {exc}") from exc
    return model


class TorchvisionSplit(SplitDetector):
    """Split wrapper around any torchvision GeneralizedRCNN whose backbone is an FPN."""

    def __init__(self, model: torch.nn.Module, name: str, category_ids: list[int] | None = None, split: str = "fpn"):
        if split not in SPLITS:
            raise ConfigError(f"model.split={split!r}: choose one of {list(SPLITS)}")
        self.model = model.eval()
        self.split = split
        # another cut is another interface: its points and run folders carry the split in the name
        self.name = name if split == "fpn" else f"{name}@{split}"
        self.category_ids = category_ids
        if split == "fpn":
            self.out_channels: int | list[int] = int(model.backbone.out_channels)
        else:
            self.out_channels = _body_channels(model)

    @torch.inference_mode()
    def _transform(self, image: Tensor) -> tuple[ImageList, tuple[int, int]]:
        img = image.float().div(255.0) if image.dtype == torch.uint8 else image
        original = (int(img.shape[-2]), int(img.shape[-1]))
        images, _ = self.model.transform([img])
        return images, original

    @torch.inference_mode()
    def front(self, image: Tensor) -> FrontOutput:
        images, original = self._transform(image)
        body = self.model.backbone.body if self.split == "backbone" else self.model.backbone
        out = body(images.tensors)
        feats = {lvl: out[k][0] for lvl, k in zip(LEVELS, _TV_KEYS)}
        meta = ImageMeta(
            original_size=original,
            resized_size=tuple(int(v) for v in images.image_sizes[0]),
            padded_size=(int(images.tensors.shape[-2]), int(images.tensors.shape[-1])),
        )
        return FrontOutput(feats, meta)

    @torch.inference_mode()
    def back(self, features: Features, meta: ImageMeta) -> Detections:
        check_features(features, self.out_channels)
        fpn = OrderedDict((k, features[lvl].unsqueeze(0).float()) for lvl, k in zip(LEVELS, _TV_KEYS))
        if self.split == "backbone":
            fpn = self.model.backbone.fpn(fpn)  # the FPN and its p6 (LastLevelMaxPool), as BackboneWithFPN does
        else:
            fpn["pool"] = p6_from_p5(fpn["3"])
        # The anchor generator reads only the padded size (and dtype/device) of the image
        # tensor, so a zero-stride view stands in for the pixels the receiver never sees.
        h, w = meta.padded_size
        placeholder = torch.zeros((), dtype=fpn["0"].dtype).expand(1, 3, h, w)
        images = ImageList(placeholder, [tuple(meta.resized_size)])
        proposals, _ = self.model.rpn(images, fpn)
        dets, _ = self.model.roi_heads(fpn, proposals, images.image_sizes)
        dets = self.model.transform.postprocess(dets, images.image_sizes, [tuple(meta.original_size)])
        head = getattr(self.model, "semantic_head", None)
        if head is not None:  # ci_semseg: the per-pixel classes from the same levels, as its forward does
            from vcmbench.vision.ci_heads import semantic_map

            dets[0]["semantic"] = semantic_map(head, fpn, (h, w), meta.resized_size, meta.original_size)
        return _to_detections(dets[0])

    @torch.inference_mode()
    def full(self, image: Tensor) -> Detections:
        img = image.float().div(255.0) if image.dtype == torch.uint8 else image
        return _to_detections(self.model([img])[0])


def _body_channels(model: torch.nn.Module) -> list[int]:
    """C2..C5 channel counts: the in-channels of the FPN's lateral 1x1 convs, one per level."""
    channels = []
    for block in model.backbone.fpn.inner_blocks:
        conv = next(m for m in block.modules() if isinstance(m, torch.nn.Conv2d))
        channels.append(int(conv.in_channels))
    return channels


def _to_detections(d: dict[str, Tensor]) -> Detections:
    """torchvision's per-image output dict as Detections; the keys a head did not produce stay None."""
    masks = d["masks"][:, 0] > MASK_THRESHOLD if "masks" in d else None  # (N, 1, H, W) probabilities
    keypoints = d["keypoints"].float() if "keypoints" in d else None  # (N, K, 3), already in original pixels
    keypoint_scores = d["keypoints_scores"].float() if "keypoints_scores" in d else None  # (N, K)
    semantic = d["semantic"].long() if "semantic" in d else None  # (H, W) class per pixel
    return Detections(
        boxes=d["boxes"].float(),
        scores=d["scores"].float(),
        labels=d["labels"].long(),
        masks=masks,
        keypoints=keypoints,
        keypoint_scores=keypoint_scores,
        semantic=semantic,
    )


def coco91_category_ids() -> list[int]:
    """torchvision's COCO label index already is the COCO category id (0 = background)."""
    return list(range(91))


def build(
    arch: str = "fasterrcnn_resnet50_fpn",
    weights: str | None = "none",
    num_classes: int = 91,
    name: str | None = None,
    seed: int = 0,
    score_thresh: float = 0.05,
    detections_per_img: int = 100,
    min_size: int = 800,
    max_size: int = 1333,
    category_ids: list[int] | str | None = "coco91",
    split: str = "fpn",
    num_keypoints: int = COCO_KEYPOINTS,
) -> TorchvisionSplit:
    """Hydra target: `model=frcnn_r50_fpn` / `frcnn_r50_fpn_v2` / `maskrcnn_r50_fpn` / `maskrcnn_r50_fpn_v2` /
    `keypointrcnn_r50_fpn`. `seed` fixes random init. `num_keypoints` reaches only the keypoint
    builder: the other builders pass unknown keywords on to their model class, which rejects it."""
    torch.manual_seed(seed)
    extra = {"num_keypoints": int(num_keypoints)} if arch in KEYPOINT_ARCHS else {}
    model = build_torchvision_frcnn(
        arch,
        weights,
        num_classes,
        box_score_thresh=score_thresh,
        box_detections_per_img=detections_per_img,
        min_size=min_size,
        max_size=max_size,
        **extra,
    )
    cats = coco91_category_ids() if category_ids == "coco91" else (list(category_ids) if category_ids else None)
    return TorchvisionSplit(model, name or arch, cats, split)

"""The CI networks' extra task heads on ci_frcnn's FPN: a semantic FPN head (ci_semseg) and a light
keypoint head (ci_keypoints): `LightKeypointHead`.

Both are trained on top of the committed ci_frcnn with its body, FPN and box heads frozen
(`vcmbench train-detector init_from=... train_only=[...]`), so their P2..P5 are ci_frcnn's bit for
bit: one feature payload, decoded once, serves the boxes and the new task, as in the CTTC's
Panoptic FPN (boxes, masks and the semantic map from one P2..P5) and Keypoint R-CNN.

Semantic head (Panoptic FPN's semantic branch, made light for a CPU back): each of p2..p5 goes
through a 1x1 conv to `mid` channels and ReLU, is upsampled bilinearly to p2's size, the four are
summed, a 3x3 conv + ReLU and a 1x1 classifier give logits at stride 4, which are upsampled
bilinearly to the padded input, cropped to the image and resized to its original size (identity
for the 256x256 scenes); the map is their argmax. Classes: 0 background, then the synthetic
category ids. Training: cross entropy over the pixels, the unlabeled ones (objects too small or too
hidden to annotate, `synthetic.Scene.unlabeled`) ignored.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN

IGNORE = 255
"""The semantic targets' don't-care label (cross entropy's ignore_index)."""

FPN_KEYS = ("0", "1", "2", "3")


class SemanticFPNHead(nn.Module):
    """Per-pixel class logits at p2's stride from p2..p5."""

    def __init__(self, in_channels: int, mid: int = 64, num_classes: int = 9):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(in_channels, mid, 1) for _ in FPN_KEYS)
        self.fuse = nn.Conv2d(mid, mid, 3, padding=1)
        self.classifier = nn.Conv2d(mid, num_classes, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.classifier.weight, std=0.01)  # near-uniform first predictions

    def forward(self, levels: list[Tensor]) -> Tensor:
        size = levels[0].shape[-2:]
        x = torch.relu(self.lateral[0](levels[0]))
        for conv, level in zip(self.lateral[1:], levels[1:]):
            y = torch.relu(conv(level))
            x = x + F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        return self.classifier(torch.relu(self.fuse(x)))


def semantic_logits(
    head: nn.Module, levels: list[Tensor], padded: tuple[int, int], resized: tuple[int, int], original: tuple[int, int]
) -> Tensor:
    """(B, K, H, W) logits of the original image size: upsampled to the padded input, cropped to the
    resized image, resized to the original one (a no-op where the detector did not resize)."""
    logits = F.interpolate(head(levels), size=tuple(padded), mode="bilinear", align_corners=False)
    logits = logits[..., : resized[0], : resized[1]]
    if tuple(resized) != tuple(original):
        logits = F.interpolate(logits, size=tuple(original), mode="bilinear", align_corners=False)
    return logits


def semantic_map(
    head: nn.Module, fpn: OrderedDict, padded: tuple[int, int], resized: tuple[int, int], original: tuple[int, int]
) -> Tensor:
    """(H, W) int64 class map of one image from its FPN levels (batch of one)."""
    levels = [fpn[k] for k in FPN_KEYS]
    return semantic_logits(head, levels, padded, resized, original)[0].argmax(dim=0)


class SemanticRCNN(FasterRCNN):
    """ci_frcnn's Faster R-CNN plus a semantic FPN head: boxes and a per-pixel class map from one
    P2..P5. Training targets carry `semantic`, an (H, W) int64 map (IGNORE: don't care);
    `detector_losses=False` skips the RPN and box losses when only the semantic head trains."""

    def __init__(self, backbone: nn.Module, semantic_head: nn.Module, **kwargs):
        super().__init__(backbone, **kwargs)
        self.semantic_head = semantic_head
        self.detector_losses = True

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None):
        original_sizes = [(int(i.shape[-2]), int(i.shape[-1])) for i in images]
        image_list, targets = self.transform(images, targets)
        features = self.backbone(image_list.tensors)
        levels = [features[k] for k in FPN_KEYS]
        padded = (int(image_list.tensors.shape[-2]), int(image_list.tensors.shape[-1]))
        if self.training:
            losses: dict[str, Tensor] = {}
            if self.detector_losses:
                proposals, rpn_losses = self.rpn(image_list, features, targets)
                _, box_losses = self.roi_heads(features, proposals, image_list.image_sizes, targets)
                losses.update(rpn_losses)
                losses.update(box_losses)
            logits = F.interpolate(self.semantic_head(levels), size=padded, mode="bilinear", align_corners=False)
            target = torch.full((len(images), *padded), IGNORE, dtype=torch.int64)
            for i, t in enumerate(targets):
                h, w = t["semantic"].shape
                target[i, :h, :w] = t["semantic"]
            losses["loss_semantic"] = F.cross_entropy(logits, target, ignore_index=IGNORE)
            return losses
        proposals, _ = self.rpn(image_list, features)
        detections, _ = self.roi_heads(features, proposals, image_list.image_sizes)
        detections = self.transform.postprocess(detections, image_list.image_sizes, original_sizes)
        for i, d in enumerate(detections):
            fpn = OrderedDict((k, features[k][i : i + 1]) for k in FPN_KEYS)
            d["semantic"] = semantic_map(
                self.semantic_head, fpn, padded, tuple(image_list.image_sizes[i]), original_sizes[i]
            )
        return detections


class LightKeypointHead(nn.Sequential):
    """The keypoint branch's convs, light: a 1x1 conv from the FPN's channels to `mid`, then
    `convs - 1` 3x3 convs of `mid` (torchvision's KeypointRCNNHeads: eight 3x3 convs of 512), each
    followed by ReLU. The back runs it on every detection, under the exact mode's float64
    convolutions, so its cost is the default run's."""

    def __init__(self, in_channels: int, mid: int = 32, convs: int = 4):
        layers: list[nn.Module] = [nn.Conv2d(in_channels, mid, 1), nn.ReLU(inplace=True)]
        for _ in range(int(convs) - 1):
            layers += [nn.Conv2d(mid, mid, 3, padding=1), nn.ReLU(inplace=True)]
        super().__init__(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)


def keypoint_modules(in_channels: int, mid: int, convs: int, num_keypoints: int, sampling_ratio: int) -> dict:
    """KeypointRCNN's keypoint branch: 14x14 RoIAlign on p2..p5, `LightKeypointHead` and torchvision's
    deconv + 2x bilinear predictor (56x56 heatmaps, one per keypoint)."""
    from torchvision.models.detection.keypoint_rcnn import KeypointRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign

    return {
        "keypoint_roi_pool": MultiScaleRoIAlign(
            featmap_names=list(FPN_KEYS), output_size=14, sampling_ratio=int(sampling_ratio)
        ),
        "keypoint_head": LightKeypointHead(int(in_channels), int(mid), int(convs)),
        "keypoint_predictor": KeypointRCNNPredictor(int(mid), int(num_keypoints)),
    }

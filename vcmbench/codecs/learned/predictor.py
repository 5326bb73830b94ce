"""Image prediction from decoded features: the "collaborative" half of joint coding.

Duan et al. (IEEE TIP 2020) let the enhancement layer build on the base layer: the viewer's
decoder first predicts the image from the decoded features, and the enhancement layer only
carries the residual between the image and that prediction. This module is the predictor:
a small network from decoded p2 (stride 4) and p3 (stride 8) to RGB at p2's grid x 4 (the
padded input the front saw), and its training on cached features of the training scenes.

Network (about 0.2 M parameters): each level projected by a 1x1 convolution to `width`
channels, p3 upsampled (nearest) and added to p2, two 3x3 residual convolutions, then two
sub-pixel x2 upsamplings to RGB in [0, 255]. Trained with the L2 loss on the 8-bit image.

    vcmbench train-predictor --steps 1500 --out checkpoints/joint_predictor/ci_frcnn.pt

trains it on ci_frcnn's cached features of the synthetic training scenes (the cache of
`vcmbench train`, made on first use) and writes the checkpoint and a json beside it (the
command, time, and validation PSNR of the prediction on the first val scenes).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vcmbench.errors import CheckpointError
from vcmbench.types import Features, ImageMeta


class FeatureToImage(nn.Module):
    """Decoded p2, p3 -> RGB (3, 4 H2, 4 W2) in [0, 255]."""

    def __init__(self, channels: int = 256, width: int = 48):
        super().__init__()
        self.channels, self.width = int(channels), int(width)
        self.p2 = nn.Conv2d(channels, width, 1)
        self.p3 = nn.Conv2d(channels, width, 1)
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(width, width, 3, padding=1)
        )
        self.up1 = nn.Sequential(nn.Conv2d(width, width * 4, 3, padding=1), nn.PixelShuffle(2), nn.ReLU(inplace=True))
        self.up2 = nn.Sequential(nn.Conv2d(width, 3 * 4, 3, padding=1), nn.PixelShuffle(2))

    def forward(self, p2: Tensor, p3: Tensor) -> Tensor:
        x = self.p2(p2) + F.interpolate(self.p3(p3), size=p2.shape[-2:], mode="nearest")
        x = x + self.body(F.relu(x))
        return 127.5 + 127.5 * torch.tanh(self.up2(self.up1(x)))


def load_predictor(path: str | Path, who: str) -> FeatureToImage:
    """The predictor of a checkpoint written by `train`; CheckpointError naming the file otherwise."""
    from vcmbench.codecs.learned.codec import resolve_dir

    p = resolve_dir(str(path))
    if not p.is_file():
        raise CheckpointError(
            f"{who}: predictor checkpoint {p} not found; train one with "
            f"`vcmbench train-predictor --out {path}` or set {who} to a trained checkpoint"
        )
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
        net = FeatureToImage(**state["config"])
        net.load_state_dict({k: v.float() for k, v in state["weights"].items()})
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{who}: {p} is not a predictor checkpoint ({exc})") from None
    return net.eval()


@torch.no_grad()
def predict_image(net: FeatureToImage, features: Features, meta: ImageMeta) -> Tensor:
    """uint8 RGB (3, H, W) at the input's size: the prediction cropped to the resized image the
    front saw (the rest is batch padding) and resized back to the original size."""
    out = net(features["p2"][None].float(), features["p3"][None].float())
    rh, rw = meta.resized_size
    out = out[:, :, :rh, :rw]
    if (rh, rw) != tuple(meta.original_size):
        out = F.interpolate(out, size=tuple(meta.original_size), mode="bilinear", align_corners=False)
    return out[0].round().clamp(0, 255).to(torch.uint8)

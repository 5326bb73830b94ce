"""The learned codecs' decoder building blocks: upsampling, bottom-up mixing, per-level branches.

Kept apart from `models`, which assembles them into the interleaved and cascade networks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from compressai.layers import AttentionBlock, ResidualBlock, ResidualBlockUpsample, ResidualBlockWithStride
from torch import Tensor, nn

from vcmbench.errors import ConfigError


class ResidualUp(nn.Module):
    """Light residual upsampling block: sub-pixel 3x3 conv, LeakyReLU, 3x3 conv, inverse GDN,
    plus a shortcut of nearest-neighbour upsampling and a 1x1 conv (instead of CompressAI's
    second sub-pixel conv in `ResidualBlockUpsample`, a third of the weights)."""

    def __init__(self, in_ch: int, out_ch: int, r: int = 2):
        super().__init__()
        from compressai.layers import GDN, conv3x3, subpel_conv3x3

        self.r = int(r)
        self.body = nn.Sequential(
            subpel_conv3x3(in_ch, out_ch, r),
            nn.LeakyReLU(inplace=True),
            conv3x3(out_ch, out_ch),
            GDN(out_ch, inverse=True),
        )
        self.skip = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + F.interpolate(self.skip(x), scale_factor=self.r, mode="nearest")


DECODERS = ("trunk", "branches")


class BottomUpMix(nn.Module):
    """Bottom-up feature mixing: the finer rebuilt level, brought down to this level's grid by a
    strided 3x3 conv of `width` channels, is mixed into this level's own branch output (1x1 over
    both, added as a residual), so P3..P5 profit from the detail P2's branch recovered."""

    def __init__(self, n: int, width: int):
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(n, width, 3, stride=2, padding=1), nn.LeakyReLU(inplace=True))
        self.mix = nn.Conv2d(n + width, n, 1)

    def forward(self, finer: Tensor, own: Tensor) -> Tensor:
        return own + self.mix(torch.cat([self.down(finer), own], dim=1))


def level_branch(m: int, width: int, n: int, ups: int, light: bool, attention: bool) -> nn.Module:
    """One level's decoder branch from y_hat: 3x3 conv to `width`, [attention], a residual block,
    then `ups` x2 upsamplings (a level coarser than y: -ups strided residual blocks), 1x1 to N."""
    layers: list[nn.Module] = [nn.Conv2d(m, width, 3, padding=1)]
    if attention:
        layers.append(AttentionBlock(width))
    layers.append(ResidualBlock(width, width))
    layers += [up_block(light, width, width) for _ in range(max(ups, 0))]
    layers += [ResidualBlockWithStride(width, width, 2) for _ in range(max(-ups, 0))]
    layers.append(nn.Conv2d(width, n, 1))
    return nn.Sequential(*layers)


def up_block(light: bool, in_ch: int, out_ch: int) -> nn.Module:
    return ResidualUp(in_ch, out_ch, 2) if light else ResidualBlockUpsample(in_ch, out_ch, 2)


def stage_widths(value: int | Sequence[int] | None, default: int, n: int, what: str) -> list[int]:
    if value is None:
        return [int(default)] * n
    if isinstance(value, int):
        return [int(value)] * n
    out = [int(v) for v in value]
    if len(out) != n or min(out) < 1:
        raise ConfigError(f"{what}={list(value)}: give {n} positive widths")
    return out

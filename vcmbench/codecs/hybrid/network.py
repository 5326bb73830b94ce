"""The hybrid codec's two networks: feature reduction (P2..P5 -> one small tensor) and restoration.

Reduction (the encoder's only learned part): each level is divided by its RMS on the training set
(`feat_scale`) and projected to `proj` channels by a 1x1 conv; P2 enters a stride-2 residual block
towards the reduced grid, and each coarser level joins the running tensor by concatenation (after
nearest-neighbour upsampling when it is coarser than the grid) and a residual block, the
interleaved fusion of Kim et al. 2024 that `learned_interleaved` uses; a 3x3 conv gives the
`channels` reduced channels on the grid of P`grid_level` (3: stride 8 of the input image).

What the inner codec sees is not this tensor but its per-item min/max normalisation to 10 bits
(`vcmbench.codecs.hybrid.packing`); the network never learns an absolute range, only a shape.

Restoration (the decoder): a 3x3 conv and two residual blocks on the reduced grid make a trunk; one
branch per level turns it into that level's N channels: a light sub-pixel upsampling block per
step for finer levels (P2), a 1x1 conv on the grid, stride-2 residual blocks for coarser ones (P4,
then P5 from P4's). The FCM test model adds refinement stages; one pass is what a CPU budget allows
here, and `dec_width` is the knob to buy more restoration.

Everything is convolutions, LeakyReLU, GDN, concatenation and nearest/sub-pixel upsampling: all
operations that `determinism=exact` runs on exact integer accumulation, so the reduced samples (and
so the inner codec's bytes) are the same on every machine.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from compressai.layers import ResidualBlock, ResidualBlockWithStride
from torch import Tensor, nn

from vcmbench.codecs.learned.blocks import ResidualUp
from vcmbench.errors import ConfigError

NUM_LEVELS = 4  # p2..p5
ARCH = "hybrid"


class HybridNet(nn.Module):
    """Reduction and restoration of the hybrid codec.

    Args:
        N: channels of each FPN level (256 for vcmbench's detectors).
        channels: channels of the reduced tensor (what the inner codec codes, tiled in one frame).
        grid_level: the reduced tensor's grid: 3 (P3's, stride 8 of the input) or 4 (P4's, 16).
        proj: 1x1 projection width of each incoming level (one number, or one per level p2..p5).
        enc_width: width of the reduction's fusion stages.
        dec_width: width of the restoration trunk and branches.
    """

    arch = ARCH

    def __init__(
        self,
        N: int = 256,
        channels: int = 8,
        grid_level: int = 3,
        proj: int | Sequence[int] = 32,
        enc_width: int = 64,
        dec_width: int = 96,
    ):
        super().__init__()
        if grid_level not in (3, 4):
            raise ConfigError(f"grid_level={grid_level}: choose 3 (P3's grid, stride 8) or 4 (P4's, stride 16)")
        if not 1 <= int(channels) <= 255:
            raise ConfigError(f"channels={channels}: the reduced tensor has 1..255 channels")
        widths = [int(proj)] * NUM_LEVELS if isinstance(proj, int) else [int(v) for v in proj]
        if len(widths) != NUM_LEVELS or min(widths) < 1:
            raise ConfigError(f"proj={proj}: give one width, or one per level p2..p5, each >= 1")
        self.N, self.channels, self.grid_level = int(N), int(channels), int(grid_level)
        self.proj_widths, self.enc_width, self.dec_width = widths, int(enc_width), int(dec_width)
        self.register_buffer("feat_scale", torch.ones(NUM_LEVELS))
        self.register_buffer("feat_absmax", torch.full((NUM_LEVELS,), 1e4))

        # -- reduction --------------------------------------------------------------------------------
        self.proj = nn.ModuleList(nn.Conv2d(self.N, w, 1) for w in widths)
        ew = self.enc_width
        stages, grid = [], 2
        for i in range(NUM_LEVELS):
            cin = widths[0] if i == 0 else ew + widths[i]
            target = min(grid + 1, self.grid_level)
            stride = 1 << (target - grid)
            stages.append(ResidualBlockWithStride(cin, ew, stride) if stride > 1 else ResidualBlock(cin, ew))
            grid = target
        self.stages = nn.ModuleList(stages)
        self.to_reduced = nn.Conv2d(ew, self.channels, 3, padding=1)

        # -- restoration ------------------------------------------------------------------------------
        dw = self.dec_width
        self.trunk = nn.Sequential(
            nn.Conv2d(self.channels, dw, 3, padding=1),
            nn.LeakyReLU(inplace=True),
            ResidualBlock(dw, dw),
            ResidualBlock(dw, dw),
        )
        finer = self.grid_level - 2  # levels finer than the grid: P2 (and P3 when the grid is P4's)
        self.up = nn.ModuleList(ResidualUp(dw, dw, 2) for _ in range(finer))
        self.down = nn.ModuleList(ResidualBlockWithStride(dw, dw, 2) for _ in range(NUM_LEVELS - 1 - finer))
        self.heads = nn.ModuleList(nn.Conv2d(dw, self.N, 1) for _ in range(NUM_LEVELS))

    # -- geometry --------------------------------------------------------------------------------------
    @property
    def total_stride(self) -> int:
        """P2 cells per cell of the coarsest level (P5): the P2 grid is padded to a multiple of it."""
        return 1 << (NUM_LEVELS - 1)

    @property
    def grid_stride(self) -> int:
        """P2 cells per cell of the reduced grid."""
        return 1 << (self.grid_level - 2)

    def set_feature_stats(self, scale: Sequence[float], absmax: Sequence[float]) -> None:
        self.feat_scale.copy_(torch.as_tensor([max(float(s), 1e-6) for s in scale]))
        self.feat_absmax.copy_(torch.as_tensor([max(float(a), 1e-6) for a in absmax]))

    def update(self, force: bool = False, update_quantiles: bool = False) -> bool:
        """No entropy model to update: the checkpoint writer calls this on every learned network."""
        return False

    # -- transforms ------------------------------------------------------------------------------------
    def reduce(self, levels: Sequence[Tensor]) -> Tensor:
        """[p2..p5] (B, N, H_l, W_l), P2 a multiple of `total_stride` -> (B, channels, H_g, W_g)."""
        x = [proj(t / s) for proj, t, s in zip(self.proj, levels, self.feat_scale)]
        e = self.stages[0](x[0])
        grid = min(3, self.grid_level)
        for i in range(1, NUM_LEVELS):
            level = 2 + i
            incoming = x[i]
            if level > grid:  # coarser than the running tensor: nearest-neighbour up to its grid
                incoming = F.interpolate(incoming, scale_factor=float(1 << (level - grid)), mode="nearest")
            e = self.stages[i](torch.cat([e, incoming], dim=1))
            grid = min(grid + 1, self.grid_level)
        return self.to_reduced(e)

    def restore(self, reduced: Tensor) -> list[Tensor]:
        """(B, channels, H_g, W_g) -> [p2, p3, p4, p5] in feature units."""
        t = self.trunk(reduced)
        finer = self.grid_level - 2
        outs: list[Tensor | None] = [None] * NUM_LEVELS
        u = t
        for k, up in enumerate(self.up):  # the grid's level minus 1, minus 2, ...
            u = up(u)
            outs[finer - 1 - k] = u
        outs[finer] = t
        d = t
        for k, down in enumerate(self.down):
            d = down(d)
            outs[finer + 1 + k] = d
        return [head(o) * s for head, o, s in zip(self.heads, outs, self.feat_scale)]

    def forward(self, levels: Sequence[Tensor]) -> Tensor:  # pragma: no cover - training uses reduce/restore
        return self.reduce(levels)


def build_hybrid_net(**kw) -> HybridNet:
    """The network a checkpoint describes (its `net` settings as keyword arguments)."""
    return HybridNet(**{k: v for k, v in kw.items() if v is not None})

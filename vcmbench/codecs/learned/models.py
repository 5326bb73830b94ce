"""Learned multi-scale feature compression networks (CompressAI building blocks).

Two encoders share one decoder and one entropy model:

* `InterleavedNet`: the interleaved fusion-and-encoding of Kim et al., "End-to-end
  learnable multi-scale feature compression for VCM" (IEEE TCSVT 2024, arXiv 2306.16670).
  P2 is encoded by a strided residual block down to P3's grid; that latent is
  concatenated with P3 and encoded again (strided residual block) down to P4's grid; then
  with P4, then with P5 (a stage whose input already sits on the latent's grid keeps its
  resolution, and a level coarser than the latent, P5 when ``y_level`` is 4, is first
  upsampled by a learned sub-pixel conv). The last stage ends in an attention block and a
  3x3 conv to the M latent channels ``y``. Only ``y`` (with its hyper latent) is coded.
  ``in_proj`` optionally projects each incoming level to fewer channels by a 1x1 conv first
  (the compact variant; the paper concatenates all N channels).
* `CascadeNet`: the ablation baseline the paper argues against: all levels are first
  resized to one grid (``fuse_level``, P3 by default: P2 average-pooled, P4/P5
  bilinearly upsampled), concatenated and fused by a 1x1 conv, and the fused tensor is
  then compressed by strided residual blocks to the same latent grid, with the same
  entropy model and decoder.

Entropy model: CompressAI's mean-scale hyperprior (Minnen et al. 2018): ``z = h_a(y)``
goes through an `EntropyBottleneck`, ``h_s(z_hat)`` gives the mean and scale of a
`GaussianConditional` over ``y``.

Decoder (shared): ``y_hat`` -> 3x3 conv -> attention block -> [residual upsampling when
``y`` sits below P5] -> residual block = the trunk on y's grid; the P5 trunk is it (or,
with ``y_level`` 4, a strided residual block of it), residual upsampling blocks
(CompressAI's `ResidualBlockUpsample`, or the lighter `ResidualUp`) give the P4, P3 and P2
trunks; a feature-mixing stage turns each trunk into N channels with a 1x1 conv and adds
the upsampled level above it (the FPN's own top-down pathway), so P2 starts from
everything the coarser levels rebuilt. P6 is never produced: the back derives it from the
decoded P5.

Feature scaling: features are divided by a per-level RMS (``feat_scale``, a buffer filled
from the training set) before the encoder and multiplied back after the decoder, so one
network design fits fronts whose features differ in range. ``feat_absmax`` (per level)
bounds decoded features at the codec (corrupt payloads cannot produce inf/NaN).

Geometry: ``y`` sits on the grid of P``y_level`` (3: stride 8 of the input image; 4: 16;
5: 32; 6: 64, the official code's) and ``z`` 2**hyper_down coarser; the P2 grid must be
a multiple of `total_stride` (in P2 cells), which the codec ensures by replicate-padding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import AttentionBlock, ResidualBlock, ResidualBlockWithStride
from compressai.models import CompressionModel
from compressai.models.utils import conv, deconv
from torch import Tensor, nn

from vcmbench.codecs.learned.blocks import DECODERS, BottomUpMix, level_branch, stage_widths, up_block
from vcmbench.errors import ConfigError

NUM_LEVELS = 4  # p2..p5
CONTEXT_KERNEL = 5  # the autoregressive context model's masked convolution
ARCHS = ("interleaved", "cascade")


class FeatureCompressionNet(CompressionModel):
    """Shared hyperprior entropy model, decoder, scaling and padding; subclasses set `g_a`.

    Args:
        N: feature channels of p2..p5 (256 for the FPNs of vcmbench's detectors).
        C: internal width of the encoder (the paper: N=256 throughout).
        M: latent channels of ``y`` (paper: 128 at low rates, 192 at high rates).
        hyper: channels of the hyper latent ``z`` (default: C).
        dec_widths: decoder trunk widths at P5, P4, P3, P2 (default: C everywhere).
        y_level: the grid of ``y``: 5 = P5's (stride 32 of the input), 6 = one step below P5
            (stride 64, the official code's), 4 = P4's (stride 16: the last stage fuses P5 after a
            learned x2 sub-pixel upsampling instead of downsampling the latent), 3 = P3's
            (stride 8, for near-lossless P2; P4 and P5 are upsampled before they join; needs
            decoder=branches).
        hyper_down: stride-2 convs in ``h_a`` (1 or 2).
        light_up: `ResidualUp` (one sub-pixel conv) instead of CompressAI's
            `ResidualBlockUpsample` (two) in the decoder.
        attention: attention blocks at the latent end of encoder and decoder.
    """

    arch = "base"

    def __init__(
        self,
        N: int = 256,
        C: int = 256,
        M: int = 192,
        hyper: int | None = None,
        dec_widths: Sequence[int] | None = None,
        y_level: int = 5,
        hyper_down: int = 2,
        light_up: bool = False,
        attention: bool = True,
        decoder: str = "trunk",
        mix_width: int = 64,
        ste: bool = False,
        context: bool = False,
    ):
        super().__init__()
        if decoder not in DECODERS:
            raise ConfigError(f"decoder={decoder!r}: choose one of {list(DECODERS)}")
        if y_level not in (3, 4, 5, 6):
            raise ConfigError(f"y_level={y_level}: choose 3 (latent on P3's grid), 4 (P4's), 5 (P5's) or 6 (P5/2)")
        if y_level == 3 and decoder != "branches":
            raise ConfigError("y_level=3 needs decoder=branches (the shared trunk starts at P4's grid or coarser)")
        if hyper_down not in (1, 2):
            raise ConfigError(f"hyper_down={hyper_down}: choose 1 or 2 stride-2 convs in the hyper encoder")
        self.N, self.C, self.M = int(N), int(C), int(M)
        self.H = int(hyper or C)
        self.y_level, self.hyper_down = int(y_level), int(hyper_down)
        dw = stage_widths(dec_widths, C, NUM_LEVELS, "dec_widths")
        self.dec_widths = dw
        H, M = self.H, self.M

        # -- hyperprior (mean-scale) -------------------------------------------------------
        ha: list[nn.Module] = [conv(M, H, kernel_size=3, stride=1)]
        for _ in range(self.hyper_down):
            ha += [nn.LeakyReLU(inplace=True), conv(H, H, kernel_size=3, stride=2)]
        hs: list[nn.Module] = []
        for i in range(self.hyper_down):
            last = i + 1 == self.hyper_down
            hs += [deconv(H, M if last else H, kernel_size=3, stride=2), nn.LeakyReLU(inplace=True)]
        hs += [conv(M, 2 * M, kernel_size=1, stride=1)]
        self.h_a = nn.Sequential(*ha)
        self.h_s = nn.Sequential(*hs)
        self.entropy_bottleneck = EntropyBottleneck(H)
        self.gaussian_conditional = GaussianConditional(None)
        # joint autoregressive + hierarchical prior (Minnen et al. 2018, CompressAI's
        # JointAutoregressiveHierarchicalPriors): a 5x5 masked conv over the already decoded
        # latents joins h_s's output in a 1x1 entropy-parameters network; decoding is serial
        self.context = bool(context)
        if self.context:
            from compressai.layers import MaskedConv2d

            self.context_prediction = MaskedConv2d(M, 2 * M, kernel_size=CONTEXT_KERNEL, padding=CONTEXT_KERNEL // 2)
            self.entropy_parameters = nn.Sequential(
                nn.Conv2d(4 * M, 10 * M // 3, 1),
                nn.LeakyReLU(inplace=True),
                nn.Conv2d(10 * M // 3, 8 * M // 3, 1),
                nn.LeakyReLU(inplace=True),
                nn.Conv2d(8 * M // 3, 2 * M, 1),
            )

        self.decoder, self.ste = decoder, bool(ste)
        self.register_buffer("feat_scale", torch.ones(NUM_LEVELS))
        self.register_buffer("feat_absmax", torch.full((NUM_LEVELS,), 1e4))
        if decoder == "branches":
            self.g_s_branches = nn.ModuleList(
                level_branch(M, dw[NUM_LEVELS - 1 - i], self.N, self.y_level - (2 + i), light_up, attention)
                for i in range(NUM_LEVELS)
            )  # p2..p5
            self.g_s_mix = nn.ModuleList(BottomUpMix(self.N, int(mix_width)) for _ in range(NUM_LEVELS - 1))
            return

        # -- decoder: one shared top-down trunk ------------------------------------------------
        tw = dw[1] if self.y_level == 4 else dw[0]  # trunk width: that of the level y sits on
        trunk: list[nn.Module] = [nn.Conv2d(M, tw, 3, padding=1)]
        if attention:
            trunk.append(AttentionBlock(tw))
        if self.y_level == 6:
            trunk.append(up_block(light_up, tw, tw))
        trunk.append(ResidualBlock(tw, tw))
        self.g_s_trunk = nn.Sequential(*trunk)
        # y on P4's grid: the P5 trunk comes from the P4 one by a strided residual block
        self.g_s_down = ResidualBlockWithStride(tw, dw[0], 2) if self.y_level == 4 else None
        self.g_s_up = nn.ModuleList(up_block(light_up, dw[i], dw[i + 1]) for i in range(NUM_LEVELS - 1))
        # feature mixing: per-level 1x1 to N, plus the upsampled level above (top-down)
        self.g_s_out = nn.ModuleList(nn.Conv2d(w, self.N, 1) for w in dw)  # p5, p4, p3, p2

    # -- geometry ---------------------------------------------------------------------------
    @property
    def total_stride(self) -> int:
        """Stride of ``z`` in P2 cells: the P2 grid must be a multiple of it."""
        return self.y_stride * (2**self.hyper_down)

    @property
    def y_stride(self) -> int:
        """Stride of ``y`` in P2 cells."""
        return 1 << (self.y_level - 2)

    def set_feature_stats(self, scale: Sequence[float], absmax: Sequence[float]) -> None:
        self.feat_scale.copy_(torch.as_tensor([max(float(s), 1e-6) for s in scale]))
        self.feat_absmax.copy_(torch.as_tensor([max(float(a), 1e-6) for a in absmax]))

    # -- transforms -----------------------------------------------------------------------------
    def _normalize(self, levels: Sequence[Tensor]) -> list[Tensor]:
        """x / feat_scale, written straight into channels-last memory when no gradient is taken
        (coding): oneDNN's convolutions run 2-3x faster on CPU in that layout, and dividing into
        it is one pass over P2 instead of a layout copy and then a division (the same numbers).
        Training keeps the default layout (oneDNN aborted in some channels-last backward passes)."""
        out = []
        for x, s in zip(levels, self.feat_scale):
            if torch.is_grad_enabled() or x.dim() != 4:
                out.append(x / s)
            else:
                out.append(torch.div(x, s, out=torch.empty_like(x, memory_format=torch.channels_last)))
        return out

    def g_a(self, levels: Sequence[Tensor]) -> Tensor:
        raise NotImplementedError

    def g_s(self, y_hat: Tensor) -> list[Tensor]:
        """y_hat -> [p2, p3, p4, p5] in feature units (scaled back)."""
        if self.decoder == "branches":
            outs = [branch(y_hat) for branch in self.g_s_branches]
            for i, mix in enumerate(self.g_s_mix):  # bottom-up: p3 takes from p2, p4 from p3, p5 from p4
                outs[i + 1] = mix(outs[i], outs[i + 1])
            return [p * self.feat_scale[i] for i, p in enumerate(outs)]
        u = self.g_s_trunk(y_hat)
        if self.g_s_down is not None:  # y on P4's grid
            trunks = [self.g_s_down(u), u]
            ups = self.g_s_up[1:]
        else:
            trunks, ups = [u], self.g_s_up
        for up in ups:
            u = up(u)
            trunks.append(u)  # p5, p4, p3, p2 trunks
        outs: list[Tensor] = []
        prev = None
        for t, head in zip(trunks, self.g_s_out):
            p = head(t)
            if prev is not None:
                p = p + F.interpolate(prev, scale_factor=2, mode="nearest")
            outs.append(p)
            prev = p
        outs = outs[::-1]  # p2..p5
        return [p * self.feat_scale[i] for i, p in enumerate(outs)]

    # -- training -------------------------------------------------------------------------------
    def forward(self, levels: Sequence[Tensor]) -> dict:
        y = self.g_a(levels)
        z = self.h_a(y)
        z_hat, z_lik = self.entropy_bottleneck(z)
        params = self.h_s(z_hat)
        if self.context:
            y_q = self.gaussian_conditional.quantize(y, "noise" if self.training else "dequantize")
            params = self.entropy_parameters(torch.cat([params, self.context_prediction(y_q)], dim=1))
        scales, means = params.chunk(2, 1)
        y_hat, y_lik = self.gaussian_conditional(y, scales, means=means)
        if self.ste and self.training:
            # the decoder trains on what it will decode (rounded y), gradients straight through;
            # the rate term keeps the noise proxy's likelihoods
            from compressai.ops import quantize_ste

            y_hat = quantize_ste(y - means) + means
        return {"levels": self.g_s(y_hat), "likelihoods": {"y": y_lik, "z": z_lik}}

    # -- exact hyper-decoding (both ends of the range coder) ---------------------------------
    def _exact(self, name: str) -> nn.Module:
        """A float64 copy of submodule `name`, refreshed when its weights change (not registered:
        not in the state dict)."""
        import copy

        module = getattr(self, name)
        key = tuple(p._version for p in module.parameters()) + tuple(id(p) for p in module.parameters())
        cached = self.__dict__.get(f"_{name}64")
        if cached is None or cached[0] != key:
            cached = (key, copy.deepcopy(module).double().requires_grad_(False))
            self.__dict__[f"_{name}64"] = cached
        return cached[1]

    def hyper_params_exact(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        """h_s in float64: the scale -> CDF-index choice must agree bit for bit at both ends.
        (With the context model these are h_s's 2M channels, `context_params_exact`'s input.)"""
        scales, means = self._exact("h_s")(z_hat.double()).chunk(2, 1)
        return scales, (means if self.context else means.float())

    def context_params_exact(self, y_hat: Tensor, hyper: Tensor, h: int, w: int) -> tuple[Tensor, Tensor]:
        """Scales and means of y at (h, w) from the decoded latents before it, in float64.

        `y_hat`: the decoded latents so far, zero-padded by CONTEXT_KERNEL // 2 on every side (a
        latent not yet decoded is zero, as the masked convolution's training sees it); `hyper`:
        `hyper_params_exact`'s two halves concatenated. Encoder and decoder both call this, one
        position at a time in raster order, so they pick the same CDF for every symbol.
        """
        k = CONTEXT_KERNEL
        cp = self._exact("context_prediction")
        ctx = F.conv2d(y_hat[:, :, h : h + k, w : w + k], cp.weight * cp.mask, cp.bias)
        params = self._exact("entropy_parameters")(torch.cat([hyper[:, :, h : h + 1, w : w + 1], ctx], dim=1))
        scales, means = params.chunk(2, 1)
        return scales, means


class InterleavedNet(FeatureCompressionNet):
    """Interleaved fusion and encoding (Kim et al. 2024): P2 -> +P3 -> +P4 -> +P5 -> y.

    `in_proj`: width of a 1x1 projection of each incoming level before it joins the
    encoder (the compact variant); None concatenates the N-channel levels as they are
    (the paper). `enc_attention`: the attention block before the encoder's last conv (None:
    as `attention`, which then only sets the decoder's). On P3's grid it is the encoder's
    costliest block per MAC (six small residual units and a sigmoid gate, about a sixth of
    its time at 2 threads), so the CPU variant leaves it out to encode faster.
    """

    arch = "interleaved"

    def __init__(
        self,
        N: int = 256,
        C: int = 256,
        M: int = 192,
        enc_widths: Sequence[int] | None = None,
        in_proj: int | None = None,
        attention: bool = True,
        enc_attention: bool | None = None,
        **kw,
    ):
        super().__init__(N=N, C=C, M=M, attention=attention, **kw)
        self.enc_attention = attention if enc_attention is None else bool(enc_attention)
        ew = stage_widths(enc_widths, C, NUM_LEVELS, "enc_widths")
        self.enc_widths = ew
        # in_proj: one width for every level, or one per level (0/None: that level enters as it is)
        if isinstance(in_proj, Sequence) and not isinstance(in_proj, str):
            widths = [int(v) if v else 0 for v in in_proj]
            if len(widths) != NUM_LEVELS or min(widths) < 0:
                raise ConfigError(f"in_proj={list(in_proj)}: give one width per level p2..p5 (0: no projection)")
            self.in_proj: int | list[int] | None = widths
        else:
            widths = [int(in_proj) if in_proj else 0] * NUM_LEVELS
            self.in_proj = int(in_proj) if in_proj else None
        ks = [w or self.N for w in widths]
        if any(widths):
            self.g_a_proj = nn.ModuleList(nn.Conv2d(self.N, w, 1) if w else nn.Identity() for w in widths)
        else:
            self.g_a_proj = None
        from compressai.layers import subpel_conv3x3

        # stage i fuses level P(2+i) into the latent on grid g and moves it to the next grid
        # (P3, P4, P5, then y's): a stride-2 residual block, or stride 1 where y's grid is reached
        stages, ups, grid = [], [], 2
        for i in range(NUM_LEVELS):
            target = min(3 + i, self.y_level) if i < NUM_LEVELS - 1 else self.y_level
            stride = 1 << (target - grid)
            cin = ks[0] if i == 0 else ew[i - 1] + ks[i]
            stages.append(ResidualBlockWithStride(cin, ew[i], stride) if stride > 1 else ResidualBlock(cin, ew[i]))
            level = 2 + i
            # a level coarser than the latent's grid (P5 when y sits on P4's) is upsampled first
            ups.append(subpel_conv3x3(ks[i], ks[i], 1 << (level - grid)) if level > grid else nn.Identity())
            grid = target
        self.g_a_stages = nn.ModuleList(stages)
        self.g_a_up = nn.ModuleList(ups)
        tail: list[nn.Module] = []
        if self.enc_attention:
            tail.append(AttentionBlock(ew[-1]))
        tail.append(nn.Conv2d(ew[-1], self.M, 3, padding=1))
        self.g_a_tail = nn.Sequential(*tail)

    def g_a(self, levels: Sequence[Tensor]) -> Tensor:
        x = self._normalize(levels)
        if self.g_a_proj is not None:
            x = [proj(t) for proj, t in zip(self.g_a_proj, x)]
        e = self.g_a_stages[0](x[0])
        for i in range(1, NUM_LEVELS):
            e = self.g_a_stages[i](torch.cat([e, self.g_a_up[i](x[i])], dim=1))
        return self.g_a_tail(e)


class CascadeNet(FeatureCompressionNet):
    """Fuse-then-compress baseline: resize all levels to one grid, concat, 1x1 conv, then encode."""

    arch = "cascade"

    def __init__(
        self,
        N: int = 256,
        C: int = 256,
        M: int = 192,
        fuse_level: int = 3,
        in_proj: int | None = None,
        attention: bool = True,
        **kw,
    ):
        super().__init__(N=N, C=C, M=M, attention=attention, **kw)
        if fuse_level not in (2, 3, 4, 5) or fuse_level > self.y_level:
            raise ConfigError(
                f"fuse_level={fuse_level}: choose 2..{min(5, self.y_level)} (the grid of p2..p5 the "
                f"levels are resized to; not coarser than y's, y_level={self.y_level})"
            )
        self.fuse_level = int(fuse_level)
        self.in_proj = None  # the 1x1 fusion conv is the projection
        self.g_a_fuse = nn.Sequential(nn.Conv2d(NUM_LEVELS * self.N, self.C, 1), nn.LeakyReLU(inplace=True))
        downs = self.y_level - self.fuse_level  # fused grid -> y grid
        blocks: list[nn.Module] = [ResidualBlockWithStride(self.C, self.C, 2) for _ in range(downs)]
        if not blocks:
            blocks = [ResidualBlock(self.C, self.C)]
        if attention:
            blocks.append(AttentionBlock(self.C))
        blocks.append(nn.Conv2d(self.C, self.M, 3, padding=1))
        self.g_a_body = nn.Sequential(*blocks)

    def g_a(self, levels: Sequence[Tensor]) -> Tensor:
        x = self._normalize(levels)
        target = x[self.fuse_level - 2].shape[-2:]
        resized = []
        for t in x:
            if t.shape[-2] > target[0]:
                t = F.adaptive_avg_pool2d(t, target)
            elif t.shape[-2] < target[0]:
                t = F.interpolate(t, size=target, mode="bilinear", align_corners=False)
            resized.append(t)
        return self.g_a_body(self.g_a_fuse(torch.cat(resized, dim=1)))


def build_net(arch: str, **kw) -> FeatureCompressionNet:
    """`arch` interleaved | cascade; the rest are the constructor's keyword arguments."""
    kw = {k: v for k, v in kw.items() if v is not None}
    if arch == "interleaved":
        kw.pop("fuse_level", None)
        return InterleavedNet(**kw)
    if arch == "cascade":
        kw.pop("enc_widths", None)
        kw.pop("enc_attention", None)
        return CascadeNet(**kw)
    raise ConfigError(f"arch={arch!r}: choose one of {ARCHS}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def bounded_levels(levels: Sequence[Tensor], feat_absmax: Tensor) -> list[Tensor]:
    """Decoded levels as the back may take them: NaN made 0 and each level clamped to twice the largest
    magnitude its network saw in training, so no payload (a damaged one included) sends inf or huge
    values into the detector. The learned and the hybrid codecs' decoders end here."""
    lim = feat_absmax * 2.0
    return [
        torch.nan_to_num(t.contiguous(), nan=0.0).clamp_(-float(lim[i]), float(lim[i])) for i, t in enumerate(levels)
    ]


def padded_p2(h2: int, w2: int, multiple: int) -> tuple[int, int]:
    """P2's size after pad_levels: each side rounded up to a multiple of `multiple` (at least one)."""
    return max(1, math.ceil(h2 / multiple)) * multiple, max(1, math.ceil(w2 / multiple)) * multiple


def pad_levels(levels: Sequence[Tensor], multiple: int) -> tuple[list[Tensor], tuple[int, int]]:
    """Replicate-pad (B, N, H_l, W_l) levels so P2 is a multiple of `multiple` and each level half the last.

    Returns the padded levels and the padded P2 size. Level l (0 = p2) gets
    ceil(P2/multiple)*multiple / 2**l; its real size must fit inside (FPN sizes do).
    """
    hp, wp = padded_p2(*levels[0].shape[-2:], multiple)
    out = []
    for i, t in enumerate(levels):
        th, tw = hp >> i, wp >> i
        h, w = t.shape[-2:]
        if h > th or w > tw:
            raise ValueError(f"level {i} is {h}x{w}, larger than the padded grid {th}x{tw}")
        if (h, w) != (th, tw):
            mode = "replicate"
            t = F.pad(t, (0, tw - w, 0, th - h), mode=mode)
        out.append(t)
    return out, (hp, wp)


def level_mse(a: Sequence[Tensor], b: Sequence[Tensor], with_p6: bool = True) -> list[Tensor]:
    """Per-level MSE of p2..p5 (and p6 = p5 subsampled by 2, the back's LastLevelMaxPool)."""
    out = [F.mse_loss(x, y) for x, y in zip(a, b)]
    if with_p6:
        out.append(F.mse_loss(a[-1][..., ::2, ::2], b[-1][..., ::2, ::2]))
    return out

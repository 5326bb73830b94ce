"""The learned codecs' payload stream: z and y of one image in one rANS stream (CompressAI's coder).

z is coded with the entropy bottleneck, y with the Gaussian conditional whose mean and scale the
hyper-decoder computes from z (in float64, so both ends pick the same CDFs); with the context
model (`net.context`), each y position's mean and scale also depend on the latents decoded before
it, so y is coded serially in raster order.

Integrity without a checksum: rANS coding is a deterministic function of the symbols and
their CDF indexes, so the decoder re-encodes what it decoded and compares the result with
the received stream; any difference (a flipped or missing byte) is a PayloadError. The
decoder also reads from a zero-padded copy of the stream, so a corrupt stream cannot make
the C++ decoder read outside memory it owns, and decoded features are clamped to the
range seen in training, so they are always finite.

Kept apart from the codec adapter (`codec`), which adds the model id and quality in front of
the stream, and from the checkpoint files (`checkpoint`); training (`vcmbench.train.codec`)
measures real bytes with `encode_levels` / `decode_levels`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from vcmbench.codecs.learned.models import CONTEXT_KERNEL, FeatureCompressionNet, bounded_levels, pad_levels
from vcmbench.errors import PayloadError

#: Symbols are clamped to +-SYMBOL_LIMIT before coding. CompressAI's rANS encoder loops forever
#: on bypass values of 2**28 and more (an int32 shift by 32), so the decoder also refuses any
#: decoded symbol beyond the limit before it re-encodes (a corrupt stream can decode to anything).
SYMBOL_LIMIT = 1 << 20


def _coder_tables(module) -> tuple[list, list, list]:
    """The rANS coder's (cdfs, cdf lengths, offsets) as Python lists, each CDF cut to its own length.

    CompressAI stores the CDFs as one tensor padded to the longest (64 x 3133 entries for the
    Gaussian conditional's scale table, of which 27 k are used); the coder reads only the first
    `length` entries of a row, so the cut rows code the same bytes, and pybind converts 7x fewer
    numbers on every call (2 ms per image; with the context model, per latent position)."""
    lengths = module._cdf_length.reshape(-1).int().tolist()
    cdfs = [row[:n] for row, n in zip(module._quantized_cdf.tolist(), lengths)]
    return cdfs, lengths, module._offset.reshape(-1).int().tolist()


def _z_indexes(net: FeatureCompressionNet, z_shape: tuple[int, int]) -> torch.Tensor:
    c = net.entropy_bottleneck.channels
    return torch.arange(c, dtype=torch.int32).view(1, c, 1, 1).expand(1, c, *z_shape)


def _z_medians(net: FeatureCompressionNet) -> torch.Tensor:
    return net.entropy_bottleneck.quantiles[:, 0, 1].detach().view(1, -1, 1, 1)


class _Cache:
    """Per-net Python lists of the CDF tables (converting them per image costs more than coding)."""

    def __init__(self, net: FeatureCompressionNet):
        self.z = _coder_tables(net.entropy_bottleneck)
        self.y = _coder_tables(net.gaussian_conditional)


def _scale_indexes(net: FeatureCompressionNet, scales: torch.Tensor) -> torch.Tensor:
    """The CDF index of each scale, exactly as `GaussianConditional.build_indexes` picks it (the
    number of scale-table entries below it, the last excluded), in one sorted search instead of
    one pass over the tensor per table entry (64 passes: a third of the encode time at P3's grid)."""
    table = net.gaussian_conditional.scale_table[:-1].to(scales.dtype)
    return torch.bucketize(scales.contiguous(), table, out_int32=True)


def _channels_last(levels: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """oneDNN's convolutions run 2-3x faster on CPU in channels-last layout (same arithmetic up to
    summation order); the codec's networks are converted once (`LearnedCodec.net`)."""
    return [t.contiguous(memory_format=torch.channels_last) for t in levels]


def _tables(net: FeatureCompressionNet) -> _Cache:
    cache = net.__dict__.get("_coder_cache")
    if cache is None:
        cache = _Cache(net)
        net.__dict__["_coder_cache"] = cache
    return cache


@torch.inference_mode()
def encode_levels(net: FeatureCompressionNet, levels: Sequence[torch.Tensor]) -> bytes:
    """[p2..p5] (each (C,H,W) or (1,C,H,W)) -> one rANS stream holding z then y."""
    from compressai.ans import BufferedRansEncoder

    x = [(t if t.dim() == 4 else t.unsqueeze(0)).to(torch.float32) for t in levels]
    x, _ = pad_levels(x, net.total_stride)
    y = net.g_a(x).contiguous()  # g_a's scaling writes the levels channels-last
    z = net.h_a(y)
    med = _z_medians(net)
    z_sym = torch.round(z - med).clamp_(-SYMBOL_LIMIT, SYMBOL_LIMIT)
    z_hat = z_sym + med
    scales, means = net.hyper_params_exact(z_hat)
    if net.context:
        y_symbols, y_indexes = _context_encode(net, y, torch.cat([scales, means], dim=1))
    else:
        y_idx = _scale_indexes(net, scales)
        y_sym = torch.round(y - means).clamp_(-SYMBOL_LIMIT, SYMBOL_LIMIT)
        y_symbols, y_indexes = y_sym.int().reshape(-1).tolist(), y_idx.reshape(-1).tolist()
    tabs = _tables(net)
    enc = BufferedRansEncoder()
    enc.encode_with_indexes(
        z_sym.int().reshape(-1).tolist(), _z_indexes(net, z.shape[-2:]).reshape(-1).tolist(), *tabs.z
    )
    enc.encode_with_indexes(y_symbols, y_indexes, *tabs.y)
    return enc.flush()


def _context_code(
    net: FeatureCompressionNet, hyper: torch.Tensor, y_shape: tuple[int, int], symbols_at
) -> tuple[torch.Tensor, list[int], list[int]]:
    """y's positions in raster order, each with its scales and means from the latents decoded
    before it: `symbols_at(h, w, means, indexes)` gives that position's M symbols (the encoder
    rounds y, the decoder reads the stream). Returns y_hat, all symbols and all CDF indexes, in
    the serial order both ends share."""
    pad = CONTEXT_KERNEL // 2
    hh, ww = y_shape
    y_hat = torch.zeros(1, net.M, hh + 2 * pad, ww + 2 * pad, dtype=torch.float64)
    symbols: list[int] = []
    indexes: list[int] = []
    for h in range(hh):
        for w in range(ww):
            scales, means = net.context_params_exact(y_hat, hyper, h, w)
            idx = _scale_indexes(net, scales).reshape(-1).tolist()
            sym = symbols_at(h, w, means, idx)
            y_hat[:, :, h + pad : h + pad + 1, w + pad : w + pad + 1] = (
                torch.tensor(sym, dtype=torch.float64).view(1, net.M, 1, 1) + means
            )
            symbols += sym
            indexes += idx
    return y_hat[:, :, pad : pad + hh, pad : pad + ww].float(), symbols, indexes


def _context_encode(net: FeatureCompressionNet, y: torch.Tensor, hyper: torch.Tensor) -> tuple[list[int], list[int]]:
    """y's symbols and CDF indexes in the serial order the decoder needs."""
    y64 = y.double()

    def rounded(h: int, w: int, means: torch.Tensor, _idx: list[int]) -> list[int]:
        sym = torch.round(y64[:, :, h : h + 1, w : w + 1] - means).clamp_(-SYMBOL_LIMIT, SYMBOL_LIMIT)
        return sym.int().reshape(-1).tolist()

    _, symbols, indexes = _context_code(net, hyper, tuple(y.shape[-2:]), rounded)
    return symbols, indexes


def _context_decode(
    net: FeatureCompressionNet, dec, tabs: _Cache, hyper: torch.Tensor, y_shape: tuple[int, int], who: str
) -> tuple[torch.Tensor, list[int], list[int]]:
    """Inverse of `_context_encode`: y's symbols read from `dec` one position at a time (serial:
    each position's CDFs need the latents before it). Returns y_hat and the symbols and indexes."""

    def read(_h: int, _w: int, _means: torch.Tensor, idx: list[int]) -> list[int]:
        sym = dec.decode_stream(idx, *tabs.y)
        _check_symbols(sym, who)
        return sym

    return _context_code(net, hyper, y_shape, read)


def _check_symbols(symbols: list[int], who: str) -> None:
    if symbols and max(max(symbols), -min(symbols)) > SYMBOL_LIMIT:
        raise PayloadError(f"{who}: the entropy-coded stream is corrupt (it decodes to out-of-range symbols)")


def _reencode(tabs: _Cache, z_sym: list[int], z_idx: list[int], y_sym: list[int], y_idx: list[int]) -> bytes:
    from compressai.ans import BufferedRansEncoder

    enc = BufferedRansEncoder()
    enc.encode_with_indexes(z_sym, z_idx, *tabs.z)
    enc.encode_with_indexes(y_sym, y_idx, *tabs.y)
    return enc.flush()


@torch.inference_mode()
def decode_levels(
    net: FeatureCompressionNet, stream: bytes, p2_size: tuple[int, int], who: str = "learned", verify: bool = True
) -> list[torch.Tensor]:
    """Inverse of `encode_levels` for a P2 grid of `p2_size` (unpadded): padded [p2..p5], (1,C,H,W)."""
    from compressai.ans import RansDecoder

    s = net.total_stride
    hp, wp = (math.ceil(p2_size[0] / s) * s, math.ceil(p2_size[1] / s) * s)
    z_shape = (hp // s, wp // s)
    y_shape = (hp // net.y_stride, wp // net.y_stride)
    n_sym = net.entropy_bottleneck.channels * z_shape[0] * z_shape[1] + net.M * y_shape[0] * y_shape[1]
    if len(stream) < 8:
        raise PayloadError(f"{who}: payload truncated (the entropy-coded stream has {len(stream)} bytes, at least 8)")
    tabs = _tables(net)
    dec = RansDecoder()
    # zero padding: a corrupt stream may make the decoder read past its end; it reads zeros we own
    dec.set_stream(bytes(stream) + bytes(16 * n_sym + 64 * len(stream) + 1024))
    z_idx = _z_indexes(net, z_shape).reshape(-1).tolist()
    z_sym = dec.decode_stream(z_idx, *tabs.z)
    _check_symbols(z_sym, who)
    med = _z_medians(net)
    z_hat = torch.tensor(z_sym, dtype=torch.float32).view(1, -1, *z_shape).clamp_(-1e4, 1e4) + med
    scales, means = net.hyper_params_exact(z_hat)
    if net.context:
        y_hat, y_sym, y_idx = _context_decode(net, dec, tabs, torch.cat([scales, means], dim=1), y_shape, who)
    else:
        y_idx = _scale_indexes(net, scales).reshape(-1).tolist()
        y_sym = dec.decode_stream(y_idx, *tabs.y)
        _check_symbols(y_sym, who)
        y_hat = torch.tensor(y_sym, dtype=torch.float32).view(1, net.M, *y_shape) + means
    if verify and _reencode(tabs, z_sym, z_idx, y_sym, y_idx) != bytes(stream):
        raise PayloadError(f"{who}: the entropy-coded stream is corrupt (its decoded symbols do not re-encode to it)")
    return bounded_levels(net.g_s(_channels_last([y_hat.clamp_(-1e4, 1e4)])[0]), net.feat_absmax)

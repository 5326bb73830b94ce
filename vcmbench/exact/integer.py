"""Convolutions and matrix products whose result cannot depend on the order of the additions.

A float sum depends on the order it is taken in, and BLAS, oneDNN and cuDNN pick that order by
thread count, instruction set, CPU vendor and device. These functions remove the dependence by
construction: activations and weights are put on power-of-two fixed-point grids (each sample's
activations on one grid, each output channel's weights on one), so every product is an integer,
and the products are summed in float64 with enough headroom that every partial sum, whatever
order and grouping the library chooses (FMA included), is an integer below 2**52: float64 holds it
exactly, so the sum is exact and the same everywhere. Scaling back multiplies by a power of two
(exact), the bias is one correctly rounded addition, and the cast to float32 one rounding.

Precision: of ACC_BITS = 52, ceil(log2 K) bits go to the K terms of a sum; the rest are split
between the activations (at most 22 bits below each sample's largest magnitude) and the weights
(at most 24, a float32's mantissa). For a 3x3 conv of 256 channels (K = 2304) that is 20 + 20 bits,
about float32's own rounding noise on the outputs that matter (measured: README, exact mode).
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

ACC_BITS = 52  # every partial sum of a reduction stays below 2**52 in magnitude: exact in float64
MAX_ACT_BITS = 22
MAX_WEIGHT_BITS = 24


def pow2(exponent: Tensor) -> Tensor:
    """2**e as float64 for integer e, built from its bits (no pow() implementation involved)."""
    e = exponent.to(torch.int64).clamp(-1022, 1023)
    return ((e + 1023) << 52).view(torch.float64)


def bits_for(terms: int) -> tuple[int, int]:
    """(activation bits, weight bits) for a reduction of `terms` products: sums stay below 2**ACC_BITS."""
    budget = ACC_BITS - max(1, math.ceil(math.log2(max(terms, 2)))) - 1  # -1: a rounded value may reach 2**bits
    act = min(MAX_ACT_BITS, budget // 2)
    return act, min(MAX_WEIGHT_BITS, budget - act)


def fixed_point(x: Tensor, bits: int, over: Sequence[int]) -> tuple[Tensor, Tensor]:
    """x on a power-of-two grid per slice: (integers as float64, shift), x ~= q * 2**-shift, |q| <= 2**bits.

    `over`: the dims that share one grid (the others index the slices: a sample, a row, an
    output channel). The grid comes from the slice's largest finite magnitude, a maximum, which
    no summation order can change. Non-finite values stay non-finite (and stay where they are).
    """
    over = tuple(sorted(d % x.dim() for d in over))
    absmax = torch.maximum(x.amax(dim=over, keepdim=True), -x.amin(dim=over, keepdim=True))
    if not bool(torch.isfinite(absmax).all()):
        return _fixed_point_nonfinite(x, bits, over)
    _, exponent = torch.frexp(absmax.to(torch.float64))  # absmax < 2**exponent (0 for 0)
    shift = bits - exponent.to(torch.int64)
    scale = pow2(shift)
    if x.dtype == torch.float32 and bits < 24 and bool((shift.abs() < 100).all()):
        # x * 2**shift is exact in float32 (a power of two; |result| < 2**24), and so is its rounding
        return (x * scale.to(torch.float32)).round_().to(torch.float64), shift
    return (x.to(torch.float64) * scale).round_(), shift


_WEIGHTS: dict[int, tuple] = {}  # id(weight) -> (its key, its grid); dropped when the weight is freed


def fixed_point_weight(w: Tensor, bits: int, over: Sequence[int]) -> tuple[Tensor, Tensor]:
    """fixed_point of a weight, kept while the tensor lives and is not modified: a network's weights are
    put on their grid once, not at every call (their version counter tells a changed weight)."""
    if w.is_inference():
        return fixed_point(w, bits, over)
    key = (w._version, bits, tuple(over), w.dtype, tuple(w.shape), w.stride(), w.data_ptr())
    hit = _WEIGHTS.get(id(w))
    if hit is not None and hit[0] == key:
        return hit[1]
    result = fixed_point(w, bits, over)
    if hit is None:
        weakref.finalize(w, _WEIGHTS.pop, id(w), None)
    _WEIGHTS[id(w)] = (key, result)
    return result


def _fixed_point_nonfinite(x: Tensor, bits: int, over: Sequence[int]) -> tuple[Tensor, Tensor]:
    """fixed_point of a slice holding inf or NaN: the grid from its finite values."""
    x64 = x.to(torch.float64)
    finite = torch.where(torch.isfinite(x64), x64.abs(), torch.zeros((), dtype=torch.float64))
    _, exponent = torch.frexp(finite.amax(dim=tuple(over), keepdim=True) if over else finite)
    shift = bits - exponent.to(torch.int64)
    return torch.round(x64 * pow2(shift)), shift


def _finish(acc: Tensor, scale: Tensor, bias: Tensor | None, dtype: torch.dtype, bias_shape: Sequence[int]) -> Tensor:
    out = acc.mul_(scale)
    if bias is not None:
        out = out.add_(bias.to(torch.float64).reshape(bias_shape))
    return out.to(dtype)


def _nonbatched(x: Tensor, dims: int) -> tuple[Tensor, bool]:
    return (x.unsqueeze(0), True) if x.dim() == dims - 1 else (x, False)


def _gemm_convolutions(x: Tensor):
    """On a GPU, cuDNN may pick FFT or Winograd algorithms, whose transforms are not integer-exact: off,
    so the convolution is im2col + a float64 GEMM there too (on the CPU float64 never reaches oneDNN)."""
    if x.is_cuda:
        return torch.backends.cudnn.flags(enabled=False)
    return contextlib.nullcontext()


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None, stride, padding, dilation, groups: int) -> Tensor:
    """F.conv2d, exact: per-sample activation grid, per-output-channel weight grid, float64 sums."""
    x, squeeze = _nonbatched(x, 4)
    terms = weight.shape[1] * weight.shape[2] * weight.shape[3]
    a_bits, w_bits = bits_for(terms)
    qx, sx = fixed_point(x, a_bits, (1, 2, 3))
    qw, sw = fixed_point_weight(weight, w_bits, (1, 2, 3))
    with _gemm_convolutions(qx):
        acc = F.conv2d(qx, qw, None, stride, padding, dilation, groups)
    scale = pow2(-sx) * pow2(-sw).reshape(1, -1, 1, 1)
    out = _finish(acc, scale, bias, x.dtype, (1, -1, 1, 1))
    return out.squeeze(0) if squeeze else out


def conv_transpose2d(
    x: Tensor, weight: Tensor, bias: Tensor | None, stride, padding, output_padding, groups: int, dilation
) -> Tensor:
    """F.conv_transpose2d, exact. Weight (C_in, C_out/groups, kh, kw): one grid for the whole
    weight (a transposed conv's output channel is spread over groups); a sum has at most
    C_in/groups * kh * kw terms."""
    x, squeeze = _nonbatched(x, 4)
    terms = (weight.shape[0] // groups) * weight.shape[2] * weight.shape[3]
    a_bits, w_bits = bits_for(terms)
    qx, sx = fixed_point(x, a_bits, (1, 2, 3))
    qw, sw = fixed_point_weight(weight, w_bits, (0, 1, 2, 3))
    with _gemm_convolutions(qx):
        acc = F.conv_transpose2d(qx, qw, None, stride, padding, output_padding, groups, dilation)
    out = _finish(acc, pow2(-sx) * pow2(-sw), bias, x.dtype, (1, -1, 1, 1))
    return out.squeeze(0) if squeeze else out


def _matmul64(a: Tensor, b: Tensor) -> Tensor:
    """a @ b in float64, exact: a grid per row of a, one per column of b (torch.matmul's broadcasting)."""
    vec_a, vec_b = a.dim() == 1, b.dim() == 1
    a2 = a.unsqueeze(0) if vec_a else a
    b2 = b.unsqueeze(-1) if vec_b else b
    a_bits, b_bits = bits_for(a2.shape[-1])
    qa, sa = fixed_point(a2, a_bits, (-1,))
    qb, sb = fixed_point(b2, b_bits, (-2,))
    out = torch.matmul(qa, qb) * (pow2(-sa) * pow2(-sb))
    if vec_b:
        out = out.squeeze(-1)
    if vec_a:
        out = out.squeeze(-2)
    return out


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """torch.matmul, exact."""
    return _matmul64(a, b).to(torch.promote_types(a.dtype, b.dtype))


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """F.linear, exact (x @ weight.T + bias, one rounding to x's dtype after the bias)."""
    out = _matmul64(x, weight.t())
    if bias is not None:
        out = out + bias.to(torch.float64)
    return out.to(x.dtype)


def addmm(bias: Tensor, a: Tensor, b: Tensor, *, beta=1, alpha=1) -> Tensor:
    """beta * bias + alpha * (a @ b), the product exact; beta and alpha are separate roundings."""
    out = _matmul64(a, b)
    if alpha != 1:
        out = out * float(alpha)
    if beta != 0:
        out = out + (bias.to(torch.float64) * float(beta) if beta != 1 else bias.to(torch.float64))
    return out.to(a.dtype)

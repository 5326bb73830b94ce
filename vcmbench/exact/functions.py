"""Transcendental functions, reductions and resampling computed by a fixed sequence of IEEE operations.

Addition, subtraction, multiplication, division and square root are correctly rounded on every
IEEE machine, so a computation made only of them, one torch operation at a time (no fused
multiply-add: each operation is its own kernel), gives the same bits on any CPU or GPU. exp, log
and the sums of softmax or a mean are not like that in torch: their vectorised kernels (SLEEF,
SVML, oneDNN) and reduction trees depend on the instruction set and the thread count. This module
writes them in those exact operations, in float64 (about 1e-16 relative error, far below a
float32's rounding), and casts once to the input's dtype.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
from torch import Tensor

from vcmbench.exact.integer import pow2

_INV_LN2 = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 in two parts (fdlibm): k * _LN2_HI is exact for |k| < 2**11
_LN2_LO = 1.90821492927058770002e-10
# 1/n! for n = 13..0: Taylor of exp on |r| <= ln2/2, remainder below 4e-18
_EXP_TAYLOR = [1.0 / math.factorial(n) for n in range(13, -1, -1)]
_SQRT2 = math.sqrt(2.0)


def _f64(x: Tensor) -> Tensor:
    return x.to(torch.float64)


def exp64(x: Tensor) -> Tensor:
    """e**x in float64: 2**k * exp(r), r = x - k ln2 in [-ln2/2, ln2/2], exp(r) by Horner's rule."""
    x = _f64(x)
    clamped = torch.nan_to_num(x, nan=0.0).clamp(-745.0, 709.0)
    k = torch.round(clamped * _INV_LN2)
    r = (clamped - k * _LN2_HI) - k * _LN2_LO
    p = torch.full_like(r, _EXP_TAYLOR[0])
    for c in _EXP_TAYLOR[1:]:
        p = p * r + c
    out = p * pow2(k)
    out = torch.where(x > 709.0, torch.full_like(out, math.inf), out)
    out = torch.where(x < -745.0, torch.zeros_like(out), out)
    return torch.where(torch.isnan(x), x, out)


def log64(x: Tensor) -> Tensor:
    """ln x in float64: x = m 2**e with m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh((m-1)/(m+1)) by its series."""
    x = _f64(x)
    positive = torch.isfinite(x) & (x > 0)
    safe = torch.where(positive, x, torch.ones_like(x))
    tiny = safe < 2.0**-1000  # subnormals and near: scale up first (exact)
    safe = torch.where(tiny, safe * 2.0**60, safe)
    bits = safe.view(torch.int64)
    e = ((bits >> 52) & 0x7FF) - 1023 - torch.where(tiny, 60, 0)
    m = ((bits & 0xFFFFFFFFFFFFF) | (1023 << 52)).view(torch.float64)  # [1, 2)
    big = m > _SQRT2
    m = torch.where(big, m * 0.5, m)
    e = e + big.to(torch.int64)
    s = (m - 1.0) / (m + 1.0)  # |s| < 0.1716
    s2 = s * s
    series = torch.full_like(s, 1.0 / 25.0)
    for n in range(23, 0, -2):
        series = series * s2 + 1.0 / n
    out = (s * series) * 2.0 + e.to(torch.float64) * math.log(2.0)
    out = torch.where(x == 0, torch.full_like(out, -math.inf), out)
    out = torch.where(x == math.inf, x, out)
    return torch.where(torch.isnan(x) | (x < 0), torch.full_like(out, math.nan), out)


def exp(x: Tensor) -> Tensor:
    return exp64(x).to(x.dtype)


def log(x: Tensor) -> Tensor:
    return log64(x).to(x.dtype)


def log2(x: Tensor) -> Tensor:
    return (log64(x) * _INV_LN2).to(x.dtype)


def sigmoid(x: Tensor) -> Tensor:
    return (1.0 / (1.0 + exp64(-_f64(x)))).to(x.dtype)


def tanh(x: Tensor) -> Tensor:
    """tanh = 2 sigmoid(2x) - 1 (exact ops only)."""
    return (2.0 / (1.0 + exp64(-2.0 * _f64(x))) - 1.0).to(x.dtype)


def tree_reduce64(x: Tensor, dims: Sequence[int], keepdim: bool = False, product: bool = False) -> Tensor:
    """Sum (or product) over `dims` in float64 by a fixed pairwise tree (halves combined, an odd tail
    carried): the order depends on the shape only, never on threads or the instruction set."""
    x = _f64(x)
    dims = sorted({d % x.dim() for d in dims}) if x.dim() else []
    if not dims:
        return x
    rest = [d for d in range(x.dim()) if d not in dims]
    moved = x.permute(*rest, *dims)
    # the reduced size given, not -1: a tensor with an empty kept dim (no detections) has no -1 to infer
    flat = moved.reshape(*moved.shape[: len(rest)], math.prod(moved.shape[len(rest) :]))
    if flat.shape[-1] == 0:
        out = torch.full(flat.shape[:-1], 1.0 if product else 0.0, dtype=torch.float64, device=x.device)
    while flat.shape[-1] > 1:
        n = flat.shape[-1]
        half = n // 2
        left, right = flat[..., :half], flat[..., half : 2 * half]
        paired = left * right if product else left + right
        flat = torch.cat([paired, flat[..., 2 * half :]], dim=-1) if n % 2 else paired
    if flat.shape[-1] == 1:
        out = flat[..., 0]
    if keepdim:
        for d in dims:
            out = out.unsqueeze(d)
    return out


def tree_sum64(x: Tensor, dims: Sequence[int], keepdim: bool = False) -> Tensor:
    return tree_reduce64(x, dims, keepdim)


def pow_tensor(x: Tensor, y: Tensor) -> Tensor:
    """x ** y for float tensors as exp(y ln x) (x > 0); 0 ** y and negative bases as IEEE pow defines
    them for non-integer y (a negative base gives NaN)."""
    x64, y64 = _f64(x), _f64(y)
    x64, y64 = torch.broadcast_tensors(x64, y64)
    out = exp64(y64 * log64(x64))
    zero = torch.where(y64 > 0, 0.0, torch.where(y64 == 0, 1.0, math.inf))
    out = torch.where(x64 == 0, zero, out)
    out = torch.where(y64 == 0, torch.ones_like(out), out)
    return out.to(torch.promote_types(x.dtype, y.dtype))


def reduced_dims(x: Tensor, dim) -> list[int]:
    if dim is None or (isinstance(dim, (list, tuple)) and len(dim) == 0):
        return list(range(x.dim()))
    return [int(d) for d in dim] if isinstance(dim, (list, tuple)) else [int(dim)]


def softmax(x: Tensor, dim: int, dtype: torch.dtype | None = None) -> Tensor:
    x64 = _f64(x)
    e = exp64(x64 - x64.amax(dim=dim, keepdim=True))
    return (e / tree_sum64(e, [dim], keepdim=True)).to(dtype or x.dtype)


def log_softmax(x: Tensor, dim: int, dtype: torch.dtype | None = None) -> Tensor:
    x64 = _f64(x)
    shifted = x64 - x64.amax(dim=dim, keepdim=True)
    return (shifted - log64(tree_sum64(exp64(shifted), [dim], keepdim=True))).to(dtype or x.dtype)


def batch_norm_eval(
    x: Tensor, weight: Tensor | None, bias: Tensor | None, mean: Tensor, var: Tensor, eps: float
) -> Tensor:
    """Inference batch norm as x * a + b, a = w / sqrt(var + eps), b = bias - mean * a (separate roundings)."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    a = 1.0 / torch.sqrt(_f64(var) + float(eps))
    if weight is not None:
        a = a * _f64(weight)
    b = -_f64(mean) * a
    if bias is not None:
        b = b + _f64(bias)
    return (_f64(x) * a.reshape(shape) + b.reshape(shape)).to(x.dtype)


def group_norm(x: Tensor, num_groups: int, weight: Tensor | None, bias: Tensor | None, eps: float) -> Tensor:
    """Group norm (Panoptic FPN's semantic head) with tree-summed group means and biased variances in
    float64, then (x - mean) / sqrt(var + eps) * w + b: ATen's kernel sums in a vectorised order."""
    n, c = x.shape[:2]
    groups = _f64(x).reshape(n, int(num_groups), -1)
    count = groups.shape[-1]
    centred = groups - tree_sum64(groups, [2], keepdim=True) / count
    var = tree_sum64(centred * centred, [2], keepdim=True) / count
    out = (centred / torch.sqrt(var + float(eps))).reshape(x.shape)
    shape = (1, c) + (1,) * (x.dim() - 2)
    if weight is not None:
        out = out * _f64(weight).reshape(shape)
    if bias is not None:
        out = out + _f64(bias).reshape(shape)
    return out.to(x.dtype)


def _source_index(n_in: int, n_out: int, align_corners: bool, scale: float | None):
    """Per output position: lower source index, upper index, weight of the upper (ATen's convention)."""
    dst = torch.arange(n_out, dtype=torch.float64)
    if align_corners:
        ratio = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        src = dst * ratio
    else:
        ratio = (1.0 / scale) if scale else n_in / n_out
        src = ((dst + 0.5) * ratio - 0.5).clamp_min(0.0)
    lo = torch.floor(src).to(torch.int64).clamp(max=n_in - 1)
    hi = (lo + 1).clamp(max=n_in - 1)
    return lo, hi, src - lo.to(torch.float64)


def upsample_bilinear2d(x: Tensor, output_size, align_corners: bool, scale_factors) -> Tensor:
    """Bilinear resampling (align_corners as given, no antialias), rows then columns, in float64."""
    h, w = x.shape[-2:]
    if output_size is not None:
        oh, ow = (int(v) for v in output_size)
        sh = sw = None
    else:
        sh, sw = (float(v) for v in scale_factors)
        oh, ow = math.floor(h * sh), math.floor(w * sw)
    x64 = _f64(x)
    lo, hi, t = _source_index(h, oh, align_corners, sh)
    t = t.to(x.device).reshape(-1, 1)
    rows = x64.index_select(-2, lo.to(x.device)) * (1.0 - t) + x64.index_select(-2, hi.to(x.device)) * t
    lo, hi, t = _source_index(w, ow, align_corners, sw)
    t = t.to(x.device)
    out = rows.index_select(-1, lo.to(x.device)) * (1.0 - t) + rows.index_select(-1, hi.to(x.device)) * t
    return out.to(x.dtype)


CUBIC_A = -0.75  # ATen's (and OpenCV's) cubic convolution coefficient


@functools.lru_cache(maxsize=1024)
def _cubic_taps(n_in: int, n_out: int, align_corners: bool, scale: float | None) -> tuple[Tensor, Tensor]:
    """Per output position: the four source indices (clamped to the edge, as ATen reads them) and their
    cubic-convolution weights, in float64 (ATen's source index for cubic: not clamped at 0). Cached:
    Keypoint R-CNN resamples every detection's heatmaps to its box, sizes that recur; callers only
    read the tensors."""
    dst = torch.arange(n_out, dtype=torch.float64)
    if align_corners:
        src = dst * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    else:
        src = (dst + 0.5) * ((1.0 / scale) if scale else n_in / n_out) - 0.5
    base = torch.floor(src)
    t = src - base
    a = CUBIC_A
    x1, x2 = t + 1.0, 1.0 - t
    weights = torch.stack(
        [
            ((a * x1 - 5.0 * a) * x1 + 8.0 * a) * x1 - 4.0 * a,
            ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0,
            ((a + 2.0) * x2 - (a + 3.0)) * x2 * x2 + 1.0,
            ((a * (x2 + 1.0) - 5.0 * a) * (x2 + 1.0) + 8.0 * a) * (x2 + 1.0) - 4.0 * a,
        ],
        dim=1,
    )
    index = (base.to(torch.int64)[:, None] + torch.arange(-1, 3)[None, :]).clamp(0, n_in - 1)
    return index, weights


def upsample_bicubic2d(x: Tensor, output_size, align_corners: bool, scale_factors) -> Tensor:
    """Bicubic resampling (ATen's cubic convolution, A = -0.75, edge-clamped taps, no antialias): along
    the columns, then the rows, each output the four taps' weighted sum in one fixed order, in float64.
    `scale_factors` (h, w), where given, place the source positions as ATen does (1 / scale), also
    beside an output size."""
    h, w = x.shape[-2:]
    sh, sw = (None, None) if scale_factors is None else (float(v) if v else None for v in scale_factors)
    if output_size is not None:
        oh, ow = (int(v) for v in output_size)
    else:
        oh, ow = math.floor(h * sh), math.floor(w * sw)
    x64 = _f64(x)
    index, weight = _cubic_taps(w, ow, align_corners, sw)
    index, weight = index.to(x.device), weight.to(x.device)
    cols = x64.index_select(-1, index[:, 0]) * weight[:, 0]
    for k in range(1, 4):
        cols = cols + x64.index_select(-1, index[:, k]) * weight[:, k]
    index, weight = _cubic_taps(h, oh, align_corners, sh)
    index, weight = index.to(x.device), weight.to(x.device).reshape(-1, 4, 1)
    out = cols.index_select(-2, index[:, 0]) * weight[:, 0]
    for k in range(1, 4):
        out = out + cols.index_select(-2, index[:, k]) * weight[:, k]
    return out.to(x.dtype)


def topk(x: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> tuple[Tensor, Tensor]:
    """The k largest (smallest) by a stable sort: ties keep their index order, on every machine."""
    values, indices = torch.sort(x, dim=dim, descending=largest, stable=True)
    return values.narrow(dim, 0, k), indices.narrow(dim, 0, k)


def grid_sample_bilinear(x: Tensor, grid: Tensor, align_corners: bool) -> Tensor:
    """F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros") for 4-d x, in float64 exact operations:
    each output is the four neighbours' weighted sum in one fixed order (a neighbour outside is 0)."""
    n, c, h, w = x.shape
    g = _f64(grid)
    gx, gy = g[..., 0], g[..., 1]
    if align_corners:
        ix, iy = (gx + 1.0) * 0.5 * (w - 1), (gy + 1.0) * 0.5 * (h - 1)
    else:
        ix, iy = ((gx + 1.0) * w - 1.0) * 0.5, ((gy + 1.0) * h - 1.0) * 0.5
    x0, y0 = torch.floor(ix), torch.floor(iy)
    wx1, wy1 = ix - x0, iy - y0
    wx0, wy0 = 1.0 - wx1, 1.0 - wy1
    flat = _f64(x).reshape(n, c, h * w)

    def corner(xi: Tensor, yi: Tensor) -> Tensor:
        inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
        index = (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).to(torch.int64).reshape(n, 1, -1).expand(n, c, -1)
        values = torch.gather(flat, 2, index).reshape(n, c, *xi.shape[1:])
        return values * inside.unsqueeze(1).to(torch.float64)

    wx0, wx1, wy0, wy1 = (t.unsqueeze(1) for t in (wx0, wx1, wy0, wy1))
    top = corner(x0, y0) * wx0 + corner(x0 + 1.0, y0) * wx1
    bottom = corner(x0, y0 + 1.0) * wx0 + corner(x0 + 1.0, y0 + 1.0) * wx1
    return (top * wy0 + bottom * wy1).to(x.dtype)

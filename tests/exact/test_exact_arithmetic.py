"""vcmbench/exact: integer-accumulated convolutions and products, fixed-sequence functions, the mode's
refusals. Each exact result is checked three ways: against an independent computation (integer
arithmetic in int64, math.fsum, math.exp), against torch's float result (close), and across thread
counts and memory layouts (identical bits)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vcmbench.errors import ConfigError
from vcmbench.exact import ExactArithmetic, integer
from vcmbench.exact import functions as fn

pytestmark = pytest.mark.timeout(120)


def _threads(n: int):
    class Threads:
        def __enter__(self):
            self.before = torch.get_num_threads()
            torch.set_num_threads(n)

        def __exit__(self, *exc):
            torch.set_num_threads(self.before)

    return Threads()


def _int64_conv(qx: torch.Tensor, qw: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    """The same convolution in integer arithmetic (im2col + int64 products): exact by construction."""
    n, _, h, w = qx.shape
    kh, kw = qw.shape[-2:]
    cols = F.unfold(qx, (kh, kw), padding=padding, stride=stride).to(torch.int64)  # values are integers
    out = torch.einsum("ok,nkl->nol", qw.reshape(qw.shape[0], -1).to(torch.int64), cols)
    oh, ow = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
    return out.reshape(n, -1, oh, ow)


@pytest.mark.parametrize(
    "shape, weight, stride, padding",
    [
        ((2, 64, 20, 18), (32, 64, 3, 3), 1, 1),
        ((1, 256, 9, 9), (16, 256, 3, 3), 2, 1),
        ((3, 8, 7, 7), (5, 8, 1, 1), 1, 0),
    ],
)
def test_conv2d_sums_exactly_whatever_the_threads_and_layout(shape, weight, stride, padding):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g) * torch.logspace(-3, 3, shape[1]).view(1, -1, 1, 1)  # mixed magnitudes
    w, b = torch.randn(weight, generator=g), torch.randn(weight[0], generator=g)
    with _threads(1):
        one = integer.conv2d(x, w, b, stride, padding, 1, 1)
    with _threads(2):
        two = integer.conv2d(x.contiguous(memory_format=torch.channels_last), w, b, stride, padding, 1, 1)
    assert torch.equal(one, two.contiguous())
    a_bits, w_bits = integer.bits_for(weight[1] * weight[2] * weight[3])
    qx, sx = integer.fixed_point(x, a_bits, (1, 2, 3))
    qw, sw = integer.fixed_point(w, w_bits, (1, 2, 3))
    acc = _int64_conv(qx, qw, stride, padding)
    assert acc.abs().max() < 2**52  # the headroom the bit split promises
    expected = acc.double() * integer.pow2(-sx) * integer.pow2(-sw).view(1, -1, 1, 1) + b.double().view(1, -1, 1, 1)
    assert torch.equal(one, expected.float())
    reference = F.conv2d(x.double(), w.double(), b.double(), stride, padding)
    # one grid per sample over channels 1e6 apart: about 20 bits below the largest, never worse
    assert ((one.double() - reference).abs().max() / reference.abs().max()) < 5e-5


def test_matmul_and_linear_are_exact_and_close():
    g = torch.Generator().manual_seed(1)
    a, w, b = torch.randn(50, 3136, generator=g), torch.randn(256, 3136, generator=g), torch.randn(256, generator=g)
    with _threads(1):
        one = integer.linear(a, w, b)
    with _threads(2):
        two = integer.linear(a, w, b)
    assert torch.equal(one, two)
    reference = F.linear(a.double(), w.double(), b.double())
    assert ((one.double() - reference).abs().max() / reference.abs().max()) < 1e-5
    # a row's result does not depend on the other rows (each row has its own grid)
    assert torch.equal(integer.linear(a[:7], w, b), one[:7])


def test_weights_are_put_on_their_grid_once_and_again_when_changed():
    w = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(4))
    first = integer.fixed_point_weight(w, 20, (1, 2, 3))
    assert integer.fixed_point_weight(w, 20, (1, 2, 3)) is first
    with torch.no_grad():
        w.mul_(2)
    again = integer.fixed_point_weight(w, 20, (1, 2, 3))
    assert again is not first and torch.equal(again[0], first[0]) and torch.equal(again[1], first[1] - 1)


def test_functions_match_independent_references():
    x = torch.linspace(-700, 700, 20001, dtype=torch.float64)
    want = torch.tensor([math.exp(v) for v in x.tolist()], dtype=torch.float64)
    assert ((fn.exp64(x) - want).abs() / want).max() < 4e-16
    pos = torch.logspace(-300, 300, 20001, dtype=torch.float64)
    assert (fn.log64(pos) - torch.tensor([math.log(v) for v in pos.tolist()], dtype=torch.float64)).abs().max() < 3e-13
    assert torch.isnan(fn.log64(torch.tensor([-1.0]))).all() and fn.log64(torch.tensor([0.0])).item() == -math.inf
    assert fn.exp64(torch.tensor([math.inf, -math.inf, math.nan])).tolist()[:2] == [math.inf, 0.0]
    v = torch.randn(1000, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * torch.logspace(
        -8, 8, 1000, dtype=torch.float64
    )
    assert abs(fn.tree_sum64(v, [0]).item() - math.fsum(v.tolist())) < 1e-6
    logits = torch.randn(40, 9, generator=torch.Generator().manual_seed(2)) * 8
    assert torch.allclose(fn.softmax(logits, 1), torch.softmax(logits, 1), atol=1e-7)
    assert torch.allclose(fn.sigmoid(logits), torch.sigmoid(logits), atol=1e-7)
    img = torch.rand(1, 3, 37, 53, generator=torch.Generator().manual_seed(1))
    for size in ((74, 106), (20, 31)):
        ours = fn.upsample_bilinear2d(img, size, False, None)
        assert torch.allclose(ours, F.interpolate(img, size=size, mode="bilinear", align_corners=False), atol=1e-6)
    grid = torch.rand(1, 7, 5, 2, generator=torch.Generator().manual_seed(0)) * 2.4 - 1.2  # some outside: zeros
    for corners in (False, True):
        ours = fn.grid_sample_bilinear(img, grid, corners)
        # torch computes the sample positions in float32 (1e-7 x the width): ours in float64
        assert torch.allclose(ours, F.grid_sample(img, grid, align_corners=corners), atol=1e-5)


def test_group_norm_is_close_and_the_same_bits_at_any_thread_count():
    """Panoptic FPN's semantic head normalises with GroupNorm: the mode replaces it, in and out of inference mode."""
    x = torch.randn(2, 64, 19, 23, generator=torch.Generator().manual_seed(4)) * 3 + 1
    norm = torch.nn.GroupNorm(32, 64)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-1, 1)
        want = norm(x)
    outs = []
    for threads in (1, 2):
        with _threads(threads), ExactArithmetic():
            with torch.inference_mode():
                outs.append(norm(x))
            with torch.no_grad():
                outs.append(norm(x))
    assert all(torch.equal(outs[0], o) for o in outs[1:])
    assert torch.allclose(outs[0], want, atol=1e-5)
    assert torch.equal(outs[0], fn.group_norm(x, 32, norm.weight.detach(), norm.bias.detach(), norm.eps))


def test_the_mode_replaces_passes_and_refuses():
    x = torch.randn(2, 8, 16, 16, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 4, 3, padding=1)
    with ExactArithmetic():
        out = conv(x)
        summed = x.sum()
        top = torch.topk(torch.tensor([1.0, 3.0, 3.0, 2.0]), 2)
        counted = torch.arange(10).cumsum(0)  # integers are exact: they pass
        flags = (x > 0).sum()  # a sum of booleans stays an integer count
        with pytest.raises(ConfigError, match=r"determinism=exact: the operation aten.cumsum.* determinism=loose"):
            x.cumsum(0)
    with torch.no_grad():
        assert torch.equal(out, integer.conv2d(x, conv.weight, conv.bias, 1, 1, 1, 1))
    assert summed.item() == pytest.approx(x.double().sum().item(), rel=1e-6)
    assert top.indices.tolist() == [1, 2]  # ties in index order
    assert counted[-1].item() == 45
    assert flags.dtype == torch.int64 and flags.item() == int((x > 0).sum())


@pytest.mark.timeout(30)
def test_bicubic_is_aten_s_cubic_convolution_in_a_fixed_order():
    """Keypoint R-CNN resizes its heatmaps bicubically: the exact version takes ATen's taps and weights
    (A = -0.75, edge-clamped) and equals its float64 kernel to rounding, by size or scale, both corner
    conventions; inside the mode F.interpolate reaches it and gives the same bits on every call."""
    img = torch.randn(2, 3, 7, 9, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    for corners in (False, True):
        for size, scale in (((20, 13), None), ((5, 4), None), (None, (2.5, 1.7))):
            ours = fn.upsample_bicubic2d(img, size, corners, scale)
            kw = {"size": size} if size else {"scale_factor": scale}
            ref = F.interpolate(img, mode="bicubic", align_corners=corners, **kw)
            assert ours.shape == ref.shape and (ours - ref).abs().max() < 1e-12
    x = img.float()
    with ExactArithmetic():
        a = F.interpolate(x, size=(56, 56), mode="bicubic", align_corners=False)
        b = F.interpolate(x, size=(56, 56), mode="bicubic", align_corners=False)
    assert torch.equal(a, b) and torch.equal(a, fn.upsample_bicubic2d(x, (56, 56), False, None))


def test_reductions_over_no_rows_give_no_rows():
    """A back with no detection left (a random-init Panoptic FPN on a tiny frame) takes the softmax of a
    (0, classes) tensor: the exact mode gives the empty result, as torch does, not a reshape error."""
    assert fn.tree_sum64(torch.zeros(0, 81), [1]).shape == (0,)
    assert fn.tree_sum64(torch.zeros(0, 81), [1], keepdim=True).shape == (0, 1)
    with ExactArithmetic():
        out = torch.zeros(0, 81).softmax(dim=-1)
    assert out.shape == (0, 81)


def test_euclidean_norm_is_a_fixed_tree_of_squares_and_other_orders_are_refused():
    """JDE's back L2-normalises its embeddings (`F.normalize`: linalg_vector_norm of order 2): float64 squares
    (exact for float32 inputs) summed by the fixed tree, one correctly rounded sqrt; the same bits at any thread
    count, within a float32 rounding of torch's. Detections of no rows give no rows."""
    emb = torch.randn(37, 512, generator=torch.Generator().manual_seed(3))
    runs, before = [], torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            with ExactArithmetic():
                runs.append((F.normalize(emb, dim=-1), torch.linalg.vector_norm(emb, dim=(0, 1))))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert torch.allclose(runs[0][0], F.normalize(emb, dim=-1), atol=1e-7)
    reference = math.sqrt(math.fsum(v * v for v in emb.double().flatten().tolist()))
    assert runs[0][1].item() == pytest.approx(reference, rel=1e-7)
    with ExactArithmetic():
        assert F.normalize(torch.zeros(0, 512), dim=-1).shape == (0, 512)
        with pytest.raises(ConfigError, match="linalg_vector_norm of order 1"):
            torch.linalg.vector_norm(emb, ord=1)

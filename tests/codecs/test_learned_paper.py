"""The paper-size configuration of the interleaved codec: the joint autoregressive + hierarchical prior.

No checkpoint is needed: tiny context-model networks, and the paper-size network itself (its
weights untrained) on a tiny input, on CPU.
"""

from __future__ import annotations

import random

import pytest
import torch

from tests.codecs.test_learned import _features
from vcmbench.codecs.learned.codec import LearnedCodec, decode_levels, encode_levels, save_checkpoint
from vcmbench.codecs.learned.models import CONTEXT_KERNEL, build_net, count_parameters, pad_levels
from vcmbench.errors import ConfigError, PayloadError
from vcmbench.types import LEVELS

pytestmark = [pytest.mark.timeout(300), pytest.mark.filterwarnings("ignore:.*far from that of the features")]

TINY_CONTEXT = dict(
    N=256,
    C=8,
    M=6,
    hyper=8,
    in_proj=8,
    dec_widths=[8, 8, 8, 8],
    y_level=4,
    hyper_down=1,
    light_up=True,
    decoder="branches",
    mix_width=8,
    context=True,
)


def _saved(tmp_path, kw: dict, quality: int = 1, seed: int = 0):
    torch.manual_seed(seed)
    net = build_net("interleaved", **kw).eval()
    meta = {
        "codec": "learned_interleaved_paper",
        "quality": quality,
        "lambda": 1.0,
        "front": {"name": "ci_frcnn", "weights": "none", "sha256": "random-seed-0"},
    }
    save_checkpoint(net, tmp_path / f"q{quality}.pt", "interleaved", kw, meta)
    return LearnedCodec("learned_interleaved_paper", "interleaved", str(tmp_path), rates=[quality])


def test_paper_config_sizes_by_rate():
    from vcmbench.config import compose_config
    from vcmbench.train.codec import _codec_node, net_settings

    cfg = compose_config("train", ["codec=learned_interleaved_paper", "quality=6"])
    _, node = _codec_node(cfg)
    low, high = net_settings(node, 1), net_settings(node, 6)
    assert (low["M"], high["M"]) == (128, 192)
    assert low["C"] == 256 and low["in_proj"] is None and low["y_level"] == 6 and low["context"]
    net = build_net("interleaved", **high)
    assert net.y_stride * 4 == 64  # y at stride 64 of the input image (P2 is stride 4)
    assert 39e6 <= count_parameters(net) <= 68e6  # the official code's range
    node.net_by_quality = {2: {"width": 3}}
    with pytest.raises(ConfigError, match="net_by_quality.2"):
        net_settings(node, 2)


def test_context_forward_shapes_and_causal_mask():
    torch.manual_seed(0)
    net = build_net("interleaved", **TINY_CONTEXT)
    f = _features(0, 32)
    x, _ = pad_levels([f[k].unsqueeze(0) for k in LEVELS], net.total_stride)
    out = net(x)
    assert [t.shape for t in out["levels"]] == [t.shape for t in x]
    assert out["likelihoods"]["y"].shape == (1, 6, 8, 8)
    # the masked conv sees only latents before the centre in raster order
    mask = net.context_prediction.mask[0, 0]
    c = CONTEXT_KERNEL // 2
    assert mask[c, c] == 0 and mask[c, c - 1] == 1 and mask[c, c + 1] == 0 and mask[c + 1].sum() == 0


def test_serial_context_matches_the_masked_convolution(tmp_path):
    """The coder's position-by-position scales and means are the network's parallel ones on the decoded latents."""
    codec = _saved(tmp_path, TINY_CONTEXT)
    net, _ = codec.net(1)
    f = _features(1, 32)
    lv = [f[k] for k in LEVELS]
    stream = encode_levels(net, lv)
    x, _ = pad_levels([t.unsqueeze(0) for t in lv], net.total_stride)
    with torch.no_grad():
        y = net.g_a(x)
        z = net.h_a(y)
    med = net.entropy_bottleneck.quantiles[:, 0, 1].view(1, -1, 1, 1)
    z_hat = torch.round(z - med) + med
    scales_h, means_h = net.hyper_params_exact(z_hat)
    hyper = torch.cat([scales_h, means_h], dim=1)
    pad = CONTEXT_KERNEL // 2
    y_hat = torch.zeros(1, net.M, y.shape[2] + 2 * pad, y.shape[3] + 2 * pad, dtype=torch.float64)
    for h in range(y.shape[2]):
        for w in range(y.shape[3]):
            _, means = net.context_params_exact(y_hat, hyper, h, w)
            y_hat[:, :, h + pad, w + pad] = torch.round(y.double()[:, :, h, w] - means[:, :, 0, 0]) + means[:, :, 0, 0]
    inner = y_hat[:, :, pad:-pad, pad:-pad]
    cp, ep = net._exact("context_prediction"), net._exact("entropy_parameters")
    with torch.no_grad():
        parallel = ep(
            torch.cat([hyper, torch.nn.functional.conv2d(inner, cp.weight * cp.mask, cp.bias, padding=pad)], dim=1)
        )
    serial = torch.cat(
        [
            torch.cat(net.context_params_exact(y_hat, hyper, h, w), dim=1)
            for h in range(y.shape[2])
            for w in range(y.shape[3])
        ],
        dim=0,
    )
    parallel = parallel.permute(0, 2, 3, 1).reshape(-1, 2 * net.M, 1, 1)
    assert torch.allclose(serial, parallel, atol=1e-9)
    # and the decoder rebuilds exactly those latents: its features are g_s of them
    decoded = decode_levels(net, stream, (32, 32))
    with torch.no_grad():
        expected = net.g_s(inner.float())
    lim = net.feat_absmax * 2.0
    for i, (d, e) in enumerate(zip(decoded, expected)):
        assert torch.equal(d, e.clamp(-float(lim[i]), float(lim[i])))


def test_context_codec_roundtrip_and_refusals(tmp_path):
    codec = _saved(tmp_path, TINY_CONTEXT)
    f = _features(2, 32)
    payload = codec.encode(f, codec.rates[0])
    assert payload == codec.encode(f, codec.rates[0])  # deterministic
    out = codec.decode(payload)
    assert all(out[k].shape == f[k].shape and torch.isfinite(out[k]).all() for k in LEVELS)
    rnd = random.Random(0)
    refused = 0
    cases = [payload[:n] for n in (0, 30, 35, 40, len(payload) - 1)]
    for _ in range(20):
        b = bytearray(payload)
        b[rnd.randrange(35, len(b))] ^= 1 << rnd.randrange(8)
        cases.append(bytes(b))
    for b in cases:
        try:
            out = codec.decode(b)
        except PayloadError:
            refused += 1
            continue
        assert all(torch.isfinite(out[k]).all() for k in LEVELS)
    assert refused >= len(cases) - 3


def test_paper_size_network_codes_a_tiny_input():
    """The paper-size network (untrained) through the real range coder on a 64x64 P2 grid (a 256x256
    input); its CDF tables made in memory (a 57 M-parameter checkpoint takes 20 s to compress)."""
    from vcmbench.config import compose_config
    from vcmbench.train.codec import _codec_node, net_settings

    _, node = _codec_node(compose_config("train", ["codec=learned_interleaved_paper"]))
    torch.manual_seed(0)
    net = build_net("interleaved", **net_settings(node, 1)).eval()
    net.update(force=True, update_quantiles=True)
    f = _features(3, 64)
    lv = [f[k] for k in LEVELS]
    stream = encode_levels(net, lv)
    out = decode_levels(net, stream, (64, 64))
    assert all(o.shape == (1, *t.shape) and torch.isfinite(o).all() for o, t in zip(out, lv))
    with pytest.raises(PayloadError):
        decode_levels(net, stream[:-3], (64, 64))

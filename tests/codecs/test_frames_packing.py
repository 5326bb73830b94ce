"""Duan et al. 2020 channel-packing baselines over real inner codecs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vcmbench.codecs.backends.ffmpeg_codecs import AomBackend, Ffv1Backend, JpegBackend, PngBackend, VvencBackend
from vcmbench.codecs.frames import ChannelFrames, FrameCodec, LevelMosaics, greedy_chain
from vcmbench.codecs.tiling import Reader, order_bytes, quant_step, quantize, unpack_order, unpack_streams
from vcmbench.errors import ConfigError, PayloadError
from vcmbench.types import LEVELS

CONTAINER = 4 + 1 + 1 + 4 * 6
C = 24  # channels kept per level: real features, small videos


def image_range(feats):
    return min(float(v.min()) for v in feats.values()), max(float(v.max()) for v in feats.values())


def assert_within_half_step(out, feats, bits=10):
    step = quant_step(*image_range(feats), bits)
    for k in LEVELS:
        assert out[k].shape == feats[k].shape and out[k].dtype == torch.float32
        assert float((out[k] - feats[k]).abs().max()) <= step / 2 * (1 + 1e-3)


def test_yamls_build_with_modest_default_rates(codec_from_yaml):
    for name, layout, tag in [
        ("pack_concat", ChannelFrames, b"PKCC"),
        ("pack_diff", ChannelFrames, b"PKCD"),
        ("pack_tile", LevelMosaics, b"PKTL"),
    ]:
        codec = codec_from_yaml(name)
        assert isinstance(codec, FrameCodec) and isinstance(codec.layout, layout) and codec.tag == tag
        assert codec.backend.family == "hevc"
        assert [r.label for r in codec.rates] == ["qp=32", "qp=37", "qp=42", "qp=47"]


@pytest.mark.parametrize("method", ["concat", "diff", "tile"])
def test_lossless_ffv1_packing_is_exact_up_to_quantisation(method, codec_from_yaml, real_features):
    feats = real_features(channels=C)
    codec = codec_from_yaml(f"pack_{method}", backend=Ffv1Backend, knob="bits", rates=[10, 6])
    out = codec.decode(codec.encode(feats, codec.rates[0]))
    assert_within_half_step(out, feats, 10)
    coarse = codec.encode(feats, codec.rates[1])
    assert_within_half_step(codec.decode(coarse), feats, 6)


@pytest.mark.parametrize("gop", ["intra", "inter"])
def test_concat_bits_fall_as_qp_rises_in_both_gop_modes(gop, codec_from_yaml, real_features):
    feats = real_features(channels=C)
    codec = codec_from_yaml("pack_concat", gop=gop, rates=[27, 37, 47])
    sizes = []
    for rp in codec.rates:
        payload = codec.encode(feats, rp)
        out = codec.decode(payload)
        assert {k: tuple(out[k].shape) for k in LEVELS} == {k: tuple(feats[k].shape) for k in LEVELS}
        sizes.append(len(payload))
        assert payload[CONTAINER] >> 2 == (1 if gop == "inter" else 0)  # the gop flag
    assert sizes[0] > sizes[1] > sizes[2]


def test_inter_and_intra_code_differently_over_vvc(codec_from_yaml, real_features):
    feats = real_features(channels=4)
    sizes = {}
    for gop in ("intra", "inter"):
        codec = codec_from_yaml("pack_concat", backend=VvencBackend, backend__preset="faster", gop=gop, rates=[37])
        payload = codec.encode(feats, codec.rates[0])
        assert codec.decode(payload)["p2"].shape == feats["p2"].shape
        sizes[gop] = len(payload)
    assert sizes["intra"] != sizes["inter"]


def test_diff_order_is_in_the_payload_and_decoding_restores_channel_order(codec_from_yaml, real_features):
    feats = real_features(channels=C)
    codec = codec_from_yaml("pack_diff", backend=Ffv1Backend, knob="bits", rates=[10])
    payload = codec.encode(feats, codec.rates[0])
    lo, hi = image_range(feats)
    r = Reader(payload[CONTAINER + 2 + 8 :], "test")
    orders = [unpack_order(r, C) for _ in LEVELS]
    for k, order in zip(LEVELS, orders):
        q = quantize(feats[k].numpy(), lo, hi, 10)
        np.testing.assert_array_equal(order, greedy_chain(q))
    assert any(not np.array_equal(o, np.arange(C)) for o in orders)  # really reordered
    assert order_bytes(C) == 15  # 24 channels x 5 bits
    streams = unpack_streams(r, len(LEVELS))  # the rest of the payload: the four level videos
    for s, k in zip(streams, LEVELS):
        assert codec.backend.decode(s, tuple(feats[k].shape), 10).shape == tuple(feats[k].shape)
    assert_within_half_step(codec.decode(payload), feats)  # channels back in their places


def test_greedy_chain_puts_similar_channels_next_to_each_other():
    base = np.linspace(0, 1, 16)[:, None, None] * np.ones((16, 4, 4))
    perm = np.random.default_rng(0).permutation(16)
    order = greedy_chain(base[perm])
    chained = perm[order]
    assert sorted(order.tolist()) == list(range(16))
    assert np.abs(np.diff(chained)).max() == 1  # a monotone walk through the ramp
    assert greedy_chain(base[:2]).tolist() == [0, 1]


@pytest.mark.parametrize("tiles", ["per_level", "stacked"])
def test_tile_modes_over_vvc_bits_fall_as_qp_rises(tiles, codec_from_yaml, real_features):
    feats = real_features(channels=64)
    codec = codec_from_yaml(
        "pack_tile", backend=VvencBackend, backend__preset="faster", layout__stacked=tiles == "stacked", rates=[30, 45]
    )
    sizes = []
    for rp in codec.rates:
        payload = codec.encode(feats, rp)
        assert bool(payload[CONTAINER] & (2 << 2)) == (tiles == "stacked")
        out = codec.decode(payload)
        assert {k: tuple(out[k].shape) for k in LEVELS} == {k: tuple(feats[k].shape) for k in LEVELS}
        sizes.append(len(payload))
    assert sizes[0] > sizes[1]


@pytest.mark.parametrize(
    "backend, knob, value", [(AomBackend, "crf", 40), (JpegBackend, "q", 8), (PngBackend, "bits", 8)]
)
def test_other_inner_codecs(backend, knob, value, codec_from_yaml, real_features):
    feats = real_features(channels=8)
    codec = codec_from_yaml(
        "pack_tile", backend=backend, backend__preset=None, knob=knob, rates=[value], quantiser__bits=8
    )
    out = codec.decode(codec.encode(feats, codec.rates[0]))
    assert out["p5"].shape == feats["p5"].shape


def test_config_errors_name_the_setting(codec_from_yaml):
    with pytest.raises(ConfigError, match=r"codec\.p\.layout\.order"):
        codec_from_yaml("pack_concat", name="p", layout__order="zigzag")
    with pytest.raises(ConfigError, match=r"codec\.p\.gop"):
        codec_from_yaml("pack_concat", name="p", gop="ldp")
    with pytest.raises(ConfigError, match=r"codec\.p\.gop=inter"):
        codec_from_yaml("pack_tile", name="p", gop="inter")
    with pytest.raises(ConfigError, match="rate knobs"):
        codec_from_yaml("pack_concat", name="p", backend=VvencBackend, knob="crf")
    with pytest.raises(ConfigError, match="bit"):
        codec_from_yaml("pack_tile", name="p", backend=JpegBackend, backend__preset=None, knob="q", rates=[5])


@pytest.fixture(scope="module")
def diff_payload(codec_from_yaml, real_features):
    codec = codec_from_yaml("pack_diff", rates=[37])
    feats = real_features(channels=C)
    return codec, feats, codec.encode(feats, codec.rates[0])


@pytest.mark.parametrize("cut", [3, 30, 33, 40, 60, 100, -100, -1])
def test_truncated_payload_raises_payload_error_or_decodes_to_right_shapes(diff_payload, cut):
    codec, feats, payload = diff_payload
    try:
        out = codec.decode(payload[:cut])
    except PayloadError as exc:
        assert "pack_diff" in str(exc)
        return
    assert {k: tuple(out[k].shape) for k in LEVELS} == {k: tuple(feats[k].shape) for k in LEVELS}


@pytest.mark.parametrize("offset", [8, 30, 31, 34, 45, 50, 99, 200, 700, -40, -2])
def test_corrupted_payload_raises_payload_error_or_decodes_to_right_shapes(diff_payload, offset):
    codec, feats, payload = diff_payload
    bad = bytearray(payload)
    for j in range(3):
        bad[(offset + j) % len(bad)] ^= 0xA5
    try:
        out = codec.decode(bytes(bad))
    except PayloadError as exc:
        assert "pack_diff" in str(exc)
        return
    for k in LEVELS:
        assert tuple(out[k].shape) == tuple(feats[k].shape) and torch.isfinite(out[k]).all()


def test_payload_of_another_packing_method_is_refused(diff_payload, codec_from_yaml):
    codec, feats, _ = diff_payload
    concat = codec_from_yaml("pack_concat", rates=[37])
    with pytest.raises(PayloadError, match="another codec"):
        codec.decode(concat.encode(feats, concat.rates[0]))

"""MPEG-VCM feature anchor: EE1.2 tiling, 10-bit quantisation, real VVC/HEVC coding, payloads."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from vcmbench.codecs.backends.ffmpeg_codecs import Ffv1Backend, X265Backend
from vcmbench.codecs.frames import EE12_OPENIMAGES_RANGE, MPEG_QPS, FrameCodec
from vcmbench.codecs.tiling import (
    MPEG_GRIDS_256,
    MosaicLayout,
    default_grid,
    dequantize,
    quant_step,
    quantize,
    tile,
    untile,
)
from vcmbench.errors import ConfigError, PayloadError
from vcmbench.types import LEVELS

CONTAINER = 4 + 1 + 1 + 4 * 6


def synthetic(c: int = 256, h: int = 8, w: int = 12) -> dict[str, torch.Tensor]:
    """Level i, channel k, pixel (y, x) = a value that encodes all four."""
    out = {}
    for i, lvl in enumerate(LEVELS):
        hh, ww = max(1, h >> i), max(1, w >> i)
        k = torch.arange(c).view(c, 1, 1)
        y = torch.arange(hh).view(1, hh, 1)
        x = torch.arange(ww).view(1, 1, ww)
        out[lvl] = (i * 1_000_000 + k * 1000 + y * 30 + x).float().expand(c, hh, ww).contiguous()
    return out


# ------------------------------------------------------------------------- tiling


def test_default_grids_are_the_ee12_grids_for_256_channels():
    assert [default_grid(256, i) for i in range(4)] == [(16, 16), (8, 32), (4, 64), (2, 128)]
    assert tuple(default_grid(256, i) for i in range(4)) == MPEG_GRIDS_256


@pytest.mark.parametrize(
    "c, grids",
    [
        (64, [(8, 8), (4, 16), (2, 32), (1, 64)]),
        (128, [(8, 16), (4, 32), (2, 64), (1, 128)]),
        (8, [(2, 4), (1, 8), (1, 8), (1, 8)]),
        (7, [(3, 3), (2, 4), (1, 7), (1, 7)]),  # prime: near-square with a spare tile
        (1, [(1, 1)] * 4),
    ],
)
def test_other_channel_counts_get_near_square_grids(c, grids):
    assert [default_grid(c, i) for i in range(4)] == grids
    for r, k in grids:
        assert r * k >= c


def test_tile_is_raster_order_and_untile_inverts_it():
    c, h, w = 10, 3, 5
    x = np.arange(c * h * w).reshape(c, h, w)
    m = tile(x, 3, 4, fill=-1)
    assert m.shape == (9, 20)
    for k in range(c):
        r, q = divmod(k, 4)
        np.testing.assert_array_equal(m[r * h : (r + 1) * h, q * w : (q + 1) * w], x[k])
    assert (m[2 * h :, 2 * w :] == -1).all()  # spare tiles 10 and 11
    np.testing.assert_array_equal(untile(m, c, h, w, 3, 4), x)


def test_mosaic_stacks_levels_vertically_and_unpacks_exactly():
    f = {k: v.numpy().astype(np.int64) for k, v in synthetic(256, 8, 12).items()}
    shapes = [f[k].shape for k in LEVELS]
    layout = MosaicLayout.for_shapes(shapes)
    frame = layout.pack([f[k] for k in LEVELS], fill=0)
    # p2 16x16 tiles of 8x12, p3 8x32 of 4x6, p4 4x64 of 2x3, p5 2x128 of 1x1 (padded to 2 cols)
    assert frame.shape == (16 * 8 + 8 * 4 + 4 * 2 + 2 * 1, 16 * 12)
    np.testing.assert_array_equal(frame[:8, :12], f["p2"][0])
    np.testing.assert_array_equal(frame[8:16, 12:24], f["p2"][17])  # row 1, col 1 of 16
    np.testing.assert_array_equal(frame[128:132, 6:12], f["p3"][1])
    np.testing.assert_array_equal(frame[128 + 4 : 132 + 4, :6], f["p3"][32])
    np.testing.assert_array_equal(frame[160:162, 3:6], f["p4"][1])
    assert frame[168, 127] == f["p5"][127, 0, 0] and frame[169, 0] == f["p5"][128, 0, 0]
    assert (frame[168:, 128:] == 0).all()  # p5 mosaic is 128 wide, the frame 192
    for k, back in zip(LEVELS, layout.unpack(frame)):
        np.testing.assert_array_equal(back, f[k])


# ------------------------------------------------------------------- quantisation


def test_10bit_quantisation_round_trip_is_within_half_a_step():
    g = torch.Generator().manual_seed(0)
    lo, hi = EE12_OPENIMAGES_RANGE
    x = (torch.rand(100_000, generator=g).double() * (hi - lo) + lo).float().numpy()
    q = quantize(x, lo, hi, 10)
    assert q.dtype == np.uint16 and q.min() >= 0 and q.max() <= 1023
    err = np.abs(dequantize(q, lo, hi, 10) - x)
    step = quant_step(lo, hi, 10)
    assert step == pytest.approx((hi - lo) / 1023, rel=1e-6)
    assert err.max() <= step / 2 * (1 + 1e-4)
    assert quantize(np.array([lo - 5.0, hi + 5.0]), lo, hi, 10).tolist() == [0, 1023]  # clipped
    assert (quantize(np.ones(4), 1.0, 1.0, 10) == 0).all()  # flat range: no division by zero


# -------------------------------------------------------------------- the codec


def _max_err_vs_step(out, feats, step):
    return max(float((out[k] - feats[k]).abs().max()) for k in LEVELS) / step


@pytest.mark.parametrize("backend", [Ffv1Backend, X265Backend])
def test_lossless_settings_leave_only_half_a_quantisation_step(backend, codec_from_yaml, real_features):
    """pack -> quantise -> code (lossless) -> decode -> dequantise -> unpack on real features."""
    feats = real_features()
    codec = codec_from_yaml("anchor_hevc", name=f"anchor_{backend.family}", backend=backend, knob="bits", rates=[10])
    out = codec.decode(codec.encode(feats, codec.rates[0]))
    lo = min(float(v.min()) for v in feats.values())
    hi = max(float(v.max()) for v in feats.values())
    for k in LEVELS:
        assert out[k].shape == feats[k].shape and out[k].dtype == torch.float32
    assert _max_err_vs_step(out, feats, quant_step(lo, hi, 10)) <= 0.5 * (1 + 1e-3)


@pytest.mark.parametrize("name", ["anchor_vvc", "anchor_hevc"])
def test_bits_fall_as_qp_rises_with_the_real_codec(name, codec_from_yaml, real_features):
    feats = real_features()
    codec = codec_from_yaml(name, rates=[35, 40, 45])
    assert isinstance(codec, FrameCodec) and codec.tag == b"ANCH"
    assert [r.label for r in codec_from_yaml(name).rates] == [f"qp={q}" for q in MPEG_QPS]
    sizes, errors = [], []
    for rp in codec.rates:
        payload = codec.encode(feats, rp)
        out = codec.decode(payload)
        assert {k: tuple(out[k].shape) for k in LEVELS} == {k: tuple(feats[k].shape) for k in LEVELS}
        sizes.append(len(payload))
        errors.append(float(sum(((out[k] - feats[k]) ** 2).sum() for k in LEVELS)))
    assert sizes[0] > sizes[1] > sizes[2]
    assert errors[0] < errors[1] < errors[2]
    assert codec.backend.last_encode_s > 0 and codec.backend.last_decode_s > 0


def test_payload_layout_per_image_range(codec_from_yaml, real_features):
    feats = real_features(channels=64)
    codec = codec_from_yaml("anchor_vvc", rates=[45])
    payload = codec.encode(feats, codec.rates[0])
    body = payload[CONTAINER:]
    assert body[0] == 1  # range mode per_image, no flags
    assert body[1] == (9 << 4) | 1  # 10-bit samples, VVC bitstream
    lo, hi = struct.unpack(">ff", body[2:10])
    assert lo == float(min(v.min() for v in feats.values()))
    assert hi == float(max(v.max() for v in feats.values()))
    stream = body[10:]
    assert stream[:3] == b"\x00\x00\x01" or stream[:4] == b"\x00\x00\x00\x01"  # the VVC stream, whole
    assert len(payload) == CONTAINER + 10 + len(stream)


def test_global_range_writes_the_configured_constants(codec_from_yaml, real_features):
    feats = {k: v.clamp(-20, 20) / 5 for k, v in real_features(channels=16).items()}
    codec = codec_from_yaml("anchor_hevc", knob="bits", rates=[10], quantiser__range="global")
    payload = codec.encode(feats, codec.rates[0])
    assert payload[CONTAINER] == 0
    assert struct.unpack(">ff", payload[CONTAINER + 2 : CONTAINER + 10]) == pytest.approx(EE12_OPENIMAGES_RANGE)
    out = codec.decode(payload)
    step = quant_step(*EE12_OPENIMAGES_RANGE, 10)
    assert _max_err_vs_step(out, feats, step) <= 0.5 * (1 + 1e-3)


def test_explicit_grid_and_per_level_range_round_trip(codec_from_yaml, real_features):
    feats = real_features(channels=32)
    codec = codec_from_yaml(
        "anchor_hevc",
        name="anchor_x",
        backend=Ffv1Backend,
        knob="bits",
        rates=[10],
        layout__grid=[2, 2, 1, 1],
        quantiser__range="per_level",
    )
    payload = codec.encode(feats, codec.rates[0])
    assert payload[CONTAINER] == 2 | (1 << 2)  # per_level, explicit grid
    out = codec.decode(payload)
    for k in LEVELS:
        step = quant_step(float(feats[k].min()), float(feats[k].max()), 10)
        assert float((out[k] - feats[k]).abs().max()) <= step / 2 * (1 + 1e-3)


def test_config_errors_name_the_setting(codec_from_yaml):
    with pytest.raises(ConfigError, match=r"codec\.a\.quantiser\.range"):
        codec_from_yaml("anchor_vvc", name="a", quantiser__range="minmax")
    with pytest.raises(ConfigError, match=r"codec\.a\.knob=bits"):
        codec_from_yaml("anchor_vvc", name="a", knob="bits")
    with pytest.raises(ConfigError, match=r"codec\.a\.layout\.grid"):
        codec_from_yaml("anchor_vvc", name="a", layout__grid=[4, 0])
    with pytest.raises(ConfigError, match=r"codec\.a\.layout\.grid=\[4, 2\]: 2 row counts for a split of 4 tensors"):
        wrong = codec_from_yaml("anchor_vvc", name="a", layout__grid=[4, 2])
        wrong.encode(synthetic(h=16, w=24), wrong.rates[0])
    with pytest.raises(ConfigError, match=r"codec\.a\.gop=inter.*intra frames only"):
        codec_from_yaml("anchor_vvc", name="a", gop="inter")
    with pytest.raises(ConfigError, match=r"codec\.a\.rates: qp=64 outside 0\.\.63"):
        codec_from_yaml("anchor_vvc", name="a", rates=[35, 64])


@pytest.fixture(scope="module")
def vvc_payload(codec_from_yaml, real_features):
    codec = codec_from_yaml("anchor_vvc", rates=[45])
    feats = real_features(channels=64)
    return codec, feats, codec.encode(feats, codec.rates[0])


@pytest.mark.parametrize("cut", [0, 5, 30, 31, 36, 40, 41, 60, -200, -1])
def test_truncated_payload_raises_payload_error_or_decodes_to_right_shapes(vvc_payload, cut):
    codec, feats, payload = vvc_payload
    try:
        out = codec.decode(payload[:cut])
    except PayloadError as exc:
        assert "anchor_vvc" in str(exc)
        return
    assert {k: tuple(out[k].shape) for k in LEVELS} == {k: tuple(feats[k].shape) for k in LEVELS}


@pytest.mark.parametrize("offset", [4, 7, 20, 30, 31, 32, 35, 45, 60, 100, 400, -50, -3])
def test_corrupted_payload_raises_payload_error_or_decodes_to_right_shapes(vvc_payload, offset):
    codec, feats, payload = vvc_payload
    bad = bytearray(payload)
    for j in range(4):
        bad[(offset + j) % len(bad)] ^= 0x5A
    try:
        out = codec.decode(bytes(bad))
    except PayloadError as exc:
        assert "anchor_vvc" in str(exc)
        return
    for k in LEVELS:
        assert tuple(out[k].shape) == tuple(feats[k].shape)
        assert torch.isfinite(out[k]).all()


def test_payload_of_another_codec_is_refused(vvc_payload, codec_from_yaml):
    codec, feats, _ = vvc_payload
    hevc = codec_from_yaml("anchor_hevc", rates=[45])
    with pytest.raises(PayloadError, match="another codec"):
        codec.decode(hevc.encode(feats, hevc.rates[0]))

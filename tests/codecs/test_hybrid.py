"""The hybrid codec (codecs/hybrid): real payloads of an image and of a sequence, read back field by field
against what the container says; corrupt payloads refused; the training path at tiny size.

On the ci_frcnn front of a panning synthetic video, with the committed checkpoint and real libvvenc.
"""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
import torch

from vcmbench.codecs.base import read_feature_table
from vcmbench.codecs.frames import SEQUENCE_VERSION
from vcmbench.codecs.hybrid.codec import TAG
from vcmbench.codecs.hybrid.packing import BITS, MAX_SAMPLE, frame_size, pack, tile_grid, unpack, value_range
from vcmbench.codecs.sequence import SequenceInfo, decode_sequence, open_sequence
from vcmbench.codecs.tiling import Reader
from vcmbench.datasets.synthetic_video import build as build_video
from vcmbench.errors import PayloadError
from vcmbench.train.hybrid import noise_std
from vcmbench.types import LEVELS
from vcmbench.vision.ci_frcnn import DEFAULT_WEIGHTS
from vcmbench.vision.ci_frcnn import build as build_ci_frcnn

SPEC = [{"name": "pan", "class": "A", "frames": 5, "fps": 30, "pan": [2, 1]}]
HEAD = 4 + 8 + 1  # model id, range, coding byte


@pytest.fixture(scope="module")
def fronts(tmp_path_factory):
    detector = build_ci_frcnn(weights=DEFAULT_WEIGHTS)
    ds = build_video(sequences=SPEC, cache_dir=tmp_path_factory.mktemp("video"))
    return [detector.front(s.image) for s in ds.frames(ds.sequences[0])]


@pytest.fixture(scope="module")
def hybrid(codec_from_yaml):
    return codec_from_yaml("hybrid_vvc", rates=[22, 37, 47])


def _relative_p2_error(decoded, features) -> float:
    return float((decoded["p2"] - features["p2"]).pow(2).mean().sqrt() / features["p2"].pow(2).mean().sqrt())


@pytest.mark.timeout(180)
def test_an_image_payload_is_its_container_fields_and_a_real_vvc_bitstream(hybrid, fronts):
    features = fronts[0].features
    _, meta = hybrid.net()
    payload = hybrid.encode(features, hybrid.rate_point(37))
    _names, shapes, end = read_feature_table(payload, TAG, 1, "test")
    assert shapes == [tuple(features[k].shape) for k in LEVELS]
    r = Reader(memoryview(payload)[end:], "test")
    assert r.take(4).hex() == meta["model_id"]
    lo, hi = struct.unpack(">ff", r.take(8))
    assert (lo, hi) == value_range(hybrid.reduce(features))  # the item's own min/max, as float32
    assert r.u8() == hybrid.backend.family_id == 1
    stream = r.rest()
    assert len(payload) == end + HEAD + len(stream)  # every byte is a field: nothing else is sent
    c, h, w = hybrid.reduced_shape(shapes)
    assert (c, h, w) == (meta["net"]["channels"], 32, 32)  # 256x256 input: P3's grid
    frame = hybrid.backend.decode(stream, (1, *frame_size(c, h, w)), BITS)[0]
    assert frame.shape == (tile_grid(c)[0] * h, tile_grid(c)[1] * w) and frame.max() <= MAX_SAMPLE
    decoded = hybrid.decode(payload)
    assert {k: tuple(v.shape) for k, v in decoded.items()} == {k: tuple(features[k].shape) for k in LEVELS}
    assert torch.equal(decoded["p2"], hybrid.restore(unpack(frame, c, h, w, lo, hi), shapes)["p2"])


@pytest.mark.timeout(180)
def test_qp_trades_bytes_for_feature_error(hybrid, fronts):
    features = fronts[0].features
    sizes, errors = [], []
    for rp in hybrid.rates:
        payload = hybrid.encode(features, rp)
        sizes.append(len(payload))
        errors.append(_relative_p2_error(hybrid.decode(payload), features))
    assert sizes[0] > sizes[1] > sizes[2]
    assert errors[0] < errors[2]


@pytest.mark.timeout(240)
def test_a_sequence_is_one_low_delay_video_with_one_range(hybrid, fronts):
    rp = hybrid.rate_point(37)
    enc = open_sequence(hybrid, rp, SequenceInfo(len(fronts), 30.0))
    for f in fronts:
        enc.add(None, f)
    payload = enc.finish()
    _names, shapes, end = read_feature_table(payload, TAG, SEQUENCE_VERSION, "test")
    r = Reader(memoryview(payload)[end:], "test")
    assert r.uvarint() == len(fronts)
    r.take(4)
    lo, hi = struct.unpack(">ff", r.take(8))
    assert (lo, hi) == value_range([hybrid.reduce(f.features) for f in fronts])
    assert r.u8() == 1
    stream = r.rest()
    assert len(payload) == end + 1 + HEAD + len(stream)
    # inter prediction over the reduced features: fewer bytes than each frame coded alone
    intra = sum(len(hybrid.encode(f.features, rp)) for f in fronts)
    assert len(payload) < intra
    c, h, w = hybrid.reduced_shape(shapes)
    assert hybrid.backend.decode(stream, (len(fronts), *frame_size(c, h, w)), BITS).shape[0] == len(fronts)
    received = list(decode_sequence(hybrid, payload, [None] * len(fronts)))
    assert len(received) == len(fronts)
    for got, f in zip(received, fronts):
        assert _relative_p2_error(got.features, f.features) < 1.0
    with pytest.raises(PayloadError, match="holds 5 frames"):
        list(decode_sequence(hybrid, payload, [None] * 4))


@pytest.mark.timeout(120)
def test_damaged_payloads_are_refused(hybrid, fronts):
    payload = bytearray(hybrid.encode(fronts[0].features, hybrid.rate_point(47)))
    _, _, end = read_feature_table(bytes(payload), TAG, 1, "test")
    other_model = bytearray(payload)
    other_model[end] ^= 0xFF
    with pytest.raises(PayloadError, match="another .*checkpoint"):
        hybrid.decode(bytes(other_model))
    no_range = bytearray(payload)
    no_range[end + 4 : end + 8] = struct.pack(">f", math.nan)
    with pytest.raises(PayloadError, match="not a range"):
        hybrid.decode(bytes(no_range))
    other_family = bytearray(payload)
    other_family[end + 12] = 2
    with pytest.raises(PayloadError, match="family 2"):
        hybrid.decode(bytes(other_family))
    with pytest.raises(PayloadError):
        hybrid.decode(bytes(payload[: end + HEAD + 10]))


def test_packing_round_trip_is_within_half_a_step():
    rng = np.random.default_rng(0)
    reduced = rng.normal(size=(8, 16, 24)).astype(np.float32)
    lo, hi = value_range(reduced)
    frame = pack(reduced, lo, hi)
    assert frame.shape == frame_size(8, 16, 24) == (2 * 16, 4 * 24) and frame.dtype == np.uint16
    back = unpack(frame, 8, 16, 24, lo, hi)
    assert np.abs(back - reduced).max() <= (hi - lo) / MAX_SAMPLE / 2 + 1e-6


def test_training_noise_follows_the_calibrated_errors_between_qps():
    table = {22: 4.0, 32: 16.0, 42: 64.0}
    got = noise_std(table, torch.tensor([22.0, 27.0, 32.0, 50.0, 10.0]))
    assert torch.allclose(got, torch.tensor([4.0, 8.0, 16.0, 64.0, 4.0]))
    assert torch.equal(noise_std({32: 5.0}, torch.tensor([20.0, 40.0])), torch.tensor([5.0, 5.0]))


@pytest.mark.timeout(300)
def test_the_gpu_size_trains_from_its_yaml(tmp_path):
    """hybrid_vvc_paper has no committed checkpoint: its config and training path, one step on tiny crops."""
    from vcmbench.config import compose_config
    from vcmbench.train.feature_codec import train_feature_codec

    cfg = compose_config(
        "train",
        [
            "codec=hybrid_vvc_paper",
            "steps=1",
            "batch_size=1",
            "crop=32",
            "features.train_images=2",
            "features.val_images=1",
            f"features.cache_dir={tmp_path / 'features'}",
            "codec.hybrid_vvc_paper.training.calibrate_images=1",
            "codec.hybrid_vvc_paper.training.calibrate_qps=[32]",
            "codec.hybrid_vvc_paper.rates=[32]",
            "progress=false",
            "threads=1",
        ],
    )
    info = train_feature_codec(cfg, str(tmp_path / "out"))
    assert info["steps"] == 1 and info["parameters"] > 14_000_000 and info["net"]["channels"] == 16


@pytest.mark.timeout(300)
def test_training_at_tiny_size_writes_a_checkpoint_the_codec_codes_with(tmp_path, codec_from_yaml):
    from vcmbench.config import compose_config
    from vcmbench.train.feature_codec import train_feature_codec

    cfg = compose_config(
        "train",
        [
            "codec=hybrid_vvc",
            "steps=3",
            "batch_size=2",
            "crop=32",
            "features.train_images=3",
            "features.val_images=2",
            f"features.cache_dir={tmp_path / 'features'}",
            "codec.hybrid_vvc.net.channels=4",
            "codec.hybrid_vvc.net.dec_width=16",
            "codec.hybrid_vvc.net.enc_width=16",
            "codec.hybrid_vvc.net.proj=8",
            "codec.hybrid_vvc.training.calibrate_images=1",
            "codec.hybrid_vvc.training.calibrate_qps=[22,42]",
            "codec.hybrid_vvc.rates=[22,42]",
            "progress=false",
            "threads=1",
        ],
    )
    info = train_feature_codec(cfg, str(tmp_path / "out"))
    assert info["steps"] == 3 and (tmp_path / "out" / "hybrid.pt").is_file()
    written = json.loads((tmp_path / "out" / "hybrid.json").read_text())
    rmse = written["noise_calibration"][0]["rmse"]
    assert rmse["22"] < rmse["42"]  # measured on real bitstreams: more error at the higher QP
    assert written["val"]["22"]["bpp"] > written["val"]["42"]["bpp"] > 0
    codec = codec_from_yaml("hybrid_vvc", rates=[42], checkpoint=str(tmp_path / "out" / "hybrid.pt"))
    f = {k: torch.randn(256, 32 >> i, 32 >> i) for i, k in enumerate(LEVELS)}
    assert {k: tuple(v.shape) for k, v in codec.decode(codec.encode(f, codec.rates[0])).items()} == {
        k: tuple(t.shape) for k, t in f.items()
    }


@pytest.mark.timeout(120)
def test_vtm_is_the_inner_codec_by_configuration(codec_from_yaml, fronts, tmp_path):
    """`backend: vtm.VtmBackend` swaps the inner codec (here a stand-in for VTM's apps that writes a
    lossless stream): the payload names the VVC family, so libvvenc's and VTM's payloads share a decoder."""
    from tests.codecs_for_tests import fake_vtm
    from vcmbench.codecs.backends.vtm import VtmBackend

    enc, dec, log = fake_vtm(tmp_path)
    codec = codec_from_yaml(
        "hybrid_vvc", rates=[37], backend=VtmBackend, backend__encoder_app=str(enc), backend__decoder_app=str(dec)
    )
    features = fronts[0].features
    payload = codec.encode(features, codec.rates[0])
    assert json.loads(log.read_text())["opts"]["QP"] == "37"
    _, _, end = read_feature_table(payload, TAG, 1, "test")
    assert payload[end + 12] == 1  # the VVC family, as libvvenc's
    decoded = codec.decode(payload)
    assert _relative_p2_error(decoded, features) < 1.0


def test_the_rate_estimate_falls_with_qp_and_smoothness():
    from vcmbench.train.hybrid import rate_proxy

    torch.manual_seed(0)
    noise = torch.randn(1, 4, 32, 32) * 100 + 512
    ramp = torch.linspace(0, 1023, 32).expand(1, 4, 32, 32).contiguous()
    flat = torch.full((1, 4, 32, 32), 512.0)
    qp = torch.tensor([32.0])
    assert float(rate_proxy(noise, qp)) > float(rate_proxy(ramp, qp)) > float(rate_proxy(flat, qp)) >= 0
    assert float(rate_proxy(flat, qp)) < 0.01  # a block's mean is left to intra prediction
    assert float(rate_proxy(noise, torch.tensor([22.0]))) > float(rate_proxy(noise, torch.tensor([42.0])))

"""Sequence payloads (codecs/sequence.py): a codec's own sequence encoder (inter coding, intra periods,
VTM's sequence cfg), the framewise adapter, bitstreams that do not depend on the frames' pace, and
clean failures of damaged payloads; on the ci_frcnn front of a panning synthetic video."""

from __future__ import annotations

import json
import time

import pytest
import torch

from tests.codecs_for_tests import fake_vtm
from vcmbench.codecs.sequence import SequenceInfo, decode_sequence, open_sequence
from vcmbench.datasets.synthetic_video import build as build_video
from vcmbench.errors import ConfigError, PayloadError
from vcmbench.types import LEVELS
from vcmbench.vision.ci_frcnn import DEFAULT_WEIGHTS
from vcmbench.vision.ci_frcnn import build as build_ci_frcnn

SPEC = [{"name": "pan", "class": "A", "frames": 6, "fps": 30, "pan": [2, 1]}]


@pytest.fixture(scope="module")
def detector():
    return build_ci_frcnn(weights=DEFAULT_WEIGHTS)


@pytest.fixture(scope="module")
def sequence_fronts(tmp_path_factory, detector):
    """The ci_frcnn front on the 6 frames of a panning synthetic sequence, their ranges and images."""
    ds = build_video(sequences=SPEC, cache_dir=tmp_path_factory.mktemp("video"))
    images = [s.image for s in ds.frames(ds.sequences[0])]
    fronts = [detector.front(image) for image in images]
    ranges = tuple(
        (min(float(f.features[k].min()) for f in fronts), max(float(f.features[k].max()) for f in fronts))
        for k in LEVELS
    )
    return fronts, ranges, images


def _code(codec, rate, fronts, ranges, images=None, fps=30.0, pause=0.0) -> bytes:
    enc = open_sequence(codec, rate, SequenceInfo(len(fronts), fps, ranges))
    for k, f in enumerate(fronts):
        time.sleep(pause)  # the sweep's front and other codecs run between two frames of one encoder
        enc.add(None if images is None else images[k], f)
    return enc.finish()


@pytest.mark.timeout(180)
def test_low_delay_spends_fewer_bytes_than_all_intra_and_bytes_fall_as_qp_rises(codec_from_yaml, sequence_fronts):
    fronts, ranges, _ = sequence_fronts
    intra = codec_from_yaml("anchor_vvc", rates=[37], sequence_gop="all_intra")
    low_delay = codec_from_yaml("anchor_vvc", rates=[35, 41, 47])
    n_intra = len(_code(intra, intra.rates[0], fronts, ranges))
    sizes = [len(_code(low_delay, rp, fronts, ranges)) for rp in low_delay.rates]
    low_delay_37 = codec_from_yaml("anchor_vvc", rates=[37])
    assert len(_code(low_delay_37, low_delay_37.rates[0], fronts, ranges)) < n_intra
    assert sizes[0] > sizes[1] > sizes[2]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", ["anchor_vvc", "anchor_hevc", "image_vvc"])
def test_pauses_between_frames_do_not_change_the_bitstream(codec_from_yaml, sequence_fronts, name):
    """libvvenc fed live through a pipe wrote parameter sets and no picture when frames came 0.2 s
    apart; a sequence's bytes must not depend on how fast the front delivers its frames."""
    fronts, ranges, images = sequence_fronts
    codec = codec_from_yaml(name)
    rate = codec.rates[len(codec.rates) // 2]
    assert _code(codec, rate, fronts, ranges, images, pause=0.2) == _code(codec, rate, fronts, ranges, images)


@pytest.mark.timeout(180)
def test_the_image_anchor_codes_the_video_with_inter_prediction(codec_from_yaml, sequence_fronts):
    fronts, ranges, images = sequence_fronts
    low_delay = codec_from_yaml("image_vvc", rates=[37])
    intra = codec_from_yaml("image_vvc", rates=[37], sequence_gop="all_intra")
    per_frame = sum(len(intra.encode(image, intra.rates[0])) for image in images)
    n_intra = len(_code(intra, intra.rates[0], fronts, ranges, images))
    n_low_delay = len(_code(low_delay, low_delay.rates[0], fronts, ranges, images))
    assert n_low_delay < n_intra
    assert abs(n_intra - per_frame) < 0.1 * per_frame  # the all-intra video is the frames' own pictures


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    "name,overrides",
    [
        ("anchor_vvc", {"sequence_gop": "random_access"}),
        ("pack_concat", {}),
        ("raw", {}),
        ("image_vvc", {"rates": [37]}),
        ("image_lossless", {}),
    ],
)
def test_sequence_payload_round_trips_and_bad_payloads_fail_cleanly(codec_from_yaml, sequence_fronts, name, overrides):
    fronts, ranges, images = sequence_fronts
    codec = codec_from_yaml(name, **overrides)
    rate = codec.rates[0]
    payload = _code(codec, rate, fronts, ranges, images)
    metas = [f.meta for f in fronts]
    decoded = list(decode_sequence(codec, payload, metas))
    assert len(decoded) == len(fronts)
    for got, sent, image in zip(decoded, fronts, images):
        if got.features is None:  # an image codec: the receiver gets the frame itself
            assert got.image.shape == image.shape and got.image.dtype == torch.uint8
            if name == "image_lossless":
                assert torch.equal(got.image, image)
            continue
        for k in LEVELS:
            assert got.features[k].shape == sent.features[k].shape
            if name == "raw":
                assert torch.equal(got.features[k], sent.features[k])
    for bad in (payload[: len(payload) // 2], payload[: len(payload) * 3 // 4], payload[:20]):
        with pytest.raises(PayloadError):
            list(decode_sequence(codec, bad, metas))
    with pytest.raises(PayloadError):  # a sequence of another length
        list(decode_sequence(codec, payload, metas[:-1]))


@pytest.mark.timeout(120)
def test_vtm_codes_a_sequence_with_its_low_delay_cfg(tmp_path, codec_from_yaml, sequence_fronts):
    """VTM (fake binaries recording their command line): one EncoderApp call for the whole
    sequence, with the sequence cfg and the CTC intra period; without that cfg, a clear error."""
    fronts, ranges, _ = sequence_fronts
    enc, dec, log = fake_vtm(tmp_path)
    lowdelay = tmp_path / "encoder_lowdelay_vtm.cfg"
    lowdelay.write_text("GOPSize : 8\n")
    settings = {"rates": [37], "backend__encoder_app": str(enc), "backend__decoder_app": str(dec)}
    codec = codec_from_yaml("anchor_vtm", backend__sequence_cfg=str(lowdelay), **settings)
    payload = _code(codec, codec.rates[0], fronts, ranges, fps=30.0)
    call = json.loads(log.read_text())
    assert call["argv"][:2] == ["-c", str(lowdelay.resolve())]
    assert call["opts"]["FramesToBeEncoded"] == str(len(fronts)) and call["opts"]["IntraPeriod"] == "32"
    decoded = list(decode_sequence(codec, payload, [f.meta for f in fronts]))
    assert len(decoded) == len(fronts)
    with pytest.raises(ConfigError, match=r"codec\.anchor_vtm\.backend\.sequence_cfg"):
        no_cfg = codec_from_yaml("anchor_vtm", **settings)
        _code(no_cfg, no_cfg.rates[0], fronts, ranges)

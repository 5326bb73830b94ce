"""Splits of any shape: a front's own named tensors (JDE's three route tensors: 256, 512 and 1024
channels at strides 8, 16, 32) through the raw, anchor and packing codecs, image by image and as a
sequence, with the bytes accounted exactly; the codecs trained on p2..p5 refuse them in one line."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from vcmbench.codecs.base import NAMED, read_feature_table, shape_table
from vcmbench.codecs.sequence import SequenceInfo, decode_sequence, open_sequence
from vcmbench.errors import ConfigError, PayloadError, ShapeError
from vcmbench.types import LEVELS, FrontOutput, ImageMeta, check_features, feature_names

pytestmark = pytest.mark.timeout(300)

NAMES = ("l36", "l61", "l74")  # the TVD preset's layers


def route_tensors(seed: int = 0, h: int = 12, w: int = 20) -> dict[str, torch.Tensor]:
    """JDE-like tensors of a 160x96 input: 256 ch at stride 8, 512 at 16, 1024 at 32 (smooth, so
    the image codecs see structure)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i, (name, c) in enumerate(zip(NAMES, (256, 512, 1024))):
        base = torch.randn(c, 1, 1, generator=g) * 2.0
        ramp = torch.linspace(-1, 1, w >> i).reshape(1, 1, -1) + torch.linspace(-1, 1, h >> i).reshape(1, -1, 1)
        out[name] = (base + ramp + 0.1 * torch.randn(c, h >> i, w >> i, generator=g)).float()
    return out


def header_bytes(tensors: dict[str, torch.Tensor]) -> int:
    """The container's header for named tensors: tag, version, count, shapes, names."""
    return 6 + 6 * len(tensors) + sum(1 + len(k) for k in tensors)


def test_the_order_is_the_front_s_and_p2_p5_keep_theirs():
    assert feature_names(route_tensors()) == NAMES
    fpn = {k: torch.zeros(4, 16 >> i, 16 >> i) for i, k in enumerate(reversed(LEVELS))}  # dict order p5..p2
    assert feature_names(fpn) == LEVELS


def test_the_table_carries_names_only_for_other_splits():
    shapes = [(256, 64, 64), (256, 32, 32), (256, 16, 16), (256, 8, 8)]
    plain = shape_table(b"TEST", 1, shapes)
    assert plain == b"TEST" + struct.pack(">BB", 1, 4) + b"".join(struct.pack(">HHH", *s) for s in shapes)
    assert read_feature_table(plain, b"TEST", 1, "t") == (LEVELS, [tuple(s) for s in shapes], 30)
    named = shape_table(b"TEST", 1, shapes[:3], NAMES)
    assert named[5] == NAMED | 3 and named.endswith(b"\x03l36\x03l61\x03l74")
    assert read_feature_table(named, b"TEST", 1, "t") == (NAMES, [tuple(s) for s in shapes[:3]], len(named))
    with pytest.raises(PayloadError, match="truncated inside the tensor names"):
        read_feature_table(named[:-2], b"TEST", 1, "t")
    twice = shape_table(b"TEST", 1, shapes[:2], ("a", "a"))
    with pytest.raises(PayloadError, match="names a tensor twice"):
        read_feature_table(twice, b"TEST", 1, "t")


def test_bad_names_and_shapes_are_refused_in_one_line():
    with pytest.raises(ShapeError, match="feature tensor name 'l\\\\n'"):
        check_features({"l\n": torch.zeros(2, 2, 2)})
    with pytest.raises(ShapeError, match="feature tensor x has shape"):
        check_features({"x": torch.zeros(2, 2)})
    with pytest.raises(ShapeError, match="features lack levels"):  # a part of p2..p5 is still an FPN's, short
        check_features({"p2": torch.zeros(2, 8, 8), "p3": torch.zeros(2, 4, 4)})


@pytest.mark.parametrize("dtype,size", [("float32", 4), ("float16", 2)])
def test_raw_codes_named_tensors_byte_for_byte(codec_from_yaml, dtype, size):
    codec = codec_from_yaml("raw" if dtype == "float32" else "raw16")
    tensors = route_tensors()
    payload = codec.encode(tensors, codec.rates[0])
    elements = sum(t.numel() for t in tensors.values())
    assert len(payload) == header_bytes(tensors) + size * elements + 4  # + the CRC
    decoded = codec.decode(payload)
    assert tuple(decoded) == NAMES
    for k, t in tensors.items():
        expected = t if dtype == "float32" else t.half().float()
        assert torch.equal(decoded[k], expected), k


@pytest.mark.parametrize("yaml", ["anchor_vvc", "pack_tile", "pack_concat"])
def test_frame_codecs_code_each_tensor_in_its_own_grid(codec_from_yaml, yaml):
    codec = codec_from_yaml(yaml)
    tensors = route_tensors()
    rate = codec.rates[0]
    payload = codec.encode(tensors, rate)
    names, shapes, end = read_feature_table(payload, codec.tag, codec.version, yaml)
    assert names == NAMES and end == header_bytes(tensors)
    assert shapes == [tuple(t.shape) for t in tensors.values()]
    decoded = codec.decode(payload)
    assert tuple(decoded) == NAMES
    for k, t in tensors.items():
        assert decoded[k].shape == t.shape
        assert float((decoded[k] - t).abs().mean()) < 0.5 * float(t.abs().mean()), k  # coded, not noise


def test_a_sequence_of_named_tensors_is_one_payload_with_its_names(codec_from_yaml):
    codec = codec_from_yaml("anchor_vvc", rates=[37], quantiser__range="global")
    frames = [route_tensors(seed) for seed in range(3)]
    meta = ImageMeta((96, 160), (96, 160), (96, 160))
    encoder = open_sequence(codec, codec.rates[0], SequenceInfo(frames=3, fps=30.0))
    for f in frames:
        encoder.add(torch.zeros(3, 96, 160, dtype=torch.uint8), FrontOutput(f, meta))
    payload = encoder.finish()
    received = list(decode_sequence(codec, payload, [meta] * 3))
    assert len(received) == 3
    for got, sent in zip(received, frames):
        assert tuple(got.features) == NAMES
        assert all(got.features[k].shape == sent[k].shape for k in NAMES)


@pytest.mark.parametrize("yaml", ["learned_interleaved", "hybrid_vvc"])
def test_codecs_trained_on_p2_p5_refuse_other_tensors_in_one_line(codec_from_yaml, yaml):
    codec = codec_from_yaml(yaml)
    with pytest.raises(ConfigError, match=r"code the four FPN levels p2..p5 .* sends \['l36', 'l61', 'l74'\]") as e:
        codec.encode(route_tensors(), codec.rates[0])
    assert "\n" not in str(e.value)


def test_per_level_ranges_are_one_per_tensor(codec_from_yaml):
    codec = codec_from_yaml("anchor_vvc", quantiser__range="per_level")
    tensors = route_tensors()
    payload = codec.encode(tensors, codec.rates[0])
    start = header_bytes(tensors) + 2  # mode and coding bytes
    ranges = struct.unpack(">6f", payload[start : start + 24])
    for i, t in enumerate(tensors.values()):
        assert ranges[2 * i] == np.float32(t.min()) and ranges[2 * i + 1] == np.float32(t.max())

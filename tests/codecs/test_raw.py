"""raw (float32) and raw16 (float16): exact sizes, exact or bounded error, clear payload errors."""

from __future__ import annotations

import pytest
import torch

from vcmbench.codecs.raw import RawCodec
from vcmbench.errors import PayloadError, ShapeError
from vcmbench.types import LEVELS

HEADER = 4 + 1 + 1 + 4 * 6  # tag, version, level count, shape table
CRC = 4


def features(c: int = 8, h: int = 24, w: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {lvl: torch.randn(c, h >> i, w >> i, generator=g) * 5 for i, lvl in enumerate(LEVELS)}


def test_raw_is_exact_and_sized_4_bytes_per_element():
    f = features()
    codec = RawCodec("raw", "float32")
    payload = codec.encode(f, codec.rates[0])
    n = sum(v.numel() for v in f.values())
    assert len(payload) == HEADER + 4 * n + CRC
    out = codec.decode(payload)
    for k in LEVELS:
        assert torch.equal(out[k], f[k])


def test_raw16_halves_bytes_with_float16_error():
    f = features()
    codec = RawCodec("raw16", "float16")
    payload = codec.encode(f, codec.rates[0])
    assert len(payload) == HEADER + 2 * sum(v.numel() for v in f.values()) + CRC
    out = codec.decode(payload)
    for k in LEVELS:
        assert torch.equal(out[k], f[k].half().float())
    assert codec.rates[0].label == "dtype=float16"


@pytest.mark.parametrize("cut", [0, 3, 10, 100, -1])
def test_truncated_payload_raises_payload_error(cut):
    codec = RawCodec()
    payload = codec.encode(features(), codec.rates[0])
    with pytest.raises(PayloadError):
        codec.decode(payload[:cut])


def test_corrupted_payload_raises_payload_error():
    codec = RawCodec()
    payload = bytearray(codec.encode(features(), codec.rates[0]))
    payload[len(payload) // 2] ^= 0xFF
    with pytest.raises(PayloadError, match="checksum"):
        codec.decode(bytes(payload))


def test_foreign_payload_is_refused():
    payload = RawCodec("raw16", "float16").encode(features(), RawCodec("raw16", "float16").rates[0])
    with pytest.raises(PayloadError, match="another codec"):
        RawCodec("raw", "float32").decode(payload)


def test_wrong_feature_shapes_are_refused():
    f = features()
    del f["p4"]
    with pytest.raises(ShapeError, match="p4"):
        RawCodec().encode(f, RawCodec().rates[0])

"""The feature-codec contract and the payload container every codec writes.

`encode(features, rate) -> bytes` and `decode(bytes) -> features`: the bytes are the
whole transmitted payload. Shapes, quantisation ranges, channel orders, model ids:
whatever the decoder needs is inside them and is counted in bpp. Nothing else
reaches the decoder.

Container layout (big-endian), kept small because at VCM rates (~0.002 bpp, i.e.
~80 bytes for a 640x480 image) every header byte shows in the curve:

    tag        4 bytes   codec identity, e.g. b"RAW4"; decode refuses other tags
    version    1 byte    container version of that codec
    levels     1 byte    number of feature levels L (p2..p{L+1})
    shapes     L x 3 x u16   (C, H, W) per level
    body       codec-specific
"""

from __future__ import annotations

import struct
import zlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from vcmbench.errors import ConfigError, PayloadError, ShapeError
from vcmbench.vision.base import LEVELS, Features, check_features


@dataclass(frozen=True)
class RatePoint:
    """One operating point of a codec: its knob and value, e.g. qp=37 or lambda=0.025."""

    knob: str
    value: object

    @property
    def label(self) -> str:
        """The `rate` column of the points table."""
        return f"{self.knob}={self.value}"

    def __str__(self) -> str:
        return self.label


class FeatureCodec(ABC):
    """Base of every feature codec.

    Subclasses set `tag` (4 ASCII bytes, unique per codec family) and `knob`, and
    implement `_encode_body` / `_decode_body`; the container and its checks live here
    so every codec refuses truncated or foreign payloads the same way.
    """

    tag: bytes = b"????"
    version: int = 1
    knob: str = "rate"

    def __init__(self, name: str, rates: Sequence[object] | None = None):
        self.name = name
        values = list(rates) if rates is not None else list(self.default_rates())
        if not values:
            raise ConfigError(f"codec.{name}.rates is empty; give at least one rate point")
        self.rates = [RatePoint(self.knob, v) for v in values]

    def default_rates(self) -> Sequence[object]:
        return ()

    def rate_point(self, label_or_value: object) -> RatePoint:
        for rp in self.rates:
            if label_or_value in (rp, rp.label, rp.value):
                return rp
        raise ConfigError(
            f"codec {self.name} has no rate point {label_or_value!r}; it has {[r.label for r in self.rates]}"
        )

    # -- public API -----------------------------------------------------------------
    def encode(self, features: Features, rate: RatePoint) -> bytes:
        check_features(features)
        shapes = [tuple(int(s) for s in features[k].shape) for k in LEVELS]
        for lvl, s in zip(LEVELS, shapes):
            if any(d > 0xFFFF for d in s):
                raise ShapeError(f"feature level {lvl} shape {s} exceeds the container's 65535 limit")
        header = self.tag + struct.pack(">BB", self.version, len(shapes))
        header += b"".join(struct.pack(">HHH", *s) for s in shapes)
        return header + self._encode_body(features, rate, shapes)

    def decode(self, payload: bytes) -> Features:
        payload = bytes(payload)
        fixed = 6
        if len(payload) < fixed:
            raise PayloadError(f"{self.name}: payload of {len(payload)} bytes is shorter than the header")
        if payload[:4] != self.tag:
            raise PayloadError(
                f"{self.name}: payload tag {payload[:4]!r} is not this codec's {self.tag!r}; "
                f"it was made by another codec"
            )
        version, n = struct.unpack(">BB", payload[4:6])
        if version != self.version:
            raise PayloadError(f"{self.name}: payload version {version}, this decoder reads {self.version}")
        if n != len(LEVELS):
            raise PayloadError(f"{self.name}: payload says {n} levels, expected {len(LEVELS)} (corrupt header)")
        end = fixed + 6 * n
        if len(payload) < end:
            raise PayloadError(f"{self.name}: payload truncated inside the shape table")
        shapes = [struct.unpack(">HHH", payload[fixed + 6 * i : fixed + 6 * i + 6]) for i in range(n)]
        for lvl, s in zip(LEVELS, shapes):
            if 0 in s:
                raise PayloadError(f"{self.name}: level {lvl} has empty shape {s} (corrupt header)")
        feats = self._decode_body(memoryview(payload)[end:], shapes)
        for lvl, s in zip(LEVELS, shapes):
            if tuple(feats[lvl].shape) != tuple(s):
                raise PayloadError(f"{self.name}: decoded {lvl} has shape {tuple(feats[lvl].shape)}, header says {s}")
        return feats

    # -- subclass hooks ------------------------------------------------------------------
    @abstractmethod
    def _encode_body(self, features: Features, rate: RatePoint, shapes: list[tuple[int, int, int]]) -> bytes:
        """Everything after the shape table; must carry whatever else decode needs."""

    @abstractmethod
    def _decode_body(self, body: memoryview, shapes: list[tuple[int, int, int]]) -> Features:
        """Inverse of `_encode_body`; raise PayloadError on anything malformed."""


def with_crc(body: bytes) -> bytes:
    """Append a CRC32 so lossless codecs detect corruption instead of returning garbage."""
    return body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def strip_crc(body: bytes | memoryview, who: str) -> bytes:
    body = bytes(body)
    if len(body) < 4:
        raise PayloadError(f"{who}: payload truncated (no checksum)")
    data, (crc,) = body[:-4], struct.unpack(">I", body[-4:])
    if zlib.crc32(data) & 0xFFFFFFFF != crc:
        raise PayloadError(f"{who}: checksum mismatch: the payload is corrupt or truncated")
    return data

"""The codec contracts and the payload container every codec writes.

Three kinds, by where they sit in the data flow: feature codecs (below), image codecs (the
image is coded and the whole detector runs on the decoded image: the VCM image anchor) and
layered codecs (a feature base layer plus an image enhancement layer in one payload). The
sweep does not tell them apart: every codec says what it takes from a work item (`takes`) and
carries it with `transmit_encode(image, front, rate) -> bytes` and `transmit_decode(payload,
meta) -> Received` (the features the back runs on, or an image the receiver runs the whole
network on; a viewable image; bytes and decode seconds per layer). The feature contract:

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
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vcmbench.errors import ConfigError, PayloadError, ShapeError
from vcmbench.types import LEVELS, Features, FrontOutput, ImageMeta, check_features, feature_names, is_pyramid

#: payload tag -> the codec (module.class, or module.class:variant) that writes it
PAYLOAD_TAGS: dict[bytes, str] = {}


def register_tags(owner: str, *tags: bytes) -> None:
    """Claim payload tags for one codec family, at import: two codecs that wrote the same tag
    could read each other's payloads as their own, so a second claimant is refused."""
    for tag in tags:
        if not (isinstance(tag, bytes) and len(tag) == 4):
            raise ConfigError(f"{owner}: payload tag {tag!r} must be 4 bytes")
        holder = PAYLOAD_TAGS.setdefault(tag, owner)
        if holder != owner:
            raise ConfigError(f"{owner}: payload tag {tag!r} is already {holder}'s; give {owner} a tag of its own")


@dataclass
class Received:
    """What a decoder hands the receiver for one image.

    features: p2..p5 for the back; None when the codec carries the image instead, and the
    receiver runs the whole network (front, then back) on `image`.
    image: a uint8 RGB (3, H, W) image: the one the network runs on (image codecs) or the one a
    person views (layered codecs); None for feature codecs.
    layers: bytes of each layer of the payload (they add up to its length), for codecs with layers.
    layer_seconds: decode seconds of each layer (what the machine needs vs what the viewer adds).
    """

    features: Features | None = None
    image: torch.Tensor | None = None
    layers: dict[str, int] = field(default_factory=dict)
    layer_seconds: dict[str, float] = field(default_factory=dict)


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


class Codec(ABC):
    """What every codec has: a name, a rate knob and its rate points, and how it carries an item.

    `takes` says what the sweep gives it: the front's p2..p5 (FeatureCodec: the back runs on
    the decoded features), the input image before any front (ImageCodec: the whole detector
    runs on the decoded image: remote inference), or both (LayeredCodec: a base layer for the
    task and an enhancement layer for a viewable image).
    """

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

    #: what the codec codes of a work item: "features" (the front's p2..p5), "image", or both
    takes: frozenset[str] = frozenset({"features"})

    def files(self) -> list[Path]:
        """Files whose content shapes the output (trained checkpoints): their hashes join the
        resume fingerprint, so a retrained checkpoint at the same path is not mistaken for the old."""
        return []

    def trained_on(self) -> list[dict]:
        """What this codec's trained parts were trained on, one dict per checkpoint: `network`
        (the front's name), `split`, `sha256` (of the front's weights, None where not recorded),
        `channels`, `data` and `source` (the checkpoint). Empty for a codec with nothing trained:
        the run compares these with its own network before the first item (vcmbench.domain)."""
        return []

    #: whether the codec's whole work is torch operations (a learned codec), so a MAC count of
    #: its encode and decode is its complexity; False for external encoders and entropy coders
    #: that torch does not see (their complexity is only their measured time); the hybrid codec counts
    #: its networks' MACs, its inner VVC codec only time
    counts_macs: bool = False

    def prepare(self, rate: RatePoint) -> None:
        """Load what `rate` needs once (a learned rate point's checkpoint chain), before its first
        timed encode: one-time set-up is not per-image work, so enc_s leaves it out."""
        return None

    def describe_encoder(self) -> str:
        """What makes this codec's bits, and how hard it searches (`libvvenc preset faster`, `VTM
        encoder_intra_vtm.cfg`): the points table's `encoder` column and the report header, so a
        BD-rate is never quoted against an anchor whose encoder and preset go unnamed."""
        return type(self).__name__

    @abstractmethod
    def transmit_encode(self, image: torch.Tensor, front: FrontOutput, rate: RatePoint) -> bytes:
        """One work item's payload at `rate`, from what the codec `takes` of it."""

    @abstractmethod
    def transmit_decode(self, payload: bytes, meta: ImageMeta) -> Received:
        """What reaches the receiver; PayloadError for a payload that does not decode."""


class FeatureCodec(Codec):
    """Base of every feature codec.

    Subclasses set `tag` (4 ASCII bytes, unique per codec family) and `knob`, and
    implement `_encode_body` / `_decode_body`; the container and its checks live here
    so every codec refuses truncated or foreign payloads the same way.
    """

    tag: bytes = b"????"
    version: int = 1

    def transmit_encode(self, image: torch.Tensor, front: FrontOutput, rate: RatePoint) -> bytes:
        return self.encode(front.features, rate)

    def transmit_decode(self, payload: bytes, meta: ImageMeta) -> Received:
        return Received(features=self.decode(payload))

    # -- public API -----------------------------------------------------------------
    def encode(self, features: Features, rate: RatePoint) -> bytes:
        check_features(features)
        names = feature_names(features)
        ordered = {k: features[k] for k in names}
        shapes = [tuple(int(s) for s in ordered[k].shape) for k in names]
        return shape_table(self.tag, self.version, shapes, names) + self._encode_body(ordered, rate, shapes)

    def decode(self, payload: bytes) -> Features:
        payload = bytes(payload)
        names, shapes, end = read_feature_table(payload, self.tag, self.version, self.name)
        return keyed_tensors(self._decode_body(memoryview(payload)[end:], shapes), names, shapes, self.name)

    # -- subclass hooks ------------------------------------------------------------------
    @abstractmethod
    def _encode_body(self, features: Features, rate: RatePoint, shapes: list[tuple[int, int, int]]) -> bytes:
        """Everything after the shape table; must carry whatever else decode needs. `features` come
        in the table's order (`feature_names`), `shapes` are theirs."""

    @abstractmethod
    def _decode_body(self, body: memoryview, shapes: list[tuple[int, int, int]]) -> list[torch.Tensor]:
        """Inverse of `_encode_body`: the tensors in the table's order; PayloadError on anything malformed."""


class ImageCodec(Codec):
    """Base of the image codecs (remote inference): the image is coded, not the features.

    `encode(image, rate) -> bytes`, `decode(bytes) -> image`, with image a uint8 RGB tensor
    (3, H, W). The sweep hands these codecs the dataset's image before any front runs and
    gives the decoded image to the whole detector, so their points sit in the same table as
    the feature codecs' (same images, same bpp definition: payload bits over the input's
    pixels) and BD-rates between the two settings are read off one report.

    Container: tag (4 bytes), version (1), the input's height and width (2 x u16), then
    the codec's body. The size is in the payload because the decoder must crop the coded
    picture's padding and undo any downscaling, and nothing reaches it another way.
    """

    takes = frozenset({"image"})
    tag: bytes = b"????"
    version: int = 1

    def transmit_encode(self, image: torch.Tensor, front: FrontOutput, rate: RatePoint) -> bytes:
        return self.encode(image, rate)

    def transmit_decode(self, payload: bytes, meta: ImageMeta) -> Received:
        return Received(image=self.decode(payload))

    def encode(self, image: torch.Tensor, rate: RatePoint) -> bytes:
        check_image(image, self.name)
        _, h, w = (int(s) for s in image.shape)
        if max(h, w) > 0xFFFF:
            raise ShapeError(f"{self.name}: image of {w}x{h} exceeds the container's 65535-pixel side")
        header = self.tag + struct.pack(">BHH", self.version, h, w)
        return header + self._encode_body(image, rate)

    def decode(self, payload: bytes) -> torch.Tensor:
        payload = bytes(payload)
        check_container(payload, 9, self.tag, self.version, self.name)
        h, w = struct.unpack(">HH", payload[5:9])
        if h == 0 or w == 0:
            raise PayloadError(f"{self.name}: header says the image is {w}x{h} (corrupt header)")
        image = self._decode_body(memoryview(payload)[9:], h, w)
        if tuple(image.shape) != (3, h, w) or image.dtype != torch.uint8:
            raise PayloadError(
                f"{self.name}: decoded image is {tuple(image.shape)} {image.dtype}, header says (3, {h}, {w}) uint8"
            )
        return image

    @abstractmethod
    def _encode_body(self, image: torch.Tensor, rate: RatePoint) -> bytes:
        """Everything after the size; must carry whatever else decode needs."""

    @abstractmethod
    def _decode_body(self, body: memoryview, height: int, width: int) -> torch.Tensor:
        """Inverse of `_encode_body`: a (3, height, width) uint8 image; PayloadError if malformed."""


class LayeredCodec(Codec):
    """Base of the joint feature + image codecs: one payload, two layers.

    The base layer carries features for the machine task, the enhancement layer what a person
    needs to see the image. `encode(image, features, rate)` writes both into one payload;
    `layer_bytes(payload)` says how many of its bytes belong to each (they add up to the
    payload: bytes_base + bytes_enh == len(payload)); the task decoder reads the base layer
    alone (`decode_base`), the viewer also the enhancement layer, which may use the decoded
    base features (`decode_enhancement`).
    """

    takes = frozenset({"image", "features"})

    def transmit_encode(self, image: torch.Tensor, front: FrontOutput, rate: RatePoint) -> bytes:
        return self.encode(image, front.features, front.meta, rate)

    def transmit_decode(self, payload: bytes, meta: ImageMeta) -> Received:
        """The base layer for the back, the enhancement layer's image for the viewer; the base
        layer's seconds include reading the layer table (the machine needs both)."""
        t0 = time.perf_counter()
        n_base, n_enh = self.layer_bytes(payload)
        base = self.decode_base(payload)
        t1 = time.perf_counter()
        image = self.decode_enhancement(payload, base, meta)
        t2 = time.perf_counter()
        return Received(
            features=base,
            image=image,
            layers={"base": n_base, "enh": n_enh},
            layer_seconds={"base": t1 - t0, "enh": t2 - t1},
        )

    @abstractmethod
    def encode(self, image: torch.Tensor, features: Features, meta: ImageMeta, rate: RatePoint) -> bytes:
        """Both layers of one image; `meta` is the front's preprocessing (the receiver knows it too)."""

    @abstractmethod
    def layer_bytes(self, payload: bytes) -> tuple[int, int]:
        """(bytes_base, bytes_enh) of a payload; PayloadError if its layer table is corrupt."""

    @abstractmethod
    def decode_base(self, payload: bytes) -> Features:
        """The base layer's features (what the back runs on)."""

    @abstractmethod
    def decode_enhancement(self, payload: bytes, base: Features, meta: ImageMeta) -> torch.Tensor:
        """The viewable image, uint8 RGB (3, H, W), from the enhancement layer (and the decoded base)."""


def check_container(payload: bytes, fixed: int, tag: bytes, version: int, who: str) -> None:
    """The checks every container starts with (bytes 0-3 the tag, byte 4 the version): long
    enough for its fixed header, made by this codec, in the version this decoder reads."""
    if len(payload) < fixed:
        raise PayloadError(f"{who}: payload of {len(payload)} bytes is shorter than the header")
    if payload[:4] != tag:
        raise PayloadError(
            f"{who}: payload tag {payload[:4]!r} is not this codec's {tag!r}; it was made by another codec"
        )
    if payload[4] != version:
        raise PayloadError(f"{who}: payload version {payload[4]}, this decoder reads {version}")


NAMED = 0x80
"""Flag of the shape table's count byte: the tensors' names follow the shapes (a split other than p2..p5)."""


def shape_table(
    tag: bytes, version: int, shapes: Sequence[tuple[int, int, int]], names: Sequence[str] = LEVELS
) -> bytes:
    """The feature container's header: tag, version, tensor count and each tensor's (C, H, W). For
    p2..p5 that is all (the receiver's network names them); a split of other tensors sets the
    count's NAMED bit and writes each name after the shapes (u8 length, ASCII), since the decoder
    must hand the back its tensors by name and nothing reaches it outside the payload."""
    for name, s in zip(names, shapes, strict=True):
        if any(d > 0xFFFF for d in s):
            raise ShapeError(f"feature tensor {name} shape {s} exceeds the container's 65535 limit")
    table = b"".join(struct.pack(">HHH", *s) for s in shapes)
    if tuple(names) == LEVELS:
        return tag + struct.pack(">BB", version, len(shapes)) + table
    coded = [n.encode("ascii") for n in names]
    return tag + struct.pack(">BB", version, NAMED | len(shapes)) + table + b"".join(bytes([len(n)]) + n for n in coded)


def read_feature_table(
    payload: bytes, tag: bytes, version: int, who: str
) -> tuple[tuple[str, ...], list[tuple[int, int, int]], int]:
    """Inverse of shape_table: (names, shapes, offset after the table); PayloadError for anything else."""
    fixed = 6
    check_container(payload, fixed, tag, version, who)
    named, n = bool(payload[5] & NAMED), payload[5] & ~NAMED
    if not named and n != len(LEVELS):
        raise PayloadError(f"{who}: payload says {n} levels, expected {len(LEVELS)} (corrupt header)")
    if n == 0:
        raise PayloadError(f"{who}: payload says it holds no tensor (corrupt header)")
    end = fixed + 6 * n
    if len(payload) < end:
        raise PayloadError(f"{who}: payload truncated inside the shape table")
    shapes = [struct.unpack(">HHH", payload[fixed + 6 * i : fixed + 6 * i + 6]) for i in range(n)]
    names: tuple[str, ...] = LEVELS
    if named:
        found = []
        for _ in range(n):
            size = payload[end] if end < len(payload) else 0
            if size == 0 or end + 1 + size > len(payload):
                raise PayloadError(f"{who}: payload truncated inside the tensor names (corrupt header)")
            found.append(bytes(payload[end + 1 : end + 1 + size]).decode("ascii", errors="replace"))
            end += 1 + size
        if len(set(found)) != n:
            raise PayloadError(f"{who}: payload names a tensor twice: {found} (corrupt header)")
        names = tuple(found)
    for name, s in zip(names, shapes):
        if 0 in s:
            raise PayloadError(f"{who}: tensor {name} has empty shape {s} (corrupt header)")
    return names, shapes, end


def require_pyramid(features: Features, who: str) -> None:
    """A codec trained on FPN levels (learned, hybrid) meeting another split's tensors: one line."""
    if not is_pyramid(features):
        raise ConfigError(
            f"codec {who}: its networks code the four FPN levels p2..p5 they were trained on; this network's "
            f"split sends {list(features)}. Code them with raw, raw16, anchor_*, pack_* or the image codecs"
        )


def keyed_tensors(
    tensors: Sequence[torch.Tensor], names: Sequence[str], shapes: Sequence[tuple[int, int, int]], who: str
) -> Features:
    """A decoder's tensors (in the table's order) under their names, each checked against the table."""
    if len(tensors) != len(names):
        raise PayloadError(f"{who}: decoded {len(tensors)} tensors, the header lists {len(names)}")
    for name, t, s in zip(names, tensors, shapes):
        if tuple(t.shape) != tuple(s):
            raise PayloadError(f"{who}: decoded {name} has shape {tuple(t.shape)}, header says {s}")
    return dict(zip(names, tensors))


def check_image(image: torch.Tensor, who: str) -> None:
    """An image codec's input guard: uint8 RGB (3, H, W), what the datasets yield."""
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ShapeError(f"{who}: expected an RGB image tensor of shape (3, H, W), got {shape}")
    if image.dtype != torch.uint8:
        raise ShapeError(f"{who}: expected a uint8 image (0..255), got {image.dtype}; datasets yield uint8")
    if 0 in image.shape:
        raise ShapeError(f"{who}: empty image {tuple(image.shape)}")


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

"""Joint feature + image coding: a base layer of features for the machine, an enhancement
layer for a person (the "collaborative compression" of Duan et al., "Video Coding for
Machines: A Paradigm of Collaborative Compression and Intelligent Analytics", IEEE TIP 2020).

One payload, two layers:

    tag "JNT1" | version (1) | base length (u32) | base layer | enhancement layer
    `--------------- counted in bytes_base ------------------'   `-- bytes_enh --'

- **base layer**: the payload of a feature codec (`base`, a nested codec node, usually
  `${codec_yaml:NAME}`: that codec's own yaml), coded from the front's p2..p5 at the pair's
  base rate.
  The task decoder reads the header and this layer alone and runs the back on it.
- **enhancement layer**, two modes (`enhancement:`):
  - `image`: the image for viewing, coded with the image anchor's pipeline
    (codecs/image_anchor.py: RGB -> 4:2:0 10-bit, VVC all-intra at the pair's QP, optional
    downscale) over the injected `backend` (a nested node, as the image anchor's: a lossy
    back-end that codes colour pictures). The layers are independent (simulcast in one payload).
  - `residual`: collaborative. The viewer's decoder predicts the image from the decoded
    base features (codecs/learned/predictor.py, a trained network) and the layer carries
    only the residual image - prediction, offset to the middle of the 10-bit range and
    coded by the same pipeline (RGB -> 4:2:0 10-bit, VVC at the pair's QP). The encoder
    predicts from the base layer *as decoded*, so both sides add the residual to the same
    prediction. Layer body: height, width (2 x u16) + the bitstream.

The header's 9 bytes belong to the base layer (the machine cannot parse its layer without
them), so bytes_base + bytes_enh is the payload length exactly, and bpp (docs/design.md) is
that of everything transmitted.

A rate point is a (base rate, enhancement QP) pair: `rates: [[2, 42], [4, 32]]` gives the
points `quality=2+qp=42` and `quality=4+qp=32` for a learned base (knob `quality`).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from vcmbench.codecs.backends.codec import ExternalBackend
from vcmbench.codecs.base import FeatureCodec, LayeredCodec, RatePoint, check_image, register_tags
from vcmbench.codecs.image_anchor import ImageAnchorCodec
from vcmbench.errors import ConfigError, PayloadError
from vcmbench.paths import resolve_data_path
from vcmbench.types import Features, ImageMeta

TAG = b"JNT1"
register_tags(f"{__name__}.JointCodec", TAG)
HEADER = struct.Struct(">4sBI")  # tag, version, base-layer length
RESIDUAL_OFFSET = 512  # residual (-255..255) + 512: the middle of the 10-bit range


class JointCodec(LayeredCodec):
    """Base layer from a feature codec, enhancement layer from the image anchor pipeline."""

    version = 1

    def __init__(
        self,
        name: str,
        base: FeatureCodec,
        rates: Sequence[Sequence[object]],
        backend: ExternalBackend | Callable[..., ExternalBackend],
        enhancement: str = "image",
        predictor: str | None = None,
        scale: float = 1.0,
    ):
        """backend: the enhancement layer's back-end, or a callable building one (a node with
        `_partial_: true`); its errors name `codec.NAME.backend.KEY`."""
        setting = f"codec.{name}"
        if enhancement not in ("image", "residual"):
            raise ConfigError(f"{setting}.enhancement={enhancement!r}: choose image or residual")
        if enhancement == "residual" and float(scale) != 1.0:
            raise ConfigError(f"{setting}.scale={scale}: the residual is coded at full size; set scale: 1.0")
        if enhancement == "residual" and not predictor:
            raise ConfigError(f"{setting}.predictor: the residual mode needs a predictor checkpoint")
        self.mode = enhancement
        if not isinstance(base, FeatureCodec):
            raise ConfigError(
                f"{setting}.base: {base!r} is not a feature codec; the base layer codes features: give "
                f"a feature codec's node, e.g. base: ${{codec_yaml:learned_interleaved}}"
            )
        pairs = []
        for i, pair in enumerate(rates or []):
            if not isinstance(pair, Sequence) or isinstance(pair, str) or len(pair) != 2:
                raise ConfigError(
                    f"{setting}.rates[{i}]={pair!r}: each rate point is a [base rate, enhancement QP] pair"
                )
            pairs.append((pair[0], pair[1]))
        if not pairs:
            raise ConfigError(f"{setting}.rates is empty; give [base rate, enhancement QP] pairs")
        self.base = base
        self.image = ImageAnchorCodec(
            f"{name}.enhancement", backend, rates=[p[1] for p in pairs], scale=scale, setting=setting
        )
        if self.image.lossless:
            raise ConfigError(
                f"{setting}.backend: {type(self.image.backend).__name__} is lossless; the enhancement "
                "layer is a lossy image codec (e.g. VvencBackend, VtmBackend, X265Backend, AomBackend)"
            )
        self.predictor_path = None if predictor is None else resolve_data_path(str(predictor))
        self._predictor = None
        if self.mode == "residual":
            from vcmbench.codecs.learned.predictor import load_predictor

            self._predictor = load_predictor(predictor, f"{setting}.predictor")
        self.knob = self.base.knob
        enh_knob = self.image.knob
        super().__init__(name, [f"{b}+{enh_knob}={e}" for b, e in pairs])
        self.layers = {
            rp.label: (self.base.rate_point(b), self.image.rate_point(e)) for rp, (b, e) in zip(self.rates, pairs)
        }

    def prepare(self, rate: RatePoint) -> None:
        base_rate, enh_rate = self.layers[rate.label]
        self.base.prepare(base_rate)
        self.image.prepare(enh_rate)

    def describe_encoder(self) -> str:
        return f"base {self.base.describe_encoder()} + {self.mode} {self.image.describe_encoder()}"

    def _prediction(self, base: Features, meta: ImageMeta) -> torch.Tensor:
        from vcmbench.codecs.learned.predictor import predict_image

        return predict_image(self._predictor, base, meta).to(torch.int16)

    # -- encoder ---------------------------------------------------------------------------------
    def files(self) -> list[Path]:
        own = [self.predictor_path] if self.mode == "residual" else []
        return [*self.base.files(), *own]

    def trained_on(self) -> list[dict]:
        """The base's checkpoints and, in residual mode, the predictor's (its json names the network)."""
        own = []
        if self.mode == "residual" and self.predictor_path is not None:
            sidecar = self.predictor_path.with_suffix(".json")
            info = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
            own.append(
                {
                    "network": info.get("model"),
                    "split": "fpn",
                    "sha256": info.get("front_sha256"),
                    "channels": 256,
                    "data": info.get("train_set"),
                    "source": str(self.predictor_path.name),
                }
            )
        return [*self.base.trained_on(), *own]

    def encode(self, image: torch.Tensor, features: Features, meta: ImageMeta, rate: RatePoint) -> bytes:
        if rate.label not in self.layers:
            raise ConfigError(f"codec {self.name} has no rate point {rate.label}; it has {list(self.layers)}")
        base_rate, enh_rate = self.layers[rate.label]
        base = self.base.encode(features, base_rate)
        if self.mode == "image":
            enhancement = self.image.encode(image, enh_rate)
        else:
            check_image(image, self.name)
            prediction = self._prediction(self.base.decode(base), meta)  # what the decoder will have
            residual = image.to(torch.int16) - prediction + RESIDUAL_OFFSET
            _, h, w = image.shape
            enhancement = struct.pack(">HH", h, w) + self.image.encode_rgb10(residual.numpy(), enh_rate)
        return HEADER.pack(TAG, self.version, len(base)) + base + enhancement

    # -- decoders ---------------------------------------------------------------------------------
    def layer_bytes(self, payload: bytes) -> tuple[int, int]:
        if len(payload) < HEADER.size:
            raise PayloadError(f"{self.name}: payload of {len(payload)} bytes is shorter than the layer header")
        tag, version, n_base = HEADER.unpack_from(payload)
        if tag != TAG:
            raise PayloadError(f"{self.name}: payload tag {tag!r} is not a joint payload's {TAG!r}")
        if version != self.version:
            raise PayloadError(f"{self.name}: payload version {version}, this decoder reads {self.version}")
        if HEADER.size + n_base > len(payload):
            raise PayloadError(
                f"{self.name}: header announces a {n_base}-byte base layer, the payload holds "
                f"{len(payload) - HEADER.size} bytes after the header (truncated)"
            )
        base = HEADER.size + n_base
        return base, len(payload) - base

    def decode_base(self, payload: bytes) -> Features:
        n_base, _ = self.layer_bytes(payload)
        return self.base.decode(memoryview(payload)[HEADER.size : n_base])

    def decode_enhancement(self, payload: bytes, base: Features, meta: ImageMeta) -> torch.Tensor:
        n_base, n_enh = self.layer_bytes(payload)
        if n_enh == 0:
            raise PayloadError(f"{self.name}: the payload has no enhancement layer (truncated after the base layer)")
        layer = memoryview(payload)[n_base:]
        if self.mode == "image":
            return self.image.decode(layer)
        if n_enh < 5:
            raise PayloadError(f"{self.name}: enhancement layer of {n_enh} bytes is shorter than its header")
        h, w = struct.unpack(">HH", layer[:4])
        if (h, w) != tuple(meta.original_size):
            raise PayloadError(
                f"{self.name}: enhancement layer is for a {w}x{h} image, this one is "
                f"{meta.original_size[1]}x{meta.original_size[0]} (corrupt header or wrong image)"
            )
        residual = torch.from_numpy(self.image.decode_rgb10(bytes(layer[4:]), h, w).astype("int16"))
        return (self._prediction(base, meta) + residual - RESIDUAL_OFFSET).clamp(0, 255).to(torch.uint8)

"""Frame codecs composed from parts: a quantiser, a frame layout and a frame back-end.

Every codec that turns p2..p5 into video frames for a real codec is the same pipeline:
quantise the float levels to `bits`-bit samples, lay the samples out as frames, code the
frames with a back-end (`vcmbench.codecs.backends`: VVC, HEVC, AV1, FFV1, PNG, JPEG, VTM),
and write whatever the decoder needs. The MPEG-VCM feature anchor and Duan et al.'s
channel-packing baselines differ only in the layout, so they are yaml files
(`conf/codec/anchor_*.yaml`, `pack_*.yaml`) that pick the three parts, each a nested Hydra
node with `_target_`:

- quantiser `UniformQuantiser`: range mode (global, per_image, per_level) and bits;
- layout `StackedMosaic` (EE1.2: each level's channels tiled in raster order, the mosaics
  stacked into one frame), `LevelMosaics` (one mosaic frame per level, or stacked),
  `ChannelFrames` (one frame per channel, each level one video; channel order as given or
  reordered by a greedy nearest-neighbour chain);
- back-end: any `ExternalBackend` (`_partial_: true`, so it is built with the codec's name for
  its error messages).

Payload (after the 30-byte container header of `vcmbench.codecs.base`; the tag is the layout's):

    mode     u8   bits 0-1 range mode (0 global, 1 per_image, 2 per_level); bits 2-7 layout flags
    coding   u8   bits 4-7 sample bits - 1; bits 0-3 the back-end class's family_id (1 VVC, 2 HEVC, ...)
    range    2 x f32 (lo, hi), or 4 pairs for per_level
    layout   the layout's side information (explicit grid rows, channel orders), if any
    streams  one per video: uvarint byte length before each but the last, which runs to the end

Sequences (`FrameSequenceEncoder`): the same fields written once for the whole sequence after
a container header of version 2 and the frame count (uvarint); the range is the sequence's
(`per_image` = per item, here the sequence; from a first pass of the front) or the global one;
each layout video is one bitstream over all frames, coded with `sequence_gop` / `intra_period`.

The layouts, and the layout flags of the mode byte, are `vcmbench.codecs.frame_layouts`'s; they are re-exported here, where
the codec yamls (`_target_: vcmbench.codecs.frames.StackedMosaic`) and tests name them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vcmbench.codecs.backends.codec import ExternalBackend, build_backend
from vcmbench.codecs.base import FeatureCodec, RatePoint, Received, keyed_tensors, register_tags
from vcmbench.codecs.frame_layouts import ChannelFrames, FrameLayout, LevelMosaics, StackedMosaic
from vcmbench.codecs.frame_layouts import greedy_chain as greedy_chain
from vcmbench.codecs.sequence import SEQUENCE_VERSION as SEQUENCE_VERSION
from vcmbench.codecs.sequence import (
    SequenceEncoder,
    SequenceInfo,
    check_gop_settings,
    ctc_gop,
    decoded_frames,
    frame_shapes,
    read_sequence_head,
    sequence_head,
)
from vcmbench.codecs.tiling import (
    Reader,
    check_finite,
    check_plausible,
    check_range_mode,
    coding_byte,
    compute_ranges,
    dequantize,
    mode_byte,
    pack_ranges,
    pack_streams,
    quantize,
    split_coding_byte,
    split_mode_byte,
    unpack_ranges,
    unpack_streams,
)
from vcmbench.errors import ConfigError, ExternalCodecError, PayloadError, ShapeError
from vcmbench.types import Features, FrontOutput, ImageMeta, feature_names

#: EE1.2 global range for OpenImages detection features (Faster R-CNN X101-FPN, detectron2)
EE12_OPENIMAGES_RANGE = (-22.3948, 20.3891)
#: the EE1.2 QPs
MPEG_QPS = (35, 37, 39, 41, 43, 45)


def sample_depth(bits: int) -> int:
    """Container depth of the frames for `bits`-bit quantised values."""
    return 8 if bits <= 8 else 10


# ------------------------------------------------------------------------------ quantiser


@dataclass
class UniformQuantiser:
    """Uniform `bits`-bit quantisation between a minimum and a maximum (written into the payload).

    range: `global` (the constants below: EE1.2's for X101 on OpenImages), `per_image` (the
    image's own min/max over all levels) or `per_level` (one pair per level).
    """

    range: str = "per_image"
    bits: int = 10
    global_min: float = EE12_OPENIMAGES_RANGE[0]
    global_max: float = EE12_OPENIMAGES_RANGE[1]

    def check(self, setting: str) -> None:
        check_range_mode(self.range, f"{setting}.range")
        if not self.global_min < self.global_max:
            raise ConfigError(f"{setting}.global_min={self.global_min} must be below global_max={self.global_max}")
        if not 1 <= int(self.bits) <= 10:
            raise ConfigError(f"{setting}.bits={self.bits}: choose 1..10 bits per quantised value")

    def quantise(self, features: Features, bits: int) -> tuple[list[np.ndarray], list[tuple[float, float]]]:
        """The tensors (in the coding order, `feature_names`) as samples, and each one's range."""
        levels = [features[k].detach().to("cpu", torch.float32).numpy() for k in feature_names(features)]
        ranges = compute_ranges(levels, self.range, float(self.global_min), float(self.global_max))
        return [quantize(x, lo, hi, bits) for x, (lo, hi) in zip(levels, ranges)], ranges


# ------------------------------------------------------------------------------ layouts (frame_layouts)


# the tags are claimed here, under the names the codec yamls give the layouts
register_tags(f"{__name__}.StackedMosaic", StackedMosaic.tag)
register_tags(f"{__name__}.LevelMosaics", LevelMosaics.tag)
register_tags(f"{__name__}.ChannelFrames", *ChannelFrames.TAGS.values())


# ------------------------------------------------------------------------------ the codec


def configure_rate(backend: ExternalBackend, knob: str, bits: int, setting: str) -> str:
    """Check knob against the back-end; return the back-end knob ('bits' codes losslessly)."""
    backend.validate(backend.knobs[0], bitdepth=sample_depth(bits))
    if knob == "bits":
        if "lossless" not in backend.knobs:
            raise ConfigError(
                f"{setting}.knob=bits needs a lossless back-end (ffv1, png, hevc, av1); "
                f"{backend.family} takes {list(backend.knobs)}"
            )
        return "lossless"
    backend.validate(knob)
    return knob


class FrameCodec(FeatureCodec):
    """Quantiser + layout + frame back-end: the anchor and packing codecs, composed in yaml.

    Args:
        name: the codec's name (its yaml key).
        quantiser: a UniformQuantiser.
        layout: a FrameLayout (its tag is the payload's).
        backend: an ExternalBackend, or a callable building one from `who` and `setting_prefix`
            (a Hydra node with `_partial_: true`), so its errors name `codec.NAME.backend.KEY`.
        knob: the back-end's rate knob (qp, crf, q), or `bits`: a lossless back-end, the rate
            point setting the quantiser's bit depth.
        rates: the rate points.
        gop: intra | inter (inter prediction between the frames of a video, where the layout
            has several frames per video).
    """

    version = 1

    def __init__(
        self,
        name: str,
        quantiser: UniformQuantiser,
        layout: FrameLayout,
        backend: ExternalBackend | Callable[..., ExternalBackend],
        knob: str = "qp",
        rates: Sequence[object] | None = None,
        gop: str = "intra",
        sequence_gop: str = "low_delay",
        intra_period: int | str = "auto",
    ):
        setting = f"codec.{name}"
        check_gop_settings(setting, sequence_gop, intra_period)
        self.sequence_gop, self.intra_period = sequence_gop, intra_period
        quantiser.check(f"{setting}.quantiser")
        layout.check(f"{setting}.layout")
        if gop not in ("intra", "inter"):
            raise ConfigError(f"{setting}.gop={gop!r}: choose intra or inter")
        if gop == "inter" and not layout.allows_inter:
            raise ConfigError(f"{setting}.gop=inter: the {type(layout).__name__} layout codes intra frames only")
        backend = build_backend(backend, name, f"{setting}.backend")
        self.quantiser, self.layout, self.backend = quantiser, layout, backend
        self.tag = layout.tag
        self.inter = gop == "inter"
        self.knob = str(knob)
        self.backend_knob = configure_rate(backend, self.knob, int(quantiser.bits), setting)
        super().__init__(name, rates)
        if self.backend_knob == "lossless":
            for rp in self.rates:
                if not 1 <= int(rp.value) <= 10:
                    raise ConfigError(f"{setting}.rates: bits={rp.value} outside 1..10")
        else:
            for rp in self.rates:
                backend.validate(self.backend_knob, rp.value, setting=f"{setting}.rates")

    def default_rates(self) -> Sequence[object]:
        return (int(self.quantiser.bits),) if self.knob == "bits" else ()

    def describe_encoder(self) -> str:
        return self.backend.describe()

    def _bits_for(self, rate: RatePoint) -> int:
        return int(rate.value) if self.knob == "bits" else int(self.quantiser.bits)

    # -- encode ---------------------------------------------------------------------------
    def _encode_body(self, features: Features, rate: RatePoint, shapes) -> bytes:
        bits = self._bits_for(rate)
        q, ranges = self.quantiser.quantise(features, bits)
        side, videos = self.layout.encode(q, shapes, fill=1 << (bits - 1))
        head = bytes(
            [mode_byte(self.quantiser.range, self.layout.flags(self.inter)), coding_byte(bits, self.backend.family_id)]
        )
        head += pack_ranges(self.quantiser.range, ranges) + side
        value = None if self.knob == "bits" else rate.value
        streams = [
            self.backend.encode(v, sample_depth(bits), self.backend_knob, value, intra=not self.inter) for v in videos
        ]
        return head + pack_streams(streams)

    # -- decode ---------------------------------------------------------------------------
    def _decode_body(self, body, shapes) -> list[torch.Tensor]:
        check_plausible(shapes, self.name)
        r = Reader(body, self.name)
        bits, ranges, plan, video_shapes = self._read_head(r, shapes)
        streams = unpack_streams(r, len(video_shapes))
        depth = sample_depth(bits)
        try:
            videos = [self.backend.decode(s, shape, depth) for s, shape in zip(streams, video_shapes)]
        except ExternalCodecError as exc:
            raise PayloadError(f"{self.name}: the {self.backend.family} bitstream does not decode: {exc}") from None
        return self._features(videos, shapes, plan, bits, ranges)

    def _read_head(self, r: Reader, shapes):
        """Mode and coding bytes, ranges and the layout's side information: (bits, ranges, plan,
        per-frame video shapes); PayloadError for anything this decoder did not write."""
        range_mode, flags = split_mode_byte(r.u8(), self.name)
        if flags & ~self.layout.known_flags:
            raise PayloadError(f"{self.name}: unknown header flags {flags:#x} (corrupt header)")
        bits, family = split_coding_byte(r.u8())
        if family != self.backend.family_id:
            raise PayloadError(
                f"{self.name}: payload holds a bitstream of family {family}, this decoder reads "
                f"{self.backend.family} ({self.backend.family_id}); it was made by another codec"
            )
        if bits > 10:
            raise PayloadError(f"{self.name}: payload says {bits}-bit samples, at most 10 are written (corrupt header)")
        ranges = unpack_ranges(r, range_mode, len(shapes))
        try:
            plan = self.layout.read(r, shapes, flags)
            video_shapes = self.layout.video_shapes(shapes, plan)
        except ShapeError as exc:
            raise PayloadError(f"{self.name}: {exc} (corrupt header)") from None
        return bits, ranges, plan, video_shapes

    def _features(self, videos: list[np.ndarray], shapes, plan, bits: int, ranges) -> list[torch.Tensor]:
        """Decoded videos of one frame -> the dequantised tensors, in the coding order."""
        try:
            q = self.layout.levels(videos, shapes, plan)
        except ShapeError as exc:
            raise PayloadError(f"{self.name}: {exc} (corrupt header)") from None
        m = (1 << bits) - 1
        return [torch.from_numpy(dequantize(np.minimum(x, m), lo, hi, bits)) for x, (lo, hi) in zip(q, ranges)]

    # -- sequences ------------------------------------------------------------------------
    @property
    def needs_sequence_range(self) -> bool:
        """A sequence is quantised with one range, its own unless the quantiser's is global."""
        return self.quantiser.range != "global"

    def sequence_encoder(self, rate: RatePoint, info: SequenceInfo) -> SequenceEncoder:
        return FrameSequenceEncoder(self, rate, info)

    def sequence_decode(self, payload: bytes, metas: Sequence[ImageMeta]) -> Iterator[Received]:
        """The frames of a sequence payload (FrameSequenceEncoder's), decoded one at a time."""
        names, shapes, r = read_sequence_head(bytes(payload), self.tag, self.name, len(metas))
        frames = len(metas)
        bits, ranges, plan, video_shapes = self._read_head(r, shapes)
        streams = unpack_streams(r, len(video_shapes))
        depth = sample_depth(bits)
        decoders = [
            self.backend.open_decoder(st, frames * n, h, w, depth) for st, (n, h, w) in zip(streams, video_shapes)
        ]
        per_frame = [n for n, _, _ in video_shapes]
        for videos in decoded_frames(decoders, per_frame, frames, self.name, self.backend.family):
            tensors = self._features(videos, shapes, plan, bits, ranges)
            yield Received(features=keyed_tensors(tensors, names, shapes, self.name))


class FrameSequenceEncoder(SequenceEncoder):
    """A sequence through a FrameCodec: one range and one layout plan for all frames, each layout
    video (the mosaic; or one per level; or one per level's channels) one inter-coded bitstream.

    Payload: the 30-byte container header with version SEQUENCE_VERSION, the frame count (uvarint),
    then the per-image payload's mode, coding, range and side-information fields, written once,
    then the streams. Each frame's samples go into the running encoder as soon as they are laid
    out; only the encoder processes hold state between frames.
    """

    def __init__(self, codec: FrameCodec, rate: RatePoint, info: SequenceInfo):
        self.codec, self.rate, self.info = codec, rate, info
        self.bits = codec._bits_for(rate)
        self.fill = 1 << (self.bits - 1)
        self.ranges = self._ranges()  # the sequence's, known before its first frame (global: one pair for all)
        self.sinks = []
        self.shapes: list[tuple[int, int, int]] = []
        self.head = b""

    def _ranges(self) -> list[tuple[float, float]]:
        c = self.codec
        if self.info.ranges is not None:
            bounds = [np.asarray(pair, dtype=np.float32) for pair in self.info.ranges]
            return compute_ranges(
                bounds, c.quantiser.range, float(c.quantiser.global_min), float(c.quantiser.global_max)
            )
        if c.quantiser.range == "global":
            return [(float(np.float32(c.quantiser.global_min)), float(np.float32(c.quantiser.global_max)))]
        raise ConfigError(
            f"codec.{c.name}: range {c.quantiser.range} needs the sequence's range before its "
            "first frame (SequenceInfo.ranges)"
        )

    def _start(self, q: list[np.ndarray], shapes, names: tuple[str, ...]) -> None:
        """At the first frame: the layout plan (from its samples), the header, the encoders."""
        c, bits = self.codec, self.bits
        self.shapes = shapes
        side, _ = c.layout.encode(q, shapes, self.fill)
        flags = c.layout.flags(True)
        self.plan = c.layout.read(Reader(side, c.name), shapes, flags)
        self.head = sequence_head(c.tag, shapes, self.info.frames, names)
        self.head += bytes([mode_byte(c.quantiser.range, flags), coding_byte(bits, c.backend.family_id)])
        self.head += pack_ranges(c.quantiser.range, self.ranges) + side
        value = None if c.knob == "bits" else self.rate.value
        for n, h, w in c.layout.video_shapes(shapes, self.plan):
            gop = ctc_gop(c.sequence_gop, c.intra_period, self.info.fps, n)
            self.sinks.append(
                c.backend.open_encoder(h, w, self.info.frames * n, sample_depth(bits), c.backend_knob, value, gop)
            )

    def add(self, image: torch.Tensor, front: FrontOutput) -> None:
        features = front.features
        shapes = frame_shapes(features, self.shapes if self.sinks else [], self.codec.name)
        names = feature_names(features)
        levels = [features[k].detach().to("cpu", torch.float32).numpy() for k in names]
        check_finite(levels)
        if len(self.ranges) == 1 and len(levels) > 1:  # the global range, the same for every tensor
            self.ranges = self.ranges * len(levels)
        q = [quantize(x, lo, hi, self.bits) for x, (lo, hi) in zip(levels, self.ranges, strict=True)]
        if not self.sinks:
            self._start(q, shapes, names)
        for sink, video in zip(self.sinks, self.codec.layout.arrange(q, self.plan, self.fill)):
            sink.write(video)

    def finish(self) -> bytes:
        if not self.sinks:
            raise ShapeError(f"codec.{self.codec.name}: a sequence without frames")
        return self.head + pack_streams([sink.finish() for sink in self.sinks])

    def abort(self) -> None:
        for sink in self.sinks:
            sink.abort()

"""The MPEG-VCM image anchor (remote inference): the input image itself, coded with a real codec.

The VCM common test conditions compare every feature codec with coding the *image* and
running the whole network on the decoded image. The anchor pipeline, as the MPEG image
anchor scripts run it:

1. optional downscale of the RGB input to 75 / 50 / 25 % (`scale`; bicubic, ffmpeg's
   swscale), each side rounded to the nearest pixel;
2. even-size padding for 4:2:0 (edge replication: `pad` + `fillborders=smear`), and up to
   the encoder's smallest frame;
3. RGB -> Y'CbCr 4:2:0 at 10 bits (`matrix`, limited range; BT.601 by default, what ffmpeg
   assumes for an untagged RGB picture, as in the MPEG scripts) and VVC all-intra at a QP
   (22, 27, 32, 37, 42, 47 in the CTC) with InternalBitDepth 10;
4. at the receiver: decode, back to RGB with the same matrix, crop the padding, upscale to
   the input size (bicubic), 8-bit RGB for the detector.

Every step runs in the ffmpeg of the back-end (imageio-ffmpeg's, with libvvenc), so the
encode/decode times include the conversions, as a deployed anchor would.

The back-end is an injected part, a nested yaml node as for the frame codecs (`backend:
{_target_: vcmbench.codecs.backends.ffmpeg_codecs.VvencBackend, _partial_: true, preset: faster}`),
built with the codec's name so that its errors name `codec.NAME.backend.KEY`. Any back-end that
codes colour pictures (`codes_pictures`) of the VVC, HEVC, AV1 or PNG family: VvencBackend (the
anchor), VtmBackend (the MPEG anchor's encoder: ffmpeg converts, EncoderApp codes the 4:2:0 10-bit
file), X265Backend, AomBackend, and PngBackend, which codes the 8-bit RGB picture losslessly
(`lossless_rgb`: no colour conversion, no padding) and is the uncompressed limit of the image
pipeline: its accuracy is exactly the unsplit detector's.

Payload: the ImageCodec container (tag, version, input height and width) + the scale in
percent (1 byte) + the bitstream as the encoder wrote it. All of it counts in bpp.

Sequences: the frames are coded as one video through the same conversions, with inter
prediction (`sequence_gop`: low_delay by default, `intra_period` auto: the FCM CTC's), and the
receiver runs the whole network on each decoded frame. Sequence payload: tag, version 2, the
frames' height and width (2 x u16), the frame count (uvarint), the scale (1 byte), the bitstream.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from vcmbench.codecs.backends.codec import ExternalBackend, build_backend
from vcmbench.codecs.base import ImageCodec, RatePoint, Received, check_container, register_tags
from vcmbench.codecs.sequence import SequenceEncoder, SequenceInfo, check_gop_settings, ctc_gop
from vcmbench.codecs.tiling import Reader, uvarint
from vcmbench.errors import ConfigError, ExternalCodecError, PayloadError, ShapeError
from vcmbench.types import FrontOutput, ImageMeta

#: back-end family -> 4-byte payload tag: a PNG payload fed to the VVC decoder is refused, not misread
TAGS = {"vvc": b"IMGV", "hevc": b"IMGH", "av1": b"IMGA", "png": b"IMGP"}
MATRICES = ("bt601", "bt709")
register_tags(f"{__name__}.ImageAnchorCodec", *TAGS.values())
#: the VCM CTC image-anchor QPs
CTC_QPS = (22, 27, 32, 37, 42, 47)
#: container version of a sequence payload (an image's is 1)
SEQUENCE_VERSION = 2


def scaled_size(height: int, width: int, percent: int) -> tuple[int, int]:
    """The coded picture's size before padding: each side scaled and rounded, at least 1."""
    if percent == 100:
        return height, width
    return max(1, int(height * percent / 100 + 0.5)), max(1, int(width * percent / 100 + 0.5))


class ImageAnchorCodec(ImageCodec):
    """The image, downscaled (optionally), converted to 4:2:0 and coded with a real codec."""

    version = 1

    def __init__(
        self,
        name: str,
        backend: ExternalBackend | Callable[..., ExternalBackend],
        rates: Sequence[object] | None = None,
        scale: float = 1.0,
        bits: int = 10,
        matrix: str = "bt601",
        sequence_gop: str = "low_delay",
        intra_period: int | str = "auto",
        *,
        setting: str | None = None,
    ):
        """backend: a back-end, or a callable building one from `who` and `setting_prefix` (a node with
        `_partial_: true`). setting: where the settings live in the config, `codec.NAME` by default
        (the joint codec's enhancement layer: the joint codec's node)."""
        setting = setting or f"codec.{name}"
        check_gop_settings(setting, sequence_gop, intra_period)
        self.sequence_gop, self.intra_period = sequence_gop, intra_period
        percent = round(float(scale) * 100)
        if not 1 <= percent <= 100 or abs(percent - float(scale) * 100) > 1e-6:
            raise ConfigError(
                f"{setting}.scale={scale}: give the downscale factor in whole percent, in (0, 1] "
                f"(the CTC uses 1.0, 0.75, 0.5, 0.25)"
            )
        if matrix not in MATRICES:
            raise ConfigError(f"{setting}.matrix={matrix!r}: choose one of {list(MATRICES)}")
        if bits not in (8, 10):
            raise ConfigError(f"{setting}.bits={bits}: choose 8 or 10")
        self.backend = build_backend(backend, name, f"{setting}.backend")
        kind = type(self.backend).__name__
        if not self.backend.codes_pictures or self.backend.family not in TAGS:
            raise ConfigError(
                f"{setting}.backend: {kind} does not code colour pictures of the image anchor's families "
                f"{sorted(TAGS)}; give e.g. VvencBackend, VtmBackend, X265Backend, AomBackend or PngBackend"
            )
        self.lossless = self.backend.lossless_rgb
        if not self.lossless and bits not in self.backend.picture_bitdepths:
            depths = " or ".join(map(str, self.backend.picture_bitdepths))
            raise ConfigError(f"{setting}.bits={bits}: {kind} codes {depths}-bit pictures only; set bits: {depths}")
        self.knob = "lossless" if self.lossless else self.backend.knobs[0]
        self.tag = TAGS[self.backend.family]
        self.percent = int(percent)
        self.bits = int(bits)
        self.matrix = matrix
        if self.lossless and self.percent != 100:
            raise ConfigError(f"{setting}.scale={scale}: the lossless ({kind}) reference codes the image at full size")
        # Curves at another scale are other codecs: they get their own name, line and BD-rate.
        super().__init__(name if self.percent == 100 else f"{name}_s{self.percent}", rates)
        for rp in self.rates:  # bad rate values fail here, before a sweep starts, not at its first image
            self.backend.validate(rp.knob, rp.value, self.bits if not self.lossless else 8, f"{setting}.rates")

    def default_rates(self) -> Sequence[object]:
        return ["png"] if self.lossless else list(CTC_QPS)

    def describe_encoder(self) -> str:
        return self.backend.describe()

    # -- sizes and filter graphs ---------------------------------------------------------------
    def _coded_size(self, sh: int, sw: int) -> tuple[int, int]:
        if self.lossless:
            return sh, sw
        ph, pw = self.backend.coded_size(sh, sw)
        return ph + ph % 2, pw + pw % 2  # 4:2:0 needs even sides whatever the back-end's alignment

    def _coded(self, h: int, w: int, percent: int) -> tuple[int, int]:
        """The size of the pictures the back-end codes for an (h, w) image at `percent`: what the
        filter graph makes (a file-based encoder, VTM, must be told)."""
        return self._coded_size(*scaled_size(h, w, percent))

    def _yuv_format(self) -> str:
        return "yuv420p10le" if self.bits == 10 else "yuv420p"

    def _encode_filters(self, h: int, w: int, planar: str = "gbrp") -> str:
        sh, sw = scaled_size(h, w, self.percent)
        ph, pw = self._coded_size(sh, sw)
        steps = []
        if (sh, sw) != (h, w):
            steps.append(f"scale={sw}:{sh}:flags=bicubic")
        if self.lossless:
            return ",".join(steps + ["format=rgb24"])
        steps.append(f"format={planar}")
        if (ph, pw) != (sh, sw):
            steps += [f"pad={pw}:{ph}:0:0", f"fillborders=right={pw - sw}:bottom={ph - sh}:mode=smear"]
        steps += [f"scale=out_color_matrix={self.matrix}:out_range=tv", f"format={self._yuv_format()}"]
        return ",".join(steps)

    def _decode_filters(self, h: int, w: int, percent: int, out_fmt: str = "rgb24") -> str:
        sh, sw = scaled_size(h, w, percent)
        steps = [] if self.lossless else [f"scale=in_color_matrix={self.matrix}:in_range=tv"]
        steps += [f"format={out_fmt}", f"crop={sw}:{sh}:0:0"]
        if (sh, sw) != (h, w):
            steps.append(f"scale={w}:{h}:flags=bicubic")
        return ",".join(steps)

    # -- 10-bit RGB samples (the joint codec's residual layer) -------------------------------------
    def encode_rgb10(self, planes: np.ndarray, rate: RatePoint) -> bytes:
        """(3, H, W) RGB samples in 0..1023 through the same pipeline at full size (4:2:0, 10-bit):
        the bitstream alone (the caller's container carries the size)."""
        if self.lossless or self.percent != 100:
            raise ConfigError(f"codec {self.name}: 10-bit samples are coded lossy and at full size only")
        _, h, w = planes.shape
        gbr = np.ascontiguousarray(planes[[1, 2, 0]].astype("<u2"))  # gbrp10le plane order: G, B, R
        return self.backend.encode_picture(
            gbr.tobytes(),
            "gbrp10le",
            (h, w),
            self._encode_filters(h, w, "gbrp10le"),
            self._yuv_format(),
            self.bits,
            rate.knob,
            rate.value,
            coded=self._coded(h, w, 100),
        )

    def decode_rgb10(self, stream: bytes, height: int, width: int) -> np.ndarray:
        """Inverse of encode_rgb10: (3, H, W) uint16 samples; PayloadError if the stream does not decode."""
        try:
            raw = self.backend.decode_picture(
                stream,
                self._decode_filters(height, width, 100, "gbrp10le"),
                "gbrp10le",
                height * width * 3 * 2,
                (height, width),
                coded=self._coded(height, width, 100),
            )
        except ExternalCodecError as exc:
            raise PayloadError(f"{self.name}: the bitstream does not decode ({exc})") from None
        gbr = np.frombuffer(raw, "<u2").reshape(3, height, width)
        return np.minimum(gbr[[2, 0, 1]], 1023)

    # -- container body ------------------------------------------------------------------------
    def _encode_body(self, image: torch.Tensor, rate: RatePoint) -> bytes:
        _, h, w = image.shape
        rgb = image.permute(1, 2, 0).contiguous().numpy().tobytes()
        out_fmt, bits = ("rgb24", 8) if self.lossless else (self._yuv_format(), self.bits)
        stream = self.backend.encode_picture(
            rgb,
            "rgb24",
            (h, w),
            self._encode_filters(h, w),
            out_fmt,
            bits,
            rate.knob,
            rate.value,
            coded=self._coded(h, w, self.percent),
        )
        return struct.pack(">B", self.percent) + stream

    def _decode_body(self, body: memoryview, height: int, width: int) -> torch.Tensor:
        if len(body) < 2:
            raise PayloadError(f"{self.name}: payload truncated: no bitstream after the header")
        percent = body[0]
        if not 1 <= percent <= 100:
            raise PayloadError(f"{self.name}: header says scale {percent} %, outside 1..100 (corrupt header)")
        try:
            rgb = self.backend.decode_picture(
                bytes(body[1:]),
                self._decode_filters(height, width, percent),
                "rgb24",
                height * width * 3,
                (height, width),
                coded=self._coded(height, width, percent),
            )
        except ExternalCodecError as exc:
            raise PayloadError(f"{self.name}: the bitstream does not decode ({exc})") from None
        arr = np.frombuffer(rgb, np.uint8).reshape(height, width, 3)
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()

    # -- sequences -----------------------------------------------------------------------------
    def sequence_encoder(self, rate: RatePoint, info: SequenceInfo) -> SequenceEncoder:
        return ImageSequenceEncoder(self, rate, info)

    def sequence_decode(self, payload: bytes, metas: Sequence[ImageMeta]) -> Iterator[Received]:
        """The decoded frames of a sequence payload, one at a time, for the receiver's network."""
        payload = bytes(payload)
        check_container(payload, 9, self.tag, SEQUENCE_VERSION, self.name)
        r = Reader(memoryview(payload)[5:], self.name)
        h, w = struct.unpack(">HH", r.take(4))
        frames, percent = r.uvarint(), r.u8()
        if h == 0 or w == 0 or not 1 <= percent <= 100:
            raise PayloadError(f"{self.name}: header says {w}x{h} frames at scale {percent} % (corrupt header)")
        if frames != len(metas):
            raise PayloadError(
                f"{self.name}: payload holds {frames} frames, the sequence has {len(metas)} (corrupt header)"
            )
        pictures = self.backend.decode_pictures(
            r.rest(), frames, self._decode_filters(h, w, percent), "rgb24", h * w * 3, coded=self._coded(h, w, percent)
        )
        try:
            for raw in pictures:
                arr = np.frombuffer(raw, np.uint8).reshape(h, w, 3)
                yield Received(image=torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous())
        except ExternalCodecError as exc:
            raise PayloadError(f"{self.name}: the bitstream does not decode ({exc})") from None
        finally:
            pictures.close()


class ImageSequenceEncoder(SequenceEncoder):
    """A sequence's frames into one running encoder: the image anchor's video."""

    def __init__(self, codec: ImageAnchorCodec, rate: RatePoint, info: SequenceInfo):
        self.codec, self.rate, self.info = codec, rate, info
        self.sink = None
        self.size: tuple[int, int] = (0, 0)

    def add(self, image: torch.Tensor, front: FrontOutput) -> None:
        c = self.codec
        _, h, w = (int(v) for v in image.shape)
        if self.sink is None:
            if max(h, w) > 0xFFFF:
                raise ShapeError(f"{c.name}: frames of {w}x{h} exceed the container's 65535-pixel side")
            self.size = (h, w)
            out_fmt, bits = ("rgb24", 8) if c.lossless else (c._yuv_format(), c.bits)
            gop = ctc_gop(c.sequence_gop, c.intra_period, self.info.fps)
            self.sink = c.backend.open_picture_encoder(
                "rgb24",
                (h, w),
                self.info.frames,
                c._encode_filters(h, w),
                out_fmt,
                bits,
                self.rate.knob,
                self.rate.value,
                gop,
                coded=c._coded(h, w, c.percent),
            )
        elif (h, w) != self.size:
            raise ShapeError(f"{c.name}: a frame of {w}x{h} in a sequence of {self.size[1]}x{self.size[0]} frames")
        self.sink.write_raw(image.permute(1, 2, 0).contiguous().numpy().tobytes())

    def finish(self) -> bytes:
        if self.sink is None:
            raise ShapeError(f"{self.codec.name}: a sequence without frames")
        c, (h, w) = self.codec, self.size
        head = c.tag + struct.pack(">BHH", SEQUENCE_VERSION, h, w) + uvarint(self.info.frames)
        return head + struct.pack(">B", c.percent) + self.sink.finish()

    def abort(self) -> None:
        if self.sink is not None:
            self.sink.abort()

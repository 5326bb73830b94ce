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

Back-ends (`inner`): vvc (libvvenc; the anchor), hevc (libx265), av1 (libaom) and png: PNG
codes the 8-bit RGB picture losslessly (no colour conversion, no padding) and is the
uncompressed limit of the image pipeline: its accuracy is exactly the unsplit detector's.

Payload: the ImageCodec container (tag, version, input height and width) + the scale in
percent (1 byte) + the bitstream as the encoder wrote it. All of it counts in bpp.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np
import torch

from vcmbench.codecs.base import ImageCodec, RatePoint, register_tags
from vcmbench.codecs.external import FfmpegCodec, make_backend
from vcmbench.errors import ConfigError, ExternalCodecError, PayloadError

#: back-end -> 4-byte payload tag: a PNG payload fed to the VVC decoder is refused, not misread
TAGS = {"vvc": b"IMGV", "hevc": b"IMGH", "av1": b"IMGA", "png": b"IMGP"}
MATRICES = ("bt601", "bt709")
register_tags(f"{__name__}.ImageAnchorCodec", *TAGS.values())
#: the VCM CTC image-anchor QPs
CTC_QPS = (22, 27, 32, 37, 42, 47)


def scaled_size(height: int, width: int, percent: int) -> tuple[int, int]:
    """The coded picture's size before padding: each side scaled and rounded, at least 1."""
    if percent == 100:
        return height, width
    return max(1, int(height * percent / 100 + 0.5)), max(1, int(width * percent / 100 + 0.5))


class ImageAnchorCodec(ImageCodec):
    """The image, downscaled (optionally), converted to 4:2:0 and coded with a real codec."""

    version = 1

    def __init__(self, name: str, inner: str = "vvc", rates: Sequence[object] | None = None, scale: float = 1.0,
                 bits: int = 10, matrix: str = "bt601", preset: object = None, ffmpeg: str | None = None,
                 threads: int | None = None, timeout_s: float | None = None):
        setting = f"codec.{name}"
        if inner not in TAGS:
            raise ConfigError(f"{setting}.inner={inner!r}: an image codec back-end is one of {sorted(TAGS)}")
        percent = round(float(scale) * 100)
        if not 1 <= percent <= 100 or abs(percent - float(scale) * 100) > 1e-6:
            raise ConfigError(
                f"{setting}.scale={scale}: give the downscale factor in whole percent, in (0, 1] "
                f"(the CTC uses 1.0, 0.75, 0.5, 0.25)"
            )
        if matrix not in MATRICES:
            raise ConfigError(f"{setting}.matrix={matrix!r}: choose one of {list(MATRICES)}")
        if inner == "vvc" and bits != 10:
            raise ConfigError(f"{setting}.bits={bits}: libvvenc codes 10-bit samples only; set bits: 10")
        if bits not in (8, 10):
            raise ConfigError(f"{setting}.bits={bits}: choose 8 or 10")
        self.backend = make_backend(inner, name, setting, ffmpeg=ffmpeg, preset=preset, timeout_s=timeout_s,
                                    threads=threads)
        assert isinstance(self.backend, FfmpegCodec)
        self.inner = inner
        self.lossless = inner == "png"
        self.knob = "lossless" if self.lossless else self.backend.knobs[0]
        self.tag = TAGS[inner]
        self.percent = int(percent)
        self.bits = int(bits)
        self.matrix = matrix
        if self.lossless and self.percent != 100:
            raise ConfigError(f"{setting}.scale={scale}: the lossless (png) reference codes the image at full size")
        # Curves at another scale are other codecs: they get their own name, line and BD-rate.
        super().__init__(name if self.percent == 100 else f"{name}_s{self.percent}", rates)
        for rp in self.rates:  # bad rate values fail here, before a sweep starts, not at its first image
            self.backend.validate(rp.knob, rp.value, self.bits if not self.lossless else 8, f"{setting}.rates")

    def default_rates(self) -> Sequence[object]:
        return ["png"] if self.lossless else list(CTC_QPS)

    # -- sizes and filter graphs ---------------------------------------------------------------
    def _coded_size(self, sh: int, sw: int) -> tuple[int, int]:
        if self.lossless:
            return sh, sw
        ph, pw = self.backend.coded_size(sh, sw)
        return ph + ph % 2, pw + pw % 2  # 4:2:0 needs even sides whatever the back-end's alignment

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
        return self.backend.encode_picture(gbr.tobytes(), "gbrp10le", (h, w), self._encode_filters(h, w, "gbrp10le"),
                                           self._yuv_format(), self.bits, rate.knob, rate.value)

    def decode_rgb10(self, stream: bytes, height: int, width: int) -> np.ndarray:
        """Inverse of encode_rgb10: (3, H, W) uint16 samples; PayloadError if the stream does not decode."""
        try:
            raw = self.backend.decode_picture(stream, self._decode_filters(height, width, 100, "gbrp10le"), "gbrp10le",
                                              height * width * 3 * 2, (height, width))
        except ExternalCodecError as exc:
            raise PayloadError(f"{self.name}: the bitstream does not decode ({exc})") from None
        gbr = np.frombuffer(raw, "<u2").reshape(3, height, width)
        return np.minimum(gbr[[2, 0, 1]], 1023)

    # -- container body ------------------------------------------------------------------------
    def _encode_body(self, image: torch.Tensor, rate: RatePoint) -> bytes:
        _, h, w = image.shape
        rgb = image.permute(1, 2, 0).contiguous().numpy().tobytes()
        out_fmt, bits = ("rgb24", 8) if self.lossless else (self._yuv_format(), self.bits)
        stream = self.backend.encode_picture(rgb, "rgb24", (h, w), self._encode_filters(h, w), out_fmt, bits,
                                             rate.knob, rate.value)
        return struct.pack(">B", self.percent) + stream

    def _decode_body(self, body: memoryview, height: int, width: int) -> torch.Tensor:
        if len(body) < 2:
            raise PayloadError(f"{self.name}: payload truncated: no bitstream after the header")
        percent = body[0]
        if not 1 <= percent <= 100:
            raise PayloadError(f"{self.name}: header says scale {percent} %, outside 1..100 (corrupt header)")
        try:
            rgb = self.backend.decode_picture(bytes(body[1:]), self._decode_filters(height, width, percent), "rgb24",
                                              height * width * 3, (height, width))
        except ExternalCodecError as exc:
            raise PayloadError(f"{self.name}: the bitstream does not decode ({exc})") from None
        arr = np.frombuffer(rgb, np.uint8).reshape(height, width, 3)
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()

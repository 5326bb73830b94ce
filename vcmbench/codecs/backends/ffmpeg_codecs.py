"""The codecs ffmpeg runs: VVC (libvvenc), HEVC (libx265), AV1 (libaom, SVT-AV1), FFV1, PNG, JPEG.

Each class is its encoder's options and sample format on top of `FfmpegBackend`; the comments
record why each option is set (most keep the bytes independent of the machine).
"""

from __future__ import annotations

import numpy as np

from vcmbench.codecs.backends.ffmpeg import FfmpegBackend
from vcmbench.codecs.backends.gop import ONE_INTRA
from vcmbench.errors import ConfigError


class VvencBackend(FfmpegBackend):
    """VVC: libvvenc in ffmpeg, decoded by ffmpeg's native VVC decoder."""

    family = "vvc"
    family_id = 1
    knobs = ("qp",)
    value_ranges = {"qp": (0, 63)}
    bitdepths = (8, 10)
    encoder = "libvvenc"
    decoder_format = "vvc"
    muxer = "vvc"
    yuv420 = True
    min_dim = 32  # libvvenc refuses frames under 16 (intra) / 32 (random access) pixels a side
    picture_bitdepths = (10,)  # yuv420p10le only
    default_preset = "faster"
    # Fed live through a pipe, libvvenc in this ffmpeg (9.0.2) writes parameter sets and no picture
    # when frames arrive with pauses between them (0.2 s apart: 104 bytes, exit 0; back to back: the
    # whole stream): its sequences are spooled to a file and encoded from it at the end.
    live_input = False

    def _encoder_args(self, knob, value, gop, bitdepth):
        qp = int(value)
        if not 0 <= qp <= 63:
            raise ConfigError(f"{self.who}: VVC qp={qp} outside 0..63")
        params = "AccessUnitDelimiter=0:RewriteParamSets=0"
        args = ["-preset", str(self.preset), "-qp", str(qp), "-qpa", "0"]
        if gop.intra:
            args += ["-g", "1"]
        elif gop == ONE_INTRA:
            args += ["-period", "100000"]
        elif gop.structure == "low_delay":
            # vvenc's low-delay configuration: no reordering, GOP 8, no IDR refresh (vvenc refuses
            # another refresh type without reordering); intra frames every intra_period
            params += f":PicReordering=0:GOPSize=8:IntraPeriod={gop.intra_period or -1}:DecodingRefreshType=none"
        else:
            params += f":GOPSize=32:IntraPeriod={gop.intra_period or -1}"
        return args + ["-vvenc-params", params]

    def _out_pix_fmt(self, bitdepth: int) -> str:
        return "yuv420p10le"

    #: libvvenc's bytes are the same at 1, 2 and 4 threads and change at 8 and at 16 (measured, all-intra and
    #: low-delay, 0.13 and 1.3 Mpixel frames): its own default (0: as many as the machine has cores) would
    #: make the bytes depend on the machine, so vcmbench always passes a count, and at most this one
    MAX_THREADS = 4

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.threads is not None and not 1 <= int(self.threads) <= self.MAX_THREADS:
            where = self.setting.rsplit(".", 1)[0]
            raise ConfigError(
                f"{where}.threads={self.threads}: libvvenc writes other bytes with 8 or more threads "
                f"(and its default follows the machine's cores); give 1..{self.MAX_THREADS}"
            )

    def _auto_threads(self, frame_pixels: int) -> int | None:
        # vvenc's thread pool costs more than it gains below ~1 Mpixel per frame
        # (all-intra on 16 small frames: 2.6 s with its default threads, 0.7 s with one); never its default
        return 1 if frame_pixels < (1 << 20) else 2


class X265Backend(FfmpegBackend):
    """HEVC: libx265 (4:0:0 gray/gray10le), decoded by ffmpeg's hevc decoder."""

    family = "hevc"
    family_id = 2
    knobs = ("qp", "crf", "lossless")
    value_ranges = {"qp": (0, 51), "crf": (0, 51)}
    encoder = "libx265"
    decoder_format = "hevc"
    muxer = "hevc"
    min_dim = 16  # x265 refuses smaller frames
    default_preset = "fast"

    def _encoder_args(self, knob, value, gop, bitdepth):
        # info=0: no SEI carrying x265's version and options string (~2 KB per stream). frame-threads=1: x265
        # picks its frame threads from the machine's cores, and frame threading limits motion search to the
        # rows of a reference already coded, so the bytes could follow the machine (wavefront threads do not)
        params = ["log-level=error", "info=0", "frame-threads=1"]
        args = ["-preset", str(self.preset)]
        if knob == "qp":
            args += ["-qp", str(int(value))]
        elif knob == "crf":
            # cutree off: x265 3.x corrupts its heap in crf mode on small 4:0:0 frames with cutree
            args += ["-crf", str(float(value))]
            params.append("cutree=0")
        else:
            params.append("lossless=1")
        period = gop.intra_period or 100000
        params.append("keyint=1" if gop.intra else f"keyint={period}:min-keyint={period}")
        if gop.structure == "low_delay":
            params.append("bframes=0")
        return args + ["-x265-params", ":".join(params)]


class AomBackend(FfmpegBackend):
    """AV1: libaom-av1 (4:0:0), OBU stream, decoded by ffmpeg."""

    family = "av1"
    family_id = 3
    knobs = ("crf", "lossless")
    value_ranges = {"crf": (0, 63)}
    encoder = "libaom-av1"
    decoder_format = "obu"
    muxer = "obu"
    default_preset = 6  # -cpu-used
    preset_name = "cpu-used"

    def _encoder_args(self, knob, value, gop, bitdepth):
        # row-mt 0: libaom's row multithreading (on whenever it has 2+ threads, and ffmpeg gives it as many as
        # the machine has cores) writes other bytes than one thread (measured); without it every thread
        # count writes the same
        args = ["-cpu-used", str(self.preset), "-b:v", "0", "-row-mt", "0"]
        if knob == "crf":
            args += ["-crf", str(int(value))]
        else:
            args += ["-aom-params", "lossless=1"]
        args += ["-g", "1"] if gop.intra else ["-g", str(gop.intra_period or 100000)]
        if gop.structure == "low_delay":
            args += ["-lag-in-frames", "0"]
        return args


class SvtAv1Backend(FfmpegBackend):
    """AV1: SVT-AV1 (yuv420p10le, flat chroma), OBU stream, decoded by ffmpeg."""

    family = "av1"
    family_id = 3
    knobs = ("qp", "crf")
    value_ranges = {"qp": (1, 63), "crf": (1, 63)}
    encoder = "libsvtav1"
    decoder_format = "obu"
    muxer = "obu"
    yuv420 = True
    default_preset = 8

    def _encoder_args(self, knob, value, gop, bitdepth):
        args = ["-preset", str(self.preset)]
        params = ["pred-struct=1"] if gop.structure == "low_delay" else []
        if knob == "crf":
            args += ["-crf", str(int(value))]
        else:
            args += ["-qp", str(int(value))]
            params = ["rc=0", "aq-mode=0", "enable-tf=0", *params]
        if params:
            args += ["-svtav1-params", ":".join(params)]
        args += ["-g", "1"] if gop.intra else ["-g", str(gop.intra_period or 100000)]
        return args

    def _out_pix_fmt(self, bitdepth: int) -> str:
        return "yuv420p10le"


class Ffv1Backend(FfmpegBackend):
    """FFV1 (lossless), in NUT. `intra=False` keeps the adapted contexts across frames."""

    family = "ffv1"
    family_id = 4
    knobs = ("lossless",)
    encoder = "ffv1"
    decoder_format = "nut"
    muxer = "nut"

    def _encoder_args(self, knob, value, gop, bitdepth):
        return [
            "-level",
            "1",
            "-coder",
            "1",
            "-context",
            "1",
            "-g",
            "1" if gop.intra else str(gop.intra_period or 100000),
        ]


class PngBackend(FfmpegBackend):
    """PNG (lossless), one file per frame, concatenated."""

    family = "png"
    family_id = 5
    knobs = ("lossless",)
    encoder = "png"
    decoder_format = "png_pipe"
    muxer = "image2pipe"
    lossless_rgb = True

    def _in_pix_fmt(self, bitdepth: int) -> str:
        return "gray16be" if bitdepth > 8 else "gray"

    def _to_input(self, frames, bitdepth):
        return frames.astype(">u2" if bitdepth > 8 else "u1").tobytes()

    def _from_output(self, raw, n, h, w, bitdepth):
        dt = np.dtype(">u2" if bitdepth > 8 else "u1")
        want = n * h * w * dt.itemsize
        if len(raw) != want:
            raise self._wrong_size(len(raw), want, n, h, w)
        out = np.frombuffer(raw, dt).reshape(n, h, w).astype(np.uint16)
        return np.minimum(out, (1 << bitdepth) - 1)

    def _encoder_args(self, knob, value, gop, bitdepth):
        return ["-pred", "mixed", "-compression_level", "9"]


class JpegBackend(FfmpegBackend):
    """JPEG (baseline, 8-bit), one file per frame, concatenated; knob q = ffmpeg's -q:v 1..31."""

    family = "jpeg"
    family_id = 6
    knobs = ("q",)
    value_ranges = {"q": (1, 31)}
    bitdepths = (8,)
    encoder = "mjpeg"
    decoder_format = "jpeg_pipe"
    muxer = "image2pipe"
    align = 2

    def _in_pix_fmt(self, bitdepth):
        return "yuvj420p"

    def _to_input(self, frames, bitdepth):
        n, h, w = frames.shape
        y = frames.astype("u1").reshape(n, -1)
        chroma = np.full((n, 2 * (h // 2) * (w // 2)), 128, "u1")
        return np.concatenate([y, chroma], axis=1).tobytes()

    def _from_output(self, raw, n, h, w, bitdepth):
        fsize = h * w + 2 * (h // 2) * (w // 2)
        if len(raw) != n * fsize:
            raise self._wrong_size(len(raw), n * fsize, n, h, w)
        return np.frombuffer(raw, "u1").reshape(n, fsize)[:, : h * w].reshape(n, h, w).astype(np.uint16)

    def _encoder_args(self, knob, value, gop, bitdepth):
        q = int(value)
        if not 1 <= q <= 31:
            raise ConfigError(f"{self.who}: JPEG q={q} outside 1..31 (ffmpeg -q:v; lower is better)")
        return ["-q:v", str(q), "-qmin", "1", "-huffman", "optimal"]

"""External codec layer: real video/image codecs run as processes on frames of samples.

A back-end takes a stack of gray frames, `(N, H, W)` unsigned samples of 8 or 10 bits,
runs a real encoder on them and returns the real bitstream bytes; `decode` runs the
matching decoder and returns the frames. Feature codecs (anchor, packing) build on it.

Back-ends (`make_backend(kind, ...)`):

=========  ==========================================  ==========================  =========
kind       encoder (decoder)                           stream format (counted)     knobs
=========  ==========================================  ==========================  =========
vvc        ffmpeg libvvenc (ffmpeg's native VVC)       raw Annex-B `-f vvc`        qp
vtm        VTM EncoderApp (DecoderApp), user paths     raw Annex-B .bin            qp
hevc       ffmpeg libx265 (ffmpeg hevc)                raw Annex-B `-f hevc`       qp, crf, lossless
x265       x265 CLI, e.g. Debian's (ffmpeg hevc)       raw Annex-B                 qp, crf, lossless
av1        ffmpeg libaom-av1 (libdav1d/libaom)         low-overhead OBU `-f obu`   crf, lossless
svtav1     ffmpeg libsvtav1 (libdav1d/libaom)          low-overhead OBU `-f obu`   qp, crf
ffv1       ffmpeg ffv1 (ffv1)                          NUT container `-f nut`      lossless
png        ffmpeg png (png)                            PNG files, concatenated     lossless
jpeg       ffmpeg mjpeg (mjpeg)                        JPEG files, concatenated    q
=========  ==========================================  ==========================  =========

Every byte the encoder writes is returned and counted; nothing is stripped. Formats
were picked for the smallest honest overhead: elementary streams where ffmpeg can demux
them (VVC, HEVC, AV1 OBUs), NUT for FFV1 (no elementary-stream muxer exists; NUT adds a
few dozen bytes per stream and a few per frame).

Sample handling: libvvenc and libsvtav1 take yuv420p10le only, so a gray frame goes in
Y with flat chroma (mid-grey, which codes to almost nothing); x265, libaom, FFV1 and PNG
take gray/gray10le directly (4:0:0). 8-bit samples given to a 10-bit-only encoder are
shifted up by 2 bits and rounded back on decode. JPEG is 8-bit only (yuvj420p, flat
chroma). Frames are padded by edge replication to what the encoder accepts (even sizes
for 4:2:0; at least 32 pixels a side for libvvenc, 16 for libx265, 64 for the x265 CLI)
and cropped back after decoding; the decoder derives the padded size from the frame size.
x265 in crf mode runs without cutree (x265 3.x corrupts its heap with cutree on small
4:0:0 frames).

VVC settings: `-qpa 0` (no perceptual QP adaptation), no access-unit delimiters and
parameter sets written once (`AccessUnitDelimiter=0:RewriteParamSets=0`); `intra=True`
gives vvenc's all-intra configuration (`-g 1`), `intra=False` random access with one
intra frame at the start.

Every call is timed (`last_encode_s`, `last_decode_s`, `encode_s`/`decode_s` totals)
and bounded by `timeout_s`; a missing binary raises MissingDependencyError naming the
config key that sets it, and a failing or timed-out process raises ExternalCodecError
with the codec, the command and what it printed.

Where each concern lives (package `vcmbench.codecs.backends`; every name is importable from
here, which configs and callers keep using):

- `process.py`: running a process (`run_process`, `Finished`, `DEFAULT_TIMEOUT_S`), streaming a
  decoder's output (`stream_frames`), the one-line error tails;
- `gop.py`: prediction structures (`Gop`, `ALL_INTRA`, `ONE_INTRA`, `as_gop`);
- `codec.py`: the `ExternalCodec` interface and its checks, `FAMILY_IDS`, `FrameSink` and the
  file-spooling `SpoolSink`;
- `sinks.py`: `PipeSink` and `FileFedSink`, which feed a running ffmpeg encoder;
- `ffmpeg.py`: finding ffmpeg (`resolve_ffmpeg`, `PIP_HINT`) and `FfmpegCodec`, the shared driver;
- `ffmpeg_codecs.py`: `VvencCodec`, `X265Codec`, `AomCodec`, `SvtAv1Codec`, `Ffv1Codec`,
  `PngCodec`, `JpegCodec`;
- `x265_cli.py`: `X265CliCodec`; `vtm.py`: `VtmCodec`;
- here: the registry `BACKENDS` and the factory `make_backend`, which name every back-end.
"""

from __future__ import annotations

from collections.abc import Sequence

from vcmbench.codecs.backends.codec import FAMILY_IDS as FAMILY_IDS
from vcmbench.codecs.backends.codec import ExternalCodec as ExternalCodec
from vcmbench.codecs.backends.codec import FrameSink as FrameSink
from vcmbench.codecs.backends.codec import SpoolSink as SpoolSink
from vcmbench.codecs.backends.ffmpeg import PIP_HINT as PIP_HINT
from vcmbench.codecs.backends.ffmpeg import FfmpegCodec as FfmpegCodec
from vcmbench.codecs.backends.ffmpeg import resolve_ffmpeg as resolve_ffmpeg
from vcmbench.codecs.backends.ffmpeg_codecs import AomCodec as AomCodec
from vcmbench.codecs.backends.ffmpeg_codecs import Ffv1Codec as Ffv1Codec
from vcmbench.codecs.backends.ffmpeg_codecs import JpegCodec as JpegCodec
from vcmbench.codecs.backends.ffmpeg_codecs import PngCodec as PngCodec
from vcmbench.codecs.backends.ffmpeg_codecs import SvtAv1Codec as SvtAv1Codec
from vcmbench.codecs.backends.ffmpeg_codecs import VvencCodec as VvencCodec
from vcmbench.codecs.backends.ffmpeg_codecs import X265Codec as X265Codec
from vcmbench.codecs.backends.gop import ALL_INTRA as ALL_INTRA
from vcmbench.codecs.backends.gop import ONE_INTRA as ONE_INTRA
from vcmbench.codecs.backends.gop import Gop as Gop
from vcmbench.codecs.backends.gop import as_gop as as_gop
from vcmbench.codecs.backends.process import DEFAULT_TIMEOUT_S as DEFAULT_TIMEOUT_S
from vcmbench.codecs.backends.process import Finished as Finished
from vcmbench.codecs.backends.process import run_process as run_process
from vcmbench.codecs.backends.process import stream_frames as stream_frames
from vcmbench.codecs.backends.sinks import FileFedSink as FileFedSink
from vcmbench.codecs.backends.sinks import PipeSink as PipeSink
from vcmbench.codecs.backends.vtm import VtmCodec as VtmCodec
from vcmbench.codecs.backends.x265_cli import X265CliCodec as X265CliCodec
from vcmbench.errors import ConfigError

__all__ = [
    "ALL_INTRA",
    "BACKENDS",
    "FAMILY_IDS",
    "ExternalCodec",
    "FfmpegCodec",
    "FrameSink",
    "Gop",
    "VtmCodec",
    "make_backend",
    "resolve_ffmpeg",
]

BACKENDS: dict[str, type[ExternalCodec]] = {
    "vvc": VvencCodec,
    "vtm": VtmCodec,
    "hevc": X265Codec,
    "x265": X265CliCodec,
    "av1": AomCodec,
    "svtav1": SvtAv1Codec,
    "ffv1": Ffv1Codec,
    "png": PngCodec,
    "jpeg": JpegCodec,
}


def make_backend(kind: str, who: str, setting_prefix: str, *, ffmpeg: str | None = None, preset: object = None,
                 timeout_s: float | None = None, threads: int | None = None, extra_args: Sequence[str] = (),
                 encoder_app: str | None = None, decoder_app: str | None = None,
                 vtm_cfg: str | None = None, x265: str | None = None) -> ExternalCodec:
    """Build back-end `kind` (a key of BACKENDS); settings are named `{setting_prefix}.KEY` in errors."""
    if kind not in BACKENDS:
        raise ConfigError(f"{setting_prefix}.inner={kind!r}: choose one of {sorted(BACKENDS)}")
    extra = list(extra_args or ())
    if kind == "vtm":
        return VtmCodec(who, encoder_app, decoder_app, vtm_cfg, setting_prefix,
                        600.0 if timeout_s is None else timeout_s, extra)
    timeout_s = DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s
    if kind == "x265":
        return X265CliCodec(who, x265=x265, setting_prefix=setting_prefix, ffmpeg=ffmpeg, preset=preset,
                            timeout_s=timeout_s, threads=threads, extra_args=extra)
    return BACKENDS[kind](who, ffmpeg=ffmpeg, setting_prefix=setting_prefix, preset=preset,
                          timeout_s=timeout_s, threads=threads, extra_args=extra)


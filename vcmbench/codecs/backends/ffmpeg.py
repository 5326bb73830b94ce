"""The ffmpeg driver: finding ffmpeg, and `FfmpegBackend`, a codec inside ffmpeg fed raw frames on stdin.

The concrete ffmpeg back-ends (libvvenc, libx265, libaom, SVT-AV1, FFV1, PNG, JPEG) are in
`ffmpeg_codecs.py` and differ only in their encoder options and sample formats; the command
lines, padding, streaming and decoding they share are here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from vcmbench.codecs.backends.codec import ExternalBackend, FrameSink
from vcmbench.codecs.backends.gop import ALL_INTRA, Gop
from vcmbench.codecs.backends.process import run_process, stream_frames
from vcmbench.codecs.backends.sinks import FileFedSink, PipeSink
from vcmbench.errors import ExternalCodecError, MissingDependencyError

PIP_HINT = "pip install imageio-ffmpeg==0.8.1"


def resolve_ffmpeg(path: str | os.PathLike | None, setting: str) -> str:
    """The ffmpeg to run: `path` (a file or a name on PATH) or the one imageio-ffmpeg bundles."""
    if path not in (None, "", "auto"):
        p = Path(os.path.expanduser(str(path)))
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
        found = shutil.which(str(path)) if os.sep not in str(path) else None
        if found:
            return found
        raise MissingDependencyError(
            f"{setting}={path}: no executable ffmpeg there. Give the path of an ffmpeg binary, "
            f"or leave {setting} unset to use the one bundled by `{PIP_HINT}`"
        )
    try:
        import imageio_ffmpeg
    except ImportError:
        raise MissingDependencyError(
            f"no ffmpeg configured and imageio-ffmpeg is not installed: `{PIP_HINT}` (or set {setting}=/path/to/ffmpeg)"
        ) from None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        raise MissingDependencyError(
            f"imageio-ffmpeg found no ffmpeg binary ({exc}); reinstall with `{PIP_HINT}` "
            f"or set {setting}=/path/to/ffmpeg"
        ) from None


@lru_cache(maxsize=8)
def _ffmpeg_codecs(exe: str, mtime_ns: int) -> tuple[frozenset[str], frozenset[str]]:
    """(encoders, decoders) this ffmpeg binary was built with."""
    out = []
    for what in ("-encoders", "-decoders"):
        try:
            proc = subprocess.run([exe, "-hide_banner", what], capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return frozenset(), frozenset()
        names = set()
        for line in proc.stdout.decode("utf-8", "replace").splitlines():
            parts = line.split()
            if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] in "VAS":
                names.add(parts[1])
        out.append(frozenset(names))
    return out[0], out[1]


def _padded_size(h: int, w: int, align: int, min_dim: int) -> tuple[int, int]:
    h, w = max(h, min_dim), max(w, min_dim)
    return h + (-h) % align, w + (-w) % align


def _pad_to(frames: np.ndarray, align: int, min_dim: int = 1) -> np.ndarray:
    n, h, w = frames.shape
    th, tw = _padded_size(h, w, align, min_dim)
    ph, pw = th - h, tw - w
    if ph or pw:
        frames = np.pad(frames, ((0, 0), (0, ph), (0, pw)), mode="edge")
    return frames


class FfmpegBackend(ExternalBackend):
    """A codec inside an ffmpeg binary, fed raw frames on stdin, bitstream on stdout."""

    encoder: str = ""
    decoder_format: str = ""  # demuxer for the bitstream
    muxer: str = ""
    yuv420: bool = False  # encoder takes yuv420p10le only: gray in Y, flat chroma
    align: int = 1
    #: smallest frame side the encoder accepts; smaller frames are padded (edge replication)
    min_dim: int = 1
    #: sequences: frames piped into the running encoder as they come (True), or spooled to a
    #: temporary file that the encoder reads at the end (False: libvvenc, see VvencBackend)
    live_input: bool = True
    default_preset: object = None
    #: what the encoder calls its speed/effort setting (`-preset`, aom's `-cpu-used`)
    preset_name: str = "preset"
    #: the encoder as the points table names it (default: the ffmpeg encoder, else the family)
    label: str = ""
    codes_pictures = True

    def __init__(
        self,
        who: str = "backend",
        ffmpeg: str | None = None,
        setting_prefix: str = "codec",
        preset: object = None,
        timeout_s: float | None = None,
        threads: int | None = None,
        extra_args: Sequence[str] = (),
    ):
        super().__init__(who, timeout_s)
        setting = f"{setting_prefix}.ffmpeg"
        self.setting = setting
        self.exe = resolve_ffmpeg(ffmpeg, setting)
        self.preset = self.default_preset if preset is None else preset
        self.threads = threads
        self.extra_args = [str(a) for a in extra_args]
        st = os.stat(self.exe)
        encoders, _ = _ffmpeg_codecs(self.exe, st.st_mtime_ns)
        if self.encoder and encoders and self.encoder not in encoders:
            raise MissingDependencyError(
                f"{who}: {self.exe} has no {self.encoder} encoder. Use the ffmpeg bundled by `{PIP_HINT}` "
                f"(leave {setting} unset) or point {setting} at an ffmpeg built with {self.encoder}"
            )

    def describe(self) -> str:
        name = self.label or self.encoder or self.family
        speed = "" if self.preset is None else f" {self.preset_name} {self.preset}"
        return f"{name}{speed}" + "".join(f" {a}" for a in self.extra_args)

    # -- sample formats -----------------------------------------------------------------
    def _in_pix_fmt(self, bitdepth: int) -> str:
        if self.yuv420:
            return "yuv420p10le"
        return "gray10le" if bitdepth > 8 else "gray"

    def _out_pix_fmt(self, bitdepth: int) -> str:
        return self._in_pix_fmt(bitdepth)

    def _to_input(self, frames: np.ndarray, bitdepth: int) -> bytes:
        if not self.yuv420:
            dt = "<u2" if bitdepth > 8 else "u1"
            return frames.astype(dt).tobytes()
        y = frames.astype("<u2")
        if bitdepth == 8:
            y = y << 2
        n, h, w = y.shape
        chroma = np.full((n, 2 * (h // 2) * (w // 2)), 512, "<u2")
        return np.concatenate([y.reshape(n, -1), chroma], axis=1).tobytes()

    def _from_output(self, raw: bytes, n: int, h: int, w: int, bitdepth: int) -> np.ndarray:
        if not self.yuv420:
            dt = np.dtype("<u2" if bitdepth > 8 else "u1")
            want = n * h * w * dt.itemsize
            if len(raw) != want:
                raise self._wrong_size(len(raw), want, n, h, w)
            return np.frombuffer(raw, dt).reshape(n, h, w).astype(np.uint16)
        fsize = h * w + 2 * (h // 2) * (w // 2)
        want = n * fsize * 2
        if len(raw) != want:
            raise self._wrong_size(len(raw), want, n, h, w)
        y = np.frombuffer(raw, "<u2").reshape(n, fsize)[:, : h * w].reshape(n, h, w)
        y = np.minimum(y, 1023)
        if bitdepth == 8:
            y = np.minimum((y.astype(np.uint16) + 2) >> 2, 255)
        return y.astype(np.uint16)

    # -- command lines ------------------------------------------------------------------
    def _base(self) -> list[str]:
        return [self.exe, "-hide_banner", "-nostats", "-loglevel", "error", "-y"]

    @abstractmethod
    def _encoder_args(self, knob: str, value: object, gop: Gop, bitdepth: int) -> list[str]: ...

    def _encode(self, frames, bitdepth, knob, value, gop) -> bytes:
        n, h, w = frames.shape
        frames = _pad_to(frames, self._align(), self.min_dim)
        _, ph, pw = frames.shape
        return self._run_encoder(
            self._to_input(frames, bitdepth), self._in_pix_fmt(bitdepth), (ph, pw), n, knob, value, gop, bitdepth
        )

    def _encoder_command(
        self,
        pix_fmt: str,
        size: tuple[int, int],
        n: int,
        knob: str,
        value: object,
        gop: Gop,
        bitdepth: int,
        filters: str | None = None,
        out_pix_fmt: str | None = None,
    ) -> list[str]:
        ph, pw = size
        cmd = self._base() + [
            "-f",
            "rawvideo",
            "-pix_fmt",
            pix_fmt,
            "-s",
            f"{pw}x{ph}",
            "-r",
            "25",
            "-i",
            "-",
            "-an",
            "-frames:v",
            str(n),
        ]
        if filters:
            cmd += ["-vf", filters]
        if out_pix_fmt:
            cmd += ["-pix_fmt", out_pix_fmt]
        cmd += ["-c:v", self.encoder]
        threads = self.threads if self.threads is not None else self._auto_threads(ph * pw)
        if threads is not None:
            cmd += ["-threads", str(threads)]
        return cmd + self._encoder_args(knob, value, gop, bitdepth) + self.extra_args + ["-f", self.muxer, "-"]

    def _run_encoder(
        self,
        raw: bytes,
        pix_fmt: str,
        size: tuple[int, int],
        n: int,
        knob: str,
        value: object,
        gop: Gop,
        bitdepth: int,
        filters: str | None = None,
        out_pix_fmt: str | None = None,
    ) -> bytes:
        cmd = self._encoder_command(pix_fmt, size, n, knob, value, gop, bitdepth, filters, out_pix_fmt)
        self.last_command = cmd
        done = run_process(cmd, self.who, self.setting, raw, self.timeout_s)
        self.last_output = done.stderr
        return done.stdout

    # -- colour pictures (image codecs) ---------------------------------------------------
    def encode_picture(
        self,
        raw: bytes,
        pix_fmt: str,
        size: tuple[int, int],
        filters: str,
        out_pix_fmt: str,
        bitdepth: int,
        knob: str,
        value: object = None,
        coded: tuple[int, int] | None = None,
    ) -> bytes:
        """One colour picture, all-intra: `raw` samples in `pix_fmt` of `size` (h, w), converted by
        the ffmpeg filter graph `filters` (scaling, padding, colour conversion) to `out_pix_fmt`
        (`bitdepth` bits per sample) of size `coded` (h, w), then encoded. The image codecs build the
        filter graph; this runs the real encoder on it (ffmpeg needs no `coded`: the graph sets it;
        a file-based encoder such as VTM does)."""
        self.check_rate(knob, value)
        t0 = time.perf_counter()
        data = self._run_encoder(raw, pix_fmt, size, 1, knob, value, ALL_INTRA, bitdepth, filters, out_pix_fmt)
        self.last_encode_s = time.perf_counter() - t0
        return self._nonempty(data)

    def decode_picture(
        self,
        data: bytes,
        filters: str,
        pix_fmt: str,
        n_bytes: int,
        size: tuple[int, int],
        coded: tuple[int, int] | None = None,
    ) -> bytes:
        """Inverse of encode_picture: decode, run `filters` (colour conversion, crop, scaling) and
        return exactly `n_bytes` of `pix_fmt` samples of `size`; ExternalCodecError if the stream
        gives fewer. `coded`: the size encode_picture coded (ffmpeg reads it from the stream)."""
        if not data:
            raise ExternalCodecError(f"{self.who}: empty bitstream")
        t0 = time.perf_counter()
        cmd = (
            self._base()
            + self._decoder_args()
            + [
                "-i",
                "-",
                "-an",
                "-frames:v",
                "1",
                "-vf",
                filters,
                "-f",
                "rawvideo",
                "-pix_fmt",
                pix_fmt,
                "-",
            ]
        )
        self.last_command = cmd
        done = run_process(cmd, self.who, self.setting, bytes(data), self.timeout_s)
        self.last_output = done.stderr
        self.last_decode_s = time.perf_counter() - t0
        if len(done.stdout) != n_bytes:
            raise self._wrong_size(len(done.stdout), n_bytes, 1, *size)
        return done.stdout

    def open_encoder(self, height, width, frames, bitdepth, knob, value, gop) -> FrameSink:
        self.validate(knob, value, bitdepth)
        ph, pw = self.coded_size(height, width)
        cmd = self._encoder_command(self._in_pix_fmt(bitdepth), (ph, pw), frames, knob, value, gop, bitdepth)
        sink = PipeSink if self.live_input else FileFedSink
        return sink(
            self,
            cmd,
            lambda f: self._to_input(_pad_to(f, self._align(), self.min_dim), bitdepth),
            (height, width),
            frames,
        )

    def open_decoder(self, data, frames, height, width, bitdepth) -> Iterator[np.ndarray]:
        if not data:
            raise ExternalCodecError(f"{self.who}: empty bitstream")
        ph, pw = self.coded_size(height, width)
        frame_bytes = len(self._to_input(np.zeros((1, ph, pw), np.uint16), bitdepth))  # one raw frame
        cmd = (
            self._base()
            + self._decoder_args()
            + [
                "-i",
                "-",
                "-an",
                "-frames:v",
                str(frames),
                "-f",
                "rawvideo",
                "-pix_fmt",
                self._out_pix_fmt(bitdepth),
                "-",
            ]
        )
        self.last_command = cmd
        for raw in stream_frames(cmd, bytes(data), frame_bytes, frames, self.who, self.setting, self.timeout_s):
            yield np.ascontiguousarray(self._from_output(raw, 1, ph, pw, bitdepth)[0, :height, :width])

    def open_picture_encoder(
        self,
        pix_fmt: str,
        size: tuple[int, int],
        frames: int,
        filters: str,
        out_pix_fmt: str,
        bitdepth: int,
        knob: str,
        value: object,
        gop: Gop,
        coded: tuple[int, int] | None = None,
    ) -> PipeSink | FileFedSink:
        """A video of colour pictures (`encode_picture`'s conversions, then inter coding by `gop`),
        fed one picture at a time with `PipeSink.write_raw`."""
        self.check_rate(knob, value)
        cmd = self._encoder_command(pix_fmt, size, frames, knob, value, gop, bitdepth, filters, out_pix_fmt)
        return (PipeSink if self.live_input else FileFedSink)(self, cmd, None, size, frames)

    def decode_pictures(
        self,
        data: bytes,
        frames: int,
        filters: str,
        pix_fmt: str,
        frame_bytes: int,
        coded: tuple[int, int] | None = None,
    ) -> Iterator[bytes]:
        """Inverse of open_picture_encoder: each picture's `frame_bytes` of `pix_fmt` samples after `filters`."""
        if not data:
            raise ExternalCodecError(f"{self.who}: empty bitstream")
        cmd = (
            self._base()
            + self._decoder_args()
            + [
                "-i",
                "-",
                "-an",
                "-frames:v",
                str(frames),
                "-vf",
                filters,
                "-f",
                "rawvideo",
                "-pix_fmt",
                pix_fmt,
                "-",
            ]
        )
        self.last_command = cmd
        yield from stream_frames(cmd, bytes(data), frame_bytes, frames, self.who, self.setting, self.timeout_s)

    def _auto_threads(self, frame_pixels: int) -> int | None:
        """-threads when the config leaves it unset (None: ffmpeg's and the encoder's default)."""
        return None

    def _align(self) -> int:
        return max(2 if self.yuv420 else 1, self.align)

    def coded_size(self, h: int, w: int) -> tuple[int, int]:
        """Frame size the encoder sees for (h, w) frames: padded to its alignment and minimum."""
        return _padded_size(h, w, self._align(), self.min_dim)

    def _decoder_args(self) -> list[str]:
        return ["-f", self.decoder_format]

    def _decode(self, data, n, h, w, bitdepth) -> np.ndarray:
        ph, pw = self.coded_size(h, w)
        cmd = (
            self._base()
            + self._decoder_args()
            + [
                "-i",
                "-",
                "-an",
                "-frames:v",
                str(n),
                "-f",
                "rawvideo",
                "-pix_fmt",
                self._out_pix_fmt(bitdepth),
                "-",
            ]
        )
        self.last_command = cmd
        done = run_process(cmd, self.who, self.setting, data, self.timeout_s)
        self.last_output = done.stderr
        out = self._from_output(done.stdout, n, ph, pw, bitdepth)
        return np.ascontiguousarray(out[:, :h, :w])

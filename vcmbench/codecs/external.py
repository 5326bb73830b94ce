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
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np

from vcmbench.errors import ConfigError, ExternalCodecError, MissingDependencyError
from vcmbench.paths import is_none

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

#: bitstream family -> id written into payload headers (4 bits). Back-ends of one family
#: produce bitstreams the other decodes (vtm and vvc; av1 and svtav1).
FAMILY_IDS = {"vvc": 1, "hevc": 2, "av1": 3, "ffv1": 4, "png": 5, "jpeg": 6}

DEFAULT_TIMEOUT_S = 300.0  # a 20-Mpixel anchor frame (800-px input) takes ~20 s to encode on 2 cores
_TAIL = 2000  # characters of process output quoted in errors

PIP_HINT = "pip install imageio-ffmpeg==0.8.1"


def _tail(data: bytes | str | None) -> str:
    if not data:
        return "(nothing)"
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    # one line: errors travel in records and on the command line's single error line
    text = " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    return text if len(text) <= _TAIL else "..." + text[-_TAIL:]


class Finished(NamedTuple):
    stdout: bytes
    stderr: bytes
    seconds: float


@dataclass(frozen=True)
class Gop:
    """The prediction structure of one video: how its frames refer to each other.

    structure: `all_intra` (every frame intra), `low_delay` (frames in display order, each
    predicted from earlier ones: the FCM CTC's VTM low-delay), `random_access` (hierarchical
    B-frames with reordering). intra_period: frames between intra refreshes; 0 = one intra
    frame at the start only (what `intra=False` meant before sequences: the per-image inter
    modes keep their bytes).
    """

    structure: str = "all_intra"
    intra_period: int = 1

    STRUCTURES = ("all_intra", "low_delay", "random_access")

    @property
    def intra(self) -> bool:
        return self.structure == "all_intra"


ALL_INTRA = Gop("all_intra", 1)
ONE_INTRA = Gop("random_access", 0)


def as_gop(intra: bool | Gop) -> Gop:
    """`intra=True/False` of the per-image calls, or a Gop."""
    if isinstance(intra, Gop):
        return intra
    return ALL_INTRA if intra else ONE_INTRA


def run_process(cmd: Sequence[str], who: str, setting: str, input: bytes | BinaryIO | None = None,
                timeout_s: float = DEFAULT_TIMEOUT_S, cwd: str | None = None) -> Finished:
    """Run one external process (timed, with a timeout). Errors name codec, command, output."""
    cmd = [str(c) for c in cmd]
    t0 = time.perf_counter()
    feed = {"input": input if input is not None else b""} if not hasattr(input, "fileno") else {"stdin": input}
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout_s, cwd=cwd, **feed)
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        raise MissingDependencyError(
            f"{who}: cannot run {cmd[0]!r} ({exc.strerror or exc}); set {setting} to a working executable"
        ) from None
    except subprocess.TimeoutExpired as exc:
        raise ExternalCodecError(
            f"{who}: `{shlex.join(cmd)}` did not finish within {timeout_s:g} s and was killed "
            f"(raise the codec's timeout_s if the frames are large); it printed: {_tail(exc.stderr)}"
        ) from None
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise ExternalCodecError(
            f"{who}: `{shlex.join(cmd)}` exited with status {proc.returncode}; it printed: {_tail(proc.stderr)}"
        )
    return Finished(proc.stdout, proc.stderr, seconds)


# ------------------------------------------------------------------------------- ffmpeg


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
            f"no ffmpeg configured and imageio-ffmpeg is not installed: `{PIP_HINT}` "
            f"(or set {setting}=/path/to/ffmpeg)"
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


class ExternalCodec(ABC):
    """One real codec run as external processes on stacks of gray frames."""

    #: bitstream family, a key of FAMILY_IDS
    family: str = ""
    #: rate knobs this back-end understands ("lossless" takes no value)
    knobs: tuple[str, ...] = ()
    #: sample bit depths accepted
    bitdepths: tuple[int, ...] = (8, 10)
    #: accepted values of each valued knob, inclusive
    value_ranges: dict[str, tuple[int, int]] = {}

    def __init__(self, who: str, timeout_s: float = DEFAULT_TIMEOUT_S):
        self.who = who
        self.timeout_s = float(timeout_s)
        self.last_encode_s = 0.0
        self.last_decode_s = 0.0
        self.encode_s = 0.0
        self.decode_s = 0.0
        self.calls = 0
        self.last_command: list[str] = []
        self.last_output = b""  # stderr of the last process

    @property
    def family_id(self) -> int:
        return FAMILY_IDS[self.family]

    def describe(self) -> str:
        """The encoder and its speed setting, as the points table and the report name it."""
        return self.family

    def check_rate(self, knob: str, value: object = None, setting: str | None = None) -> None:
        """ConfigError unless this back-end understands knob (and value, when given: checked
        against `value_ranges` so a sweep with qp=99 stops before its first image)."""
        if knob not in self.knobs:
            raise ConfigError(f"{self.who}: the {self.family} back-end takes rate knobs {list(self.knobs)}, not {knob!r}")
        if value is None or knob not in self.value_ranges:
            return
        lo, hi = self.value_ranges[knob]
        where = setting or self.who
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: {knob}={value!r} is not an integer; give {knob} values from {lo} to {hi}") from None
        if not lo <= number <= hi:
            raise ConfigError(f"{where}: {knob}={number} outside {lo}..{hi} for the {self.family} back-end; "
                              f"give rate points from {lo} to {hi}")

    def check_bitdepth(self, bitdepth: int) -> None:
        if bitdepth not in self.bitdepths:
            raise ConfigError(f"{self.who}: the {self.family} back-end codes {list(self.bitdepths)}-bit samples, not {bitdepth}")

    def validate(self, knob: str, value: object = None, bitdepth: int | None = None, setting: str | None = None) -> None:
        """The back-end's public check, for codecs to call at construction: ConfigError unless it
        takes this rate knob, this value (within `value_ranges`) and this sample depth."""
        if bitdepth is not None:
            self.check_bitdepth(bitdepth)
        self.check_rate(knob, value, setting)

    def encode(self, frames: np.ndarray, bitdepth: int, knob: str, value: object = None,
               intra: bool | Gop = True) -> bytes:
        """frames: (N, H, W) integer samples in [0, 2**bitdepth) -> bitstream bytes.

        intra: True (all intra), False (one intra frame, then inter) or a Gop."""
        frames = np.asarray(frames)
        if frames.ndim != 3 or 0 in frames.shape:
            raise ValueError(f"{self.who}: frames must be a non-empty (N, H, W) array, got shape {frames.shape}")
        self.validate(knob, value, bitdepth)
        if frames.min() < 0 or frames.max() >= (1 << bitdepth):
            raise ValueError(f"{self.who}: samples outside [0, {(1 << bitdepth) - 1}] for {bitdepth}-bit coding")
        t0 = time.perf_counter()
        data = self._encode(frames.astype(np.uint16, copy=False), bitdepth, knob, value, as_gop(intra))
        self.last_encode_s = time.perf_counter() - t0
        self.encode_s += self.last_encode_s
        self.calls += 1
        return self._nonempty(data)

    def _nonempty(self, data: bytes) -> bytes:
        """An encoder that exits 0 but writes nothing is an error, with its command and output."""
        if not data:
            raise ExternalCodecError(
                f"{self.who}: `{shlex.join(self.last_command)}` wrote an empty bitstream; "
                f"it printed: {_tail(self.last_output)}"
            )
        return data

    def decode(self, data: bytes, shape: tuple[int, int, int], bitdepth: int) -> np.ndarray:
        """bitstream -> (N, H, W) uint16 samples; ExternalCodecError if it does not decode to that shape."""
        n, h, w = (int(v) for v in shape)
        if min(n, h, w) <= 0:
            raise ValueError(f"{self.who}: bad frame shape {shape}")
        self.check_bitdepth(bitdepth)
        if not data:
            raise ExternalCodecError(f"{self.who}: empty bitstream")
        t0 = time.perf_counter()
        out = self._decode(bytes(data), n, h, w, bitdepth)
        self.last_decode_s = time.perf_counter() - t0
        self.decode_s += self.last_decode_s
        return out

    @abstractmethod
    def _encode(self, frames: np.ndarray, bitdepth: int, knob: str, value: object, gop: Gop) -> bytes: ...

    # -- streaming (sequences) -------------------------------------------------------------
    def open_encoder(self, height: int, width: int, frames: int, bitdepth: int, knob: str, value: object,
                     gop: Gop) -> FrameSink:
        """A video of `frames` (height, width) frames, written a few at a time (`FrameSink.write`),
        so a sequence's frames never sit in memory together. This default spools the samples to a
        temporary file and codes it at `finish` (encoders that read files: VTM, the x265 CLI);
        ffmpeg back-ends pipe each frame straight into the running encoder."""
        self.validate(knob, value, bitdepth)
        return SpoolSink(self, height, width, frames, bitdepth, knob, value, gop)

    def open_decoder(self, data: bytes, frames: int, height: int, width: int, bitdepth: int) -> Iterator[np.ndarray]:
        """The decoded (height, width) frames of a video, one at a time. This default decodes the
        whole video first (file-based decoders); ffmpeg back-ends stream them from the decoder."""
        yield from self.decode(data, (frames, height, width), bitdepth)

    @abstractmethod
    def _decode(self, data: bytes, n: int, h: int, w: int, bitdepth: int) -> np.ndarray: ...

    def _wrong_size(self, got: int, want: int, n: int, h: int, w: int) -> ExternalCodecError:
        return ExternalCodecError(
            f"{self.who}: `{shlex.join(self.last_command)}` produced {got} bytes of samples, "
            f"expected {want} for {n} frame(s) of {w}x{h}: the bitstream is corrupt or truncated; "
            f"it printed: {_tail(self.last_output)}"
        )


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


class FfmpegCodec(ExternalCodec):
    """A codec inside an ffmpeg binary, fed raw frames on stdin, bitstream on stdout."""

    encoder: str = ""
    decoder_format: str = ""  # demuxer for the bitstream
    muxer: str = ""
    yuv420: bool = False  # encoder takes yuv420p10le only: gray in Y, flat chroma
    align: int = 1
    #: smallest frame side the encoder accepts; smaller frames are padded (edge replication)
    min_dim: int = 1
    #: sequences: frames piped into the running encoder as they come (True), or spooled to a
    #: temporary file that the encoder reads at the end (False: libvvenc, see VvencCodec)
    live_input: bool = True
    default_preset: object = None
    #: what the encoder calls its speed/effort setting (`-preset`, aom's `-cpu-used`)
    preset_name: str = "preset"
    #: the encoder as the points table names it (default: the ffmpeg encoder, else the family)
    label: str = ""

    def __init__(self, who: str = "backend", ffmpeg: str | None = None, setting_prefix: str = "codec",
                 preset: object = None, timeout_s: float = DEFAULT_TIMEOUT_S, threads: int | None = None,
                 extra_args: Sequence[str] = ()):
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
        return self._run_encoder(self._to_input(frames, bitdepth), self._in_pix_fmt(bitdepth), (ph, pw), n,
                                 knob, value, gop, bitdepth)

    def _encoder_command(self, pix_fmt: str, size: tuple[int, int], n: int, knob: str, value: object, gop: Gop,
                         bitdepth: int, filters: str | None = None, out_pix_fmt: str | None = None) -> list[str]:
        ph, pw = size
        cmd = self._base() + [
            "-f", "rawvideo", "-pix_fmt", pix_fmt, "-s", f"{pw}x{ph}", "-r", "25", "-i", "-",
            "-an", "-frames:v", str(n),
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

    def _run_encoder(self, raw: bytes, pix_fmt: str, size: tuple[int, int], n: int, knob: str, value: object,
                     gop: Gop, bitdepth: int, filters: str | None = None, out_pix_fmt: str | None = None) -> bytes:
        cmd = self._encoder_command(pix_fmt, size, n, knob, value, gop, bitdepth, filters, out_pix_fmt)
        self.last_command = cmd
        done = run_process(cmd, self.who, self.setting, raw, self.timeout_s)
        self.last_output = done.stderr
        return done.stdout

    # -- colour pictures (image codecs) ---------------------------------------------------
    def encode_picture(self, raw: bytes, pix_fmt: str, size: tuple[int, int], filters: str, out_pix_fmt: str,
                       bitdepth: int, knob: str, value: object = None) -> bytes:
        """One colour picture, all-intra: `raw` samples in `pix_fmt` of `size` (h, w), converted by
        the ffmpeg filter graph `filters` (scaling, padding, colour conversion) to `out_pix_fmt`
        (`bitdepth` bits per sample), then encoded. The image codecs build the filter graph; this
        runs the real encoder on it."""
        self.check_rate(knob, value)
        t0 = time.perf_counter()
        data = self._run_encoder(raw, pix_fmt, size, 1, knob, value, ALL_INTRA, bitdepth, filters, out_pix_fmt)
        self.last_encode_s = time.perf_counter() - t0
        return self._nonempty(data)

    def decode_picture(self, data: bytes, filters: str, pix_fmt: str, n_bytes: int, size: tuple[int, int]) -> bytes:
        """Inverse of encode_picture: decode, run `filters` (colour conversion, crop, scaling) and
        return exactly `n_bytes` of `pix_fmt` samples; ExternalCodecError if the stream gives fewer."""
        if not data:
            raise ExternalCodecError(f"{self.who}: empty bitstream")
        t0 = time.perf_counter()
        cmd = self._base() + self._decoder_args() + [
            "-i", "-", "-an", "-frames:v", "1", "-vf", filters, "-f", "rawvideo", "-pix_fmt", pix_fmt, "-",
        ]
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
        return sink(self, cmd, lambda f: self._to_input(_pad_to(f, self._align(), self.min_dim), bitdepth),
                    (height, width), frames)

    def open_decoder(self, data, frames, height, width, bitdepth) -> Iterator[np.ndarray]:
        if not data:
            raise ExternalCodecError(f"{self.who}: empty bitstream")
        ph, pw = self.coded_size(height, width)
        frame_bytes = len(self._to_input(np.zeros((1, ph, pw), np.uint16), bitdepth))  # one raw frame
        cmd = self._base() + self._decoder_args() + [
            "-i", "-", "-an", "-frames:v", str(frames), "-f", "rawvideo", "-pix_fmt", self._out_pix_fmt(bitdepth), "-",
        ]
        self.last_command = cmd
        for raw in stream_frames(cmd, bytes(data), frame_bytes, frames, self.who, self.setting, self.timeout_s):
            yield np.ascontiguousarray(self._from_output(raw, 1, ph, pw, bitdepth)[0, :height, :width])

    def open_picture_encoder(self, pix_fmt: str, size: tuple[int, int], frames: int, filters: str, out_pix_fmt: str,
                             bitdepth: int, knob: str, value: object, gop: Gop) -> PipeSink | FileFedSink:
        """A video of colour pictures (`encode_picture`'s conversions, then inter coding by `gop`),
        fed one picture at a time with `PipeSink.write_raw`."""
        self.check_rate(knob, value)
        cmd = self._encoder_command(pix_fmt, size, frames, knob, value, gop, bitdepth, filters, out_pix_fmt)
        return (PipeSink if self.live_input else FileFedSink)(self, cmd, None, size, frames)

    def decode_pictures(self, data: bytes, frames: int, filters: str, pix_fmt: str, frame_bytes: int
                        ) -> Iterator[bytes]:
        """Inverse of open_picture_encoder: each picture's `frame_bytes` of `pix_fmt` samples after `filters`."""
        if not data:
            raise ExternalCodecError(f"{self.who}: empty bitstream")
        cmd = self._base() + self._decoder_args() + [
            "-i", "-", "-an", "-frames:v", str(frames), "-vf", filters, "-f", "rawvideo", "-pix_fmt", pix_fmt, "-",
        ]
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
        cmd = self._base() + self._decoder_args() + [
            "-i", "-", "-an", "-frames:v", str(n), "-f", "rawvideo", "-pix_fmt", self._out_pix_fmt(bitdepth), "-",
        ]
        self.last_command = cmd
        done = run_process(cmd, self.who, self.setting, data, self.timeout_s)
        self.last_output = done.stderr
        out = self._from_output(done.stdout, n, ph, pw, bitdepth)
        return np.ascontiguousarray(out[:, :h, :w])


class VvencCodec(FfmpegCodec):
    """VVC: libvvenc in ffmpeg, decoded by ffmpeg's native VVC decoder."""

    family = "vvc"
    knobs = ("qp",)
    value_ranges = {"qp": (0, 63)}
    bitdepths = (8, 10)
    encoder = "libvvenc"
    decoder_format = "vvc"
    muxer = "vvc"
    yuv420 = True
    min_dim = 32  # libvvenc refuses frames under 16 (intra) / 32 (random access) pixels a side
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
            raise ConfigError(f"{where}.threads={self.threads}: libvvenc writes other bytes with 8 or more threads "
                              f"(and its default follows the machine's cores); give 1..{self.MAX_THREADS}")

    def _auto_threads(self, frame_pixels: int) -> int | None:
        # vvenc's thread pool costs more than it gains below ~1 Mpixel per frame
        # (all-intra on 16 small frames: 2.6 s with its default threads, 0.7 s with one); never its default
        return 1 if frame_pixels < (1 << 20) else 2


class X265Codec(FfmpegCodec):
    """HEVC: libx265 (4:0:0 gray/gray10le), decoded by ffmpeg's hevc decoder."""

    family = "hevc"
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


class X265CliCodec(X265Codec):
    """HEVC: the x265 command-line encoder (e.g. Debian's `apt install x265`, 3.5), 4:0:0 input
    on stdin (`--input-csp i400`), decoded by ffmpeg's hevc decoder."""

    encoder = ""  # ffmpeg only decodes
    label = "x265 (command line)"
    min_dim = 64  # the x265 CLI refuses pictures smaller than one CTU (64 by default)

    def __init__(self, who: str, x265: str | None = None, setting_prefix: str = "codec.x265", **kwargs):
        super().__init__(who, setting_prefix=setting_prefix, **kwargs)
        self.x265_setting = f"{setting_prefix}.x265"
        name = "x265" if is_none(x265) else os.path.expanduser(str(x265))
        found = name if (os.path.isfile(name) and os.access(name, os.X_OK)) else shutil.which(name)
        if not found:
            raise MissingDependencyError(
                f"{who}: {self.x265_setting}={name}: no executable x265 there; install it (`apt install x265`) "
                f"or pass the path of an x265 binary as {self.x265_setting}"
            )
        self.x265 = found

    def _encode(self, frames, bitdepth, knob, value, gop) -> bytes:
        n = frames.shape[0]
        frames = _pad_to(frames, self._align(), self.min_dim)
        _, ph, pw = frames.shape
        with tempfile.TemporaryDirectory(prefix="vcmbench-x265-") as tmp:
            out = os.path.join(tmp, "out.hevc")
            cmd = [
                self.x265, "--input", "-", "--input-res", f"{pw}x{ph}", "--frames", str(n), "--fps", "25",
                "--input-depth", str(bitdepth), "--output-depth", str(bitdepth), "--input-csp", "i400",
                "--preset", str(self.preset), "--no-info", "--no-progress", "--log-level", "error",
                "--keyint", "1" if gop.intra else str(gop.intra_period or -1),
            ]
            if gop.structure == "low_delay":
                cmd += ["--bframes", "0"]
            if knob == "qp":
                cmd += ["--qp", str(int(value))]
            elif knob == "crf":
                cmd += ["--crf", str(float(value)), "--no-cutree"]
            else:
                cmd += ["--lossless"]
            if self.threads is not None:
                cmd += ["--pools", str(self.threads)]
            cmd += ["--frame-threads", "1"]  # as in X265Codec: frame threads follow the machine's cores
            cmd += self.extra_args + ["-o", out]
            self.last_command = cmd
            done = run_process(cmd, self.who, self.x265_setting, self._to_input(frames, bitdepth), self.timeout_s)
            self.last_output = done.stderr
            data = Path(out).read_bytes() if os.path.isfile(out) else b""
        return data


class AomCodec(FfmpegCodec):
    """AV1: libaom-av1 (4:0:0), OBU stream, decoded by ffmpeg."""

    family = "av1"
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


class SvtAv1Codec(FfmpegCodec):
    """AV1: SVT-AV1 (yuv420p10le, flat chroma), OBU stream, decoded by ffmpeg."""

    family = "av1"
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


class Ffv1Codec(FfmpegCodec):
    """FFV1 (lossless), in NUT. `intra=False` keeps the adapted contexts across frames."""

    family = "ffv1"
    knobs = ("lossless",)
    encoder = "ffv1"
    decoder_format = "nut"
    muxer = "nut"

    def _encoder_args(self, knob, value, gop, bitdepth):
        return ["-level", "1", "-coder", "1", "-context", "1", "-g",
                "1" if gop.intra else str(gop.intra_period or 100000)]


class PngCodec(FfmpegCodec):
    """PNG (lossless), one file per frame, concatenated."""

    family = "png"
    knobs = ("lossless",)
    encoder = "png"
    decoder_format = "png_pipe"
    muxer = "image2pipe"

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


class JpegCodec(FfmpegCodec):
    """JPEG (baseline, 8-bit), one file per frame, concatenated; knob q = ffmpeg's -q:v 1..31."""

    family = "jpeg"
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


# ----------------------------------------------------------------------- streaming videos


class FrameSink(ABC):
    """A video being encoded: frames go in a few at a time, the bitstream comes out at `finish`."""

    def __init__(self, backend: ExternalCodec, size: tuple[int, int], frames: int):
        self.backend, self.size, self.frames = backend, size, int(frames)
        self.written = 0

    def write(self, frames: np.ndarray) -> None:
        """Append (k, H, W) samples; more frames than announced is an error."""
        frames = np.asarray(frames, dtype=np.uint16)
        if frames.ndim != 3 or tuple(frames.shape[1:]) != tuple(self.size):
            raise ValueError(f"{self.backend.who}: frames of shape {frames.shape[1:]}, this video's are {self.size}")
        if self.written + frames.shape[0] > self.frames:
            raise ValueError(f"{self.backend.who}: more than the {self.frames} frames this video was opened for")
        self._write(frames)
        self.written += frames.shape[0]

    def finish(self) -> bytes:
        if self.written != self.frames:
            self.abort()
            raise ValueError(f"{self.backend.who}: {self.written} frames written, the video was opened for {self.frames}")
        return self.backend._nonempty(self._finish())

    @abstractmethod
    def _write(self, frames: np.ndarray) -> None: ...

    @abstractmethod
    def _finish(self) -> bytes: ...

    def abort(self) -> None:  # noqa: B027 - a hook: sinks without a process have nothing to stop
        """Stop the encoder without a bitstream (the sequence failed elsewhere)."""


class _Drain(threading.Thread):
    """Reads a pipe to its end in the background, so the process never blocks on a full pipe."""

    def __init__(self, pipe):
        super().__init__(daemon=True)
        self.pipe, self.chunks = pipe, []

    def run(self) -> None:
        for chunk in iter(lambda: self.pipe.read(1 << 16), b""):
            self.chunks.append(chunk)

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


class PipeSink(FrameSink):
    """An encoder process started at open; each write goes straight into its stdin."""

    def __init__(self, backend: ExternalCodec, cmd: list[str], to_input, size: tuple[int, int], frames: int):
        super().__init__(backend, size, frames)
        self.cmd, self.to_input = cmd, to_input
        backend.last_command = cmd
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
            raise MissingDependencyError(f"{backend.who}: cannot run {cmd[0]!r} ({exc.strerror or exc})") from None
        self.out, self.err = _Drain(self.proc.stdout), _Drain(self.proc.stderr)
        self.out.start()
        self.err.start()
        self.deadline = time.monotonic() + backend.timeout_s

    def _failed(self, what: str) -> ExternalCodecError:
        self.abort()
        self.backend.last_output = self.err.data
        return ExternalCodecError(f"{self.backend.who}: `{shlex.join(self.cmd)}` {what}; "
                                  f"it printed: {_tail(self.err.data)}")

    def _write(self, frames: np.ndarray) -> None:
        self._send(self.to_input(frames))

    def write_raw(self, raw: bytes, count: int = 1) -> None:
        """Append `count` pictures already in the encoder's input format (colour pictures)."""
        if self.written + count > self.frames:
            raise ValueError(f"{self.backend.who}: more than the {self.frames} frames this video was opened for")
        self._send(raw)
        self.written += count

    def _send(self, raw: bytes) -> None:
        try:
            self.proc.stdin.write(raw)
        except (BrokenPipeError, ValueError):
            raise self._failed("stopped reading its input") from None

    def _finish(self) -> bytes:
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            code = self.proc.wait(timeout=max(1.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise self._failed(f"did not finish within {self.backend.timeout_s:g} s and was killed") from None
        self.out.join()
        self.err.join()
        self.backend.last_output = self.err.data
        if code != 0:
            raise self._failed(f"exited with status {code}")
        return self.out.data

    def abort(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class FileFedSink(FrameSink):
    """The encoder's input spooled to a temporary file as frames come, the encoder run on the file
    at `finish`: memory stays one frame, like a pipe, for encoders that must not be fed live (see
    FfmpegCodec.live_input)."""

    def __init__(self, backend: ExternalCodec, cmd: list[str], to_input, size: tuple[int, int], frames: int):
        super().__init__(backend, size, frames)
        self.cmd, self.to_input = cmd, to_input
        self.file = tempfile.TemporaryFile(prefix="vcmbench-spool-")

    def _write(self, frames: np.ndarray) -> None:
        self.file.write(self.to_input(frames))

    def write_raw(self, raw: bytes, count: int = 1) -> None:
        """Append `count` pictures already in the encoder's input format (colour pictures)."""
        if self.written + count > self.frames:
            raise ValueError(f"{self.backend.who}: more than the {self.frames} frames this video was opened for")
        self.file.write(raw)
        self.written += count

    def _finish(self) -> bytes:
        self.file.flush()
        self.file.seek(0)
        self.backend.last_command = self.cmd
        try:
            done = run_process(self.cmd, self.backend.who, getattr(self.backend, "setting", "codec"), self.file,
                               self.backend.timeout_s)
        finally:
            self.file.close()
        self.backend.last_output = done.stderr
        return done.stdout

    def abort(self) -> None:
        self.file.close()


class SpoolSink(FrameSink):
    """Frames spooled to a temporary file, coded at `finish` by the back-end's file-based encode."""

    def __init__(self, backend: ExternalCodec, height: int, width: int, frames: int, bitdepth: int, knob: str,
                 value: object, gop: Gop):
        super().__init__(backend, (height, width), frames)
        self.args = (bitdepth, knob, value, gop)
        self.file = tempfile.TemporaryFile(prefix="vcmbench-spool-")

    def _write(self, frames: np.ndarray) -> None:
        self.file.write(frames.astype("<u2").tobytes())

    def _finish(self) -> bytes:
        self.file.flush()
        try:
            samples = np.memmap(self.file, dtype="<u2", mode="r", shape=(self.frames, *self.size))
            return self.backend.encode(samples, *self.args)
        finally:
            self.file.close()

    def abort(self) -> None:
        self.file.close()


def stream_frames(cmd: list[str], data: bytes, frame_bytes: int, frames: int, who: str, setting: str,
                  timeout_s: float) -> Iterator[bytes]:
    """Run a decoder on `data` and yield its raw output `frame_bytes` at a time, `frames` times.

    The bitstream is fed from a thread and the process is killed after `timeout_s`, so a corrupt
    payload ends in ExternalCodecError (short output, a non-zero exit, a timeout), never a hang.
    """
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        raise MissingDependencyError(f"{who}: cannot run {cmd[0]!r} ({exc.strerror or exc}); set {setting}") from None
    err = _Drain(proc.stderr)
    err.start()

    def feed() -> None:
        try:
            proc.stdin.write(data)
            proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    watchdog = threading.Timer(timeout_s, proc.kill)
    watchdog.start()
    try:
        for k in range(frames):
            raw = proc.stdout.read(frame_bytes)
            if len(raw) != frame_bytes:
                proc.wait()
                err.join()
                raise ExternalCodecError(
                    f"{who}: `{shlex.join(cmd)}` gave {k} of {frames} frames (then {len(raw)} of {frame_bytes} bytes): "
                    f"the bitstream is corrupt or truncated; it printed: {_tail(err.data)}")
            yield raw
        rest = proc.stdout.read()
        code = proc.wait()
        err.join()
        if code != 0 or rest:
            raise ExternalCodecError(f"{who}: `{shlex.join(cmd)}` exited with status {code} after {frames} frames"
                                     f"{' and gave more' if rest else ''}; it printed: {_tail(err.data)}")
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


# ---------------------------------------------------------------------------------- VTM


class VtmCodec(ExternalCodec):
    """VVC reference software (VTM): EncoderApp / DecoderApp at user-configured paths.

    Frames go through temp files (VTM reads and writes files only): 16-bit little-endian
    4:0:0 samples, `InputBitDepth = InternalBitDepth = OutputBitDepth = 10`, all-intra
    (`IntraPeriod=1`, plus the cfg file when given, e.g. VTM's cfg/encoder_intra_vtm.cfg).
    Sequences (low delay, random access) use `sequence_cfg` (VTM's cfg/encoder_lowdelay_vtm.cfg)
    and `IntraPeriod` of the sequence's GOP.
    """

    family = "vvc"
    knobs = ("qp",)
    value_ranges = {"qp": (0, 63)}
    bitdepths = (8, 10)

    def __init__(self, who: str = "backend", encoder_app: str | None = None, decoder_app: str | None = None,
                 cfg: str | None = None,
                 setting_prefix: str = "codec.vtm", timeout_s: float = 600.0, extra_args: Sequence[str] = (),
                 internal_bitdepth: int = 10, sequence_cfg: str | None = None):
        super().__init__(who, timeout_s)
        self.enc_setting = f"{setting_prefix}.encoder_app"
        self.dec_setting = f"{setting_prefix}.decoder_app"
        self.cfg_setting = f"{setting_prefix}.cfg"
        self.encoder_app = self._exe(encoder_app, self.enc_setting, "EncoderApp")
        self.decoder_app = self._exe(decoder_app, self.dec_setting, "DecoderApp")
        self.cfg = None
        if not is_none(cfg):
            p = Path(os.path.expanduser(str(cfg)))
            if not p.is_file():
                raise ConfigError(
                    f"{self.cfg_setting}={cfg}: no such file; give VTM's cfg/encoder_intra_vtm.cfg or leave it unset"
                )
            self.cfg = str(p.resolve())
        self.sequence_cfg_setting = f"{setting_prefix}.sequence_cfg"
        self.sequence_cfg = None
        if not is_none(sequence_cfg):
            p = Path(os.path.expanduser(str(sequence_cfg)))
            if not p.is_file():
                raise ConfigError(f"{self.sequence_cfg_setting}={sequence_cfg}: no such file; give VTM's "
                                  "cfg/encoder_lowdelay_vtm.cfg (or encoder_randomaccess_vtm.cfg)")
            self.sequence_cfg = str(p.resolve())
        self.extra_args = [str(a) for a in extra_args]
        self.internal_bitdepth = int(internal_bitdepth)

    def describe(self) -> str:
        cfgs = [Path(c).name for c in (self.cfg, self.sequence_cfg) if c]
        return "VTM" + (f" {' / '.join(cfgs)}" if cfgs else "") + "".join(f" {a}" for a in self.extra_args)

    def _exe(self, path, setting: str, app: str) -> str:
        if is_none(path):
            raise MissingDependencyError(
                f"{self.who}: {setting} is not set. VTM (the VVC reference software) is not installable from a "
                f"registry: build it from https://vcgit.hhi.fraunhofer.de/jvet/VVCSoftware_VTM and pass "
                f"{setting}=/path/to/{app}"
            )
        p = Path(os.path.expanduser(str(path)))
        if p.is_file() and os.access(p, os.X_OK):
            return str(p.resolve())
        found = shutil.which(str(path)) if os.sep not in str(path) else None
        if found:
            return found
        raise MissingDependencyError(
            f"{self.who}: {setting}={path}: no executable {app} there; build VTM and pass the path of its "
            f"bin/{app} as {setting}"
        )

    def _encode(self, frames, bitdepth, knob, value, gop) -> bytes:
        n, h, w = frames.shape
        samples = frames.astype("<u2")
        with tempfile.TemporaryDirectory(prefix="vcmbench-vtm-") as tmp:
            src, bit = os.path.join(tmp, "in.yuv"), os.path.join(tmp, "out.bin")
            with open(src, "wb") as f:
                f.write(samples.tobytes())
            cmd = [self.encoder_app]
            cfg = self.cfg if gop.intra or gop == ONE_INTRA else self.sequence_cfg
            if cfg is None and not (gop.intra or gop == ONE_INTRA):
                raise ConfigError(f"{self.who}: a {gop.structure} sequence through VTM needs its configuration: set "
                                  f"{self.sequence_cfg_setting}=/path/to/VTM/cfg/encoder_lowdelay_vtm.cfg")
            if cfg:
                cmd += ["-c", cfg]
            cmd += [
                "-i", src, "-b", bit,
                f"--SourceWidth={w}", f"--SourceHeight={h}", "--FrameRate=30", f"--FramesToBeEncoded={n}",
                f"--QP={int(value)}",
                f"--InputBitDepth={bitdepth}", f"--InternalBitDepth={self.internal_bitdepth}",
                f"--OutputBitDepth={bitdepth}",
                "--InputChromaFormat=400", "--ChromaFormatIDC=400", "--ConformanceWindowMode=1",
            ]
            if gop.intra:
                cmd += ["--IntraPeriod=1"]
            elif gop.intra_period:
                cmd += [f"--IntraPeriod={gop.intra_period}"]  # the structure is the cfg's (encoder_lowdelay_vtm.cfg)
            cmd += self.extra_args
            self.last_command = cmd
            self.last_output = run_process(cmd, self.who, self.enc_setting, None, self.timeout_s, cwd=tmp).stderr
            if not os.path.isfile(bit):
                raise ExternalCodecError(f"{self.who}: `{shlex.join(cmd)}` exited 0 but wrote no bitstream {bit}")
            with open(bit, "rb") as f:
                return f.read()

    def _decode(self, data, n, h, w, bitdepth) -> np.ndarray:
        with tempfile.TemporaryDirectory(prefix="vcmbench-vtm-") as tmp:
            bit, rec = os.path.join(tmp, "in.bin"), os.path.join(tmp, "out.yuv")
            with open(bit, "wb") as f:
                f.write(data)
            cmd = [self.decoder_app, "-b", bit, "-o", rec, "-d", str(bitdepth)]
            self.last_command = cmd
            done = run_process(cmd, self.who, self.dec_setting, None, self.timeout_s, cwd=tmp)
            self.last_output = done.stdout + done.stderr
            raw = Path(rec).read_bytes() if os.path.isfile(rec) else b""
        luma = h * w * 2
        if len(raw) == n * luma:  # 4:0:0 written as luma only
            y = np.frombuffer(raw, "<u2").reshape(n, h, w)
        elif len(raw) == n * (luma + 2 * 2 * ((h + 1) // 2) * ((w + 1) // 2)):  # written as 4:2:0
            fsize = len(raw) // n // 2
            y = np.frombuffer(raw, "<u2").reshape(n, fsize)[:, : h * w].reshape(n, h, w)
        else:
            raise self._wrong_size(len(raw), n * luma, n, h, w)
        return np.minimum(y, (1 << bitdepth) - 1).astype(np.uint16)


# ------------------------------------------------------------------------------ factory

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


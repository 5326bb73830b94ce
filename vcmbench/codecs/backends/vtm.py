"""VVC through the reference software (VTM): EncoderApp and DecoderApp at user-configured paths.

VTM is not installable from a registry and works on files only, so it has its own module: locating
the apps, its configuration files, and the temporary-file round trip. Colour pictures (the image
anchor) are converted by ffmpeg's filter graphs, as the MPEG image-anchor scripts do, to a 4:2:0
10-bit file that EncoderApp codes; DecoderApp's output goes back through ffmpeg.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from vcmbench.codecs.backends.codec import ExternalBackend, FrameSink
from vcmbench.codecs.backends.ffmpeg import resolve_ffmpeg
from vcmbench.codecs.backends.gop import ALL_INTRA, ONE_INTRA, Gop
from vcmbench.codecs.backends.process import run_process, stream_frames
from vcmbench.errors import ConfigError, ExternalCodecError, MissingDependencyError
from vcmbench.paths import is_none


class VtmBackend(ExternalBackend):
    """VVC reference software (VTM): EncoderApp / DecoderApp at user-configured paths.

    Frames go through temp files (VTM reads and writes files only): 16-bit little-endian
    4:0:0 samples, `InputBitDepth = InternalBitDepth = OutputBitDepth = 10`, all-intra
    (`IntraPeriod=1`, plus the cfg file when given, e.g. VTM's cfg/encoder_intra_vtm.cfg).
    Sequences (low delay, random access) use `sequence_cfg` (VTM's cfg/encoder_lowdelay_vtm.cfg)
    and `IntraPeriod` of the sequence's GOP. Colour pictures (`encode_picture`, the image anchor):
    converted by `ffmpeg` (imageio-ffmpeg's by default) to 4:2:0 10-bit, coded with
    `InputChromaFormat = ChromaFormatIDC = 420`.
    """

    family = "vvc"
    family_id = 1
    knobs = ("qp",)
    value_ranges = {"qp": (0, 63)}
    bitdepths = (8, 10)
    codes_pictures = True
    picture_bitdepths = (10,)  # the MPEG image anchor's: 4:2:0 at 10 bits
    #: what EncoderApp reads and DecoderApp writes for colour pictures
    PICTURE_FORMAT = "yuv420p10le"

    def __init__(
        self,
        who: str = "backend",
        encoder_app: str | None = None,
        decoder_app: str | None = None,
        cfg: str | None = None,
        setting_prefix: str = "codec.vtm",
        timeout_s: float | None = 600.0,
        extra_args: Sequence[str] = (),
        internal_bitdepth: int = 10,
        sequence_cfg: str | None = None,
        ffmpeg: str | None = None,
    ):
        super().__init__(who, 600.0 if timeout_s is None else timeout_s)
        self.ffmpeg_setting = f"{setting_prefix}.ffmpeg"
        self._ffmpeg_path, self._ffmpeg_exe = ffmpeg, None
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
                raise ConfigError(
                    f"{self.sequence_cfg_setting}={sequence_cfg}: no such file; give VTM's "
                    "cfg/encoder_lowdelay_vtm.cfg (or encoder_randomaccess_vtm.cfg)"
                )
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

    @property
    def ffmpeg(self) -> str:
        """The ffmpeg that converts colour pictures, found at first use: frame codecs never need it."""
        if self._ffmpeg_exe is None:
            self._ffmpeg_exe = resolve_ffmpeg(self._ffmpeg_path, self.ffmpeg_setting)
        return self._ffmpeg_exe

    def _cfg_for(self, gop: Gop) -> str | None:
        """The cfg file of a GOP: `cfg` for intra coding, `sequence_cfg` (required) for the others."""
        if gop.intra or gop == ONE_INTRA:
            return self.cfg
        if self.sequence_cfg is None:
            raise ConfigError(
                f"{self.who}: a {gop.structure} sequence through VTM needs its configuration: set "
                f"{self.sequence_cfg_setting}=/path/to/VTM/cfg/encoder_lowdelay_vtm.cfg"
            )
        return self.sequence_cfg

    def _encode(self, frames, bitdepth, knob, value, gop) -> bytes:
        n, h, w = frames.shape
        with tempfile.TemporaryDirectory(prefix="vcmbench-vtm-") as tmp:
            src = os.path.join(tmp, "in.yuv")
            with open(src, "wb") as f:
                f.write(frames.astype("<u2").tobytes())
            return self._encode_file(tmp, src, (h, w), n, bitdepth, value, gop, "400")

    def _encode_file(
        self, tmp: str, src: str, size: tuple[int, int], n: int, bitdepth: int, value: object, gop: Gop, chroma: str
    ) -> bytes:
        """EncoderApp on the raw file `src` (16-bit samples, `chroma` 400 or 420) in the folder `tmp`."""
        h, w = size
        bit = os.path.join(tmp, "out.bin")
        cmd = [self.encoder_app]
        cfg = self._cfg_for(gop)
        if cfg:
            cmd += ["-c", cfg]
        cmd += [
            "-i",
            src,
            "-b",
            bit,
            f"--SourceWidth={w}",
            f"--SourceHeight={h}",
            "--FrameRate=30",
            f"--FramesToBeEncoded={n}",
            f"--QP={int(value)}",
            f"--InputBitDepth={bitdepth}",
            f"--InternalBitDepth={self.internal_bitdepth}",
            f"--OutputBitDepth={bitdepth}",
            f"--InputChromaFormat={chroma}",
            f"--ChromaFormatIDC={chroma}",
            "--ConformanceWindowMode=1",
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

    def _run_decoder(self, tmp: str, data: bytes, bitdepth: int) -> str:
        """DecoderApp on `data` in the folder `tmp`: the path of the raw samples it wrote (maybe none)."""
        bit, rec = os.path.join(tmp, "in.bin"), os.path.join(tmp, "out.yuv")
        with open(bit, "wb") as f:
            f.write(data)
        cmd = [self.decoder_app, "-b", bit, "-o", rec, "-d", str(bitdepth)]
        self.last_command = cmd
        done = run_process(cmd, self.who, self.dec_setting, None, self.timeout_s, cwd=tmp)
        self.last_output = done.stdout + done.stderr
        return rec

    def _decode(self, data, n, h, w, bitdepth) -> np.ndarray:
        with tempfile.TemporaryDirectory(prefix="vcmbench-vtm-") as tmp:
            rec = self._run_decoder(tmp, data, bitdepth)
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

    # -- colour pictures (the image anchor) ---------------------------------------------------
    def coded_size(self, h: int, w: int) -> tuple[int, int]:
        """EncoderApp pads to its CU size itself and signals the padding (ConformanceWindowMode=1)."""
        return h, w

    def _convert(
        self, src: str, dst: str, pix_fmt: str, size: tuple[int, int], n: int, filters: str, out_pix_fmt: str
    ) -> list[str]:
        """The ffmpeg command converting `n` raw `pix_fmt` pictures of `size` (file `src`) through the
        filter graph `filters` to `out_pix_fmt` (file `dst`, or `-`: stdout)."""
        h, w = size
        return [
            self.ffmpeg,
            "-hide_banner",
            "-nostats",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "rawvideo",
            "-pix_fmt",
            pix_fmt,
            "-s",
            f"{w}x{h}",
            "-i",
            src,
            "-frames:v",
            str(n),
            "-vf",
            filters,
            "-f",
            "rawvideo",
            "-pix_fmt",
            out_pix_fmt,
            dst,
        ]

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
    ) -> PictureSpoolSink:
        """A video of colour pictures, spooled to a file; at `finish` ffmpeg converts it to 4:2:0
        10-bit samples of size `coded` (what the filter graph makes: VTM reads raw files, which
        carry no size) and EncoderApp codes them."""
        self.check_rate(knob, value)
        if out_pix_fmt != self.PICTURE_FORMAT or bitdepth != 10:
            raise ConfigError(
                f"{self.who}: the VTM back-end codes 10-bit 4:2:0 pictures ({self.PICTURE_FORMAT}), "
                f"not {out_pix_fmt} at {bitdepth} bits"
            )
        if coded is None:
            raise ValueError(f"{self.who}: VTM reads raw files: give the coded size of the pictures")
        self._cfg_for(gop)  # a sequence without its cfg fails here, before its frames are spooled
        return PictureSpoolSink(self, pix_fmt, size, frames, filters, tuple(coded), value, gop)

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
        """One colour picture, all-intra (`FfmpegBackend.encode_picture`'s contract)."""
        t0 = time.perf_counter()
        sink = self.open_picture_encoder(
            pix_fmt, size, 1, filters, out_pix_fmt, bitdepth, knob, value, ALL_INTRA, coded
        )
        sink.write_raw(raw)
        data = sink.finish()
        self.last_encode_s = time.perf_counter() - t0
        return data

    def decode_pictures(
        self,
        data: bytes,
        frames: int,
        filters: str,
        pix_fmt: str,
        frame_bytes: int,
        coded: tuple[int, int] | None = None,
    ) -> Iterator[bytes]:
        """DecoderApp's 4:2:0 10-bit pictures of size `coded` through `filters`: each picture's
        `frame_bytes` of `pix_fmt` samples; ExternalCodecError if the stream does not decode to them."""
        if not data:
            raise ExternalCodecError(f"{self.who}: empty bitstream")
        if coded is None:
            raise ValueError(f"{self.who}: VTM writes raw files: give the coded size of the pictures")
        ph, pw = coded
        with tempfile.TemporaryDirectory(prefix="vcmbench-vtm-") as tmp:
            rec = self._run_decoder(tmp, bytes(data), 10)
            got, want = (os.path.getsize(rec) if os.path.isfile(rec) else 0), frames * ph * pw * 3
            if got != want:  # 4:2:0 at 16 bits a sample: 3 bytes a pixel
                raise self._wrong_size(got, want, frames, ph, pw)
            cmd = self._convert(rec, "-", self.PICTURE_FORMAT, (ph, pw), frames, filters, pix_fmt)
            self.last_command = cmd
            yield from stream_frames(cmd, b"", frame_bytes, frames, self.who, self.ffmpeg_setting, self.timeout_s)

    def decode_picture(
        self,
        data: bytes,
        filters: str,
        pix_fmt: str,
        n_bytes: int,
        size: tuple[int, int],
        coded: tuple[int, int] | None = None,
    ) -> bytes:
        """Inverse of encode_picture (`FfmpegBackend.decode_picture`'s contract)."""
        t0 = time.perf_counter()
        (raw,) = list(self.decode_pictures(data, 1, filters, pix_fmt, n_bytes, coded))
        self.last_decode_s = time.perf_counter() - t0
        return raw


class PictureSpoolSink(FrameSink):
    """Colour pictures for VTM: spooled raw to a file as they come (`write_raw`); at `finish` ffmpeg
    converts the file to 4:2:0 10-bit and EncoderApp codes it. Memory stays one picture."""

    def __init__(
        self,
        backend: VtmBackend,
        pix_fmt: str,
        size: tuple[int, int],
        frames: int,
        filters: str,
        coded: tuple[int, int],
        value: object,
        gop: Gop,
    ):
        super().__init__(backend, size, frames)
        self.vtm = backend
        self.pix_fmt, self.filters, self.coded, self.value, self.gop = pix_fmt, filters, coded, value, gop
        self.tmp = tempfile.TemporaryDirectory(prefix="vcmbench-vtm-")
        self.src = os.path.join(self.tmp.name, "in.raw")
        self.file = open(self.src, "wb")  # open until finish or abort

    def _write(self, frames: np.ndarray) -> None:
        raise TypeError(f"{self.backend.who}: a picture video takes colour pictures (write_raw), not gray frames")

    def write_raw(self, raw: bytes, count: int = 1) -> None:
        """Append `count` pictures in the input format (`pix_fmt` of `size`)."""
        if self.written + count > self.frames:
            raise ValueError(f"{self.backend.who}: more than the {self.frames} frames this video was opened for")
        self.file.write(raw)
        self.written += count

    def _finish(self) -> bytes:
        self.file.close()
        vtm, tmp = self.vtm, self.tmp.name
        try:
            yuv = os.path.join(tmp, "in.yuv")
            cmd = vtm._convert(self.src, yuv, self.pix_fmt, self.size, self.frames, self.filters, vtm.PICTURE_FORMAT)
            vtm.last_command = cmd
            vtm.last_output = run_process(cmd, vtm.who, vtm.ffmpeg_setting, None, vtm.timeout_s).stderr
            return vtm._encode_file(tmp, yuv, self.coded, self.frames, 10, self.value, self.gop, "420")
        finally:
            self.tmp.cleanup()

    def abort(self) -> None:
        self.file.close()
        self.tmp.cleanup()

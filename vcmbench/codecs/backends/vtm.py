"""VVC through the reference software (VTM): EncoderApp and DecoderApp at user-configured paths.

VTM is not installable from a registry and works on files only, so it has its own module: locating
the apps, its configuration files, and the temporary-file round trip.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vcmbench.codecs.backends.codec import ExternalCodec
from vcmbench.codecs.backends.gop import ONE_INTRA
from vcmbench.codecs.backends.process import run_process
from vcmbench.errors import ConfigError, ExternalCodecError, MissingDependencyError
from vcmbench.paths import is_none


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

    def __init__(
        self,
        who: str = "backend",
        encoder_app: str | None = None,
        decoder_app: str | None = None,
        cfg: str | None = None,
        setting_prefix: str = "codec.vtm",
        timeout_s: float = 600.0,
        extra_args: Sequence[str] = (),
        internal_bitdepth: int = 10,
        sequence_cfg: str | None = None,
    ):
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
                raise ConfigError(
                    f"{self.who}: a {gop.structure} sequence through VTM needs its configuration: set "
                    f"{self.sequence_cfg_setting}=/path/to/VTM/cfg/encoder_lowdelay_vtm.cfg"
                )
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
                "--InputChromaFormat=400",
                "--ChromaFormatIDC=400",
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

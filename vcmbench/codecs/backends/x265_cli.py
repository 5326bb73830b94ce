"""HEVC through the x265 command-line encoder (e.g. Debian's), decoded by ffmpeg.

Its own module because it runs a second binary besides ffmpeg, with its own setting and options,
while it shares X265Backend's rate knobs and ffmpeg's hevc decoder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from vcmbench.codecs.backends.ffmpeg import _pad_to
from vcmbench.codecs.backends.ffmpeg_codecs import X265Backend
from vcmbench.codecs.backends.process import run_process
from vcmbench.errors import MissingDependencyError
from vcmbench.paths import is_none


class X265CliBackend(X265Backend):
    """HEVC: the x265 command-line encoder (e.g. Debian's `apt install x265`, 3.5), 4:0:0 input
    on stdin (`--input-csp i400`), decoded by ffmpeg's hevc decoder."""

    encoder = ""  # ffmpeg only decodes
    label = "x265 (command line)"
    min_dim = 64  # the x265 CLI refuses pictures smaller than one CTU (64 by default)
    codes_pictures = False  # colour pictures go through ffmpeg's encoder, which this back-end does not run

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
                self.x265,
                "--input",
                "-",
                "--input-res",
                f"{pw}x{ph}",
                "--frames",
                str(n),
                "--fps",
                "25",
                "--input-depth",
                str(bitdepth),
                "--output-depth",
                str(bitdepth),
                "--input-csp",
                "i400",
                "--preset",
                str(self.preset),
                "--no-info",
                "--no-progress",
                "--log-level",
                "error",
                "--keyint",
                "1" if gop.intra else str(gop.intra_period or -1),
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
            cmd += ["--frame-threads", "1"]  # as in X265Backend: frame threads follow the machine's cores
            cmd += self.extra_args + ["-o", out]
            self.last_command = cmd
            done = run_process(cmd, self.who, self.x265_setting, self._to_input(frames, bitdepth), self.timeout_s)
            self.last_output = done.stderr
            data = Path(out).read_bytes() if os.path.isfile(out) else b""
        return data

"""Sinks that feed a running (or later) ffmpeg encoder process: `PipeSink` and `FileFedSink`.

Separate from `codec.py` because they need the process plumbing (`process.py`) and are used by
the ffmpeg back-ends only; file-based encoders use `codec.SpoolSink`.
"""

from __future__ import annotations

import shlex
import subprocess
import tempfile
import time

import numpy as np

from vcmbench.codecs.backends.codec import ExternalBackend, FrameSink
from vcmbench.codecs.backends.process import _Drain, _tail, run_process
from vcmbench.errors import ExternalCodecError, MissingDependencyError


class PipeSink(FrameSink):
    """An encoder process started at open; each write goes straight into its stdin."""

    def __init__(self, backend: ExternalBackend, cmd: list[str], to_input, size: tuple[int, int], frames: int):
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
        return ExternalCodecError(
            f"{self.backend.who}: `{shlex.join(self.cmd)}` {what}; it printed: {_tail(self.err.data)}"
        )

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
    FfmpegBackend.live_input)."""

    def __init__(self, backend: ExternalBackend, cmd: list[str], to_input, size: tuple[int, int], frames: int):
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
            done = run_process(
                self.cmd, self.backend.who, getattr(self.backend, "setting", "codec"), self.file, self.backend.timeout_s
            )
        finally:
            self.file.close()
        self.backend.last_output = done.stderr
        return done.stdout

    def abort(self) -> None:
        self.file.close()

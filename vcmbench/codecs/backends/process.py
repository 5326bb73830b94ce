"""Running external encoders and decoders as processes: timeouts, pipes, and the one-line error text.

Every back-end (ffmpeg, VTM, the x265 CLI) runs its binaries through these helpers, so a missing
binary, a crash, a hang and a short output end in the same errors (MissingDependencyError naming
the setting, ExternalCodecError quoting the command and the tail of what it printed), whichever
back-end failed. Nothing here knows about frames or codecs; `codec.py` and the back-ends build on it.
"""

from __future__ import annotations

import shlex
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from typing import BinaryIO, NamedTuple

from vcmbench.errors import ExternalCodecError, MissingDependencyError

DEFAULT_TIMEOUT_S = 300.0  # a 20-Mpixel anchor frame (800-px input) takes ~20 s to encode on 2 cores
_TAIL = 2000  # characters of process output quoted in errors


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


def run_process(
    cmd: Sequence[str],
    who: str,
    setting: str,
    input: bytes | BinaryIO | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    cwd: str | None = None,
) -> Finished:
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


def stream_frames(
    cmd: list[str], data: bytes, frame_bytes: int, frames: int, who: str, setting: str, timeout_s: float
) -> Iterator[bytes]:
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
                    f"the bitstream is corrupt or truncated; it printed: {_tail(err.data)}"
                )
            yield raw
        rest = proc.stdout.read()
        code = proc.wait()
        err.join()
        if code != 0 or rest:
            raise ExternalCodecError(
                f"{who}: `{shlex.join(cmd)}` exited with status {code} after {frames} frames"
                f"{' and gave more' if rest else ''}; it printed: {_tail(err.data)}"
            )
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()

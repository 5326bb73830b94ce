"""The interface every external back-end implements: `ExternalBackend` and the `FrameSink` it encodes into.

One module for the abstract back-end and the abstract sink because they refer to each other (a
back-end opens a sink; a sink finishes through its back-end's checks), and for `SpoolSink`, the
default sink of file-based encoders (VTM, the x265 CLI). Checks, timing and the error text live
here so that every back-end validates rates and reports failures the same way.
"""

from __future__ import annotations

import shlex
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator

import numpy as np

from vcmbench.codecs.backends.gop import Gop, as_gop
from vcmbench.codecs.backends.process import DEFAULT_TIMEOUT_S, _tail
from vcmbench.errors import ConfigError, ExternalCodecError


class ExternalBackend(ABC):
    """One real codec run as external processes on stacks of gray frames.

    A back-end is one class (a subclass of this, or of `FfmpegBackend` for a codec inside ffmpeg)
    and a nested yaml node in the codecs that use it (`backend: {_target_: ..., _partial_: true}`):
    the codec calls the node with its name (`who`) and `setting_prefix`, so errors name its settings.
    """

    #: bitstream family: back-ends of one family write bitstreams the other decodes (VTM and libvvenc;
    #: libaom and SVT-AV1)
    family: str = ""
    #: the family's id in payload headers (4 bits: 1 VVC, 2 HEVC, 3 AV1, 4 FFV1, 5 PNG, 6 JPEG); a
    #: decoder refuses a payload of another family. Written into payloads: never renumber one
    family_id: int = 0
    #: rate knobs this back-end understands ("lossless" takes no value)
    knobs: tuple[str, ...] = ()
    #: sample bit depths accepted
    bitdepths: tuple[int, ...] = (8, 10)
    #: accepted values of each valued knob, inclusive
    value_ranges: dict[str, tuple[int, int]] = {}
    #: codes colour pictures through ffmpeg filter graphs (`encode_picture`, `decode_picture`,
    #: `open_picture_encoder`, `decode_pictures`, `coded_size`): what the image anchor needs
    codes_pictures: bool = False
    #: sample depths of those pictures (Y'CbCr 4:2:0)
    picture_bitdepths: tuple[int, ...] = (8, 10)
    #: codes the 8-bit RGB picture itself, losslessly (no Y'CbCr conversion): the image anchor's
    #: uncompressed limit (PNG)
    lossless_rgb: bool = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not 0 <= cls.family_id <= 15:
            raise TypeError(f"{cls.__name__}.family_id={cls.family_id}: payload headers hold 4 bits (0..15)")

    def __init__(self, who: str, timeout_s: float | None = None):
        self.who = who
        self.timeout_s = float(DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s)
        self.last_encode_s = 0.0
        self.last_decode_s = 0.0
        self.encode_s = 0.0
        self.decode_s = 0.0
        self.calls = 0
        self.last_command: list[str] = []
        self.last_output = b""  # stderr of the last process

    def describe(self) -> str:
        """The encoder and its speed setting, as the points table and the report name it."""
        return self.family

    def check_rate(self, knob: str, value: object = None, setting: str | None = None) -> None:
        """ConfigError unless this back-end understands knob (and value, when given: checked
        against `value_ranges` so a sweep with qp=99 stops before its first image)."""
        if knob not in self.knobs:
            raise ConfigError(
                f"{self.who}: the {self.family} back-end takes rate knobs {list(self.knobs)}, not {knob!r}"
            )
        if value is None or knob not in self.value_ranges:
            return
        lo, hi = self.value_ranges[knob]
        where = setting or self.who
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{where}: {knob}={value!r} is not an integer; give {knob} values from {lo} to {hi}"
            ) from None
        if not lo <= number <= hi:
            raise ConfigError(
                f"{where}: {knob}={number} outside {lo}..{hi} for the {self.family} back-end; "
                f"give rate points from {lo} to {hi}"
            )

    def check_bitdepth(self, bitdepth: int) -> None:
        if bitdepth not in self.bitdepths:
            raise ConfigError(
                f"{self.who}: the {self.family} back-end codes {list(self.bitdepths)}-bit samples, not {bitdepth}"
            )

    def validate(
        self, knob: str, value: object = None, bitdepth: int | None = None, setting: str | None = None
    ) -> None:
        """The back-end's public check, for codecs to call at construction: ConfigError unless it
        takes this rate knob, this value (within `value_ranges`) and this sample depth."""
        if bitdepth is not None:
            self.check_bitdepth(bitdepth)
        self.check_rate(knob, value, setting)

    def encode(
        self, frames: np.ndarray, bitdepth: int, knob: str, value: object = None, intra: bool | Gop = True
    ) -> bytes:
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
    def open_encoder(
        self, height: int, width: int, frames: int, bitdepth: int, knob: str, value: object, gop: Gop
    ) -> FrameSink:
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


class FrameSink(ABC):
    """A video being encoded: frames go in a few at a time, the bitstream comes out at `finish`."""

    def __init__(self, backend: ExternalBackend, size: tuple[int, int], frames: int):
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
            raise ValueError(
                f"{self.backend.who}: {self.written} frames written, the video was opened for {self.frames}"
            )
        return self.backend._nonempty(self._finish())

    @abstractmethod
    def _write(self, frames: np.ndarray) -> None: ...

    @abstractmethod
    def _finish(self) -> bytes: ...

    def abort(self) -> None:  # noqa: B027 - a hook: sinks without a process have nothing to stop
        """Stop the encoder without a bitstream (the sequence failed elsewhere)."""


class SpoolSink(FrameSink):
    """Frames spooled to a temporary file, coded at `finish` by the back-end's file-based encode."""

    def __init__(
        self,
        backend: ExternalBackend,
        height: int,
        width: int,
        frames: int,
        bitdepth: int,
        knob: str,
        value: object,
        gop: Gop,
    ):
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


def build_backend(
    backend: ExternalBackend | Callable[..., ExternalBackend], who: str, setting_prefix: str
) -> ExternalBackend:
    """A codec's back-end part: given built, or a callable (a yaml node with `_partial_: true`) that is
    built here with the codec's name and `setting_prefix`, so that its errors name the codec's settings
    (`codec.NAME.backend.KEY`)."""
    if not isinstance(backend, ExternalBackend):
        if not callable(backend):
            raise ConfigError(
                f"{setting_prefix}: {backend!r} is not a back-end; give a node with the _target_ "
                "of a back-end class and _partial_: true"
            )
        backend = backend(who=who, setting_prefix=setting_prefix)
    if not isinstance(backend, ExternalBackend):
        raise ConfigError(
            f"{setting_prefix}._target_: built {type(backend).__name__}, not a back-end "
            "(a class of vcmbench.codecs.backends)"
        )
    return backend

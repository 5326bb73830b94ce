"""Sequence mode: how a codec carries a whole video sequence as one payload, frame by frame.

The runner streams a sequence's frames through the front one at a time and hands each frame
to one `SequenceEncoder` per (codec, rate point); `finish` gives the sequence's payload (one
byte string, everything the decoder needs, all of it counted). `Codec.sequence_decode` gives
back what reached the receiver frame by frame (`Received`, as for an image). No frame's
features outlive its turn: encoders hold their own state (a running encoder process, the bytes
so far), never the sequence's features.

Two kinds of codecs, one contract:

- inter-coded codecs (the feature anchor and the packing baselines, `FrameCodec`) write one
  video bitstream per layout video with inter prediction over the sequence's frames;
- intra-only codecs (learned, raw, image, joint) go through `FramewiseEncoder`, the one shared
  adapter: each frame's own payload, concatenated.

A codec with a sequence mode of its own defines `sequence_encoder(rate, info)` and
`sequence_decode(payload, metas)` (and `needs_sequence_range` if it quantises with the
sequence's range); `open_sequence` / `decode_sequence` below give every other codec the adapter,
so the runner calls the same two functions for all.

Framewise container (big-endian, uvarints as in `vcmbench.codecs.tiling`):

    tag      4 bytes  b"SEQF"
    version  1 byte
    frames   uvarint  number of frames N
    N x      uvarint length, then that frame's payload (the codec's per-image container)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vcmbench.codecs.backends.gop import ALL_INTRA, Gop
from vcmbench.codecs.base import (
    Codec,
    RatePoint,
    Received,
    check_container,
    read_feature_table,
    register_tags,
    shape_table,
)
from vcmbench.codecs.tiling import Reader, check_plausible, uvarint
from vcmbench.errors import ConfigError, ExternalCodecError, PayloadError, ShapeError
from vcmbench.types import LEVELS, FrontOutput, ImageMeta, check_features, feature_names

#: container version of a feature codec's own sequence payload (its per-image payload is version 1)
SEQUENCE_VERSION = 2
FRAMEWISE_TAG = b"SEQF"
FRAMEWISE_VERSION = 1
register_tags(f"{__name__}.FramewiseEncoder", FRAMEWISE_TAG)


@dataclass(frozen=True)
class SequenceInfo:
    """What an encoder may know about a sequence before its first frame.

    frames: the number of frames; fps: the frame rate (the CTC picks the intra period by it);
    ranges: the (min, max) of each feature level over the whole sequence, for codecs that
    quantise with one range per sequence (`Codec.needs_sequence_range`); None otherwise.
    """

    frames: int
    fps: float
    ranges: tuple[tuple[float, float], ...] | None = None


def check_gop_settings(setting: str, structure: str, intra_period: int | str) -> None:
    """ConfigError naming `setting.sequence_gop` / `setting.intra_period` for a bad value."""
    if structure not in Gop.STRUCTURES:
        raise ConfigError(f"{setting}.sequence_gop={structure!r}: choose one of {list(Gop.STRUCTURES)}")
    if intra_period != "auto" and not (isinstance(intra_period, int) and intra_period >= 0):
        raise ConfigError(
            f"{setting}.intra_period={intra_period!r}: give auto (the CTC's: 64, or 32 for "
            "24/30 fps), a number of frames, or 0 (one intra frame at the start)"
        )


def ctc_gop(structure: str, intra_period: int | str, fps: float, frames_per_step: int = 1) -> Gop:
    """A sequence's prediction structure: `intra_period` auto is the FCM CTC's (64 frames, 32 for
    24/30 fps content), counted in the sequence's frames (a video holding several coded frames per
    sequence frame, one per channel, refreshes every intra_period x frames_per_step)."""
    if structure == "all_intra":
        return ALL_INTRA
    period = (32 if round(fps) in (24, 30) else 64) if intra_period == "auto" else int(intra_period)
    return Gop(structure, period * frames_per_step)


class SequenceEncoder(ABC):
    """One sequence at one rate point being encoded: `add` each frame in order, then `finish`."""

    @abstractmethod
    def add(self, image: torch.Tensor, front: FrontOutput) -> None:
        """Code one frame (its input image and the front's output; the codec takes what it needs)."""

    @abstractmethod
    def finish(self) -> bytes:
        """The sequence's whole payload."""

    def abort(self) -> None:  # noqa: B027 - a hook: only encoders with processes have anything to stop
        """Give up on the sequence (another frame failed): stop any running encoder."""


class FramewiseEncoder(SequenceEncoder):
    """The shared adapter of intra-only codecs: each frame coded alone, payloads concatenated."""

    def __init__(self, codec: Codec, rate: RatePoint, info: SequenceInfo):
        self.codec, self.rate, self.info = codec, rate, info
        self.parts: list[bytes] = []

    def add(self, image: torch.Tensor, front: FrontOutput) -> None:
        self.parts.append(self.codec.transmit_encode(image, front, self.rate))

    def finish(self) -> bytes:
        head = FRAMEWISE_TAG + bytes([FRAMEWISE_VERSION]) + uvarint(len(self.parts))
        return head + b"".join(uvarint(len(p)) + p for p in self.parts)


def framewise_decode(codec: Codec, payload: bytes, metas: Sequence[ImageMeta]) -> Iterator[Received]:
    """Inverse of FramewiseEncoder: each frame's Received, in order; PayloadError if malformed."""
    payload = bytes(payload)
    check_container(payload, 5, FRAMEWISE_TAG, FRAMEWISE_VERSION, codec.name)
    reader = Reader(memoryview(payload)[5:], codec.name)
    n = reader.uvarint()
    if n != len(metas):
        raise PayloadError(f"{codec.name}: payload holds {n} frames, the sequence has {len(metas)} (corrupt header)")
    for meta in metas:
        yield codec.transmit_decode(reader.take(reader.uvarint()), meta)
    if reader.remaining:
        raise PayloadError(f"{codec.name}: {reader.remaining} bytes after the last frame (corrupt payload)")


def sequence_head(tag: bytes, shapes, frames: int, names: Sequence[str] = LEVELS) -> bytes:
    """The start of a feature codec's own sequence payload: the container's shape table (with the
    tensors' names for a split other than p2..p5) with version SEQUENCE_VERSION, then the frame count
    (uvarint); the codec's fields follow."""
    return shape_table(tag, SEQUENCE_VERSION, shapes, names) + uvarint(frames)


def read_sequence_head(
    payload: bytes, tag: bytes, who: str, frames: int
) -> tuple[tuple[str, ...], list[tuple[int, int, int]], Reader]:
    """Inverse of `sequence_head` for a sequence of `frames` frames: (the tensors' names and shapes, a
    reader at the codec's fields); PayloadError for a header this decoder did not write or another
    frame count."""
    names, shapes, end = read_feature_table(payload, tag, SEQUENCE_VERSION, who)
    check_plausible(shapes, who)
    reader = Reader(memoryview(payload)[end:], who)
    n = reader.uvarint()
    if n != frames:
        raise PayloadError(f"{who}: payload holds {n} frames, the sequence has {frames} (corrupt header)")
    return names, shapes, reader


def frame_shapes(features, first: list[tuple[int, int, int]], who: str) -> list[tuple[int, int, int]]:
    """A sequence frame's tensor shapes (C, H, W) in the coding order (`feature_names`), checked:
    features of the split, and the same shapes as the sequence's first frame (`first`; empty at the
    first frame)."""
    check_features(features)
    shapes = [tuple(int(s) for s in features[k].shape) for k in feature_names(features)]
    if first and shapes != first:
        raise ShapeError(
            f"codec.{who}: a frame's features are {shapes}, the sequence's first were {first}; a sequence's "
            "frames must share one size"
        )
    return shapes


def decoded_frames(
    decoders: Sequence[Iterator[np.ndarray]], per_frame: Sequence[int], frames: int, who: str, family: str
) -> Iterator[list[np.ndarray]]:
    """Each of a sequence's `frames`, as the pictures its videos' decoders give for it (`per_frame[i]`
    from decoder i, stacked), with the checks every sequence decoder needs: a video that holds more or
    fewer pictures than the header says, or that does not decode, is a PayloadError naming `who`; the
    decoders are closed at the end, an early one included."""
    try:
        for _ in range(frames):
            yield [np.stack([next(d) for _ in range(n)]) for d, n in zip(decoders, per_frame, strict=True)]
        for d in decoders:  # each decoder checks its end: nothing left over, a clean exit
            for _ in d:
                raise PayloadError(f"{who}: a bitstream holds more frames than the header says")
    except ExternalCodecError as exc:
        raise PayloadError(f"{who}: the {family} bitstream does not decode: {exc}") from None
    except StopIteration:
        raise PayloadError(f"{who}: a bitstream holds fewer frames than the header says") from None
    finally:
        for d in decoders:
            d.close()


def needs_sequence_range(codec: Codec) -> bool:
    """Whether the codec's sequence mode needs SequenceInfo.ranges (a first pass over the frames)."""
    return bool(getattr(codec, "needs_sequence_range", False))


def describe_sequence_coding(codec: Codec) -> str:
    """How the codec codes a sequence, for the points table's `encoder` column: its GOP structure
    and intra period, or framewise (every frame coded on its own)."""
    if getattr(codec, "sequence_encoder", None) is None:
        return "framewise"
    period = getattr(codec, "intra_period", "auto")
    return f"{getattr(codec, 'sequence_gop', 'own')}, intra period {period}"


def open_sequence(codec: Codec, rate: RatePoint, info: SequenceInfo) -> SequenceEncoder:
    """The codec's own sequence encoder, or the framewise adapter for intra-only codecs."""
    own = getattr(codec, "sequence_encoder", None)
    return own(rate, info) if own is not None else FramewiseEncoder(codec, rate, info)


def decode_sequence(codec: Codec, payload: bytes, metas: Sequence[ImageMeta]) -> Iterator[Received]:
    """What reaches the receiver, frame by frame (the inverse of `open_sequence`'s payload)."""
    own = getattr(codec, "sequence_decode", None)
    return own(payload, metas) if own is not None else framewise_decode(codec, payload, metas)

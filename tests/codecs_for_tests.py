"""Codecs that misbehave on purpose, to test how the sweep survives them."""

from __future__ import annotations

import struct

import numpy as np
import torch

from vcmbench.codecs.base import Codec, Received
from vcmbench.codecs.raw import RawCodec


class CorruptingRaw(RawCodec):
    """raw whose payload gets one byte flipped in transit: decode must fail cleanly."""

    def encode(self, features, rate):
        payload = bytearray(super().encode(features, rate))
        payload[len(payload) // 2] ^= 0x5A
        return bytes(payload)


class CrashingRaw(RawCodec):
    """raw that kills the process-level sweep after `crash_after` encodes (a simulated crash)."""

    crash_after: int | None = None
    encodes = 0

    def encode(self, features, rate):
        type(self).encodes += 1
        if self.crash_after is not None and type(self).encodes > self.crash_after:
            raise KeyboardInterrupt("simulated crash")
        return super().encode(features, rate)


class FailingRaw(RawCodec):
    """raw whose encoder fails on portrait images only (as an external encoder might crash on
    one image): in the mini set's first two images, 000000000802.jpg is the portrait one."""

    def encode(self, features, rate):
        _, h, w = features["p2"].shape
        if h > w:
            raise RuntimeError("simulated encoder crash on a portrait image")
        return super().encode(features, rate)


class RawImage(Codec):
    """A codec of none of the three stock kinds: the image's uint8 samples, as they are.

    It only declares what it takes and implements the carrier interface, so a sweep that runs
    it shows the runner knows nothing else of codecs.
    """

    knob = "samples"
    takes = frozenset({"image"})

    def __init__(self, name: str = "raw_image"):
        super().__init__(name, ["uint8"])

    def transmit_encode(self, image, front, rate):
        _, h, w = image.shape
        return struct.pack(">HH", h, w) + image.numpy().tobytes()

    def transmit_decode(self, payload, meta):
        h, w = struct.unpack(">HH", payload[:4])
        pixels = np.frombuffer(payload[4:], np.uint8).reshape(3, h, w).copy()
        return Received(image=torch.from_numpy(pixels))


class RawWithWeights(RawCodec):
    """raw that names a file whose content shapes its output (as a trained checkpoint would)."""

    def __init__(self, name: str = "raw_w", weights: str = ""):
        super().__init__(name)
        self.weights = weights

    def files(self):
        from pathlib import Path

        return [Path(self.weights)]

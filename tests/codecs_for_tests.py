"""Codecs that misbehave on purpose, to test how the sweep survives them; fake external binaries."""

from __future__ import annotations

import stat
import struct
import sys
from pathlib import Path

import numpy as np
import torch

from vcmbench.codecs.base import Codec, Received
from vcmbench.codecs.frames import FrameCodec
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


class CrashingDecodeRaw(RawCodec):
    """raw whose decoder kills the sweep (a simulated crash on the receiver side, not a bad payload)."""

    def _decode_body(self, body, shapes):
        raise KeyboardInterrupt("simulated crash while decoding")


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


class WastefulFrameCodec(FrameCodec):
    """A real frame codec (the anchor's quantiser, tiling and VVC) whose payload also carries
    `waste` times its size in padding: a deliberately worse codec with the same decoded
    features, so its BD-rate is exactly +100 x waste % on every image set."""

    def __init__(self, *args, waste: float = 0.25, **kwargs):
        super().__init__(*args, **kwargs)
        self.waste = float(waste)

    def describe_encoder(self) -> str:
        return f"{super().describe_encoder()} + {self.waste:.0%} padding"

    def transmit_encode(self, image, front, rate):
        payload = super().transmit_encode(image, front, rate)
        return struct.pack(">I", len(payload)) + payload + bytes(int(len(payload) * self.waste))

    def transmit_decode(self, payload, meta):
        (n,) = struct.unpack(">I", payload[:4])
        return super().transmit_decode(payload[4 : 4 + n], meta)


def executable_script(path: Path, body: str) -> Path:
    """A Python script at `path`, executable: a stand-in for an external binary (ffmpeg, VTM)."""
    path.write_text(f"#!{sys.executable}\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


FAKE_ENCODER = r"""
import json, struct, sys, zlib
args = sys.argv[1:]
opts = {}
i = 0
while i < len(args):
    a = args[i]
    if a.startswith("--"):
        k, _, v = a[2:].partition("=")
        opts[k] = v
        i += 1
    else:
        opts[a] = args[i + 1]
        i += 2
json.dump({"argv": sys.argv[1:], "opts": opts}, open(LOG, "w"))
w, h, n = int(opts["SourceWidth"]), int(opts["SourceHeight"]), int(opts["FramesToBeEncoded"])
chroma = opts["InputChromaFormat"]
assert chroma in ("400", "420") and opts["ChromaFormatIDC"] == chroma
raw = open(opts["-i"], "rb").read()
frame = w * h * 2 + (0 if chroma == "400" else 2 * 2 * ((h + 1) // 2) * ((w + 1) // 2))
assert len(raw) == frame * n, (len(raw), w, h, n, chroma)
magic = b"FVTM" if chroma == "400" else b"FV42"  # 4:2:0 (colour pictures): every plane kept
open(opts["-b"], "wb").write(magic + struct.pack(">HHH", w, h, n) + zlib.compress(raw))
print("fake VTM encoder done")
"""

FAKE_DECODER = r"""
import struct, sys, zlib
import numpy as np
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
data = open(args["-b"], "rb").read()
if data[:4] == b"FV42":  # 4:2:0: written back as coded
    open(args["-o"], "wb").write(zlib.decompress(data[10:]))
    sys.exit(0)
if data[:4] != b"FVTM":
    print("Error: not a bitstream", file=sys.stderr)
    sys.exit(1)
w, h, n = struct.unpack(">HHH", data[4:10])
y = np.frombuffer(zlib.decompress(data[10:]), "<u2").reshape(n, h, w)
with open(args["-o"], "wb") as f:
    for frame in y:
        f.write(frame.tobytes())
        if AS_420:
            f.write(np.full(2 * ((h + 1) // 2) * ((w + 1) // 2), 512, "<u2").tobytes())
"""


def fake_vtm(tmp_path: Path, as_420: bool = False) -> tuple[Path, Path, Path]:
    log = tmp_path / "encoder_args.json"
    enc = executable_script(tmp_path / "EncoderApp", f"LOG = {str(log)!r}\n" + FAKE_ENCODER)
    dec = executable_script(tmp_path / "DecoderApp", f"AS_420 = {as_420}\n" + FAKE_DECODER)
    return enc, dec, log


class HeaderOverwrittenFrames(FrameCodec):
    """A feature codec (the anchor's frames) whose container header is overwritten after
    encoding: P5's width field says 2. The payload still decodes, to features the back rejects
    (ShapeError), which must cost this item only."""

    def encode(self, features, rate):
        payload = bytearray(super().encode(features, rate))
        p5_width = 6 + 6 * 3 + 4  # tag, version, level count; three (C, H, W) before P5's; C, H
        payload[p5_width : p5_width + 2] = struct.pack(">H", 2)
        return bytes(payload)

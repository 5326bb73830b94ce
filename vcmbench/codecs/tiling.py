"""Mosaic packing, uniform quantisation and payload-header helpers shared by anchor and packing.

Tiling (MPEG-VCM EE1.2 anchor): the channels of one level are laid out in raster order
(channel k at grid row k // cols, column k % cols) in a rows x cols grid; for 256
channels the grids are P2 16x16, P3 8x32, P4 4x64, P5 2x128, so every level's mosaic
is 16 x W(p2) wide, and the four mosaics are stacked vertically (p2 on top) into one
frame. Other channel counts use the same rule generalised (`default_grid`): a near-square
grid for p2 (rows = the largest divisor of C not above sqrt(C), or ceil(sqrt(C)) when that
divisor would make the grid more than 4x wider than tall) and half as many rows per level
after it. Tiles left over when rows x cols > C, and the right of a level mosaic narrower
than the frame, hold the mid sample value.

Quantisation: uniform with 2**bits levels between a minimum and a maximum,
q = round((x - lo) / (hi - lo) * (2**bits - 1)) clipped; the inverse is exact at the
level centres, so the error of an in-range value is at most half a step
(hi - lo) / (2**bits - 1) / 2.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vcmbench.errors import ConfigError, PayloadError, ShapeError

# ------------------------------------------------------------------------------- grids

#: EE1.2 anchor grids (rows, cols) for 256-channel p2..p5
MPEG_GRIDS_256 = ((16, 16), (8, 32), (4, 64), (2, 128))


def near_square_rows(channels: int) -> int:
    """Rows of the near-square grid for `channels` tiles (16 for 256)."""
    if channels <= 0:
        raise ShapeError(f"cannot tile {channels} channels")
    root = math.isqrt(channels)
    best = max(d for d in range(1, root + 1) if channels % d == 0)
    if channels // best > 4 * best:  # e.g. a prime: a divisor grid would be one long row
        return math.ceil(math.sqrt(channels))
    return best


def default_grid(channels: int, level_index: int) -> tuple[int, int]:
    """(rows, cols) for level `level_index` (0 = p2): the EE1.2 grids for 256 channels."""
    rows = max(1, math.ceil(near_square_rows(channels) / (1 << level_index)))
    rows = min(rows, channels)
    return rows, math.ceil(channels / rows)


def tile(x: np.ndarray, rows: int, cols: int, fill: int = 0) -> np.ndarray:
    """(C, H, W) -> (rows*H, cols*W) mosaic, channels in raster order, spare tiles = fill."""
    c, h, w = x.shape
    if rows * cols < c:
        raise ShapeError(f"a {rows}x{cols} grid cannot hold {c} channels")
    full = np.full((rows * cols, h, w), fill, dtype=x.dtype)
    full[:c] = x
    return full.reshape(rows, cols, h, w).transpose(0, 2, 1, 3).reshape(rows * h, cols * w)


def untile(m: np.ndarray, channels: int, h: int, w: int, rows: int, cols: int) -> np.ndarray:
    """Inverse of `tile`: (>= rows*H, >= cols*W) mosaic -> (C, H, W)."""
    m = m[: rows * h, : cols * w]
    if m.shape != (rows * h, cols * w):
        raise ShapeError(f"mosaic {m.shape} is smaller than a {rows}x{cols} grid of {h}x{w} tiles")
    return m.reshape(rows, h, cols, w).transpose(0, 2, 1, 3).reshape(rows * cols, h, w)[:channels]


@dataclass(frozen=True)
class MosaicLayout:
    """Where each level's mosaic sits in the stacked frame."""

    shapes: tuple[tuple[int, int, int], ...]  # (C, H, W) per level
    grids: tuple[tuple[int, int], ...]  # (rows, cols) per level

    @classmethod
    def for_shapes(cls, shapes: Sequence[Sequence[int]], grids: Sequence[Sequence[int]] | None = None) -> MosaicLayout:
        shapes = tuple(tuple(int(v) for v in s) for s in shapes)
        if grids is None:
            grids = [default_grid(s[0], i) for i, s in enumerate(shapes)]
        grids = tuple((int(r), int(c)) for r, c in grids)
        for s, (r, c) in zip(shapes, grids):
            if r <= 0 or c <= 0 or r * c < s[0]:
                raise ShapeError(f"a {r}x{c} grid cannot hold {s[0]} channels")
        return cls(shapes, grids)

    def level_size(self, i: int) -> tuple[int, int]:
        (_c, h, w), (r, k) = self.shapes[i], self.grids[i]
        return r * h, k * w

    @property
    def frame_size(self) -> tuple[int, int]:
        sizes = [self.level_size(i) for i in range(len(self.shapes))]
        return sum(s[0] for s in sizes), max(s[1] for s in sizes)

    def pack_level(self, i: int, x: np.ndarray, fill: int) -> np.ndarray:
        r, c = self.grids[i]
        return tile(x, r, c, fill)

    def unpack_level(self, i: int, m: np.ndarray) -> np.ndarray:
        (c, h, w), (r, k) = self.shapes[i], self.grids[i]
        return untile(m, c, h, w, r, k)

    def pack(self, levels: Sequence[np.ndarray], fill: int) -> np.ndarray:
        """Level arrays (C, H, W) -> one frame: the level mosaics stacked vertically, left-aligned."""
        fh, fw = self.frame_size
        frame = np.full((fh, fw), fill, dtype=levels[0].dtype)
        y = 0
        for i, x in enumerate(levels):
            if tuple(x.shape) != self.shapes[i]:
                raise ShapeError(f"level {i} has shape {tuple(x.shape)}, layout expects {self.shapes[i]}")
            m = self.pack_level(i, x, fill)
            frame[y : y + m.shape[0], : m.shape[1]] = m
            y += m.shape[0]
        return frame

    def unpack(self, frame: np.ndarray) -> list[np.ndarray]:
        if tuple(frame.shape) != self.frame_size:
            raise ShapeError(f"frame {tuple(frame.shape)} does not match the layout's {self.frame_size}")
        out, y = [], 0
        for i in range(len(self.shapes)):
            h, w = self.level_size(i)
            out.append(self.unpack_level(i, frame[y : y + h, :w]))
            y += h
        return out


# ------------------------------------------------------------------------ quantisation


def levels_of(bits: int) -> int:
    return (1 << bits) - 1


def quantize(x: np.ndarray, lo: float, hi: float, bits: int) -> np.ndarray:
    """Uniform `bits`-bit quantisation of x between lo and hi -> uint16 in [0, 2**bits - 1]."""
    m = levels_of(bits)
    lo32, hi32 = np.float32(lo), np.float32(hi)
    span = np.float64(hi32) - np.float64(lo32)
    if not span > 0:
        return np.zeros(x.shape, np.uint16)
    q = np.rint((x.astype(np.float64) - np.float64(lo32)) / span * m)
    return np.clip(q, 0, m).astype(np.uint16)


def dequantize(q: np.ndarray, lo: float, hi: float, bits: int) -> np.ndarray:
    """Inverse of `quantize` (level centres) -> float32."""
    m = levels_of(bits)
    lo32, hi32 = np.float64(np.float32(lo)), np.float64(np.float32(hi))
    return (q.astype(np.float64) / m * (hi32 - lo32) + lo32).astype(np.float32)


def quant_step(lo: float, hi: float, bits: int) -> float:
    return (float(np.float32(hi)) - float(np.float32(lo))) / levels_of(bits)


RANGE_MODES = ("global", "per_image", "per_level")
_RANGE_IDS = {m: i for i, m in enumerate(RANGE_MODES)}


def check_range_mode(mode: str, setting: str) -> str:
    if mode not in RANGE_MODES:
        raise ConfigError(f"{setting}={mode!r}: choose one of {list(RANGE_MODES)}")
    return mode


def check_finite(levels: Sequence[np.ndarray]) -> None:
    """ShapeError for NaN or infinite features: no range, and no quantiser, can take them."""
    for x in levels:
        if not np.isfinite(x).all():
            raise ShapeError("features contain NaN or infinite values; they cannot be quantised")


def compute_ranges(
    levels: Sequence[np.ndarray], mode: str, global_min: float, global_max: float
) -> list[tuple[float, float]]:
    """(lo, hi) per level as float32 values, for range mode `mode`."""
    check_finite(levels)
    if mode == "global":
        pairs = [(global_min, global_max)] * len(levels)
    elif mode == "per_image":
        lo = min(float(x.min()) for x in levels)
        hi = max(float(x.max()) for x in levels)
        pairs = [(lo, hi)] * len(levels)
    else:
        pairs = [(float(x.min()), float(x.max())) for x in levels]
    return [(float(np.float32(a)), float(np.float32(b))) for a, b in pairs]


def pack_ranges(mode: str, ranges: Sequence[tuple[float, float]]) -> bytes:
    """float32 (lo, hi) once (global, per_image) or per level (per_level)."""
    pairs = ranges if mode == "per_level" else ranges[:1]
    return b"".join(struct.pack(">ff", lo, hi) for lo, hi in pairs)


def unpack_ranges(reader: Reader, mode: str, n_levels: int) -> list[tuple[float, float]]:
    count = n_levels if mode == "per_level" else 1
    pairs = []
    for _ in range(count):
        lo, hi = struct.unpack(">ff", reader.take(8))
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise PayloadError(f"{reader.who}: quantisation range ({lo}, {hi}) is not a valid range (corrupt header)")
        pairs.append((lo, hi))
    return pairs if mode == "per_level" else pairs * n_levels


# ------------------------------------------------------------------------ header bytes


def mode_byte(range_mode: str, flags: int = 0) -> int:
    """Bits 0-1: range mode; bits 2-7: codec-specific flags."""
    return _RANGE_IDS[range_mode] | (flags << 2)


def split_mode_byte(b: int, who: str) -> tuple[str, int]:
    rid = b & 3
    if rid >= len(RANGE_MODES):
        raise PayloadError(f"{who}: unknown quantisation range mode {rid} (corrupt header)")
    return RANGE_MODES[rid], b >> 2


def coding_byte(bits: int, family_id: int) -> int:
    """Bits 4-7: sample bits - 1; bits 0-3: inner codec family id."""
    return ((bits - 1) << 4) | family_id


def split_coding_byte(b: int) -> tuple[int, int]:
    return (b >> 4) + 1, b & 15


def uvarint(n: int) -> bytes:
    """LEB128 unsigned varint."""
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class Reader:
    """Cursor over a payload body; every read past the end is a PayloadError naming the codec."""

    def __init__(self, data: bytes | memoryview, who: str):
        self.data = bytes(data)
        self.pos = 0
        self.who = who

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise PayloadError(f"{self.who}: payload truncated (needed {n} more bytes at offset {self.pos})")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def uvarint(self) -> int:
        n, shift = 0, 0
        while True:
            b = self.u8()
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return n
            shift += 7
            if shift > 35:
                raise PayloadError(f"{self.who}: malformed length field (corrupt payload)")

    def rest(self) -> bytes:
        out = self.data[self.pos :]
        self.pos = len(self.data)
        return out

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos


def pack_streams(streams: Sequence[bytes]) -> bytes:
    """Length-prefixed (uvarint) streams; the last one runs to the end of the payload."""
    return b"".join(uvarint(len(s)) + s for s in streams[:-1]) + streams[-1]


def unpack_streams(reader: Reader, count: int) -> list[bytes]:
    out = [reader.take(reader.uvarint()) for _ in range(count - 1)]
    out.append(reader.rest())
    if any(len(s) == 0 for s in out):
        raise PayloadError(f"{reader.who}: payload truncated (an empty bitstream)")
    return out


def pack_order(order: np.ndarray) -> bytes:
    """A channel permutation in ceil(log2 C) bits per entry, padded to a whole byte."""
    c = len(order)
    nbits = max(1, (c - 1).bit_length())
    bits = ((order[:, None].astype(np.int64) >> np.arange(nbits - 1, -1, -1)) & 1).astype(np.uint8)
    return np.packbits(bits.reshape(-1)).tobytes()


def order_bytes(channels: int) -> int:
    return (channels * max(1, (channels - 1).bit_length()) + 7) // 8


def unpack_order(reader: Reader, channels: int) -> np.ndarray:
    nbits = max(1, (channels - 1).bit_length())
    raw = np.frombuffer(reader.take(order_bytes(channels)), np.uint8)
    bits = np.unpackbits(raw)[: channels * nbits].reshape(channels, nbits).astype(np.int64)
    order = (bits << np.arange(nbits - 1, -1, -1)).sum(axis=1)
    if not np.array_equal(np.sort(order), np.arange(channels)):
        raise PayloadError(f"{reader.who}: channel order in the payload is not a permutation (corrupt header)")
    return order


#: refuse payloads whose shape table asks for more samples than this (corrupt headers)
MAX_SAMPLES = 1 << 30


def check_plausible(shapes: Sequence[Sequence[int]], who: str) -> None:
    total = sum(int(np.prod(s)) for s in shapes)
    if total > MAX_SAMPLES:
        raise PayloadError(
            f"{who}: shape table asks for {total} samples, over the {MAX_SAMPLES} limit (corrupt header)"
        )

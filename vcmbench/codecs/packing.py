"""Channel-packing baselines of Duan et al. 2020 ("Video Coding for Machines: A Paradigm of
Collaborative Compression and Intelligent Analytics", IEEE TIP), over a real inner codec.

- `pack_concat` (method=concat): default channel concatenation. Each channel of a level
  is one frame, in channel order; each level is one video (its frames share a size),
  coded intra-only (`gop: intra`) or with inter prediction (`gop: inter`).
- `pack_diff` (method=diff): channel concatenation by descending difference. The same
  videos with the channels reordered so that neighbouring frames differ least: a greedy
  chain on the pairwise mean squared difference of the quantised channels, starting
  from the channel farthest from all others. The order is side information in the
  payload (ceil(log2 C) bits per channel and level) and counted.
- `pack_tile` (method=tile): channel tiling. One mosaic per level (`tiles: per_level`,
  four frames) or all levels stacked in one frame (`tiles: stacked`, the anchor's frame),
  coded as an image / intra frame.

Quantisation is the anchor's uniform `bits`-bit one (`vcmbench.codecs.tiling`). The
rate knob is the inner codec's: `qp` (vvc, vtm, hevc, svtav1), `crf` (hevc, av1, svtav1),
`q` (jpeg), or `bits` (lossless inner codec - ffv1, png, hevc, av1 - with the rate set
by the quantisation depth).

Payload (after the 30-byte container header):

    mode     u8   bits 0-1 range mode (0 global, 1 per_image, 2 per_level); bit 2 inter; bit 3 stacked
    coding   u8   bits 4-7 sample bits - 1; bits 0-3 inner bitstream family (1 VVC, 2 HEVC, 3 AV1, 4 FFV1, 5 PNG, 6 JPEG)
    range    2 x f32, or 4 pairs for per_level
    order    pack_diff only: per level, C entries of ceil(log2 C) bits, byte-aligned per level
    streams  one per level (one when stacked): uvarint byte length before each but the last

Frame counts and sizes follow from the shape table (C frames of H x W per level for
concat/diff, one mosaic per level or one stacked frame for tile), so they are not repeated.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from vcmbench.codecs.anchor import (
    EE12_OPENIMAGES_RANGE,
    check_rate_points,
    configure_rate,
    sample_depth,
    to_numpy_levels,
)
from vcmbench.codecs.base import FeatureCodec, RatePoint
from vcmbench.codecs.external import make_backend
from vcmbench.codecs.tiling import (
    MosaicLayout,
    Reader,
    check_plausible,
    check_range_mode,
    coding_byte,
    compute_ranges,
    dequantize,
    mode_byte,
    pack_order,
    pack_ranges,
    pack_streams,
    quantize,
    split_coding_byte,
    split_mode_byte,
    unpack_order,
    unpack_ranges,
    unpack_streams,
)
from vcmbench.errors import ConfigError, ExternalCodecError, PayloadError, ShapeError
from vcmbench.vision.base import LEVELS, Features

METHODS = {"concat": b"PKCC", "diff": b"PKCD", "tile": b"PKTL"}
_INTER, _STACKED = 1, 2

_DEFAULT_RATES = {
    "qp": (32, 37, 42, 47),
    "crf": (24, 30, 36, 42),
    "q": (2, 5, 10, 20),
    "bits": (4, 6, 8, 10),
}


def greedy_chain(frames: np.ndarray) -> np.ndarray:
    """Channel order in which neighbours differ least: start at the channel farthest from all
    others, then repeatedly append the nearest unused one (mean squared difference)."""
    c = frames.shape[0]
    if c <= 2:
        return np.arange(c)
    x = frames.reshape(c, -1).astype(np.float64)
    sq = (x * x).sum(axis=1)
    d = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    np.maximum(d, 0.0, out=d)
    order = [int(np.argmax(d.sum(axis=1)))]
    used = np.zeros(c, bool)
    used[order[0]] = True
    for _ in range(c - 1):
        row = np.where(used, np.inf, d[order[-1]])
        nxt = int(np.argmin(row))
        order.append(nxt)
        used[nxt] = True
    return np.asarray(order, dtype=np.int64)


class PackingCodec(FeatureCodec):
    """Duan et al. 2020 channel packing (concat | diff | tile) over an external codec."""

    version = 1

    def __init__(
        self,
        name: str = "pack_concat",
        method: str = "concat",
        inner: str = "hevc",
        knob: str = "qp",
        rates: Sequence[object] | None = None,
        gop: str = "inter",
        tiles: str = "per_level",
        range: str = "per_image",
        global_min: float = EE12_OPENIMAGES_RANGE[0],
        global_max: float = EE12_OPENIMAGES_RANGE[1],
        bits: int = 10,
        preset: object = None,
        ffmpeg: str | None = None,
        threads: int | None = None,
        timeout_s: float | None = None,
        extra_args: Sequence[str] = (),
        encoder_app: str | None = None,
        decoder_app: str | None = None,
        vtm_cfg: str | None = None,
        x265: str | None = None,
    ):
        setting = f"codec.{name}"
        if method not in METHODS:
            raise ConfigError(f"{setting}.method={method!r}: choose one of {sorted(METHODS)}")
        if gop not in ("intra", "inter"):
            raise ConfigError(f"{setting}.gop={gop!r}: choose intra or inter")
        if tiles not in ("per_level", "stacked"):
            raise ConfigError(f"{setting}.tiles={tiles!r}: choose per_level or stacked")
        if not global_min < global_max:
            raise ConfigError(f"{setting}.global_min={global_min} must be below global_max={global_max}")
        self.method = method
        self.tag = METHODS[method]
        self.inter = gop == "inter" and method != "tile"
        self.stacked = tiles == "stacked" and method == "tile"
        self.range_mode = check_range_mode(range, f"{setting}.range")
        self.global_min, self.global_max = float(global_min), float(global_max)
        self.bits = int(bits)
        self.knob = str(knob)
        self.inner = inner
        self.backend = make_backend(
            inner, name, setting, ffmpeg=ffmpeg, preset=preset, timeout_s=timeout_s, threads=threads,
            extra_args=extra_args, encoder_app=encoder_app, decoder_app=decoder_app, vtm_cfg=vtm_cfg,
            x265=x265,
        )
        self.backend_knob = configure_rate(self.backend, self.knob, self.bits, setting)
        super().__init__(name, rates)
        check_rate_points(self.backend, self.backend_knob, self.rates, setting)

    def default_rates(self) -> Sequence[object]:
        return _DEFAULT_RATES.get(self.knob, ())

    def _bits_for(self, rate: RatePoint) -> int:
        return int(rate.value) if self.knob == "bits" else self.bits

    @property
    def n_streams(self) -> int:
        return 1 if self.stacked else len(LEVELS)

    # -- encode ---------------------------------------------------------------------------
    def _encode_body(self, features: Features, rate: RatePoint, shapes) -> bytes:
        bits = self._bits_for(rate)
        if not 1 <= bits <= 10:
            raise ConfigError(f"codec.{self.name}: rate bits={bits} outside 1..10")
        depth = sample_depth(bits)
        value = None if self.knob == "bits" else rate.value
        levels = to_numpy_levels(features)
        ranges = compute_ranges(levels, self.range_mode, self.global_min, self.global_max)
        q = [quantize(x, lo, hi, bits) for x, (lo, hi) in zip(levels, ranges)]
        flags = (_INTER if self.inter else 0) | (_STACKED if self.stacked else 0)
        head = bytes([mode_byte(self.range_mode, flags), coding_byte(bits, self.backend.family_id)])
        head += pack_ranges(self.range_mode, ranges)
        fill = 1 << (bits - 1)
        if self.method == "tile":
            layout = MosaicLayout.for_shapes(shapes)
            if self.stacked:
                videos = [layout.pack(q, fill)[None]]
            else:
                videos = [layout.pack_level(i, x, fill)[None] for i, x in enumerate(q)]
        else:
            if self.method == "diff":
                orders = [greedy_chain(x) for x in q]
                head += b"".join(pack_order(o) for o in orders)
                q = [x[o] for x, o in zip(q, orders)]
            videos = q
        streams = [self.backend.encode(v, depth, self.backend_knob, value, intra=not self.inter) for v in videos]
        return head + pack_streams(streams)

    # -- decode ---------------------------------------------------------------------------
    def _decode_body(self, body, shapes) -> Features:
        check_plausible(shapes, self.name)
        r = Reader(body, self.name)
        range_mode, flags = split_mode_byte(r.u8(), self.name)
        if flags & ~(_INTER | _STACKED) or (flags & _STACKED and self.method != "tile"):
            raise PayloadError(f"{self.name}: unknown header flags {flags:#x} (corrupt header)")
        bits, family = split_coding_byte(r.u8())
        if family != self.backend.family_id:
            raise PayloadError(
                f"{self.name}: payload holds a bitstream of family {family}, this decoder reads "
                f"{self.backend.family} ({self.backend.family_id}); it was made by another codec"
            )
        if bits > 10:
            raise PayloadError(f"{self.name}: payload says {bits}-bit samples, at most 10 are written (corrupt header)")
        depth = sample_depth(bits)
        ranges = unpack_ranges(r, range_mode, len(shapes))
        orders = [unpack_order(r, s[0]) for s in shapes] if self.method == "diff" else None
        stacked = bool(flags & _STACKED)
        streams = unpack_streams(r, 1 if stacked else len(shapes))
        try:
            q = self._decode_streams(streams, shapes, depth, stacked)
        except ExternalCodecError as exc:
            raise PayloadError(f"{self.name}: the {self.backend.family} bitstream does not decode: {exc}") from None
        except ShapeError as exc:
            raise PayloadError(f"{self.name}: {exc} (corrupt header)") from None
        if orders is not None:
            restored = []
            for x, o in zip(q, orders):
                y = np.empty_like(x)
                y[o] = x
                restored.append(y)
            q = restored
        m = (1 << bits) - 1
        return {
            lvl: torch.from_numpy(dequantize(np.minimum(x, m), lo, hi, bits))
            for lvl, x, (lo, hi) in zip(LEVELS, q, ranges)
        }

    def _decode_streams(self, streams, shapes, depth, stacked) -> list[np.ndarray]:
        if self.method != "tile":
            return [self.backend.decode(s, tuple(shape), depth) for s, shape in zip(streams, shapes)]
        layout = MosaicLayout.for_shapes(shapes)
        if stacked:
            fh, fw = layout.frame_size
            return layout.unpack(self.backend.decode(streams[0], (1, fh, fw), depth)[0])
        out = []
        for i, s in enumerate(streams):
            h, w = layout.level_size(i)
            out.append(layout.unpack_level(i, self.backend.decode(s, (1, h, w), depth)[0]))
        return out

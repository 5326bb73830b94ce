"""The MPEG-VCM feature anchor (137th MPEG EE1.2): tile, quantise to 10 bits, code as one intra frame.

p2..p5 are tiled in raster order (256 channels: grids 16x16, 8x32, 4x64, 2x128) and the
level mosaics stacked vertically into one frame (`vcmbench.codecs.tiling`), quantised
uniformly to 10 bits between a minimum and a maximum, and coded all-intra by a real
codec: libvvenc through ffmpeg (`anchor_vvc`), libx265 (`anchor_hevc`) or the VTM
reference software at user-supplied paths (`anchor_vtm`, the EE1.2 codec).

Range modes: `global` uses fixed constants from the config (EE1.2 for OpenImages
detection: -22.3948 / 20.3891), `per_image` the image's own min/max over all levels,
`per_level` one min/max per level. The range actually used is always written into the
payload (float32), so the decoder needs nothing else.

Payload (after the container header of `vcmbench.codecs.base`, 30 bytes):

    mode     u8   bits 0-1 range mode (0 global, 1 per_image, 2 per_level); bit 2 explicit grid
    coding   u8   bits 4-7 sample bits - 1 (10-bit: 9); bits 0-3 bitstream family (1 VVC, 2 HEVC, ...)
    range    2 x f32 (lo, hi), or 4 pairs for per_level
    grid     4 x uvarint rows per level, only with the explicit-grid bit (else the EE1.2 rule)
    stream   the codec's bitstream, every byte it wrote, to the end of the payload
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from vcmbench.codecs.base import FeatureCodec, RatePoint
from vcmbench.codecs.external import ExternalCodec, make_backend
from vcmbench.codecs.tiling import (
    MosaicLayout,
    Reader,
    check_plausible,
    check_range_mode,
    coding_byte,
    compute_ranges,
    dequantize,
    mode_byte,
    pack_ranges,
    quantize,
    split_coding_byte,
    split_mode_byte,
    unpack_ranges,
    uvarint,
)
from vcmbench.errors import ConfigError, ExternalCodecError, PayloadError, ShapeError
from vcmbench.vision.base import LEVELS, Features

#: EE1.2 global range for OpenImages detection features (Faster R-CNN X101-FPN, detectron2)
EE12_OPENIMAGES_RANGE = (-22.3948, 20.3891)
MPEG_QPS = (35, 37, 39, 41, 43, 45)

_EXPLICIT_GRID = 1


def sample_depth(bits: int) -> int:
    """Container depth of the frames for `bits`-bit quantised values."""
    return 8 if bits <= 8 else 10


def to_numpy_levels(features: Features) -> list[np.ndarray]:
    return [features[k].detach().to("cpu", torch.float32).numpy() for k in LEVELS]


def configure_rate(backend: ExternalCodec, knob: str, bits: int, setting: str) -> str:
    """Check knob against the back-end; return the back-end knob ('bits' codes losslessly)."""
    if not 1 <= bits <= 10:
        raise ConfigError(f"{setting}.bits={bits}: choose 1..10 bits per quantised value")
    backend.check_bitdepth(sample_depth(bits))
    if knob == "bits":
        if "lossless" not in backend.knobs:
            raise ConfigError(
                f"{setting}.knob=bits needs a lossless inner codec (ffv1, png, hevc, av1); "
                f"{backend.family} takes {list(backend.knobs)}"
            )
        return "lossless"
    backend.check_rate(knob)
    return knob


def check_rate_points(backend: ExternalCodec, backend_knob: str, rates: Sequence[RatePoint], setting: str) -> None:
    """Every rate point's value within the back-end's range (bits points are checked by the codec)."""
    if backend_knob != "lossless":
        for rp in rates:
            backend.check_rate(backend_knob, rp.value, f"{setting}.rates")


class AnchorCodec(FeatureCodec):
    """EE1.2 anchor over an external codec; knob `qp` (or `bits`: lossless inner coding at that depth)."""

    tag = b"ANCH"
    version = 1
    knob = "qp"

    def __init__(
        self,
        name: str = "anchor_vvc",
        inner: str = "vvc",
        rates: Sequence[object] | None = None,
        knob: str = "qp",
        range: str = "per_image",
        global_min: float = EE12_OPENIMAGES_RANGE[0],
        global_max: float = EE12_OPENIMAGES_RANGE[1],
        bits: int = 10,
        grid: Sequence[int] | None = None,
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
        self.range_mode = check_range_mode(range, f"{setting}.range")
        if not global_min < global_max:
            raise ConfigError(f"{setting}.global_min={global_min} must be below global_max={global_max}")
        self.global_min, self.global_max = float(global_min), float(global_max)
        self.bits = int(bits)
        self.grid_rows = None if grid is None else [int(r) for r in grid]
        if self.grid_rows is not None and (len(self.grid_rows) != len(LEVELS) or min(self.grid_rows) < 1):
            raise ConfigError(f"{setting}.grid={list(grid)}: give {len(LEVELS)} positive row counts, one per level")
        self.knob = str(knob)
        self.backend = make_backend(
            inner, name, setting, ffmpeg=ffmpeg, preset=preset, timeout_s=timeout_s, threads=threads,
            extra_args=extra_args, encoder_app=encoder_app, decoder_app=decoder_app, vtm_cfg=vtm_cfg,
            x265=x265,
        )
        self.inner = inner
        self.backend_knob = configure_rate(self.backend, self.knob, self.bits, setting)
        super().__init__(name, rates)
        check_rate_points(self.backend, self.backend_knob, self.rates, setting)

    def default_rates(self) -> Sequence[object]:
        return (self.bits,) if self.knob == "bits" else MPEG_QPS

    def _bits_for(self, rate: RatePoint) -> int:
        return int(rate.value) if self.knob == "bits" else self.bits

    def _layout(self, shapes, rows: Sequence[int] | None) -> MosaicLayout:
        grids = None
        if rows is not None:
            grids = [(r, -(-s[0] // r)) for r, s in zip(rows, shapes)]
        return MosaicLayout.for_shapes(shapes, grids)

    # -- encode ---------------------------------------------------------------------------
    def _encode_body(self, features: Features, rate: RatePoint, shapes) -> bytes:
        bits = self._bits_for(rate)
        if not 1 <= bits <= 10:
            raise ConfigError(f"codec.{self.name}: rate bits={bits} outside 1..10")
        levels = to_numpy_levels(features)
        ranges = compute_ranges(levels, self.range_mode, self.global_min, self.global_max)
        layout = self._layout(shapes, self.grid_rows)
        q = [quantize(x, lo, hi, bits) for x, (lo, hi) in zip(levels, ranges)]
        frame = layout.pack(q, fill=1 << (bits - 1))
        stream = self.backend.encode(frame[None], sample_depth(bits), self.backend_knob,
                                     None if self.knob == "bits" else rate.value, intra=True)
        flags = _EXPLICIT_GRID if self.grid_rows is not None else 0
        head = bytes([mode_byte(self.range_mode, flags), coding_byte(bits, self.backend.family_id)])
        head += pack_ranges(self.range_mode, ranges)
        if self.grid_rows is not None:
            head += b"".join(uvarint(r) for r in self.grid_rows)
        return head + stream

    # -- decode ---------------------------------------------------------------------------
    def _decode_body(self, body, shapes) -> Features:
        check_plausible(shapes, self.name)
        r = Reader(body, self.name)
        range_mode, flags = split_mode_byte(r.u8(), self.name)
        if flags & ~_EXPLICIT_GRID:
            raise PayloadError(f"{self.name}: unknown header flags {flags:#x} (corrupt header)")
        bits, family = split_coding_byte(r.u8())
        if family != self.backend.family_id:
            raise PayloadError(
                f"{self.name}: payload holds a bitstream of family {family}, this decoder reads "
                f"{self.backend.family} ({self.backend.family_id}); it was made by another codec"
            )
        if bits > 10:
            raise PayloadError(f"{self.name}: payload says {bits}-bit samples, at most 10 are written (corrupt header)")
        ranges = unpack_ranges(r, range_mode, len(shapes))
        rows = None
        if flags & _EXPLICIT_GRID:
            rows = [r.uvarint() for _ in shapes]
            if min(rows) < 1 or any(rw > s[0] for rw, s in zip(rows, shapes)):
                raise PayloadError(f"{self.name}: grid rows {rows} do not fit the shape table (corrupt header)")
        try:
            layout = self._layout(shapes, rows)
        except ShapeError as exc:
            raise PayloadError(f"{self.name}: {exc} (corrupt header)") from None
        stream = r.rest()
        if not stream:
            raise PayloadError(f"{self.name}: payload truncated before the bitstream")
        fh, fw = layout.frame_size
        try:
            frame = self.backend.decode(stream, (1, fh, fw), sample_depth(bits))[0]
        except ExternalCodecError as exc:
            raise PayloadError(f"{self.name}: the {self.backend.family} bitstream does not decode: {exc}") from None
        frame = np.minimum(frame, (1 << bits) - 1)
        out = {}
        for lvl, q, (lo, hi) in zip(LEVELS, layout.unpack(frame), ranges):
            out[lvl] = torch.from_numpy(dequantize(q, lo, hi, bits))
        return out

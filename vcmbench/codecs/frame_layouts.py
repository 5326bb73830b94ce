"""Frame layouts of the frame codecs (`vcmbench.codecs.frames`): where the quantised samples go.

A layout turns the four quantised levels into videos of (N, H, W) samples for a frame back-end,
writes the side information its decoder needs, and puts the decoded samples back:

- `StackedMosaic` (EE1.2: each level's channels tiled in raster order, the mosaics stacked
  into one frame);
- `LevelMosaics` (one mosaic frame per level, or stacked);
- `ChannelFrames` (one frame per channel, each level one video; channel order as given or
  reordered by a greedy nearest-neighbour chain, `greedy_chain`).

Layout flags (bits 2-7 of the payload's mode byte): StackedMosaic bit 0 = explicit grid;
LevelMosaics bit 0 = inter (never set; accepted), bit 1 = stacked; ChannelFrames bit 0 = inter.
Frame counts and sizes follow from the shape table, so they are not repeated.

Kept apart from the quantiser and the codec (`frames`), which only call the `FrameLayout`
interface. Their payload tags are claimed in `frames`, under the names the codec yamls use
(``vcmbench.codecs.frames.StackedMosaic``, re-exported there).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from vcmbench.codecs.tiling import MosaicLayout, Reader, pack_order, unpack_order, uvarint
from vcmbench.errors import ConfigError, PayloadError


class FrameLayout(ABC):
    """Where the quantised samples go in the frames, and the side information that says so."""

    #: payload tag of codecs with this layout
    tag: bytes = b"????"
    #: whether the frames may be coded with inter prediction (gop: inter)
    allows_inter: bool = True
    #: the layout flag bits a payload may carry
    known_flags: int = 0

    def check(self, setting: str) -> None:  # noqa: B027 - a hook: most layouts have nothing to check
        """ConfigError naming `setting.KEY` for a bad layout setting."""

    @abstractmethod
    def flags(self, inter: bool) -> int: ...

    @abstractmethod
    def encode(self, q: list[np.ndarray], shapes, fill: int) -> tuple[bytes, list[np.ndarray]]:
        """Quantised levels -> (side information, videos of (N, H, W) samples)."""

    @abstractmethod
    def read(self, reader: Reader, shapes, flags: int) -> object:
        """Read the side information; returns what `videos`/`levels` need (a plan)."""

    @abstractmethod
    def video_shapes(self, shapes, plan) -> list[tuple[int, int, int]]: ...

    @abstractmethod
    def arrange(self, q: list[np.ndarray], plan, fill: int) -> list[np.ndarray]:
        """Quantised levels -> videos by an existing plan (a sequence's later frames reuse the
        first frame's side information, written once)."""

    @abstractmethod
    def levels(self, videos: list[np.ndarray], shapes, plan) -> list[np.ndarray]: ...


class StackedMosaic(FrameLayout):
    """The EE1.2 frame: each level's channels tiled in raster order (256 ch: 16x16, 8x32, 4x64,
    2x128 grids, or `grid` rows per level), the four mosaics stacked into one intra frame."""

    tag = b"ANCH"
    allows_inter = False
    known_flags = 1
    EXPLICIT_GRID = 1

    def __init__(self, grid: Sequence[int] | None = None):
        self.grid = None if grid is None else [int(r) for r in grid]
        self.setting = "layout"

    def check(self, setting: str) -> None:
        self.setting = setting
        if self.grid is not None and (not self.grid or min(self.grid) < 1):
            raise ConfigError(f"{setting}.grid={self.grid}: give positive row counts, one per tensor (p2..p5: four)")

    def flags(self, inter: bool) -> int:
        return self.EXPLICIT_GRID if self.grid is not None else 0

    @staticmethod
    def _mosaic(shapes, rows: Sequence[int] | None) -> MosaicLayout:
        grids = None if rows is None else [(r, -(-s[0] // r)) for r, s in zip(rows, shapes)]
        return MosaicLayout.for_shapes(shapes, grids)

    def encode(self, q, shapes, fill):
        if self.grid is not None and len(self.grid) != len(shapes):
            raise ConfigError(
                f"{self.setting}.grid={self.grid}: {len(self.grid)} row counts for a split of {len(shapes)} tensors; "
                f"give one per tensor, or grid=null for the near-square grids"
            )
        side = b"".join(uvarint(r) for r in self.grid) if self.grid is not None else b""
        return side, [self._mosaic(shapes, self.grid).pack(q, fill)[None]]

    def read(self, reader, shapes, flags):
        if not flags & self.EXPLICIT_GRID:
            return self._mosaic(shapes, None)
        rows = [reader.uvarint() for _ in shapes]
        if min(rows) < 1 or any(r > s[0] for r, s in zip(rows, shapes)):
            raise PayloadError(f"{reader.who}: grid rows {rows} do not fit the shape table (corrupt header)")
        return self._mosaic(shapes, rows)

    def video_shapes(self, shapes, plan):
        return [(1, *plan.frame_size)]

    def arrange(self, q, plan, fill):
        return [plan.pack(q, fill)[None]]

    def levels(self, videos, shapes, plan):
        return plan.unpack(videos[0][0])


class LevelMosaics(FrameLayout):
    """Duan et al.'s channel tiling: one mosaic frame per level (the EE1.2 grids), or all four
    stacked into one frame (`stacked: true`, the anchor's frame); intra frames."""

    tag = b"PKTL"
    allows_inter = False
    known_flags = 3
    STACKED = 2

    def __init__(self, stacked: bool = False):
        self.stacked = bool(stacked)

    def flags(self, inter: bool) -> int:
        return self.STACKED if self.stacked else 0

    def encode(self, q, shapes, fill):
        mosaic = MosaicLayout.for_shapes(shapes)
        if self.stacked:
            return b"", [mosaic.pack(q, fill)[None]]
        return b"", [mosaic.pack_level(i, x, fill)[None] for i, x in enumerate(q)]

    def read(self, reader, shapes, flags):
        return MosaicLayout.for_shapes(shapes), bool(flags & self.STACKED)

    def video_shapes(self, shapes, plan):
        mosaic, stacked = plan
        if stacked:
            return [(1, *mosaic.frame_size)]
        return [(1, *mosaic.level_size(i)) for i in range(len(shapes))]

    def arrange(self, q, plan, fill):
        mosaic, stacked = plan
        if stacked:
            return [mosaic.pack(q, fill)[None]]
        return [mosaic.pack_level(i, x, fill)[None] for i, x in enumerate(q)]

    def levels(self, videos, shapes, plan):
        mosaic, stacked = plan
        if stacked:
            return mosaic.unpack(videos[0][0])
        return [mosaic.unpack_level(i, v[0]) for i, v in enumerate(videos)]


class ChannelFrames(FrameLayout):
    """Duan et al.'s channel concatenation: each channel one frame, each level one video.

    order: `index` (channel order) or `greedy` (neighbouring frames differ least: a greedy
    chain on the pairwise mean squared difference, starting from the channel farthest from
    all others; the order is side information, ceil(log2 C) bits per channel and level).
    """

    known_flags = 1
    TAGS = {"index": b"PKCC", "greedy": b"PKCD"}

    def __init__(self, order: str = "index"):
        self.order = order
        self.tag = self.TAGS.get(order, b"????")

    def check(self, setting: str) -> None:
        if self.order not in self.TAGS:
            raise ConfigError(f"{setting}.order={self.order!r}: choose one of {sorted(self.TAGS)}")

    def flags(self, inter: bool) -> int:
        return 1 if inter else 0

    def encode(self, q, shapes, fill):
        if self.order != "greedy":
            return b"", q
        orders = [greedy_chain(x) for x in q]
        return b"".join(pack_order(o) for o in orders), [x[o] for x, o in zip(q, orders)]

    def read(self, reader, shapes, flags):
        return [unpack_order(reader, s[0]) for s in shapes] if self.order == "greedy" else None

    def video_shapes(self, shapes, plan):
        return [tuple(s) for s in shapes]

    def arrange(self, q, plan, fill):
        return list(q) if plan is None else [x[o] for x, o in zip(q, plan)]

    def levels(self, videos, shapes, plan):
        if plan is None:
            return list(videos)
        restored = []
        for x, o in zip(videos, plan):
            y = np.empty_like(x)
            y[o] = x
            restored.append(y)
        return restored


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

"""A ByteTrack-style tracker: detections of each frame in, boxes with persistent ids out.

Tracking by detection, as the MPEG tracking conditions evaluate it: a detector runs on every
(decoded) frame and this tracker links its boxes over time, so the tracking figures (MOTA,
IDF1, HOTA in `vcmbench.metrics.tracking`) measure what coding did to the detections, not a
learned tracker's own quirks. The design follows ByteTrack (Zhang et al., ECCV 2022):

* **Motion**: one constant-velocity Kalman filter per track on the state
  ``(cx, cy, w, h, vcx, vcy, vw, vh)`` (box centre, width, height and their per-frame
  velocities). Width rather than ByteTrack's aspect ratio ``w/h`` keeps the state linear in
  the box and lets width change on its own (BoT-SORT's choice). Process and measurement noise
  scale with the box size (1/20 of it for positions, 1/160 for velocities, ByteTrack's weights),
  so a large near box and a small far one are equally hard to lose.
* **Two-stage association**: detections are split by score. First the high-score ones
  (``score >= high_score``) are matched to all live tracks, including those lost for a few
  frames. Then the low-score ones (``low_score <= score < high_score``) are matched to the
  confirmed tracks still unmatched that were matched in the previous frame: an occluded or
  blurred object (often a badly coded one) scores low, and this second stage keeps its
  track alive instead of breaking it. Lost tracks are not offered low-score boxes, which are
  too often clutter to resurrect a track with (as ByteTrack).
* **Assignment**: Hungarian (``scipy.optimize.linear_sum_assignment``) on ``1 - IoU`` between
  the Kalman-predicted boxes and the detections; pairs under the IoU gate are forbidden with a
  large cost and dropped afterwards, so the assignment first maximises the number of gated
  matches and then their IoU.
* **Life cycle**: an unmatched high-score detection with ``score >= new_track_score`` starts a
  track; a track gets its id (1, 2, ... in order of confirmation, never reused) once matched
  ``min_hits`` times (every track born in the first frame is confirmed at once, as ByteTrack
  does); a tentative track that misses a frame is dropped, a confirmed one after ``max_age``
  consecutive unmatched frames.

Output: for every confirmed track matched in this frame, the *matched detection's* box, score
and class under the track's id. Not the Kalman estimate: the tracker only adds identities, so a
tracker fed perfect detections reproduces them exactly, and detection quality is measured on
the detector's boxes. Tracks that are only predicted (unmatched) are not output: a box where
the detector saw nothing would be an invented detection.

Everything is deterministic: no randomness, tracks kept in creation order, ties resolved by
the (deterministic) Hungarian solver.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from vcmbench.errors import ConfigError, ShapeError

__all__ = ["TrackerSettings", "ByteTracker", "track_sequence", "box_iou"]

Row = Sequence[float]

_POS_STD = 1.0 / 20  # position noise, per pixel of box size (ByteTrack / DeepSORT weights)
_VEL_STD = 1.0 / 160  # velocity noise, per pixel of box size
_MIN_SCALE = 1.0  # noise is scaled by at least a 1-pixel box, so a degenerate box keeps a proper covariance
_FORBIDDEN = 1e6  # assignment cost of a pair under the IoU gate

_F = np.eye(8)  # constant velocity: position += velocity, one frame per step
_F[:4, 4:] = np.eye(4)
_H = np.eye(4, 8)  # the detector measures (cx, cy, w, h)


@dataclass(frozen=True)
class TrackerSettings:
    """Tracker thresholds; the defaults are ByteTrack's for 30 fps video.

    - ``high_score`` (0.5, ByteTrack's ``track_thresh``): detections at or above it take part in
      the first association stage and may start tracks.
    - ``low_score`` (0.1): detections below it are ignored; those in ``[low_score, high_score)``
      only continue tracks (second stage). ByteTrack keeps everything above 0.1.
    - ``new_track_score`` (0.6, ByteTrack's ``track_thresh + 0.1``): a new track needs a
      confident box, so a flickering false positive just above ``high_score`` does not start one.
    - ``match_iou`` (0.2, ByteTrack's first-stage ``match_thresh`` 0.8 on 1 - IoU): the minimum IoU
      between a predicted track box and a high-score detection. Low, because high-score boxes
      are trusted and fast or lost objects overlap their prediction only loosely.
    - ``low_match_iou`` (0.5, ByteTrack's second-stage gate): the minimum IoU for a low-score
      detection, stricter because low scores are more often clutter.
    - ``max_age`` (30, ByteTrack's ``track_buffer``: one second at 30 fps): a confirmed track
      survives up to this many consecutive unmatched frames and is then dropped; 0 drops it on its
      first miss.
    - ``min_hits`` (1): matches before a track is confirmed (given an id and output). 1 outputs
      a track from its first frame, as ByteTrack does for boxes above ``new_track_score``;
      raise it to suppress one-frame false positives at the price of missing each track's start.
    - ``per_class`` (False): associate detections only with tracks of the same ``category_id``.
      Off by default, as MOT benchmarks pool classes and a detector may flip the class of an
      ambiguous object between frames; on for multi-class sets where classes must not swap.
    """

    high_score: float = 0.5
    low_score: float = 0.1
    new_track_score: float = 0.6
    match_iou: float = 0.2
    low_match_iou: float = 0.5
    max_age: int = 30
    min_hits: int = 1
    per_class: bool = False

    def __post_init__(self) -> None:
        for name in ("high_score", "low_score", "new_track_score", "match_iou", "low_match_iou"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"tracker.{name}={value!r}: not a number; use a finite number")
        if not 0 <= self.low_score <= self.high_score:
            raise ConfigError(
                f"tracker.low_score={self.low_score!r}, tracker.high_score={self.high_score!r}: "
                "need 0 <= low_score <= high_score"
            )
        if self.new_track_score < self.high_score:
            raise ConfigError(
                f"tracker.new_track_score={self.new_track_score!r}: below tracker.high_score={self.high_score!r}; "
                "only high-score detections start tracks, so use new_track_score >= high_score"
            )
        for name in ("match_iou", "low_match_iou"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ConfigError(f"tracker.{name}={value!r}: out of range; use an IoU in (0, 1]")
        for name, minimum in (("max_age", 0), ("min_hits", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"tracker.{name}={value!r}: not an integer; use an integer >= {minimum}")
            if value < minimum:
                raise ConfigError(f"tracker.{name}={value}: out of range; use an integer >= {minimum}")
        if not isinstance(self.per_class, bool):
            raise ConfigError(f"tracker.per_class={self.per_class!r}: not a boolean; use true or false")


def merged_settings(kind: type, settings: object, overrides: dict, prefix: str, noun: str):
    """A tracker's settings: `settings` (a `kind` dataclass, or None for its defaults) with keyword
    `overrides`, each checked (an unknown key or a settings object of another kind is a ConfigError
    naming `prefix.KEY`; the dataclass re-checks the values)."""
    names = [f.name for f in dataclasses.fields(kind)]
    if settings is None:
        settings = kind()
    elif not isinstance(settings, kind):
        raise ConfigError(
            f"tracker settings: a {type(settings).__name__}, not a {kind.__name__}; "
            f"pass {kind.__name__}(...) or keyword settings"
        )
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ConfigError(
            f"{', '.join(f'{prefix}.{k}' for k in unknown)}: not a {noun} setting; valid keys: {', '.join(names)}"
        )
    return dataclasses.replace(settings, **overrides)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a) x len(b)) of boxes given as (x1, y1, x2, y2); 0 where a box has no area."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _noise_scale(box: np.ndarray) -> np.ndarray:
    w, h = max(float(box[2]), _MIN_SCALE), max(float(box[3]), _MIN_SCALE)
    return np.array([w, h, w, h])


class _Track:
    """One object's Kalman state and bookkeeping; ``track_id`` is 0 while tentative."""

    __slots__ = ("mean", "cov", "label", "hits", "missed", "track_id")

    def __init__(self, z: np.ndarray, label: float) -> None:
        scale = _noise_scale(z)
        self.mean = np.concatenate([z, np.zeros(4)])
        self.cov = np.diag(np.concatenate([2 * _POS_STD * scale, 10 * _VEL_STD * scale]) ** 2)
        self.label = label
        self.hits = 1
        self.missed = 0  # consecutive frames without a match
        self.track_id = 0

    def predict(self) -> None:
        if self.missed > 0:
            # A lost track keeps moving but stops growing or shrinking: an unobserved size
            # velocity would otherwise inflate or collapse the box (ByteTrack zeroes it too).
            self.mean[6:] = 0.0
        scale = _noise_scale(self.mean)
        q = np.diag(np.concatenate([_POS_STD * scale, _VEL_STD * scale]) ** 2)
        self.mean = _F @ self.mean
        self.cov = _F @ self.cov @ _F.T + q

    def correct(self, z: np.ndarray) -> None:
        r = np.diag((_POS_STD * _noise_scale(self.mean)) ** 2)
        s = _H @ self.cov @ _H.T + r
        gain = np.linalg.solve(s, _H @ self.cov).T  # P H^T S^-1, S symmetric
        self.mean = self.mean + gain @ (z - _H @ self.mean)
        self.cov = self.cov - gain @ s @ gain.T
        self.cov = (self.cov + self.cov.T) / 2  # keep it symmetric against rounding drift

    def xyxy(self) -> np.ndarray:
        cx, cy, w, h = self.mean[:4]
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def _as_detections(rows: Iterable[Row], frame: int) -> np.ndarray:
    rows = list(rows)
    if not rows:
        return np.zeros((0, 6))
    try:
        dets = np.asarray(rows, dtype=float)
    except (TypeError, ValueError):
        dets = None
    if dets is None or dets.ndim != 2 or dets.shape[1] != 6:
        raise ShapeError(
            f"tracker frame {frame}: detections must be rows of 6 numbers [x, y, w, h, score, category_id]; "
            f"got {rows[0]!r} ..."
        )
    if not np.isfinite(dets).all():
        raise ShapeError(f"tracker frame {frame}: detections contain NaN or infinity; drop or fix those rows")
    return dets


class ByteTracker:
    """Online tracker: call `update` once per frame, in order; one instance per sequence.

    ``ByteTracker(settings, **overrides)``: the overrides are `TrackerSettings` fields
    (``ByteTracker(max_age=10, per_class=True)``); an unknown key is a `ConfigError`.
    """

    def __init__(self, settings: TrackerSettings | None = None, **overrides: object) -> None:
        self.settings = merged_settings(TrackerSettings, settings, overrides, "tracker", "tracker")
        self._tracks: list[_Track] = []
        self._frame = 0
        self._next_id = 1

    @property
    def frame(self) -> int:
        """Frames seen so far."""
        return self._frame

    def update(self, rows: Iterable[Row]) -> list[list[float]]:
        """Track one frame.

        ``rows``: this frame's detections as ``[x, y, w, h, score, category_id]`` (COCO xywh, image
        pixels), possibly none. Returns ``[track_id, x, y, w, h, score, category_id]`` for every
        confirmed track matched in this frame, in id order, with the matched detection's values.
        """
        s = self.settings
        self._frame += 1
        dets = _as_detections(rows, self._frame)
        boxes = np.column_stack([dets[:, :2], dets[:, :2] + dets[:, 2:4]])
        z = np.column_stack([dets[:, :2] + dets[:, 2:4] / 2, dets[:, 2:4]])
        scores, labels = dets[:, 4], dets[:, 5]
        for track in self._tracks:
            track.predict()

        high = np.flatnonzero(scores >= s.high_score)
        low = np.flatnonzero((scores >= s.low_score) & (scores < s.high_score))
        matched: dict[int, int] = {}  # track index -> detection index

        # Stage 1: confident detections against every live track, lost ones included.
        matched.update(self._associate(list(range(len(self._tracks))), high, boxes, labels, s.match_iou))
        # Stage 2: weak detections only continue confirmed tracks seen in the previous frame.
        rest = [i for i, t in enumerate(self._tracks) if i not in matched and t.missed == 0 and t.track_id]
        matched.update(self._associate(rest, low, boxes, labels, s.low_match_iou))

        out: list[tuple[int, int]] = []  # (track id, detection index)
        alive: list[_Track] = []
        for i, track in enumerate(self._tracks):
            d = matched.get(i)
            if d is None:
                track.missed += 1
                if track.track_id and track.missed <= s.max_age:
                    alive.append(track)
                continue
            track.correct(z[d])
            track.hits += 1
            track.missed = 0
            track.label = labels[d]
            if not track.track_id and track.hits >= s.min_hits:
                track.track_id = self._take_id()
            if track.track_id:
                out.append((track.track_id, d))
            alive.append(track)

        used = set(matched.values())
        for d in high:
            if d in used or scores[d] < s.new_track_score:
                continue
            track = _Track(z[d], labels[d])
            if s.min_hits <= 1 or self._frame == 1:
                track.track_id = self._take_id()
                out.append((track.track_id, d))
            alive.append(track)
        self._tracks = alive

        return [[tid, *(float(v) for v in dets[d, :5]), int(dets[d, 5])] for tid, d in sorted(out)]

    def _take_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _associate(
        self, track_idx: list[int], det_idx: np.ndarray, boxes: np.ndarray, labels: np.ndarray, gate: float
    ) -> dict[int, int]:
        """Hungarian matching of tracks to detections on 1 - IoU; pairs under `gate` never match."""
        if not track_idx or not len(det_idx):
            return {}
        predicted = np.stack([self._tracks[i].xyxy() for i in track_idx])
        iou = box_iou(predicted, boxes[det_idx])
        if self.settings.per_class:
            track_labels = np.array([self._tracks[i].label for i in track_idx])
            iou[track_labels[:, None] != labels[det_idx][None, :]] = 0.0
        cost = np.where(iou >= gate, 1.0 - iou, _FORBIDDEN)
        rows, cols = linear_sum_assignment(cost)
        return {track_idx[r]: int(det_idx[c]) for r, c in zip(rows, cols) if iou[r, c] >= gate}


def track_sequence(
    frames: Iterable[Iterable[Row]], settings: TrackerSettings | None = None, **overrides: object
) -> list[list[list[float]]]:
    """Run one fresh `ByteTracker` over a sequence's frames; the tracked rows of each frame, in order."""
    tracker = ByteTracker(settings, **overrides)
    return [tracker.update(rows) for rows in frames]

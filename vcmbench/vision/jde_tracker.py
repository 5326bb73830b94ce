"""JDE's own tracker: appearance embeddings first, then IoU, with a Kalman filter and JDE's track life cycle.

The MPEG FCM tracking conditions (TVD, HiEve) score JDE (Towards-Realtime-MOT, Wang et al., ECCV 2020)
with the tracker that ships with it, run on the decoded features' detections *and appearance
embeddings*. vcmbench's `vision.tracker.ByteTracker` links boxes by IoU alone, so its MOTA cannot be
compared with a CTTC report; this module re-implements JDE's tracker (``tracker/multitracker.py``,
``tracker/matching.py``, ``utils/kalman_filter.py`` of Zhongdao/Towards-Realtime-MOT, the code the
MPEG platform CompressAI-Vision runs in ``model_wrappers/jde.py``) so the numbers are JDE's. Each
frame, in the reference's order:

1. **Detections**: those with score ``> conf_thres`` (strictly, as JDE filters its proposals) and a
   positive height; embeddings are L2-normalised.
2. **Embedding association** of the confirmed tracks *and the lost ones* (Kalman-predicted; a lost
   track's height velocity is zeroed first) with all detections. Cost: the *Euclidean* distance between
   the track's smoothed embedding and the detection's embedding (JDE calls it ``embedding_distance``;
   on unit vectors it is ``sqrt(2 - 2 cos)``, so it ranks as cosine does), mixed with the squared
   Mahalanobis distance of the detection from the track's predicted box,
   ``lambda * d_emb + (1 - lambda) * d_maha``, and *gated*: a pair whose Mahalanobis distance exceeds
   the chi-square 95% quantile with 4 degrees of freedom (9.4877) is forbidden, however alike the
   embeddings, because the object cannot have moved there. Matched with a cost below ``embedding_thresh``.
3. **IoU association** (cost ``1 - IoU`` below ``iou_thresh``; JDE's IoU counts a box's pixels inclusively,
   ``x2 - x1 + 1`` wide, see `pixel_iou`) of the confirmed tracks matched in the
   previous frame that stage 2 left over, with the detections it left over; those tracks still
   unmatched become *lost*.
4. **Unconfirmed tracks** (born last frame) take what is left by IoU (cost below
   ``unconfirmed_thresh``) and are confirmed; the unmatched ones are removed.
5. **Birth**: every detection still left starts an *unconfirmed* track with a new id. JDE confirms no
   track at birth, not even in the first frame (the reference leaves ``is_activated`` unset in
   ``STrack.activate``; FairMOT and ByteTrack later confirmed first-frame tracks at once): a track is
   output from its second frame on, and a one-frame false positive never is.
6. **Death**: a lost track unmatched for more than ``max_time_lost`` frames
   (``int(frame_rate / 30 * track_buffer)``) is removed; a returning object then gets a new id. As in the
   reference, the removal reaches the lost list one frame late (it subtracts the removed tracks
   *before* adding that frame's), so a just-removed track can still be re-found by embedding in the
   next frame: a track survives ``max_time_lost + 1`` missing frames. Kept, so the numbers are JDE's.
7. **Duplicates**: a tracked and a lost track whose boxes overlap with IoU above 0.85 are one object;
   the younger one is dropped.

A track's embedding is an exponential moving average of its detections' embeddings (weight
``embedding_alpha`` on the past), re-normalised after each update. Its box, the one output, is the
Kalman filter's posterior (JDE reports ``STrack.tlwh``, not the detection's box, unlike `ByteTracker`);
its score is its last matched detection's (a re-found track keeps its old score, as JDE's
``re_activate`` does). The output is then filtered as JDE's ``track.py`` and CompressAI-Vision filter it:
boxes of area ``<= min_box_area`` or wider than ``max_aspect_ratio`` times their height are dropped
from the output (the tracks live on).

**Assignment**: JDE solves each stage with ``lap.lapjv(cost, extend_cost=True, cost_limit=L)``, which
pads the matrix with dummy rows and columns of cost ``L`` and so minimises the sum of ``cost - L`` over
the matched pairs (a pair at or above ``L`` never lowers it). `_assign` gives
``scipy.optimize.linear_sum_assignment`` the same objective, the ``(n + m)``-square matrix
``[[C, L/2], [L/2, 0]]``: the matches are lapjv's wherever the optimum is unique (ties may break
differently). Merely forbidding the pairs at or above ``L`` in the rectangular problem would *not* be
the same: that maximises the number of matches first.

**Checked against the reference**: run frame by frame beside JDE's own ``multitracker.py`` (with lap's
lapjv and cython_bbox's IoU) on random scenes, ids, boxes and scores agree; the tests hold its output on
one such scene (`test_matches_the_reference_trackers_output`).

**Determinism**: no randomness; tracks are kept in the reference's list order, ids are taken from a
counter per tracker (JDE's is global to the process), and the rows are returned in id order. Numbers
are float64 throughout (JDE keeps the embeddings' moving average in float32): only a cost within
rounding of a threshold could match differently.

**In a run** (`vision.trackers`): a JDE network's back yields an ``embeddings`` ``(N, D)`` tensor with
each frame's boxes, the records keep it (`records.encode_embeddings`), and ``tracker.kind: auto`` (or
``jde``) hands each sequence's ``(detection rows, embeddings)`` frames to `jde_track_sequence` in place of
`vision.tracker.track_sequence` when the points are built; its rows have the same layout, so
`vcmbench.metrics.tracking` scores them unchanged. The ``tracker.jde.*`` keys are `JDETrackerSettings`
fields, ``frame_rate`` the sequence's fps unless set.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from vcmbench.errors import ConfigError, ShapeError
from vcmbench.vision.tracker import merged_settings

__all__ = ["CHI2INV95_4DOF", "JDEKalmanFilter", "JDETrackerSettings", "JDETracker", "jde_track_sequence", "pixel_iou"]

CHI2INV95_4DOF = 9.4877  # chi-square 95% quantile, 4 degrees of freedom (JDE's chi2inv95[4])
_DUPLICATE_COST = 0.15  # 1 - IoU under which a tracked and a lost track are one object
_POS = 1.0 / 20  # JDE's _std_weight_position: position noise per pixel of box height
_VEL = 1.0 / 160  # JDE's _std_weight_velocity
_TRACKED, _LOST, _REMOVED = "tracked", "lost", "removed"


@dataclass(frozen=True)
class JDETrackerSettings:
    """JDE's tracker settings; each default is the reference's.

    - ``conf_thres`` (0.5, ``track.py --conf-thres``; CompressAI-Vision's ``jde_1088x608`` config):
      detections scoring at or below it are ignored.
    - ``track_buffer`` (30, ``--track-buffer``) and ``frame_rate`` (30, the sequence's fps):
      ``max_time_lost = int(frame_rate / 30 * track_buffer)`` frames a lost track is kept
      (``JDETracker.__init__``), one second of video whatever the frame rate.
    - ``embedding_alpha`` (0.9, ``STrack.alpha``): weight of the past in a track's embedding average.
    - ``motion_lambda`` (0.98, ``fuse_motion``'s ``lambda_``): weight of the embedding distance against
      the Mahalanobis distance in the first stage's cost.
    - ``embedding_thresh`` (0.7), ``iou_thresh`` (0.5), ``unconfirmed_thresh`` (0.7): the cost limits of
      the three association stages (``linear_assignment(dists, thresh=...)`` in ``JDETracker.update``).
    - ``min_box_area`` (200, ``--min-box-area``) and ``max_aspect_ratio`` (1.6, ``track.py``'s ``vertical``
      test): output boxes of area ``<= min_box_area`` or with ``w / h > max_aspect_ratio`` are not output.
      Pixels of the original image; 0 and ``inf`` turn the filter off.
    """

    conf_thres: float = 0.5
    track_buffer: int = 30
    frame_rate: float = 30.0
    embedding_alpha: float = 0.9
    motion_lambda: float = 0.98
    embedding_thresh: float = 0.7
    iou_thresh: float = 0.5
    unconfirmed_thresh: float = 0.7
    min_box_area: float = 200.0
    max_aspect_ratio: float = 1.6

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "track_buffer":
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ConfigError(f"tracker.jde.track_buffer={value!r}: not an integer >= 0; use e.g. 30")
                continue
            finite = f.name != "max_aspect_ratio"
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                raise ConfigError(f"tracker.jde.{f.name}={value!r}: not a number; use a number")
            if finite and not math.isfinite(value):
                raise ConfigError(f"tracker.jde.{f.name}={value!r}: not finite; use a finite number")
        ranges = {
            "conf_thres": (0.0, 1.0, "a score in [0, 1)"),
            "embedding_alpha": (0.0, 1.0, "a weight in [0, 1]"),
            "motion_lambda": (0.0, 1.0, "a weight in [0, 1]"),
        }
        for name, (lo, hi, what) in ranges.items():
            value = getattr(self, name)
            if not lo <= value <= hi or (name == "conf_thres" and value == hi):
                raise ConfigError(f"tracker.jde.{name}={value!r}: out of range; use {what}")
        for name in ("frame_rate", "embedding_thresh", "iou_thresh", "unconfirmed_thresh", "max_aspect_ratio"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"tracker.jde.{name}={getattr(self, name)!r}: not positive; use a number > 0")
        if self.min_box_area < 0:
            raise ConfigError(f"tracker.jde.min_box_area={self.min_box_area!r}: negative; use an area >= 0 (0: off)")

    @property
    def max_time_lost(self) -> int:
        """Frames a lost track is kept: JDE's buffer, scaled from 30 fps to the sequence's rate."""
        return int(self.frame_rate / 30.0 * self.track_buffer)


SETTING_NAMES = tuple(f.name for f in dataclasses.fields(JDETrackerSettings))
"""The JDE tracker's setting names, for messages that list them."""


class JDEKalmanFilter:
    """JDE's (DeepSORT's) constant-velocity Kalman filter on ``(cx, cy, a, h, vcx, vcy, va, vh)``.

    ``a = w / h``: the aspect ratio is nearly constant for pedestrians, so it gets tiny fixed noise (1e-2
    process, 1e-1 measurement, 1e-5 on its velocity) while positions and height get noise proportional to
    the height (1/20 for positions, 1/160 for velocities): a near, tall person may move more pixels per
    frame than a far one. Stateless; a track holds its own mean and covariance.
    """

    motion = np.eye(8)
    motion[:4, 4:] = np.eye(4)  # one frame per step
    observe = np.eye(4, 8)

    @staticmethod
    def initiate(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A new track at measurement ``z = (cx, cy, a, h)``: zero velocity, wide uncertainty."""
        h = z[3]
        std = [2 * _POS * h, 2 * _POS * h, 1e-2, 2 * _POS * h, 10 * _VEL * h, 10 * _VEL * h, 1e-5, 10 * _VEL * h]
        return np.concatenate([z, np.zeros(4)]).astype(float), np.diag(np.square(std))

    def predict(self, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One frame ahead; the process noise scales with the *prior* height."""
        h = mean[3]
        std = [_POS * h, _POS * h, 1e-2, _POS * h, _VEL * h, _VEL * h, 1e-5, _VEL * h]
        return self.motion @ mean, self.motion @ cov @ self.motion.T + np.diag(np.square(std))

    def project(self, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The state in measurement space, with the measurement noise added."""
        h = mean[3]
        r = np.diag(np.square([_POS * h, _POS * h, 1e-1, _POS * h]))
        return self.observe @ mean, self.observe @ cov @ self.observe.T + r

    def update(self, mean: np.ndarray, cov: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Correct with measurement ``z``; the gain solved through the innovation's Cholesky factor."""
        z_mean, s = self.project(mean, cov)
        factor = scipy.linalg.cho_factor(s, lower=True, check_finite=False)
        gain = scipy.linalg.cho_solve(factor, (cov @ self.observe.T).T, check_finite=False).T
        return mean + gain @ (z - z_mean), cov - gain @ s @ gain.T

    def gating_distance(self, mean: np.ndarray, cov: np.ndarray, zs: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of each measurement row of ``zs`` from the projected state."""
        z_mean, s = self.project(mean, cov)
        lower = np.linalg.cholesky(s)
        y = scipy.linalg.solve_triangular(lower, (zs - z_mean).T, lower=True, check_finite=False)
        return np.sum(y * y, axis=0)


class _Track:
    """One object: Kalman state, smoothed embedding and JDE's bookkeeping (``frame``: last matched)."""

    __slots__ = ("track_id", "mean", "cov", "score", "feature", "label", "state", "activated", "frame", "start")

    def __init__(self, track_id: int, z: np.ndarray, score: float, feature: np.ndarray, label: float, frame: int):
        self.track_id = track_id
        self.mean, self.cov = JDEKalmanFilter.initiate(z)
        self.score, self.feature, self.label = score, feature, label
        self.state, self.activated = _TRACKED, False
        self.frame = self.start = frame

    def tlbr(self) -> np.ndarray:
        cx, cy, a, h = self.mean[:4]
        w = a * h
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def _assign(cost: np.ndarray, limit: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """lapjv-with-cost-limit's matching (see the module docstring): (matches, unmatched rows, unmatched cols)."""
    n, m = cost.shape
    if n == 0 or m == 0:
        return [], list(range(n)), list(range(m))
    extended = np.full((n + m, n + m), limit / 2.0)
    extended[n:, m:] = 0.0
    extended[:n, :m] = cost  # inf (gated) entries are simply never chosen: every row has a dummy to go to
    rows, cols = linear_sum_assignment(extended)
    matches = [(int(r), int(c)) for r, c in zip(rows, cols) if r < n and c < m and cost[r, c] < limit]
    used_r, used_c = {r for r, _ in matches}, {c for _, c in matches}
    return matches, [r for r in range(n) if r not in used_r], [c for c in range(m) if c not in used_c]


def _joint(a: list[_Track], b: list[_Track]) -> list[_Track]:
    """``a`` then the tracks of ``b`` not in it (JDE's ``joint_stracks``: the list order decides ties)."""
    out, seen = list(a), {t.track_id for t in a}
    for t in b:
        if t.track_id not in seen:
            seen.add(t.track_id)
            out.append(t)
    return out


def _without(a: list[_Track], ids: Iterable[int]) -> list[_Track]:
    ids = set(ids)
    return [t for t in a if t.track_id not in ids]


def pixel_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of ``x1, y1, x2, y2`` boxes counted as inclusive pixel ranges (``x2 - x1 + 1`` wide).

    JDE's ``iou_distance`` calls ``cython_bbox.bbox_overlaps``, Faster R-CNN's routine with this ``+ 1``; it
    raises the IoU of small boxes (and makes touching boxes overlap by a pixel), so it is kept for the
    thresholds to act as in JDE. Not `vision.tracker.box_iou`, which measures continuous areas.
    """
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + 1
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(inter > 0, inter / np.where(inter > 0, union, 1.0), 0.0)


def _iou_cost(tracks: list[_Track], boxes: np.ndarray) -> np.ndarray:
    if not tracks or not len(boxes):
        return np.zeros((len(tracks), len(boxes)))
    return 1.0 - pixel_iou(np.stack([t.tlbr() for t in tracks]), boxes)


class JDETracker:
    """Online JDE tracker: call `update` (or `update_rows`) once per frame, in order; one per sequence.

    ``JDETracker(settings, **overrides)``: the overrides are `JDETrackerSettings` fields
    (``JDETracker(frame_rate=25)``); an unknown key is a `ConfigError`.
    """

    def __init__(self, settings: JDETrackerSettings | None = None, **overrides: Any) -> None:
        self.settings = merged_settings(JDETrackerSettings, settings, overrides, "tracker.jde", "JDE tracker")
        self.kalman = JDEKalmanFilter()
        self._tracked: list[_Track] = []  # confirmed and unconfirmed tracks, state tracked
        self._lost: list[_Track] = []
        self._removed_ids: set[int] = set()
        self._frame = 0
        self._next_id = 1
        self._dim: int | None = None  # embedding length, fixed by the first frame that has one

    @property
    def frame(self) -> int:
        """Frames seen so far."""
        return self._frame

    def update(
        self, boxes: Any, scores: Any, embeddings: Any, labels: Any = None
    ) -> list[tuple[int, float, float, float, float, float]]:
        """Track one frame: ``boxes`` (N, 4) ``x1, y1, x2, y2`` in image pixels, ``scores`` (N,),
        ``embeddings`` (N, D) (arrays or CPU tensors), optional ``labels`` (N,) category ids (kept with the
        tracks for `update_rows`). Returns ``(track_id, x1, y1, x2, y2, score)`` of every confirmed track
        matched in this frame that passes the output filter, in id order."""
        return [
            (t.track_id, *(float(v) for v in t.tlbr()), float(t.score))
            for t in self._step(boxes, scores, embeddings, labels)
        ]

    def update_rows(self, rows: Iterable[Sequence[float]], embeddings: Any) -> list[list[float]]:
        """`update` in `ByteTracker.update`'s row layout: ``rows`` ``[x, y, w, h, score, category_id]``
        (COCO xywh), ``embeddings`` one row per detection; returns
        ``[track_id, x, y, w, h, score, category_id]`` (the track's box, score and last category)."""
        rows = list(rows)
        try:
            dets = np.asarray(rows, dtype=float) if rows else np.zeros((0, 6))
        except (TypeError, ValueError):
            dets = np.zeros(0)
        if dets.ndim != 2 or dets.shape[1] != 6:
            raise ShapeError(
                f"JDE tracker frame {self._frame + 1}: detections must be rows of 6 numbers "
                f"[x, y, w, h, score, category_id]; got {rows[0]!r} ..."
            )
        boxes = np.column_stack([dets[:, :2], dets[:, :2] + dets[:, 2:4]])
        out = []
        for t in self._step(boxes, dets[:, 4], embeddings, dets[:, 5]):
            x1, y1, x2, y2 = (float(v) for v in t.tlbr())
            out.append([t.track_id, x1, y1, x2 - x1, y2 - y1, float(t.score), int(t.label)])
        return out

    def _detections(self, boxes: Any, scores: Any, embeddings: Any, labels: Any) -> tuple[np.ndarray, ...]:
        """Checked float64 arrays of the kept detections: (tlbr, xyah, scores, unit embeddings, labels)."""
        where = f"JDE tracker frame {self._frame}"
        boxes = np.asarray(boxes, dtype=float)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        elif boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ShapeError(f"{where}: boxes of shape {boxes.shape}; give (N, 4) rows x1, y1, x2, y2")
        scores = np.asarray(scores, dtype=float).reshape(-1)
        feats = np.asarray(embeddings, dtype=float)
        if feats.size == 0:
            feats = feats.reshape(0, feats.shape[-1] if feats.ndim == 2 else 0)
        elif feats.ndim != 2 or (self._dim is not None and feats.shape[1] != self._dim):
            raise ShapeError(
                f"{where}: embeddings of shape {feats.shape}; give one row of {self._dim or 'D'} numbers per box, "
                "the same D in every frame"
            )
        else:
            self._dim = feats.shape[1]
        labels = np.zeros(len(boxes)) if labels is None else np.asarray(labels, dtype=float).reshape(-1)
        if not len(scores) == len(feats) == len(labels) == len(boxes):
            raise ShapeError(
                f"{where}: {len(boxes)} boxes, {len(scores)} scores, {len(feats)} embeddings, {len(labels)} labels; "
                "give one score, one embedding row and one label per box"
            )
        if not all(np.isfinite(a).all() for a in (boxes, scores, feats, labels)):
            raise ShapeError(f"{where}: detections contain NaN or infinity; drop or fix those rows")
        norms = np.linalg.norm(feats, axis=1)
        if (norms == 0).any():
            raise ShapeError(f"{where}: an all-zero embedding cannot be normalised; drop that detection")
        keep = (scores > self.settings.conf_thres) & (boxes[:, 3] > boxes[:, 1])  # zero height: no aspect ratio
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        xyah = np.column_stack([boxes[:, 0] + w / 2, boxes[:, 1] + h / 2, w / np.where(h > 0, h, 1), h])
        feats = feats / norms[:, None]
        return boxes[keep], xyah[keep], scores[keep], feats[keep], labels[keep]

    def _step(self, boxes: Any, scores: Any, embeddings: Any, labels: Any) -> list[_Track]:
        """One frame of JDE's `update`; returns the tracks to output, in id order."""
        s, kf = self.settings, self.kalman
        self._frame += 1
        frame = self._frame
        tlbr, xyah, det_scores, feats, det_labels = self._detections(boxes, scores, embeddings, labels)
        activated: list[_Track] = []
        refound: list[_Track] = []
        newly_lost: list[_Track] = []
        newly_removed: list[_Track] = []

        def take(track: _Track, d: int) -> None:
            """Match detection d to the track: JDE's `update` (tracked) or `re_activate` (lost, old score)."""
            track.mean, track.cov = kf.update(track.mean, track.cov, xyah[d])
            mixed = s.embedding_alpha * track.feature + (1 - s.embedding_alpha) * feats[d]
            track.feature = mixed / np.linalg.norm(mixed)
            track.label, track.frame, track.activated = det_labels[d], frame, True
            if track.state == _TRACKED:
                track.score = det_scores[d]
                activated.append(track)
            else:
                track.state = _TRACKED
                refound.append(track)

        unconfirmed = [t for t in self._tracked if not t.activated]
        pool = _joint([t for t in self._tracked if t.activated], self._lost)
        for t in pool:
            if t.state != _TRACKED:
                t.mean[7] = 0.0  # a lost track keeps moving but stops growing
            t.mean, t.cov = kf.predict(t.mean, t.cov)

        # Stage 1: embeddings, gated and fused with motion.
        cost = np.zeros((len(pool), len(feats)))
        if cost.size:
            cost = cdist(np.stack([t.feature for t in pool]), feats)  # Euclidean, as JDE's cdist call
            for i, t in enumerate(pool):
                maha = kf.gating_distance(t.mean, t.cov, xyah)
                cost[i, maha > CHI2INV95_4DOF] = np.inf
                cost[i] = s.motion_lambda * cost[i] + (1 - s.motion_lambda) * maha
        matches, left_tracks, left_dets = _assign(cost, s.embedding_thresh)
        for i, d in matches:
            take(pool[i], d)

        # Stage 2: IoU, for the tracks followed until the previous frame.
        recent = [pool[i] for i in left_tracks if pool[i].state == _TRACKED]
        matches, left_recent, left = _assign(_iou_cost(recent, tlbr[left_dets]), s.iou_thresh)
        for i, d in matches:
            take(recent[i], left_dets[d])
        left_dets = [left_dets[d] for d in left]
        for i in left_recent:
            recent[i].state = _LOST
            newly_lost.append(recent[i])

        # Stage 3: unconfirmed tracks (born last frame, never predicted), by IoU; unmatched ones are removed.
        matches, left_unconfirmed, left = _assign(_iou_cost(unconfirmed, tlbr[left_dets]), s.unconfirmed_thresh)
        for i, d in matches:
            take(unconfirmed[i], left_dets[d])
        for i in left_unconfirmed:
            unconfirmed[i].state = _REMOVED
            newly_removed.append(unconfirmed[i])

        # Birth: unconfirmed tracks, ids taken now.
        for d in (left_dets[k] for k in left):
            activated.append(_Track(self._next_id, xyah[d], det_scores[d], feats[d], det_labels[d], frame))
            self._next_id += 1

        # Death: lost too long (checked on the lost list as it was before this frame).
        for t in self._lost:
            if frame - t.frame > s.max_time_lost:
                t.state = _REMOVED
                newly_removed.append(t)

        tracked = _joint(_joint([t for t in self._tracked if t.state == _TRACKED], activated), refound)
        lost = _without(self._lost, (t.track_id for t in tracked)) + newly_lost
        lost = _without(lost, self._removed_ids)  # this frame's removals join only afterwards, as in JDE
        self._removed_ids.update(t.track_id for t in newly_removed)
        self._tracked, self._lost = self._drop_duplicates(tracked, lost)
        return sorted((t for t in self._tracked if t.activated and self._shown(t)), key=lambda t: t.track_id)

    @staticmethod
    def _drop_duplicates(tracked: list[_Track], lost: list[_Track]) -> tuple[list[_Track], list[_Track]]:
        """A tracked and a lost track on one object (IoU > 0.85): keep the one followed longer."""
        if not tracked or not lost:
            return tracked, lost
        drop_tracked, drop_lost = set(), set()
        for p, q in zip(*np.nonzero(_iou_cost(tracked, np.stack([t.tlbr() for t in lost])) < _DUPLICATE_COST)):
            if tracked[p].frame - tracked[p].start > lost[q].frame - lost[q].start:
                drop_lost.add(int(q))
            else:
                drop_tracked.add(int(p))
        return (
            [t for i, t in enumerate(tracked) if i not in drop_tracked],
            [t for i, t in enumerate(lost) if i not in drop_lost],
        )

    def _shown(self, track: _Track) -> bool:
        """JDE's output filter: a large enough box, not wider than ``max_aspect_ratio`` times its height."""
        _, _, a, h = track.mean[:4]
        return h > 0 and a * h * h > self.settings.min_box_area and a <= self.settings.max_aspect_ratio


def jde_track_sequence(
    frames: Iterable[tuple[Iterable[Sequence[float]], Any]],
    settings: JDETrackerSettings | None = None,
    **overrides: Any,
) -> list[list[list[float]]]:
    """Run one fresh `JDETracker` over a sequence; ``frames`` yields ``(detection rows, embeddings)`` per frame.

    The rows in and out have `vision.tracker.track_sequence`'s layout, so `metrics.tracking` takes the result.
    """
    tracker = JDETracker(settings, **overrides)
    return [tracker.update_rows(rows, embeddings) for rows, embeddings in frames]

"""Which tracker links a sequence's decoded detections (`tracker.kind`), and running it.

The tracking figures (MOTA, IDF1, HOTA) are those of a tracker run on each decoded frame's
detections when the points are built, so another tracker re-scores a finished run without recoding.
Two trackers:

- ``bytetrack``: vcmbench's ByteTrack-style tracker (`vision.tracker`), boxes and scores alone; its
  settings are the top-level ``tracker.*`` keys (``tracker.high_score``, ``tracker.max_age``, ...).
- ``jde``: JDE's own tracker (`vision.jde_tracker`), the one the MPEG FCM tracking conditions score
  JDE with: appearance embeddings first, then IoU, with JDE's Kalman filter and track life cycle. It
  needs the detections' embeddings, which the records carry for a re-identifying network (JDE:
  `model=jde_1088x608`; `records.encode_embeddings`). Its settings are ``tracker.jde.*``
  (`JDETrackerSettings`); ``tracker.jde.frame_rate`` sets how many frames a lost track is kept
  (``track_buffer`` frames at 30 fps). The default, 30 for every sequence, is the MPEG platform's
  (CompressAI-Vision ``model_wrappers/jde.py`` never passes another), so CTTC reports' TVD numbers
  (50 fps) are reproduced; ``tracker.jde.frame_rate=sequence`` takes each sequence's fps, as JDE's
  own ``track.py`` takes seqinfo.ini's frameRate (HiEve is 30 fps, where both agree).
- ``auto`` (the default): ``jde`` when the run's records carry embeddings, else ``bytetrack``.

The kind is decided once over all the run's records (`TrackerChoice.resolve`), so a sequence whose
coding failed (a record without detections, so without embeddings) is tracked like the others, and
the points and classes tables say which tracker ran (their ``tracker`` column).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vcmbench.errors import ConfigError

KINDS = ("auto", "bytetrack", "jde")
SEQUENCE_RATE = "sequence"  # tracker.jde.frame_rate: each sequence's own fps

#: (detection rows [x, y, w, h, score, category_id], their (N, D) embeddings or None) of one frame
Frame = tuple[Sequence[Sequence[float]], Any]


def _pairs(node: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((str(k), v) for k, v in node.items()))


@dataclass(frozen=True)
class TrackerChoice:
    """`tracker.kind` with the settings of both trackers, checked (each error one line naming its key)."""

    kind: str = "auto"
    bytetrack: tuple[tuple[str, Any], ...] = ()  # ByteTracker overrides (vision.tracker.TrackerSettings)
    jde: tuple[tuple[str, Any], ...] = ()  # JDETracker overrides (vision.jde_tracker.JDETrackerSettings)
    frame_rate: float | None = None  # tracker.jde.frame_rate; None: the sequence's fps

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None) -> TrackerChoice:
        """The ``tracker:`` node as a plain mapping: ``kind``, ``jde`` (a mapping), the rest ByteTracker's."""
        from vcmbench.vision.jde_tracker import JDETracker
        from vcmbench.vision.tracker import ByteTracker

        rest = dict(settings or {})
        raw_kind = rest.pop("kind", "auto")
        kind = str(raw_kind).strip().lower()
        if kind not in KINDS:
            raise ConfigError(
                f"tracker.kind={raw_kind!r}: choose auto (JDE's tracker where the records carry appearance "
                "embeddings, else bytetrack), bytetrack (boxes alone) or jde (JDE's own: embeddings, Kalman, IoU)"
            )
        jde = rest.pop("jde", None) or {}
        if not isinstance(jde, Mapping):
            raise ConfigError(
                f"tracker.jde={jde!r}: a mapping of JDE tracker settings, e.g. tracker.jde.track_buffer=30"
            )
        jde = dict(jde)
        frame_rate = _frame_rate(jde.pop("frame_rate", SEQUENCE_RATE))
        ByteTracker(**rest)  # refuses unknown keys and bad values now, not at the first sequence
        JDETracker(**jde, **({"frame_rate": frame_rate} if frame_rate is not None else {}))
        return cls(kind, _pairs(rest), _pairs(jde), frame_rate)

    def resolve(self, has_embeddings: bool) -> str:
        """The tracker that runs on records with (or without) appearance embeddings: bytetrack or jde."""
        if self.kind == "jde" and not has_embeddings:
            raise ConfigError(
                "tracker.kind=jde: JDE's tracker needs each detection's appearance embedding, and this run's "
                "network gives none (its records carry none); use tracker.kind=auto or bytetrack, or a "
                "re-identifying network (model=jde_1088x608)"
            )
        if self.kind == "auto":
            return "jde" if has_embeddings else "bytetrack"
        return self.kind

    def track(self, frames: Sequence[Frame], fps: float, kind: str | None = None) -> list[list[list[float]]]:
        """One sequence's tracked rows ``[track_id, x, y, w, h, score, category_id]`` per frame, by `kind`
        (default: this choice's, resolved on these frames)."""
        from vcmbench.vision.jde_tracker import jde_track_sequence
        from vcmbench.vision.tracker import track_sequence

        kind = kind or self.resolve(any(e is not None for _, e in frames))
        if kind == "bytetrack":
            return track_sequence([rows for rows, _ in frames], **dict(self.bytetrack))
        rate = self.frame_rate if self.frame_rate is not None else float(fps)
        return jde_track_sequence(
            ((rows, _embeddings(rows, e)) for rows, e in frames), frame_rate=rate, **dict(self.jde)
        )


def _frame_rate(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in (SEQUENCE_RATE, "auto", "null", "none")):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return float(value)
    raise ConfigError(
        f"tracker.jde.frame_rate={value!r}: sequence (each sequence's fps, as JDE's track.py) or a frame rate > 0 "
        "(30: the MPEG platform's JDE wrapper, whatever the sequence)"
    )


def _embeddings(rows: Sequence[Sequence[float]], embeddings: Any) -> Any:
    """A frame's embeddings for JDE's tracker; a frame without any (a failed item's, no detections) as
    an empty (0, 0) array."""
    if embeddings is None:
        if len(rows):
            raise ConfigError(
                "tracker.kind=jde: a frame has detections without appearance embeddings; track this run with "
                "tracker.kind=bytetrack"
            )
        return np.zeros((0, 0), dtype=np.float32)
    return embeddings

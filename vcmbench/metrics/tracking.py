"""Multi-object tracking metrics: MOTA and MOTP (CLEAR), IDF1 (Identity) and HOTA, by TrackEval.

The numbers come from TrackEval's own metric classes (``trackeval.metrics.CLEAR``, ``Identity``,
``HOTA``), the reference implementation behind the MOTChallenge and HOTA papers, so they match
published figures; this module only builds the per-sequence data dict those classes take, the
part TrackEval's dataset loaders normally do from MOT text files:

* ids relabelled to contiguous 0-based integers, in order of the original ids (as
  ``MotChallenge2DBox.get_preprocessed_seq_data`` does), because the metrics index arrays by id;
* ``similarity_scores``: per frame, the IoU matrix ground truth x tracks, computed by TrackEval's
  ``_BaseDataset._calculate_box_ious`` on COCO ``[x, y, w, h]`` boxes.

Evaluation is **class-agnostic** by default: all categories are pooled, as MOT pedestrian
tracking is, and a track matches any ground-truth box it overlaps. ``categories`` keeps only the
ground truth and tracks of those category ids (e.g. ``{1}`` for persons) before anything else.

There is **no MOT preprocessing**: no removal of tracks that match distractor classes (cyclists,
static persons, reflections), no zero-marked or ignore-region ground truth. Those rules are
specific to MOT17/MOT20 annotations; sets without such labels (and converted sets where they
were already dropped) are scored on exactly the boxes given.

Matching threshold: IoU 0.5 for CLEAR and Identity (TrackEval's and MOTChallenge's default);
HOTA averages over its 19 thresholds 0.05..0.95 by construction.

`evaluate_sequences` scores each sequence and, under ``"COMBINED"``, the class of sequences
jointly with TrackEval's ``combine_sequences`` (counts summed, then the ratios computed, so
MOTA combined = 1 - sum(FN + FP + IDSW) / sum(GT), not a mean of per-sequence MOTAs): that is how
the tracking conditions report one figure per class of sequences.

**MOTA as the MPEG FCM platform computes it.** The platform (CompressAI-Vision's ``MOT_JDE_Eval`` and
``scripts/metrics/compute_per_class_mota.py``) scores with py-motmetrics: ``motmetrics.utils.CLEAR_MOT_M``
for TVD, ``compare_to_groundtruth`` for HiEve, an IoU distance capped at 0.5, and one figure per class
from ``compute_many(..., generate_overall=True)`` (counts summed, then MOTA). Both libraries implement
the CLEAR MOT protocol of the MOT challenge (Bernardin and Stiefelhagen 2008; MOT16):
MOTA = 1 - (FN + FP + IDSW) / GT; a pair matches at IoU >= 0.5 (0.5 itself included); a correspondence
still overlapping enough is kept, the other pairs are matched by the Hungarian algorithm; a switch is
an object matched to another track than at its last match, however many frames ago. They count alike
(tests/metrics/test_tracking.py works one case by hand with those rules) but for one rule: motmetrics
carries a pairing forward from the object's *last match*, TrackEval only from the *previous frame*
(or the last frame with any track). So an object missed for a frame while other tracks exist, back
under its old track and also overlapped better by another one, is a switch here and a match on the
platform (pinned by a test): MOTA can differ in such frames. The ground-truth rows are the
platform's (`datasets.fcm_tracking`); the tracks those of JDE's tracker for JDE (`vision.trackers`).

TrackEval is imported when a metric is computed, so importing this module is cheap and works
without it; a missing TrackEval is a `MissingDependencyError` naming the pip command.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Collection, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np

from vcmbench.errors import MetricError, MissingDependencyError

__all__ = ["COMBINED", "MATCH_IOU", "sequence_data", "evaluate_sequences"]

COMBINED = "COMBINED"  # key of the joint figure in evaluate_sequences' result
MATCH_IOU = 0.5  # CLEAR / Identity match threshold (TrackEval and MOTChallenge default)
PIP_HINT = "pip install trackeval==1.0.0"

GtFrame = Sequence[tuple[int, Sequence[float], int]]  # (track_id, [x, y, w, h], category_id)
TrackFrame = Sequence[Sequence[float]]  # [track_id, x, y, w, h, score, category_id]


def _trackeval() -> SimpleNamespace:
    """TrackEval's metric classes and box IoU, imported on first use (quietly)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from trackeval.datasets._base_dataset import _BaseDataset
            from trackeval.metrics import CLEAR, HOTA, Identity
    except ImportError as exc:
        raise MissingDependencyError(
            f"tracking metrics (MOTA, IDF1, HOTA) need TrackEval, which cannot be imported ({exc}); "
            f"install it: `{PIP_HINT}`"
        ) from None
    return SimpleNamespace(CLEAR=CLEAR, HOTA=HOTA, Identity=Identity, box_ious=_BaseDataset._calculate_box_ious)


def _finite(values: Sequence[float]) -> bool:
    return all(isinstance(v, (int, float, np.number)) and math.isfinite(v) for v in values)


def _gt_frame(rows: GtFrame, keep: set[int] | None, where: str) -> tuple[list[int], list[list[float]]]:
    ids, boxes = [], []
    for row in rows:
        try:
            track_id, box, category = row
            box = [float(v) for v in box]
            track_id, category = int(track_id), int(category)
        except (TypeError, ValueError):
            raise MetricError(f"{where}: ground truth {row!r} is not (track_id, [x, y, w, h], category_id)") from None
        if len(box) != 4 or not _finite(box):
            raise MetricError(
                f"{where}: ground-truth box {box!r} of id {track_id} is not 4 finite numbers [x, y, w, h]"
            )
        if keep is None or category in keep:
            ids.append(track_id)
            boxes.append(box)
    return ids, boxes


def _track_frame(
    rows: TrackFrame, keep: set[int] | None, where: str
) -> tuple[list[int], list[list[float]], list[float]]:
    ids, boxes, scores = [], [], []
    for row in rows:
        try:
            values = [float(v) for v in row]
        except (TypeError, ValueError):
            values = []
        if len(values) != 7 or not _finite(values):
            raise MetricError(
                f"{where}: track row {row!r} is not 7 finite numbers [track_id, x, y, w, h, score, category_id]"
            )
        if keep is None or int(values[6]) in keep:
            ids.append(int(values[0]))
            boxes.append(values[1:5])
            scores.append(values[5])
    return ids, boxes, scores


def _check_unique(ids: list[int], what: str, where: str) -> None:
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise MetricError(f"{where}: {what} id(s) {twice} appear more than once; an id labels one box per frame")


def _relabel(per_frame: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """Ids -> 0..n-1 in order of the original ids, as TrackEval's loaders do."""
    unique = np.unique(np.concatenate(per_frame)) if per_frame else np.zeros(0, int)
    return [np.searchsorted(unique, ids).astype(int) for ids in per_frame], len(unique)


def sequence_data(
    gt_frames: Sequence[GtFrame],
    track_frames: Sequence[TrackFrame],
    categories: Collection[int] | None = None,
    *,
    name: str = "sequence",
) -> dict[str, Any]:
    """TrackEval's per-sequence data dict from ground truth and tracks, one list per frame.

    ``gt_frames[t]``: ``(track_id, [x, y, w, h], category_id)`` per object in frame t;
    ``track_frames[t]``: ``[track_id, x, y, w, h, score, category_id]`` rows (`ByteTracker.update`'s
    output). ``categories``: keep only these category ids (None: all, pooled). ``name`` labels errors.
    Both must have the same number of frames (a frame without objects is an empty list).
    """
    te = _trackeval()
    if len(gt_frames) != len(track_frames):
        raise MetricError(
            f"sequence {name!r}: the ground truth has {len(gt_frames)} frames but the tracks have "
            f"{len(track_frames)}; give one (possibly empty) list of tracks per ground-truth frame"
        )
    keep = None if categories is None else {int(c) for c in categories}
    gt_ids, tr_ids, gt_dets, tr_dets, confidences, similarity = [], [], [], [], [], []
    for t, (gt_rows, track_rows) in enumerate(zip(gt_frames, track_frames)):
        where = f"sequence {name!r} frame {t}"
        g_ids, g_boxes = _gt_frame(gt_rows, keep, where)
        k_ids, k_boxes, k_scores = _track_frame(track_rows, keep, where)
        _check_unique(g_ids, "ground-truth", where)
        _check_unique(k_ids, "track", where)
        g = np.asarray(g_boxes, dtype=float).reshape(-1, 4)
        k = np.asarray(k_boxes, dtype=float).reshape(-1, 4)
        gt_ids.append(np.asarray(g_ids, dtype=int))
        tr_ids.append(np.asarray(k_ids, dtype=int))
        gt_dets.append(g)
        tr_dets.append(k)
        confidences.append(np.asarray(k_scores, dtype=float))
        similarity.append(te.box_ious(g, k, box_format="xywh") if len(g) and len(k) else np.zeros((len(g), len(k))))
    gt_ids, num_gt_ids = _relabel(gt_ids)
    tr_ids, num_tracker_ids = _relabel(tr_ids)
    return {
        "seq": name,
        "num_timesteps": len(gt_frames),
        "num_gt_ids": num_gt_ids,
        "num_tracker_ids": num_tracker_ids,
        "num_gt_dets": int(sum(len(ids) for ids in gt_ids)),
        "num_tracker_dets": int(sum(len(ids) for ids in tr_ids)),
        "gt_ids": gt_ids,
        "tracker_ids": tr_ids,
        "gt_dets": gt_dets,
        "tracker_dets": tr_dets,
        "tracker_confidences": confidences,
        "similarity_scores": similarity,
    }


def _summary(res: Mapping[str, Mapping[str, Any]], counts: Mapping[str, int]) -> dict[str, float]:
    """TrackEval's results of one sequence (or the combination) as flat numbers; ratios in percent."""
    clear, ident, hota = res["CLEAR"], res["Identity"], res["HOTA"]
    return {
        "mota": 100 * float(clear["MOTA"]),
        "idf1": 100 * float(ident["IDF1"]),
        "hota": 100 * float(np.mean(hota["HOTA"])),  # HOTA is reported as its mean over the IoU thresholds
        "motp": 100 * float(clear["MOTP"]),  # mean IoU of the CLEAR matches
        "moda": 100 * float(clear["MODA"]),
        "idp": 100 * float(ident["IDP"]),
        "idr": 100 * float(ident["IDR"]),
        "deta": 100 * float(np.mean(hota["DetA"])),
        "assa": 100 * float(np.mean(hota["AssA"])),
        "loca": 100 * float(np.mean(hota["LocA"])),
        "id_switches": int(clear["IDSW"]),
        "tp": int(clear["CLR_TP"]),
        "fp": int(clear["CLR_FP"]),
        "fn": int(clear["CLR_FN"]),
        "gt_dets": int(clear["CLR_TP"] + clear["CLR_FN"]),
        "tracker_dets": int(clear["CLR_TP"] + clear["CLR_FP"]),
        "idtp": int(ident["IDTP"]),
        "idfp": int(ident["IDFP"]),
        "idfn": int(ident["IDFN"]),
        "mostly_tracked": int(clear["MT"]),
        "partly_tracked": int(clear["PT"]),
        "mostly_lost": int(clear["ML"]),
        "fragmentations": int(clear["Frag"]),
        **counts,
    }


def evaluate_sequences(
    sequences: Mapping[str, tuple[Sequence[GtFrame], Sequence[TrackFrame]]],
    categories: Collection[int] | None = None,
) -> dict[str, dict[str, float]]:
    """MOTA, IDF1, HOTA, ... of each sequence and of all of them combined.

    ``sequences``: ``{name: (gt_frames, track_frames)}`` (formats as in `sequence_data`).
    Returns ``{name: figures}`` plus ``"COMBINED"`` (TrackEval's ``combine_sequences``). Figures:
    ``mota``, ``idf1``, ``hota``, ``motp``, ``moda``, ``idp``, ``idr``, ``deta``, ``assa``, ``loca`` in
    percent (100 = perfect; MOTA can be negative), and the counts ``id_switches``, ``tp``, ``fp``,
    ``fn``, ``gt_dets``, ``tracker_dets``, ``idtp``, ``idfp``, ``idfn``, ``mostly_tracked``,
    ``partly_tracked``, ``mostly_lost``, ``fragmentations``, ``frames``, ``gt_ids``, ``tracker_ids``
    (ids per sequence, summed for the combination).
    """
    if not sequences:
        raise MetricError("no sequences to evaluate; pass {name: (gt_frames, track_frames)}")
    if COMBINED in sequences:
        raise MetricError(f"a sequence is named {COMBINED!r}, the key of the joint figure; rename it")
    te = _trackeval()
    per_seq: dict[str, dict[str, Any]] = {}
    counts: dict[str, dict[str, int]] = {}
    with contextlib.redirect_stdout(io.StringIO()):  # TrackEval prints configs and timings in places
        metrics = [
            te.HOTA(),
            te.CLEAR({"THRESHOLD": MATCH_IOU, "PRINT_CONFIG": False}),
            te.Identity({"THRESHOLD": MATCH_IOU, "PRINT_CONFIG": False}),
        ]
        for name, pair in sequences.items():
            try:
                gt_frames, track_frames = pair
            except (TypeError, ValueError):
                raise MetricError(f"sequence {name!r}: expected a pair (gt_frames, track_frames)") from None
            data = sequence_data(gt_frames, track_frames, categories, name=name)
            per_seq[name] = {m.get_name(): m.eval_sequence(data) for m in metrics}
            counts[name] = {
                "frames": data["num_timesteps"],
                "gt_ids": data["num_gt_ids"],
                "tracker_ids": data["num_tracker_ids"],
            }
        combined = {
            m.get_name(): m.combine_sequences({n: r[m.get_name()] for n, r in per_seq.items()}) for m in metrics
        }
    result = {name: _summary(res, counts[name]) for name, res in per_seq.items()}
    result[COMBINED] = _summary(
        combined, {k: sum(c[k] for c in counts.values()) for k in ("frames", "gt_ids", "tracker_ids")}
    )
    return result

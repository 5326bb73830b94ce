"""JDE's tracker (vision.jde_tracker) on hand-made sequences: appearance keeps identities IoU swaps,
its Kalman filter, gating, life cycle and output filter, and its settings."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from vcmbench.errors import ConfigError, ShapeError
from vcmbench.metrics.tracking import evaluate_sequences
from vcmbench.vision.jde_tracker import (
    CHI2INV95_4DOF,
    JDEKalmanFilter,
    JDETracker,
    JDETrackerSettings,
    _assign,
    jde_track_sequence,
)
from vcmbench.vision.tracker import track_sequence

W, H = 60.0, 120.0  # a pedestrian-like box: aspect 0.5, area 7200 (JDE's output filter keeps it)
DIM = 16


def embedding(k: int, rng: np.random.Generator) -> np.ndarray:
    """Object k's appearance: a unit axis plus small deterministic noise (not normalised: the tracker does it)."""
    return np.eye(DIM)[k] + 0.05 * rng.standard_normal(DIM)


def box(x: float, y: float = 100.0) -> list[float]:
    return [x, y, x + W, y + H]


def ids_by_object(frames_out, centres):
    """Per frame, {object index: track id}: each output row ([id, x, y, w, h, ...]) goes to the nearest object centre."""
    found = []
    for rows, xs in zip(frames_out, centres):
        found.append({int(np.argmin([abs(r[1] + r[3] / 2 - x) for x in xs])): r[0] for r in rows})
    return found


def crossing_scene():
    """Two pedestrians of the same size, A from the left and B from the right, walk towards each other,
    slow down and stand side by side (boxes overlapping) for ten frames, then walk on past each other;
    when they coincide, A hides B for one frame. Returns per frame the left x of A and B and whether B is seen."""
    xa, xb, scene = 100.0, 500.0, []
    for v in [8.0] * 20 + [6, 4, 3, 2, 1, 1] + [0.0] * 10 + [8.0] * 25:
        scene.append((xa, xb, abs(xa - xb) >= 5))
        xa, xb = xa + v, xb - v
    return scene


# --------------------------------------------------------------------------- the crossing


@pytest.mark.timeout(60)
def test_appearance_keeps_identities_through_a_crossing_that_iou_swaps():
    rng = np.random.default_rng(0)
    scene = crossing_scene()
    gt, dets, jde_frames = [], [], []
    for xa, xb, b_seen in scene:
        objects = [(1, xa), (2, xb)] if b_seen else [(1, xa)]
        gt.append([(k, [x, 100.0, W, H], 1) for k, x in objects])
        rows = [[x, 100.0, W, H, 0.9, 1] for _, x in objects]
        dets.append(rows)
        jde_frames.append((rows, np.stack([embedding(k, rng) for k, _ in objects])))
    byte_out = track_sequence(dets)
    jde_out = jde_track_sequence(jde_frames)
    assert jde_track_sequence(jde_frames) == jde_out  # deterministic

    # Identify objects only where they are far apart (IoU 0): before they meet, after they have passed.
    centres = [(xa + W / 2, xb + W / 2) for xa, xb, _ in scene]
    apart = [abs(xa - xb) > 2 * W for xa, xb, _ in scene]
    first_after = next(t for t in range(len(scene)) if t > 30 and apart[t])
    for name, out, swaps in (("byte", byte_out, True), ("jde", jde_out, False)):
        found = ids_by_object(out, centres)
        before = {tuple(sorted(found[t].items())) for t in range(1, 20) if apart[t]}
        after = {tuple(sorted(found[t].items())) for t in range(first_after, len(scene))}
        assert len(before) == 1 and len(after) == 1, (name, before, after)  # one id per object on each side
        (before,), (after,) = before, after
        assert len({i for _, i in before}) == 2, name
        assert (dict(before) != dict(after)) is swaps, (name, before, after)
        if name == "jde":
            assert dict(before) == {0: 1, 1: 2} == dict(after)
    # ByteTracker hands A's id to B: its Kalman filter learnt zero velocity while they stood, so each
    # one's first boxes on setting off overlap the other's track more; JDE matches the embeddings first.

    # The same through the tracking metrics: the rows feed metrics.tracking as ByteTracker's do.
    byte_r = evaluate_sequences({"cross": (gt, byte_out)})["cross"]
    jde_r = evaluate_sequences({"cross": (gt, jde_out)})["cross"]
    # 121 ground-truth boxes. ByteTracker: 2 switches (one per object), IDF1 80 / 121. JDE: no switch, the two
    # boxes of frame 1 missed (it confirms no track in its first frame), IDF1 238 / 240; MOTA alike (2 errors).
    assert (byte_r["id_switches"], byte_r["fn"], jde_r["id_switches"], jde_r["fn"]) == (2, 0, 0, 2)
    assert byte_r["idf1"] == pytest.approx(100 * 80 / 121) and jde_r["idf1"] == pytest.approx(100 * 238 / 240)
    assert byte_r["mota"] == jde_r["mota"] == pytest.approx(100 * (1 - 2 / 121))


# --------------------------------------------------------------------------- Kalman filter and gating


@pytest.mark.timeout(60)
def test_kalman_filter_one_step_by_hand():
    kf = JDEKalmanFilter()
    # A box centred at (100, 50), 20 x 40: measurement (cx, cy, a, h) = (100, 50, 0.5, 40).
    mean, cov = kf.initiate(np.array([100.0, 50.0, 0.5, 40.0]))
    # Initial std: positions and height 2 * h / 20 = 4, aspect 1e-2; velocities 10 * h / 160 = 2.5, aspect's 1e-5.
    assert mean.tolist() == [100, 50, 0.5, 40, 0, 0, 0, 0]
    assert np.diag(cov) == pytest.approx([16, 16, 1e-4, 16, 6.25, 6.25, 1e-10, 6.25], rel=1e-12)
    mean, cov = kf.predict(mean, cov)
    # Predict: var_x = 16 + 6.25 (velocity) + (h / 20)^2 = 4 -> 26.25; cov(x, vx) = 6.25;
    # var_vx = 6.25 + (h / 160)^2 = 6.3125; the mean does not move (zero velocity).
    assert mean.tolist() == [100, 50, 0.5, 40, 0, 0, 0, 0]
    assert (cov[0, 0], cov[0, 4], cov[4, 4]) == pytest.approx((26.25, 6.25, 6.3125))
    assert cov[2, 2] == pytest.approx(2e-4 + 1e-10)
    # Gating: the projected variance of x and y is 26.25 + (h / 20)^2 = 30.25 = 5.5^2, so a detection
    # 4 px right and 3 px down is at squared Mahalanobis distance (16 + 9) / 30.25.
    d2 = kf.gating_distance(mean, cov, np.array([[104.0, 53.0, 0.5, 40.0], [100.0, 50.0, 0.5, 40.0]]))
    assert d2 == pytest.approx([25 / 30.25, 0.0])
    # Update with a detection 4 px right: gain on x 26.25 / 30.25, on vx 6.25 / 30.25.
    mean, cov = kf.update(mean, cov, np.array([104.0, 50.0, 0.5, 40.0]))
    assert mean == pytest.approx([100 + 105 / 30.25, 50, 0.5, 40, 25 / 30.25, 0, 0, 0])
    assert cov[0, 0] == pytest.approx(26.25 * 4 / 30.25)  # (1 - K) P = 26.25 * 4 / 30.25
    assert cov[0, 4] == pytest.approx(6.25 * 4 / 30.25)
    assert cov[4, 4] == pytest.approx(6.3125 - 6.25**2 / 30.25)
    # The next prediction moves the box by its velocity.
    mean, _ = kf.predict(mean, cov)
    assert mean[0] == pytest.approx(100 + 130 / 30.25)


def _static_then_jump(dx: float, frames: int = 5):
    """One object standing still for `frames` frames, then seen `dx` px to the right, looking exactly the same
    (embedding distance 0, so without the gate the first stage's cost would be 0.02 * d2 alone)."""
    look = np.eye(DIM)[:1]
    tracker = JDETracker()
    outs = [tracker.update([box(200.0)], [0.9], look) for _ in range(frames)]
    # What the gate sees: the same Kalman steps outside the tracker.
    kf = JDEKalmanFilter()
    z = np.array([230.0, 160.0, 0.5, 120.0])
    mean, cov = kf.initiate(z)  # frame 1; frame 2 updates the unconfirmed track without a prediction
    mean, cov = kf.update(mean, cov, z)
    for _ in range(frames - 2):
        mean, cov = kf.update(*kf.predict(mean, cov), z)
    d2 = kf.gating_distance(*kf.predict(mean, cov), (z + [dx, 0, 0, 0])[None])[0]
    outs.append(tracker.update([box(200.0 + dx)], [0.9], look))
    return outs, d2


@pytest.mark.timeout(60)
def test_gating_refuses_an_embedding_match_the_motion_cannot_explain():
    # A jump of 40 px: the fused cost 0.98 * 0 + 0.02 * d2 would be under 0.7 (d2 < 35), but d2 is over the
    # chi-square gate, so stage 1 may not match; the IoU (21 / 101 in JDE's +1 pixels) is under stage 2's 0.5 too.
    outs, d2 = _static_then_jump(40.0)
    assert CHI2INV95_4DOF < d2 < 0.7 / 0.02
    assert [r[0] for r in outs[4]] == [1]
    assert outs[5] == []  # track 1 lost; the detection started an (unconfirmed) track
    # A 15 px step is within the gate: matched by embedding, id kept.
    outs, d2 = _static_then_jump(15.0)
    assert d2 < CHI2INV95_4DOF
    assert [r[0] for r in outs[5]] == [1]


# --------------------------------------------------------------------------- life cycle


def _absent_then_back(back: int, track_buffer: int = 5, last_seen: int = 6, frames: int = 20):
    """One still object seen in frames 1..last_seen and from frame `back` on; the ids output per frame."""
    rng = np.random.default_rng(2)
    tracker = JDETracker(track_buffer=track_buffer)
    ids = []
    for t in range(1, frames + 1):
        seen = t <= last_seen or t >= back
        out = tracker.update([box(200.0)] if seen else [], [0.9] if seen else [], [embedding(0, rng)] if seen else [])
        ids.append([r[0] for r in out])
    return ids


@pytest.mark.timeout(60)
def test_lost_track_is_removed_after_the_buffer_and_a_returning_object_gets_a_new_id():
    assert JDETrackerSettings(track_buffer=5).max_time_lost == 5
    assert JDETrackerSettings(frame_rate=25).max_time_lost == 25  # int(25 / 30 * 30): one second
    assert JDETrackerSettings(frame_rate=60, track_buffer=30).max_time_lost == 60
    # Last matched at frame 6, max_time_lost 5: marked removed at frame 12 (12 - 6 > 5). JDE drops it
    # from its lost list one frame late, so frame 13 can still re-find it; from frame 14 it is gone.
    for back in (8, 12, 13):
        ids = _absent_then_back(back)
        assert ids[:6] == [[]] + [[1]] * 5 and ids[6 : back - 1] == [[]] * (back - 7), back
        assert ids[back - 1 :] == [[1]] * (21 - back), back  # re-found at once: a lost track needs no confirmation
    ids = _absent_then_back(14)
    assert ids[13] == [] and ids[14:] == [[2]] * 6  # a new track: unconfirmed at 14, id 2 from 15


@pytest.mark.timeout(60)
def test_new_tracks_need_a_second_frame_even_in_the_first_frame():
    rng = np.random.default_rng(3)
    tracker = JDETracker()
    look = {k: embedding(k, rng) for k in range(4)}

    def step(objects):
        return [r[0] for r in tracker.update([box(x) for _, x in objects], [0.9] * len(objects),
                                             [look[k] for k, _ in objects])]  # fmt: skip

    a, b = (0, 100.0), (1, 400.0)
    assert step([a, b]) == []  # frame 1: both unconfirmed (JDE leaves is_activated unset at birth)
    assert step([a, b]) == [1, 2]  # frame 2: matched by IoU to their first box, confirmed and output
    assert step([a, b, (2, 700.0)]) == [1, 2]  # a one-frame false positive takes id 3 ...
    assert step([a, b]) == [1, 2]  # ... and is removed unconfirmed, never output
    assert step([a, b, (3, 1000.0)]) == [1, 2]  # a new object, unconfirmed: id 4
    # Confirmation is by IoU alone (cost 1 - IoU < 0.7): a second box overlapping the first with IoU 0
    # removes track 4 and starts track 5, confirmed by the next box (IoU 59 / 63 in JDE's +1 pixels).
    assert step([a, b, (3, 1070.0)]) == [1, 2]
    assert step([a, b, (3, 1072.0)]) == [1, 2, 5]


@pytest.mark.timeout(60)
def test_output_filter_drops_small_and_wide_boxes_but_keeps_tracking_them():
    rng = np.random.default_rng(4)
    boxes = [[0, 0, 10, 10], [100, 0, 300, 100], [400, 0, 460, 120]]  # area 100, w / h = 2, a pedestrian
    looks = [embedding(k, rng) for k in range(3)]
    tracker, unfiltered = JDETracker(), JDETracker(min_box_area=0, max_aspect_ratio=math.inf)
    for _ in range(3):
        out = tracker.update(boxes, [0.9] * 3, looks)
        every = unfiltered.update(boxes, [0.9] * 3, looks)
    assert [r[0] for r in out] == [3] and [r[0] for r in every] == [1, 2, 3]
    # Output: the Kalman filter's box (JDE's STrack.tlwh) and the detection's score.
    assert every[2][1:] == pytest.approx((400, 0, 460, 120, 0.9))
    assert all(isinstance(r[0], int) for r in every)


@pytest.mark.timeout(60)
def test_sequence_rows_have_track_sequences_layout():
    rng = np.random.default_rng(5)
    frames = [([[10.0 + t, 20.0, 40.0, 80.0, 0.8, 3]], embedding(0, rng)[None]) for t in range(3)]
    frames.append(([], np.zeros((0, DIM))))
    out = jde_track_sequence(frames, JDETrackerSettings(conf_thres=0.3))
    assert out[0] == [] and out[3] == []
    tid, x, y, w, h, score, cat = out[2][0]
    assert (tid, score, cat) == (1, 0.8, 3) and (x, y, w, h) == pytest.approx((12, 20, 40, 80), abs=0.5)
    # Detections at or under conf_thres are ignored (JDE keeps scores strictly above it).
    assert jde_track_sequence([([[0, 0, 40, 80, 0.5, 1]], np.ones((1, DIM)))] * 3) == [[], [], []]


# --------------------------------------------------------------------------- assignment


@pytest.mark.timeout(60)
def test_assignment_minimises_cost_minus_limit_as_lapjv_does():
    # lapjv with cost_limit 0.7 takes the single cheap pair (0.1 - 0.7 < 2 * (0.6 - 0.7)); forbidding
    # the pairs over the limit in a rectangular linear_sum_assignment would take the two 0.6 pairs instead.
    cost = np.array([[0.1, 0.6], [0.6, 0.9]])
    assert _assign(cost, 0.7) == ([(0, 0)], [1], [1])
    rows, cols = linear_sum_assignment(np.where(cost < 0.7, cost, 1e6))
    assert [(int(r), int(c)) for r, c in zip(rows, cols) if cost[r, c] < 0.7] == [(0, 1), (1, 0)]
    # Gated (infinite) pairs are never taken; empty sides match nothing.
    assert _assign(np.array([[np.inf, 0.2], [0.3, np.inf]]), 0.7) == ([(0, 1), (1, 0)], [], [])
    assert _assign(np.zeros((0, 3)), 0.7) == ([], [], [0, 1, 2])


# --------------------------------------------------------------------------- settings and inputs


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"conf_thres": 1.0}, "tracker.jde.conf_thres"),
        ({"conf_thres": -0.1}, "tracker.jde.conf_thres"),
        ({"track_buffer": 2.5}, "tracker.jde.track_buffer"),
        ({"track_buffer": -1}, "tracker.jde.track_buffer"),
        ({"track_buffer": True}, "tracker.jde.track_buffer"),
        ({"frame_rate": 0}, "tracker.jde.frame_rate"),
        ({"frame_rate": math.inf}, "tracker.jde.frame_rate"),
        ({"embedding_alpha": 1.5}, "tracker.jde.embedding_alpha"),
        ({"motion_lambda": -0.5}, "tracker.jde.motion_lambda"),
        ({"embedding_thresh": 0}, "tracker.jde.embedding_thresh"),
        ({"iou_thresh": "0.5"}, "tracker.jde.iou_thresh"),
        ({"unconfirmed_thresh": math.nan}, "tracker.jde.unconfirmed_thresh"),
        ({"min_box_area": -1}, "tracker.jde.min_box_area"),
        ({"max_aspect_ratio": 0}, "tracker.jde.max_aspect_ratio"),
        ({"max_age": 3}, "tracker.jde.max_age"),
    ],
)
def test_settings_errors_name_the_setting(overrides, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")) as info:
        JDETracker(**overrides)
    assert "\n" not in str(info.value)


@pytest.mark.timeout(60)
def test_input_errors():
    assert JDETracker(max_aspect_ratio=math.inf, min_box_area=0).settings.max_aspect_ratio == math.inf
    with pytest.raises(ConfigError, match="JDETrackerSettings"):
        JDETracker({"conf_thres": 0.4})
    tracker = JDETracker()
    with pytest.raises(ShapeError, match="2 boxes, 2 scores, 1 embeddings"):
        tracker.update([box(0), box(100)], [0.9, 0.9], np.ones((1, DIM)))
    with pytest.raises(ShapeError, match="NaN"):
        tracker.update([box(0)], [math.nan], np.ones((1, DIM)))
    with pytest.raises(ShapeError, match="all-zero embedding"):
        tracker.update([box(0)], [0.9], np.zeros((1, DIM)))
    tracker.update([box(0)], [0.9], np.ones((1, DIM)))
    with pytest.raises(ShapeError, match="same D in every frame"):
        tracker.update([box(0)], [0.9], np.ones((1, DIM + 1)))
    with pytest.raises(ShapeError, match=r"give \(N, 4\) rows"):
        tracker.update(np.zeros((4, 5)), [0.9] * 4, np.ones((4, DIM)))
    with pytest.raises(ShapeError, match="rows of 6 numbers"):
        tracker.update_rows([[0, 0, 40, 80, 0.9, "person"]], np.ones((1, DIM)))
    with pytest.raises(ShapeError, match="rows of 6 numbers"):
        tracker.update_rows([[0, 0, 40, 80, 0.9]], np.ones((1, DIM)))


# --------------------------------------------------------------------------- the reference's own output


def busy_scene(seed: int = 0, frames: int = 40, dim: int = 32):
    """Six objects wandering with changing velocities, missed at random (some for up to 14 frames), boxes
    jittered, scores 0.3..1, noisy embeddings, and false positives with random looks. With track_buffer 5,
    JDE's tracker sees 37 births, 26 unconfirmed tracks removed, 28 lost tracks re-found and 5 timed out."""
    rng = np.random.default_rng(seed)
    n = 6
    looks = rng.standard_normal((n, dim))
    pos, vel = rng.uniform([0, 0], [800, 400], (n, 2)), rng.normal(0, 4, (n, 2))
    h, a = rng.uniform(40, 200, n), rng.uniform(0.3, 0.7, n)
    away = np.zeros(n, dtype=int)
    scene = []
    for _ in range(frames):
        if rng.random() < 0.1:
            vel += rng.normal(0, 3, (n, 2))
        pos += vel
        dets = []
        for k in range(n):
            if away[k] > 0:
                away[k] -= 1
            elif rng.random() < 0.03:
                away[k] = rng.integers(1, 15)
            elif rng.random() >= 0.1:
                b = np.array([*pos[k], pos[k, 0] + a[k] * h[k], pos[k, 1] + h[k]]) + rng.normal(0, 2, 4)
                dets.append((b, float(rng.uniform(0.3, 1.0)), looks[k] + rng.normal(0, 0.3, dim)))
        for _ in range(int(rng.poisson(0.7))):
            x, y, hh = *rng.uniform(0, 900, 2), rng.uniform(20, 150)
            dets.append((np.array([x, y, x + hh / 2, y + hh]), float(rng.uniform(0.3, 1.0)), rng.standard_normal(dim)))
        scene.append(dets)
    return scene


# What the reference tracker (Towards-Realtime-MOT at e9fa1e8: tracker/multitracker.py, matching.py with lap 0.5.13's
# lapjv, cython_bbox's IoU, utils/kalman_filter.py; the network replaced by these detections) outputs on busy_scene()
# with track_buffer=5, after track.py's area / aspect filter: the ids per frame, and the sum of every output box's
# x1, y1, x2, y2 and score.
REFERENCE_IDS = [
    [], [1, 2, 4], [1, 2, 4, 6], [1, 2, 6], [1, 6], [1, 2], [1, 2], [1, 13], [1, 2, 13], [1], [1, 2, 13],
    [1, 2, 6, 13], [2], [1, 13], [2, 18, 19], [1, 19, 21], [1, 21], [19, 21], [1, 2, 18, 19, 21], [1, 2, 18, 21],
    [2, 19], [19, 21], [2, 19, 21], [2, 18, 19], [2, 19, 21], [2, 18, 19], [2, 18, 21], [2, 18, 21], [2, 21],
    [2, 18, 31], [2, 18, 21, 31], [2, 18, 31], [2, 18, 21], [21, 31], [2, 18], [2, 18, 31], [2, 21, 31],
    [2, 21, 31], [2, 31, 35, 36], [2, 31, 35, 36],
]  # fmt: skip
REFERENCE_SUM = 163312.88458333648


@pytest.mark.timeout(60)
def test_matches_the_reference_trackers_output():
    tracker = JDETracker(track_buffer=5)
    ids, total = [], 0.0
    for dets in busy_scene():
        boxes = np.array([d[0] for d in dets]).reshape(-1, 4)
        out = tracker.update(boxes, [d[1] for d in dets], np.array([d[2] for d in dets]).reshape(-1, 32))
        ids.append([r[0] for r in out])
        total += sum(sum(r[1:]) for r in out)
    assert ids == REFERENCE_IDS
    assert sum(map(len, ids)) == 109
    assert total == pytest.approx(REFERENCE_SUM, rel=1e-9)


@pytest.mark.timeout(60)
def test_a_newcomer_on_a_lost_tracks_spot_is_a_duplicate_until_that_track_expires():
    # A stands at one spot in frames 1-10 and leaves; B, looking different, stands there from frame 12. B's new
    # track overlaps lost track 1 with IoU > 0.85 and has followed its object for less time, so each frame it is
    # dropped as the duplicate (ids 2..6 spent) until track 1 is gone: removed at frame 16 (16 - 10 > 5), out of
    # the lost list after frame 17; the track born at 17 survives and is output from 18. The reference does the same.
    tracker = JDETracker(track_buffer=5)
    ids = []
    for t in range(1, 21):
        if t == 11:
            out = tracker.update(np.zeros((0, 4)), [], np.zeros((0, DIM)))
        else:
            x, look = (200.0, np.eye(DIM)[:1]) if t <= 10 else (201.0, np.eye(DIM)[1:2])
            out = tracker.update([box(x)], [0.9], look)
        ids.append([r[0] for r in out])
    assert ids == [[]] + [[1]] * 9 + [[]] * 7 + [[7]] * 3

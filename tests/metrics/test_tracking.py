"""Tracking: the ByteTrack-style tracker on synthetic scenes, and TrackEval's MOTA/IDF1/HOTA on hand-made cases."""

from __future__ import annotations

import math
import sys

import pytest

from vcmbench.errors import ConfigError, MetricError, MissingDependencyError
from vcmbench.metrics import tracking
from vcmbench.metrics.tracking import COMBINED, evaluate_sequences, sequence_data
from vcmbench.vision.tracker import ByteTracker, TrackerSettings, track_sequence

PERSON, CAR, DOG = 1, 3, 18


def as_tracks(gt_frames, id_map=None):
    """Ground truth as tracker output rows (score 1); `id_map(frame, gt_id)` renames ids."""
    return [
        [[id_map(t, i) if id_map else i, *box, 1.0, cat] for i, box, cat in frame] for t, frame in enumerate(gt_frames)
    ]


def as_detections(gt_frames, score=0.9):
    return [[[*box, score, cat] for _, box, cat in frame] for frame in gt_frames]


def two_objects(frames=10):
    """Two still objects far apart (IoU 0 between them): 2 x `frames` ground-truth boxes."""
    return [[(1, [10, 10, 40, 40], PERSON), (2, [300, 300, 40, 40], PERSON)] for _ in range(frames)]


def moving_scene():
    """40 frames: two objects crossing head-on (their boxes coincide exactly at t=20), one entering at t=10
    and one leaving after t=19; noise-free constant-velocity boxes."""
    frames = []
    for t in range(40):
        frame = [(1, [8.0 * t, 100.0, 40.0, 80.0], PERSON), (2, [320.0 - 8 * t, 100.0, 40.0, 80.0], CAR)]
        if t >= 10:
            frame.append((3, [500.0, 10.0 + 5 * t, 30.0, 30.0], PERSON))
        if t < 20:
            frame.append((4, [700.0, 300.0, 50.0, 50.0], DOG))
        frames.append(frame)
    return frames


# --------------------------------------------------------------------------- metrics (TrackEval)


@pytest.mark.timeout(60)
def test_ground_truth_as_tracks_is_perfect():
    gt = moving_scene()
    r = evaluate_sequences({"seq": (gt, as_tracks(gt))})["seq"]
    assert r["mota"] == pytest.approx(100.0)
    assert r["idf1"] == pytest.approx(100.0)
    assert r["hota"] == pytest.approx(100.0)
    assert r["motp"] == pytest.approx(100.0)
    n = sum(len(f) for f in gt)
    assert (r["gt_dets"], r["tracker_dets"], r["tp"], r["fp"], r["fn"], r["id_switches"]) == (n, n, n, 0, 0, 0)
    assert (r["frames"], r["gt_ids"], r["tracker_ids"]) == (40, 4, 4)


@pytest.mark.timeout(60)
def test_one_identity_switch():
    gt = two_objects()
    # the tracker calls object 1 "10" throughout, object 2 "20" in frames 0-4 and "21" from frame 5 on
    tracks = as_tracks(gt, lambda t, i: 10 if i == 1 else (20 if t < 5 else 21))
    r = evaluate_sequences({"switch": (gt, tracks)})["switch"]
    # CLEAR: GT = 20 boxes, every one matched (IoU 1): TP 20, FN 0, FP 0, one switch (object 2 at frame 5)
    #   MOTA = 1 - (FN + FP + IDSW) / GT = 1 - (0 + 0 + 1) / 20 = 0.95
    assert r["id_switches"] == 1
    assert (r["tp"], r["fn"], r["fp"]) == (20, 0, 0)
    assert r["mota"] == pytest.approx(95.0)
    # Identity: best one-to-one id mapping 1<->10 (10 frames), 2<->20 (5 frames; 21 is as good)
    #   IDTP = 10 + 5 = 15, IDFN = 20 - 15 = 5, IDFP = 20 - 15 = 5
    #   IDF1 = 2 IDTP / (2 IDTP + IDFN + IDFP) = 30 / 40 = 0.75
    assert (r["idtp"], r["idfn"], r["idfp"]) == (15, 5, 5)
    assert r["idf1"] == pytest.approx(75.0)
    # HOTA (IoU 1, so the same at every threshold): DetA = 1; AssA averages each TP's track Jaccard:
    #   object 1's 10 TPs: 10 / (10 + 10 - 10) = 1; object 2's 10 TPs (either half): 5 / (10 + 5 - 5) = 0.5
    #   AssA = (10 * 1 + 10 * 0.5) / 20 = 0.75, HOTA = sqrt(DetA * AssA) = sqrt(0.75)
    assert r["hota"] == pytest.approx(100 * math.sqrt(0.75))


@pytest.mark.timeout(60)
def test_missed_detections_and_a_false_positive():
    gt = two_objects()
    tracks = as_tracks(gt)
    tracks[3] = [row for row in tracks[3] if row[0] != 2]  # object 2 missed in frames 3 and 4
    tracks[4] = [row for row in tracks[4] if row[0] != 2]
    tracks[7].append([3, 600.0, 600.0, 40.0, 40.0, 1.0, PERSON])  # a box on nothing
    r = evaluate_sequences({"misses": (gt, tracks)})["misses"]
    # GT 20, TP 18, FN 2, FP 1, IDSW 0 (object 2 comes back under its old id: a fragmentation, no switch)
    #   MOTA = 1 - (2 + 1 + 0) / 20 = 0.85
    assert (r["tp"], r["fn"], r["fp"], r["id_switches"], r["fragmentations"]) == (18, 2, 1, 0, 1)
    assert r["mota"] == pytest.approx(85.0)
    # IDTP 18, IDFN 2, IDFP 1: IDF1 = 36 / (36 + 2 + 1) = 36 / 39
    assert r["idf1"] == pytest.approx(100 * 36 / 39)
    assert (r["gt_dets"], r["tracker_dets"]) == (20, 19)


@pytest.mark.timeout(60)
def test_combined_sums_counts_before_the_ratios():
    gt = two_objects()
    switch = as_tracks(gt, lambda t, i: 10 if i == 1 else (20 if t < 5 else 21))
    misses = as_tracks(gt)
    misses[3], misses[4] = misses[3][:1], misses[4][:1]
    misses[7].append([3, 600.0, 600.0, 40.0, 40.0, 1.0, PERSON])
    r = evaluate_sequences({"a": (gt, switch), "b": (gt, misses)})
    assert r["a"]["mota"] == pytest.approx(95.0) and r["b"]["mota"] == pytest.approx(85.0)
    c = r[COMBINED]
    # errors: a: 0 FN + 0 FP + 1 IDSW, b: 2 FN + 1 FP + 0 IDSW; GT 20 + 20
    #   MOTA = 1 - (1 + 3) / 40 = 0.9 (here equal to the mean of 95 and 85, as both have 20 GT boxes)
    assert c["mota"] == pytest.approx(90.0)
    assert (c["gt_dets"], c["tracker_dets"], c["id_switches"], c["fn"], c["fp"]) == (40, 39, 1, 2, 1)
    # IDF1 = 2 (15 + 18) / (2 (15 + 18) + (5 + 2) + (5 + 1)) = 66 / 79, not the mean of 75 and 92.3
    assert c["idf1"] == pytest.approx(100 * 66 / 79)
    assert (c["frames"], c["gt_ids"], c["tracker_ids"]) == (20, 4, 6)


@pytest.mark.timeout(60)
def test_combined_weights_sequences_by_their_ground_truth():
    long, short = two_objects(10), two_objects(2)
    tracks = as_tracks(short)
    tracks[1] = []  # both objects missed in the second frame: FN 2 of GT 4
    r = evaluate_sequences({"long": (long, as_tracks(long)), "short": (short, tracks)})
    assert r["short"]["mota"] == pytest.approx(50.0)
    # 1 - 2 / (20 + 4) = 22 / 24, not (100 + 50) / 2
    assert r[COMBINED]["mota"] == pytest.approx(100 * 22 / 24)


@pytest.mark.timeout(60)
def test_categories_select_gt_and_tracks():
    gt = [[(1, [10, 10, 40, 40], PERSON), (2, [300, 300, 40, 40], CAR)] for _ in range(5)]
    tracks = [[row for row in frame if row[6] == PERSON] for frame in as_tracks(gt)]  # cars not tracked
    pooled = evaluate_sequences({"s": (gt, tracks)})["s"]
    assert pooled["mota"] == pytest.approx(50.0)  # 5 FN of 10
    persons = evaluate_sequences({"s": (gt, tracks)}, categories={PERSON})["s"]
    assert persons["mota"] == pytest.approx(100.0) and persons["gt_dets"] == 5
    cars = evaluate_sequences({"s": (gt, tracks)}, categories={CAR})["s"]
    assert (cars["gt_dets"], cars["tracker_dets"], cars["mota"]) == (5, 0, 0.0)


@pytest.mark.timeout(60)
def test_sequence_data_is_trackevals_layout():
    gt = [[(7, [0, 0, 10, 10], PERSON)], [], [(7, [0, 0, 10, 10], PERSON), (3, [50, 50, 10, 10], PERSON)]]
    tracks = [[[42, 5, 0, 10, 10, 0.8, PERSON]], [[42, 5, 0, 10, 10, 0.8, PERSON]], []]
    data = sequence_data(gt, tracks)
    assert (data["num_timesteps"], data["num_gt_ids"], data["num_tracker_ids"]) == (3, 2, 1)
    assert (data["num_gt_dets"], data["num_tracker_dets"]) == (3, 2)
    # ids relabelled 0.. in order of the original ids: gt 3 -> 0, 7 -> 1; track 42 -> 0
    assert [ids.tolist() for ids in data["gt_ids"]] == [[1], [], [1, 0]]
    assert [ids.tolist() for ids in data["tracker_ids"]] == [[0], [0], []]
    assert data["similarity_scores"][0].tolist() == [[pytest.approx(50 / 150)]]  # half-shifted 10x10 boxes
    assert [s.shape for s in data["similarity_scores"]] == [(1, 1), (0, 1), (2, 0)]


@pytest.mark.timeout(60)
def test_metric_input_errors():
    gt = two_objects(10)
    with pytest.raises(MetricError, match=r"'cam2'.*10 frames.*9"):
        evaluate_sequences({"cam2": (gt, as_tracks(gt)[:9])})
    with pytest.raises(MetricError, match=r"frame 0: track id\(s\) \[5\] appear more than once"):
        sequence_data(gt[:1], [[[5, 10, 10, 40, 40, 1.0, 1], [5, 300, 300, 40, 40, 1.0, 1]]])
    with pytest.raises(MetricError, match="7 finite numbers"):
        sequence_data(gt[:1], [[[5, 10, 10, 40, 40, 1.0]]])
    with pytest.raises(MetricError, match="COMBINED"):
        evaluate_sequences({COMBINED: (gt, as_tracks(gt))})


@pytest.mark.timeout(60)
def test_missing_trackeval_names_the_install(monkeypatch):
    for module in [m for m in sys.modules if m == "trackeval" or m.startswith("trackeval.")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "trackeval", None)  # makes `import trackeval...` fail
    with pytest.raises(MissingDependencyError, match=r"pip install trackeval==1\.0\.0"):
        evaluate_sequences({"s": (two_objects(1), as_tracks(two_objects(1)))})
    assert tracking.PIP_HINT == "pip install trackeval==1.0.0"


# --------------------------------------------------------------------------- tracker


@pytest.mark.timeout(60)
def test_tracker_keeps_one_id_per_object():
    gt = moving_scene()
    dets = as_detections(gt)
    for per_class in (True, False):
        tracks = track_sequence(dets, per_class=per_class)
        r = evaluate_sequences({"moving": (gt, tracks)})["moving"]
        assert (r["mota"], r["idf1"], r["hota"]) == (pytest.approx(100.0),) * 3, per_class
        assert (r["id_switches"], r["tracker_ids"]) == (0, 4)
    # the output boxes are the detections, unchanged, with ids 1.. in order of appearance
    assert [row[1:] for row in tracks[0]] == dets[0]
    assert sorted({row[0] for frame in tracks for row in frame}) == [1, 2, 3, 4]
    assert [row[0] for row in tracks[10]] == [1, 2, 3, 4]  # object 3 enters at t=10 and gets the next id
    assert [row[0] for row in tracks[20]] == [1, 2, 4]  # object 4 (id 3) left after t=19
    assert track_sequence(dets) == track_sequence(dets)  # deterministic


@pytest.mark.timeout(60)
def test_per_class_keeps_a_new_object_from_taking_a_lost_track():
    # a person leaves after frame 4 and a car appears on the very same spot at frame 5
    gt = [[(1 if t < 5 else 2, [100, 100, 40, 40], PERSON if t < 5 else CAR)] for t in range(10)]
    agnostic = track_sequence(as_detections(gt))
    assert {row[0] for frame in agnostic for row in frame} == {1}  # the car inherits the person's track
    assert evaluate_sequences({"s": (gt, agnostic)})["s"]["idf1"] == pytest.approx(50.0)  # IDTP 5 of 10
    per_class = track_sequence(as_detections(gt), per_class=True)
    assert [frame[0][0] for frame in per_class] == [1] * 5 + [2] * 5
    assert evaluate_sequences({"s": (gt, per_class)})["s"]["idf1"] == pytest.approx(100.0)


@pytest.mark.timeout(60)
def test_low_score_detection_continues_its_track():
    gt = [[(1, [10.0 + 5 * t, 50.0, 40.0, 40.0], PERSON)] for t in range(10)]
    dets = as_detections(gt)
    dets[5][0][4] = 0.3  # the object is barely detected in frame 5
    dets[5].append([400.0, 400.0, 40.0, 40.0, 0.3, PERSON])  # and a weak box on nothing
    tracks = track_sequence(dets)
    assert tracks[5] == [[1, 35.0, 50.0, 40.0, 40.0, 0.3, PERSON]]  # second stage: same id, weak box kept
    assert {row[0] for frame in tracks for row in frame} == {1}  # the weak clutter box starts no track
    assert evaluate_sequences({"s": (gt, tracks)})["s"]["mota"] == pytest.approx(100.0)
    # without the second stage (0.3 under low_score) frame 5 is a miss; the lost track is found again in frame 6
    no_low = track_sequence(dets, low_score=0.4)
    assert no_low[5] == [] and no_low[6][0][0] == 1
    assert evaluate_sequences({"s": (gt, no_low)})["s"]["mota"] == pytest.approx(90.0)  # 1 FN of 10


@pytest.mark.timeout(60)
def test_max_age_and_min_hits():
    gt = [[(1, [100.0, 100.0, 40.0, 40.0], PERSON)] for _ in range(12)]
    dets = as_detections(gt)
    for t in (3, 4):  # unseen for 2 frames: max_age=2 still knows the track
        dets[t] = []
    assert {row[0] for f in track_sequence(dets, max_age=2) for row in f} == {1}
    dets[5] = []  # unseen for 3 frames: a new id
    ids = [f[0][0] if f else None for f in track_sequence(dets, max_age=2)]
    assert ids == [1, 1, 1, None, None, None, 2, 2, 2, 2, 2, 2]
    # min_hits=3: a track born after the first frame is output from its third match on
    late = [[]] * 2 + as_detections(gt)[:5]
    assert [[row[0] for row in f] for f in track_sequence(late, min_hits=3)] == [[], [], [], [], [1], [1], [1]]
    assert track_sequence(as_detections(gt)[:2], min_hits=3)[0][0][0] == 1  # first-frame tracks: at once


@pytest.mark.timeout(60)
def test_tracker_settings_errors():
    with pytest.raises(ConfigError, match=r"tracker\.max_agee.*valid keys: high_score, .*max_age"):
        ByteTracker(max_agee=3)
    with pytest.raises(ConfigError, match=r"tracker\.max_age=-1"):
        ByteTracker(max_age=-1)
    with pytest.raises(ConfigError, match=r"tracker\.match_iou=0"):
        track_sequence([], match_iou=0)
    with pytest.raises(ConfigError, match=r"tracker\.new_track_score"):
        TrackerSettings(high_score=0.7, new_track_score=0.6)
    settings = TrackerSettings(max_age=5)
    assert ByteTracker(settings, per_class=True).settings == TrackerSettings(max_age=5, per_class=True)


# --------------------------------------------------------------------------- the platform's conventions (motmetrics)

BOX = [0.0, 0.0, 100.0, 100.0]


@pytest.mark.timeout(60)
def test_clear_mot_counts_as_the_platforms_motmetrics_by_hand():
    """One object over 5 frames, worked with motmetrics' rules (the MPEG platform's MOTA; MOTAccumulator.update):
    a pair matches at distance 1 - IoU <= 0.5, a still-valid correspondence is carried forward before the
    Hungarian step, and a switch is a match to another track than the object's last one, however long ago."""
    gt = [[(7, BOX, PERSON)] for _ in range(5)]
    tracks = [
        [[1, *BOX, 1.0, PERSON]],  # t0: track 1, IoU 1: MATCH
        # t1: track 1 at IoU exactly 0.5 (distance 0.5: still a pair) is carried forward; track 2 (IoU 1) is FP
        [[1, 0.0, 0.0, 100.0, 50.0, 1.0, PERSON], [2, *BOX, 1.0, PERSON]],
        [[2, *BOX, 1.0, PERSON]],  # t2: track 1 gone, track 2 matched: SWITCH (1 -> 2)
        [],  # t3: MISS
        [[1, *BOX, 1.0, PERSON]],  # t4: track 1 again: SWITCH (2 -> 1), two frames after the last match
    ]
    r = evaluate_sequences({"s": (gt, tracks)})["s"]
    # GT 5, TP 4 (t0, t1, t2, t4), FP 1 (t1), FN 1 (t3), IDSW 2: MOTA = 1 - (1 + 1 + 2) / 5 = 0.2
    assert (r["gt_dets"], r["tp"], r["fp"], r["fn"], r["id_switches"]) == (5, 4, 1, 1, 2)
    assert r["mota"] == pytest.approx(20.0)
    # MOTP: the matches' mean IoU, (1 + 0.5 + 1 + 1) / 4
    assert r["motp"] == pytest.approx(87.5)
    just_under = [[[1, 0.0, 0.0, 100.0, 49.99, 1.0, PERSON]]]  # IoU 0.4999: no pair, FP + FN
    u = evaluate_sequences({"s": (gt[:1], just_under)})["s"]
    assert (u["tp"], u["fp"], u["fn"]) == (0, 1, 1)


@pytest.mark.timeout(60)
def test_where_trackeval_and_motmetrics_differ_a_pairing_is_kept_one_frame_only():
    """The one rule TrackEval (used here) and the platform's motmetrics apply differently (metrics.tracking):
    after a frame where the object is missed while another track exists, motmetrics still carries the object's
    last pairing (track 1) forward, TrackEval matches the better-overlapping track 2 and counts a switch."""
    gt = [[(7, BOX, PERSON)] for _ in range(3)]
    tracks = [
        [[1, *BOX, 1.0, PERSON]],
        [[9, 500.0, 500.0, 50.0, 50.0, 1.0, PERSON]],  # the object missed; a track elsewhere (FP)
        [[1, 0.0, 0.0, 100.0, 60.0, 1.0, PERSON], [2, *BOX, 1.0, PERSON]],  # IoU 0.6 and 1
    ]
    r = evaluate_sequences({"s": (gt, tracks)})["s"]
    # TrackEval: TP 2, FP 2, FN 1, IDSW 1: MOTA = 1 - 4 / 3. motmetrics: track 1 carried forward (MATCH),
    # IDSW 0: MOTA = 1 - 3 / 3 = 0
    assert (r["tp"], r["fp"], r["fn"], r["id_switches"]) == (2, 2, 1, 1)
    assert r["mota"] == pytest.approx(-100 / 3)

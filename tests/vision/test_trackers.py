"""`tracker.kind`: JDE's tracker where the records carry embeddings, the ByteTrack-style one otherwise; JDE's
frame rate from the sequence's fps; every bad setting one line naming it."""

from __future__ import annotations

import numpy as np
import pytest

from vcmbench.errors import ConfigError
from vcmbench.vision.jde_tracker import jde_track_sequence
from vcmbench.vision.tracker import track_sequence
from vcmbench.vision.trackers import TrackerChoice

pytestmark = pytest.mark.timeout(60)

ROW = [100.0, 100.0, 40.0, 80.0, 0.9, 1.0]  # x, y, w, h, score, category: a still pedestrian-shaped box
EMBEDDING = np.eye(1, 8, dtype=np.float32)


def blinking(present: list[bool]) -> list[tuple[list[list[float]], np.ndarray]]:
    """One still object with one look, detected in the frames marked present."""
    return [([ROW], EMBEDDING) if p else ([], np.zeros((0, 8), np.float32)) for p in present]


def ids(tracked: list[list[list[float]]]) -> list[list[int]]:
    return [[int(row[0]) for row in frame] for frame in tracked]


def test_auto_is_jde_with_embeddings_and_bytetrack_without():
    choice = TrackerChoice.from_settings({})
    assert choice.kind == "auto"
    assert (choice.resolve(True), choice.resolve(False)) == ("jde", "bytetrack")
    assert TrackerChoice.from_settings({"kind": "ByteTrack"}).resolve(True) == "bytetrack"
    assert TrackerChoice.from_settings({"kind": "jde"}).resolve(True) == "jde"


def test_jde_without_embeddings_is_one_line_naming_the_setting():
    with pytest.raises(ConfigError, match=r"^tracker\.kind=jde: .*gives none.*tracker\.kind=auto or bytetrack") as info:
        TrackerChoice.from_settings({"kind": "jde"}).resolve(False)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"tracker\.kind=jde: a frame has detections without"):
        TrackerChoice.from_settings({"kind": "jde"}).track([([ROW], None)], 30.0, "jde")


@pytest.mark.parametrize(
    "settings, named",
    [
        ({"kind": "sort"}, r"tracker\.kind='sort': choose auto"),
        ({"max_agee": 3}, r"tracker\.max_agee: not a tracker setting"),
        ({"jde": {"track_bufer": 3}}, r"tracker\.jde\.track_bufer: not a JDE tracker setting"),
        ({"jde": {"embedding_thresh": 0}}, r"tracker\.jde\.embedding_thresh=0"),
        ({"jde": {"frame_rate": -5}}, r"tracker\.jde\.frame_rate=-5: sequence .* or a frame rate > 0"),
        ({"jde": {"frame_rate": "fast"}}, r"tracker\.jde\.frame_rate='fast'"),
        ({"jde": 3}, r"tracker\.jde=3: a mapping"),
    ],
)
def test_bad_settings_are_refused_in_one_line_before_any_sequence(settings, named):
    with pytest.raises(ConfigError, match=named) as info:
        TrackerChoice.from_settings(settings)
    assert "\n" not in str(info.value)


def test_each_kind_runs_its_tracker_with_its_settings():
    frames = blinking([True] * 4)
    choice = TrackerChoice.from_settings({"max_age": 5, "jde": {"track_buffer": 10, "frame_rate": "sequence"}})
    assert choice.track(frames, 25.0, "bytetrack") == track_sequence([r for r, _ in frames], max_age=5)
    assert choice.track(frames, 25.0) == jde_track_sequence(frames, frame_rate=25.0, track_buffer=10)
    # JDE confirms a track at its second frame: nothing is output in the first
    assert ids(choice.track(frames, 25.0)) == [[], [1], [1], [1]]


def test_jde_keeps_a_lost_track_for_its_buffer_at_the_sequence_s_frame_rate():
    """track_buffer 3 frames at 30 fps: kept 3 frames at 30 fps, int(10 / 30 * 3) = 1 at 10 fps (JDE's
    max_time_lost). The object is missed for 3 frames: at 30 fps it comes back under its id, at 10 fps under a
    new one, unless tracker.jde.frame_rate fixes the rate (30: the MPEG platform's, whatever the sequence)."""
    frames = blinking([True, True, True, False, False, False, True, True])
    by_sequence = TrackerChoice.from_settings({"jde": {"track_buffer": 3}})
    assert ids(by_sequence.track(frames, 30.0))[-2:] == [[1], [1]]
    assert ids(by_sequence.track(frames, 10.0))[-2:] == [[], [2]]
    fixed = TrackerChoice.from_settings({"jde": {"track_buffer": 3, "frame_rate": 30}})
    assert ids(fixed.track(frames, 10.0))[-2:] == [[1], [1]]


def test_a_group_whose_items_all_failed_is_tracked_by_the_run_s_tracker():
    """The kind is decided over the whole run (points.build_sequence_points); a (codec, rate) whose every
    sequence failed (no rows, no embeddings) is then tracked by JDE's tracker too, to no tracks."""
    from types import SimpleNamespace

    from vcmbench.metrics.tracking_evaluator import tracking_scores
    from vcmbench.records import Record

    seq = SimpleNamespace(sequence_id=1, name="s", fps=30.0, frame_ids=[11, 12])
    dataset = SimpleNamespace(sequences=[seq], ground_truth_tracks={1: {11: [(1, [0, 0, 10, 20], 1)], 12: []}})
    failed = Record(1, "c", "q=1", "s", 0, 100, 0.0, 0.0, 0.0, 0.0, status="decode_failed", frames=2,
                    frame_ids=[11, 12], frame_detections=[[], []])  # fmt: skip
    items = SimpleNamespace(sequences=dataset, tracker={"kind": "jde"})
    scores = tracking_scores(items, [failed], [], {})
    assert scores["mota"] == 0.0 and scores["id_switches"] == 0

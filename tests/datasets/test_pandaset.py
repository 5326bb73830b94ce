"""PandaSet in the MPEG FCM test-data layout (fcm_testdata/PandaSet): the tiny fixture of
tests/data/pandaset-mini read through `dataset=pandaset`, and one-line errors on damaged copies of it."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from vcmbench.codecs.sequence import ctc_gop
from vcmbench.config import build as build_node
from vcmbench.config import compose_config
from vcmbench.datasets import pandaset
from vcmbench.datasets.pandaset import CTTC_CLASSES, CTTC_SEQUENCES, FRAME_RATE, INTRA_PERIOD
from vcmbench.errors import DatasetError

MINI = Path(__file__).parents[1] / "data" / "pandaset-mini"
W, H = 64, 36
#: the fixture's points, (x, y, PandaSet category) per frame (tests/data/pandaset-mini/make_fixture.py)
POINTS = {
    "057": [[(0, 0, 7), (63, 35, 13), (10, 20, 30), (5, 5, 0)], [(1, 2, 5), (2, 3, 41)], []],
    "003": [[(30, 10, 13), (31, 11, 14)], [(32, 12, 8), (0, 35, 11)]],
}
#: scripts/evaluation/pandaset/pandaset.json's sequences, in its order (CompressAI-Vision 31165da)
PLATFORM_ORDER = (
    "057 058 069 070 072 073 077 003 011 016 017 021 023 027 029 030 033 035 037 039 043 053 056 097 "
    "088 089 090 095 109 112 113 115 117 119 122 124"
).split()


def compose_build(root: Path, tmp_path: Path, *overrides: str):
    """The dataset as `vcmbench run dataset=pandaset dataset.root=<root>` composes and builds it."""
    cfg = compose_config(
        "config", ["dataset=pandaset", f"dataset.root={root}", f"dataset.cache_dir={tmp_path / 'cache'}", *overrides]
    )
    return build_node(cfg.dataset)


def as_rows(points: np.ndarray) -> list[tuple[int, int, int]]:
    return [tuple(int(v) for v in row) for row in points]


@pytest.mark.timeout(60)
def test_table_is_the_platforms():
    assert list(CTTC_SEQUENCES) == PLATFORM_ORDER
    assert {c: len(s) for c, s in CTTC_CLASSES.items()} == {"PANDAM1": 7, "PANDAM2": 17, "PANDAM3": 12}
    assert (CTTC_SEQUENCES["077"], CTTC_SEQUENCES["003"], CTTC_SEQUENCES["097"], CTTC_SEQUENCES["088"]) == (
        "PANDAM1",
        "PANDAM2",
        "PANDAM2",
        "PANDAM3",
    )
    # pandaset.json: frame_rate 30, intra_period 32, which the codecs' `intra_period: auto` picks at 30 fps
    assert (FRAME_RATE, INTRA_PERIOD) == (30.0, 32)
    assert ctc_gop("low_delay", "auto", FRAME_RATE).intra_period == INTRA_PERIOD


@pytest.mark.timeout(120)
@pytest.mark.parametrize("root_is", ["fcm_testdata", "PandaSet"])
def test_fixture_loads_frames_and_points(tmp_path, root_is, caplog):
    root = MINI if root_is == "fcm_testdata" else MINI / "PandaSet"
    with caplog.at_level(logging.WARNING, logger="vcmbench.datasets.pandaset"):
        ds = compose_build(root, tmp_path)
    assert ds.name == "pandaset" and ds.metric == "miou" and not ds.tracking
    assert ds.image_dir == MINI / "PandaSet"
    # CTTC order: 057 (PANDAM1) before 003 (PANDAM2); the 34 absent sequences are said, not refused
    assert [(s.name, s.seq_class, s.fps, len(s.frames)) for s in ds.sequences] == [
        ("057", "PANDAM1", 30.0, 3),
        ("003", "PANDAM2", 30.0, 2),
    ]
    assert ds.classes == ["PANDAM1", "PANDAM2"]
    assert any("are absent" in r.getMessage() and "'124'" in r.getMessage() for r in caplog.records)
    s057, s003 = ds.sequences
    assert [f.file_name for f in s057.frames] == [f"057/camera/front_camera/{k:02d}.jpg" for k in range(3)]
    assert s057.frame_ids == [1_000_000, 1_000_001, 1_000_002] and s003.frame_ids == [2_000_000, 2_000_001]
    assert {(f.width, f.height) for s in ds.sequences for f in s.frames} == {(W, H)}
    assert s057.pixels == 3 * W * H and s057.duration_s == 3 / 30
    samples = list(ds.frames(s057))
    assert [tuple(x.image.shape) for x in samples] == [(3, H, W)] * 3
    assert abs(int(samples[1].image[1, 0, 0]) - 60) <= 2  # frame 01's green, through JPEG
    for seq in ds.sequences:
        points = ds.ground_truth_points(seq)
        assert list(points) == seq.frame_ids
        assert [as_rows(p) for p in points.values()] == POINTS[seq.name]
        assert all(p.dtype == np.int64 and p.shape[1:] == (3,) for p in points.values())


@pytest.mark.timeout(120)
def test_sequences_frames_and_shards_are_chosen(tmp_path):
    # a number is PandaSet's 3-digit name; max_frames keeps the first frames, and their points
    some = compose_build(MINI, tmp_path, "dataset.sequences=[3]", "dataset.max_frames=1")
    assert [(s.name, s.seq_class, len(s.frames)) for s in some.sequences] == [("003", "PANDAM2", 1)]
    (only,) = some.sequences
    assert [as_rows(p) for p in some.ground_truth_points(only).values()] == POINTS["003"][:1]
    half = compose_build(MINI, tmp_path, "dataset.shard=1/2")
    assert len(half.sequences) == 1  # the other sequence is shard 2/2's
    # a sequence outside the CTTC's list is read the same way, under class 'other'; seqinfo.ini's
    # frameRate rules where there is one
    data = tmp_path / "data"
    shutil.copytree(MINI / "PandaSet", data / "PandaSet")
    extra = data / "PandaSet" / "200"
    shutil.copytree(data / "PandaSet" / "003", extra)
    (extra / "annotations" / "003.npz").rename(extra / "annotations" / "200.npz")
    (extra / "seqinfo.ini").write_text("[Sequence]\nframeRate=10\n")
    ds = compose_build(data, tmp_path, "dataset.sequences=['200','057']")
    assert [(s.name, s.seq_class, s.fps) for s in ds.sequences] == [("200", "other", 10.0), ("057", "PANDAM1", 30.0)]


@pytest.mark.timeout(60)
def test_a_changed_frame_rate_is_logged(tmp_path, caplog):
    shutil.copytree(MINI / "PandaSet", tmp_path / "PandaSet")
    (tmp_path / "PandaSet" / "057" / "seqinfo.ini").write_text("[Sequence]\nframeRate=25\n")
    with caplog.at_level(logging.WARNING, logger="vcmbench.datasets.pandaset"):
        ds = pandaset.build("pandaset", str(tmp_path), cache_dir=str(tmp_path / "cache"))
    assert ds.sequences[0].fps == 25.0
    assert any("frameRate=25, the FCM CTC's is 30" in r.getMessage() for r in caplog.records)


def _write_gt(npz: Path, frames: list) -> None:
    gt = np.empty(len(frames), dtype=object)
    for k, rows in enumerate(frames):
        gt[k] = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
    np.savez(npz, gt=gt)


def _break(data: Path, case: str) -> tuple[dict, Path, str]:
    """Damage the copy one way: (build kwargs, the path the message names, text it holds)."""
    seq = data / "PandaSet" / "057"
    npz = seq / "annotations" / "057.npz"
    if case == "root":
        return {"root": str(data / "nowhere")}, data / "nowhere", "folder not found"
    if case == "not_pandaset":
        (data / "SFU_HW_Obj").mkdir()
        return {"root": str(data / "SFU_HW_Obj")}, data / "SFU_HW_Obj", "holds neither PandaSet/"
    if case == "sequence":
        return {"sequences": ["057", "058"]}, data / "PandaSet" / "058", "sequence folder not found"
    if case == "twice":
        return {"sequences": ["057", "057"]}, Path("dataset.sequences"), "listed twice"
    if case == "frames":
        shutil.rmtree(seq / "camera")
        return {}, seq / "camera" / "front_camera", "copy the sequence's front-camera JPEGs"
    if case == "npz":
        npz.unlink()
        return {}, npz, "annotations/057.npz in its folder"
    if case == "count":  # a frame gone: 2 JPEGs, 3 gt entries
        (seq / "camera" / "front_camera" / "02.jpg").unlink()
        return {}, npz, "'gt' holds 3 frames but"
    if case == "outside":
        _write_gt(npz, [[(0, 0, 7)], [(64, 3, 5)], []])  # x = 64 in a 64-wide frame
        return {}, npz, "gt[1] row 0 is the point (64, 3), outside its 64x36 frame"
    if case == "category":
        _write_gt(npz, [[(0, 0, 7)], [(1, 1, 43)], []])
        return {}, npz, "category 43, not a PandaSet category (0..42)"
    if case == "shape":
        np.savez(npz, gt=np.zeros((3, 2, 2), dtype=np.int64))
        return {}, npz, "gt[0] has dtype int64 and shape (2, 2)"
    if case == "no_gt":
        np.savez(npz, labels=np.zeros(3))
        return {}, npz, "no 'gt' array"
    if case == "not_npz":
        npz.write_text("not a zip")
        return {}, npz, "cannot be read as an npz"
    if case == "seqinfo":
        (seq / "seqinfo.ini").write_text("[Sequence]\nname=057\n")
        return {}, seq / "seqinfo.ini", "no readable [Sequence] frameRate"
    if case == "max_frames":
        return {"max_frames": 0}, Path("dataset.max_frames=0"), "must be >= 1"
    raise AssertionError(case)


CASES = [
    "root",
    "not_pandaset",
    "sequence",
    "twice",
    "frames",
    "npz",
    "count",
    "outside",
    "category",
    "shape",
    "no_gt",
    "not_npz",
    "seqinfo",
    "max_frames",
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", CASES)
def test_errors_are_one_line(tmp_path, case):
    data = tmp_path / "fcm_testdata"
    shutil.copytree(MINI / "PandaSet", data / "PandaSet")
    kwargs, path, text = _break(data, case)
    args = {"name": "pandaset", "root": str(data), "cache_dir": str(tmp_path / "cache")}
    with pytest.raises(DatasetError) as err:
        pandaset.build(**(args | kwargs))
    msg = str(err.value)
    assert str(path) in msg and text in msg and "\n" not in msg, msg

"""TVD and HiEve in the MPEG FCM test-data layout (fcm_testdata/tvd_tracking, fcm_testdata/HiEve_pngs)
through the tracking reader: the platform's seqinfo.ini files (tests/data/fcm_tracking) with a few small
generated PNG frames and a small gt.txt, built in tmp_path."""

from __future__ import annotations

import configparser
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vcmbench.codecs.sequence import ctc_gop
from vcmbench.config import build as build_node
from vcmbench.config import compose_config
from vcmbench.datasets import fcm_tracking
from vcmbench.datasets.fcm_tracking import LAYOUTS
from vcmbench.errors import DatasetError

FIXTURES = Path(__file__).parents[1] / "data" / "fcm_tracking"
N = 3  # frames per generated sequence
SIZE = {1080: (48, 27), 720: (32, 18)}  # the real 16:9 sizes, scaled down

# TVD rows: frame, id, x, y, w, h, flag, class, visibility. Kept by MOT-TVD-EVAL's rule (flag >= 0.99, class 1):
# ids 1 and 2. Dropped: id 3 (flag 0), id 4 (class 7, a static person), id 5 (class -1, which mot_folder keeps).
TVD_GT = """\
1,1,2,2,10,8,1,1,1.0
2,1,3,2,10,8,1,1,0.8
3,1,4,2,10,8,1,1,0.6
2,2,20,10,6,9,1,1,1.0
3,2,21,10,6,9,1,1,1.0
1,3,30,5,5,5,0,1,1.0
2,4,12,12,4,4,1,7,1.0
3,5,5,15,4,4,1,-1,-1
"""
# HiEve rows, frames numbered from 0 like its pngs. Kept by MOT-HIEVE-EVAL's rule (flag >= 1, any class):
# ids 7, 8 (class -1, 10 columns) and 9 (class 7). Dropped: id 6 (flag 0).
HIEVE_GT = """\
0,7,2,2,10,8,1,1,1
1,7,3,2,10,8,1,1,1
2,7,4,2,10,8,1,1,1
1,8,15,5,6,9,1,-1,-1,-1
2,9,20,3,5,5,1,7,0.5
0,6,25,8,4,4,0,1,1
"""


def read_ini(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keep frameRate, not framerate
    parser.read(path, encoding="utf-8")
    return dict(parser["Sequence"])


def frame(seq: int, k: int, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[..., 0], img[..., 1] = 30 * seq, 40 * k
    return img


def write_layout(fcm_testdata: Path, layout: str, gt: str) -> Path:
    """fcm_testdata/<layout folder>/<seq>/ for every CTC sequence: the platform's seqinfo.ini with seqLength,
    imWidth, imHeight set to N small PNG frames (numbered from the sequence's first frame), and `gt`."""
    spec = LAYOUTS[layout]
    base = fcm_testdata / spec.folder
    for i, seq in enumerate(spec.sequences, start=1):
        folder = base / seq.folder
        (folder / "img1").mkdir(parents=True)
        (folder / "gt").mkdir()
        size = SIZE[seq.height]
        ini = read_ini(FIXTURES / spec.folder / seq.folder / "seqinfo.ini")
        ini |= {"seqLength": str(N), "imWidth": str(size[0]), "imHeight": str(size[1])}
        (folder / "seqinfo.ini").write_text("[Sequence]\n" + "".join(f"{k}={v}\n" for k, v in ini.items()))
        for k in range(seq.first_frame, seq.first_frame + N):
            Image.fromarray(frame(i, k, size)).save(folder / "img1" / f"{k:06d}.png")
        (folder / "gt" / "gt.txt").write_text(gt)
    if layout == "tvd":
        (base / "MD5.txt").write_text("TVD-01_1920x1080_50_8bit_yuv420.yuv: 0\n")  # as shipped: not a sequence
    return fcm_testdata


def compose_build(layout: str, root: Path, tmp_path: Path, *overrides: str):
    """The dataset as `vcmbench run dataset=<layout>_tracking dataset.root=<root>` composes and builds it."""
    cfg = compose_config(
        "config",
        [f"dataset={layout}_tracking", f"dataset.root={root}", f"dataset.cache_dir={tmp_path / 'cache'}", *overrides],
    )
    return build_node(cfg.dataset)


def tracks_of(ds, seq) -> dict[int, list[int]]:
    """frame number -> sorted track ids of the sequence's ground truth."""
    by_frame = ds.ground_truth_tracks[seq.sequence_id]
    return {fid % 1_000_000: sorted(t for t, _, _ in by_frame[fid]) for fid in seq.frame_ids}


@pytest.mark.timeout(60)
def test_table_agrees_with_the_platforms_seqinfo_files():
    for layout, spec in LAYOUTS.items():
        folders = sorted(p.name for p in (FIXTURES / spec.folder).iterdir() if p.is_dir())
        assert folders == sorted(s.folder for s in spec.sequences), layout
        for seq in spec.sequences:
            ini = read_ini(FIXTURES / spec.folder / seq.folder / "seqinfo.ini")
            assert (ini["name"], ini["imDir"], ini["imExt"]) == (seq.folder, "img1", ".png")
            assert float(ini["frameRate"]) == seq.frame_rate
            assert (int(ini["imWidth"]), int(ini["imHeight"]), int(ini["seqLength"])) == (
                seq.width,
                seq.height,
                seq.frames,
            )
            # the CTC's intra period (tvd.json 64, hieve.json 32) is what the codecs' `intra_period: auto` picks
            assert ctc_gop("low_delay", "auto", seq.frame_rate).intra_period == seq.intra_period
    assert {s.cttc_class for s in LAYOUTS["tvd"].sequences} == {"TVD"}
    assert [(s.cttc_name, s.cttc_class) for s in LAYOUTS["hieve"].sequences] == [
        ("hieve-13", "HIEVE-1080P"),
        ("hieve-16", "HIEVE-1080P"),
        ("hieve-17", "HIEVE-720P"),
        ("hieve-18", "HIEVE-720P"),
        ("hieve-2", "HIEVE-720P"),
    ]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("root_is", ["fcm_testdata", "tvd_tracking"])
def test_tvd_layout_loads_with_its_tracks(tmp_path, root_is, caplog):
    data = write_layout(tmp_path / "fcm_testdata", "tvd", TVD_GT)
    root = data if root_is == "fcm_testdata" else data / "tvd_tracking"
    with caplog.at_level(logging.WARNING, logger="vcmbench.datasets.fcm_tracking"):
        ds = compose_build("tvd", root, tmp_path)
    assert ds.name == "tvd_tracking" and ds.tracking and ds.image_dir == data / "tvd_tracking"
    assert [(s.name, s.seq_class, s.fps, len(s.frames)) for s in ds.sequences] == [
        ("TVD-01", "TVD", 50.0, N),
        ("TVD-02", "TVD", 50.0, N),
        ("TVD-03", "TVD", 50.0, N),
    ]
    assert ds.classes == ["TVD"]
    first = ds.sequences[0]
    assert [f.file_name for f in first.frames] == [f"TVD-01/img1/{k:06d}.png" for k in (1, 2, 3)]
    assert first.frame_ids == [1_000_001, 1_000_002, 1_000_003]
    assert (first.frames[0].width, first.frames[0].height) == SIZE[1080]
    for seq in ds.sequences:  # flag-0, distractor and class -1 rows gone
        assert tracks_of(ds, seq) == {1: [1], 2: [1, 2], 3: [1, 2]}
    coco = json.loads(ds.annotation_file.read_text())
    ann = next(a for a in coco["annotations"] if a["image_id"] == 1_000_001)
    assert ann["bbox"] == [1.0, 1.0, 10.0, 8.0] and ann["mot_class"] == 1  # MOT's 1-based x, y -> 0-based
    assert coco["info"]["source"]["rule"] == {"min_flag": 0.99, "classes": [1]}
    sample = next(ds.frames(first))
    assert np.array_equal(sample.image.permute(1, 2, 0).numpy(), frame(1, 1, SIZE[1080]))
    # the ini's seqLength (3 here) differs from the CTC's: said, not refused
    assert any("seqLength=3, the FCM CTC codes 3000" in r.getMessage() for r in caplog.records)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("root_is", ["fcm_testdata", "HiEve_pngs"])
def test_hieve_layout_loads_with_its_tracks(tmp_path, root_is):
    data = write_layout(tmp_path / "fcm_testdata", "hieve", HIEVE_GT)
    root = data if root_is == "fcm_testdata" else data / "HiEve_pngs"
    ds = compose_build("hieve", root, tmp_path)
    assert ds.name == "hieve_tracking" and ds.tracking
    assert [(s.name, s.seq_class, s.fps, len(s.frames)) for s in ds.sequences] == [
        ("hieve-13", "HIEVE-1080P", 30.0, N),
        ("hieve-16", "HIEVE-1080P", 30.0, N),
        ("hieve-17", "HIEVE-720P", 30.0, N),
        ("hieve-18", "HIEVE-720P", 30.0, N),
        ("hieve-2", "HIEVE-720P", 30.0, N),
    ]
    assert ds.classes == ["HIEVE-1080P", "HIEVE-720P"]
    s13, s2 = ds.sequences[0], ds.sequences[-1]
    # frames numbered from 000000.png, paired with the gt rows of the same number
    assert [f.file_name for f in s13.frames] == [f"13/img1/{k:06d}.png" for k in (0, 1, 2)]
    assert s13.frame_ids == [1_000_000, 1_000_001, 1_000_002]
    assert (s13.frames[0].width, s2.frames[0].width) == (SIZE[1080][0], SIZE[720][0])
    for seq in ds.sequences:  # any class with flag 1 kept (8: class -1, 9: class 7); the flag-0 row gone
        assert tracks_of(ds, seq) == {0: [7], 1: [7, 8], 2: [7, 9]}
    samples = list(ds.frames(s2))
    assert np.array_equal(samples[0].image.permute(1, 2, 0).numpy(), frame(5, 0, SIZE[720]))

    some = compose_build("hieve", root, tmp_path, "dataset.sequences=[2,13]", "dataset.max_frames=2")
    assert [(s.name, s.seq_class, len(s.frames)) for s in some.sequences] == [
        ("hieve-2", "HIEVE-720P", 2),
        ("hieve-13", "HIEVE-1080P", 2),
    ]


def _break(data: Path, case: str) -> tuple[str, dict, Path, str]:
    """Damage the layout one way: (layout, build kwargs, path the message names, text it holds)."""
    if case == "tvd_gt":
        gt = data / "tvd_tracking" / "TVD-02" / "gt" / "gt.txt"
        gt.unlink()
        return "tvd", {}, gt, "TVD-02/gt/gt.txt"
    if case == "hieve_gt":
        shutil.rmtree(data / "HiEve_pngs" / "17" / "gt")
        return "hieve", {}, data / "HiEve_pngs" / "17" / "gt" / "gt.txt", "copy that sequence's gt folder"
    if case == "root":
        return "tvd", {"root": str(data / "SFU_HW_Obj")}, data / "SFU_HW_Obj", "tvd_tracking"
    if case == "sequence":
        return "hieve", {"sequences": ["13", "19"]}, data / "HiEve_pngs", "['19'] not in the FCM CTC's HiEve_pngs"
    if case == "gt_frame":  # a row past the last png (000002.png)
        gt = data / "HiEve_pngs" / "16" / "gt" / "gt.txt"
        gt.write_text(HIEVE_GT + "3,7,4,2,10,8,1,1,1\n")
        return "hieve", {}, gt, "within 0..2"
    raise AssertionError(case)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", ["tvd_gt", "hieve_gt", "root", "sequence", "gt_frame"])
def test_layout_errors_are_one_line(tmp_path, case):
    data = tmp_path / "fcm_testdata"
    write_layout(data, "tvd", TVD_GT)
    write_layout(data, "hieve", HIEVE_GT)
    (data / "SFU_HW_Obj").mkdir()
    layout, kwargs, path, text = _break(data, case)
    args = {"name": f"{layout}_tracking", "layout": layout, "root": str(data), "cache_dir": str(tmp_path / "c")}
    with pytest.raises(DatasetError) as err:
        fcm_tracking.build(**(args | kwargs))
    msg = str(err.value)
    assert (str(path) in msg or path.name in msg) and text in msg and "\n" not in msg, msg

"""The two real sequence formats on tiny files written here: MOT-challenge folders and SFU-HW-Objects-v1 YUVs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from vcmbench.datasets import mot, sfu_hw
from vcmbench.errors import DatasetError
from vcmbench.paths import CONF_DIR

W, H = 32, 24

# MOT17-02: 3 jpg frames at 30 fps; rows out of frame order, one ignored (flag 0), one a car (class 3).
GT_A = """\
1,1,11,6,10,8,1,1,1.0
3,1,13,6,10,8,1,1,0.5
1,2,3,3,5,5,0,1,1.0
2,1,12,6,10,8,1,1,0.8
2,3,1,1,4,4,1,3,1.0
2,2,20,10,6,9,1,1,0.25
"""
# MOT17-04: 2 png frames at 25 fps.
GT_B = "1,5,1,1,3,3,1,1,1\n2,5,2,2,3,3,1,1,1\n"


def frame_pixels(seq: int, k: int) -> np.ndarray:
    """A frame whose pixels say which sequence and frame it is."""
    img = np.zeros((H, W, 3), dtype=np.uint8)
    img[..., 0] = 40 * seq
    img[..., 1] = 20 * k
    img[..., 2] = np.arange(W, dtype=np.uint8)[None, :] * 4
    return img


def write_seq(root: Path, name: str, seq: int, n: int, fps: float, ext: str, gt: str, **ini: object) -> Path:
    folder = root / name
    (folder / "img1").mkdir(parents=True)
    (folder / "gt").mkdir()
    fields = {
        "name": name,
        "imDir": "img1",
        "frameRate": fps,
        "seqLength": n,
        "imWidth": W,
        "imHeight": H,
        "imExt": ext,
    } | ini
    lines = ["[Sequence]", *(f"{k}={v}" for k, v in fields.items() if v is not None)]
    (folder / "seqinfo.ini").write_text("\n".join(lines) + "\n")
    for k in range(1, n + 1):
        Image.fromarray(frame_pixels(seq, k)).save(folder / "img1" / f"{k:06d}{ext}")
    (folder / "gt" / "gt.txt").write_text(gt)
    return folder


def make_mot(root: Path) -> Path:
    write_seq(root, "MOT17-02", 1, 3, 30, ".jpg", GT_A)
    write_seq(root, "MOT17-04", 2, 2, 25, ".png", GT_B)
    (root / "README.txt").write_text("not a sequence")
    (root / "notes").mkdir()  # a folder without seqinfo.ini is not a sequence
    return root


def build_mot(root: Path, tmp_path: Path, **kw):
    return mot.build(name="mot_test", root=str(root), cache_dir=str(tmp_path / "cache"), **kw)


@pytest.mark.timeout(60)
def test_mot_folder_sequences_frames_and_tracks(tmp_path):
    ds = build_mot(make_mot(tmp_path / "mot"), tmp_path)
    assert ds.tracking and len(ds) == 2
    a, b = ds.sequences
    assert (a.name, a.fps, a.seq_class, a.sequence_id) == ("MOT17-02", 30.0, "all", 1)
    assert (b.name, b.fps, b.sequence_id) == ("MOT17-04", 25.0, 2)
    assert a.frame_ids == [1_000_001, 1_000_002, 1_000_003] and b.frame_ids == [2_000_001, 2_000_002]
    assert [f.file_name for f in a.frames] == [f"MOT17-02/img1/{k:06d}.jpg" for k in (1, 2, 3)]
    assert (a.frames[0].width, a.frames[0].height) == (W, H)

    coco = json.loads(ds.annotation_file.read_text())
    assert coco["categories"] == [{"id": 1, "name": "person"}]
    assert [s["name"] for s in coco["sequences"]] == ["MOT17-02", "MOT17-04"]
    anns = [a_ for a_ in coco["annotations"] if a_["image_id"] // 1_000_000 == 1]
    # the flag-0 row (track 2 on frame 1) and the car (track 3) are gone; frame order, then track
    assert [(x["image_id"], x["track_id"]) for x in anns] == [
        (1_000_001, 1),
        (1_000_002, 1),
        (1_000_002, 2),
        (1_000_003, 1),
    ]
    first = anns[0]
    assert first["bbox"] == [10.0, 5.0, 10.0, 8.0]  # MOT's 1-based x, y -> COCO's 0-based
    assert first["area"] == 80.0 and first["category_id"] == 1 and first["iscrowd"] == 0
    assert first["mot_class"] == 1 and first["visibility"] == 1.0
    assert len(coco["annotations"]) == 6 and {x["category_id"] for x in coco["annotations"]} == {1}

    tracks = ds.ground_truth_tracks
    assert tracks[1][1_000_001] == [(1, [10.0, 5.0, 10.0, 8.0], 1)]
    assert tracks[2][2_000_002] == [(5, [1.0, 1.0, 3.0, 3.0], 1)]

    samples = list(ds.frames(a))
    assert [s.image_id for s in samples] == a.frame_ids
    assert all(s.image.shape == (3, H, W) and s.image.dtype == torch.uint8 for s in samples)
    png = list(ds.frames(b))
    for k, s in enumerate(png, start=1):  # png is lossless: the exact pixels, in frame order
        assert torch.equal(s.image, torch.from_numpy(frame_pixels(2, k)).permute(2, 0, 1))


@pytest.mark.timeout(60)
def test_mot_options_and_mot15_rows(tmp_path):
    root = make_mot(tmp_path / "mot")
    # MOT15-style rows (10 columns, class -1) and 6-column rows are kept whatever `classes` says
    write_seq(root, "PETS09-S2L1", 3, 2, 7, ".jpg", "1,4,2,2,5,5,1,-1,-1,-1\n2,4,3,3,5,5\n")
    ds = build_mot(root, tmp_path, sequences=["PETS09-S2L1", "MOT17-02"], max_frames=2, seq_class={"MOT17-02": "MOT17"})
    assert [(s.name, s.seq_class, s.sequence_id) for s in ds.sequences] == [
        ("PETS09-S2L1", "all", 1),
        ("MOT17-02", "MOT17", 2),
    ]
    assert [len(s.frames) for s in ds.sequences] == [2, 2]
    coco = json.loads(ds.annotation_file.read_text())
    assert [(x["image_id"], x["track_id"]) for x in coco["annotations"] if x["image_id"] < 2_000_000] == [
        (1_000_001, 4),
        (1_000_002, 4),
    ]
    every = build_mot(root, tmp_path, sequences=["MOT17-02"], classes=None)
    tracks = {t for f in every.ground_truth_tracks[1].values() for t, _, _ in f}
    assert tracks == {1, 2, 3}  # the car kept, the flag-0 row still ignored


@pytest.mark.timeout(60)
def test_mot_cache_reused_and_rebuilt_when_gt_changes(tmp_path):
    root = make_mot(tmp_path / "mot")
    first = build_mot(root, tmp_path)
    stamp = first.annotation_file.stat().st_mtime_ns
    again = build_mot(root, tmp_path)
    assert again.annotation_file == first.annotation_file
    assert again.annotation_file.stat().st_mtime_ns == stamp  # read, not rewritten
    gt = root / "MOT17-04" / "gt" / "gt.txt"
    gt.write_text(GT_B + "2,6,10,10,4,4,1,1,1\n")
    rebuilt = build_mot(root, tmp_path)
    coco = json.loads(rebuilt.annotation_file.read_text())
    assert rebuilt.annotation_file == first.annotation_file
    assert sorted(t for t, _, _ in rebuilt.ground_truth_tracks[2][2_000_002]) == [5, 6]
    assert len(coco["annotations"]) == 7


def _break_mot(root: Path, case: str) -> tuple[dict, Path, str]:
    """Damage the MOT folder one way; (build kwargs, path the message must name, text it must hold)."""
    seq = root / "MOT17-02"
    if case == "root":
        return {"root": str(root / "absent")}, root / "absent", "motchallenge.net"
    if case == "seqinfo":
        (root / "MOT17-09").mkdir()
        return {"sequences": ["MOT17-09"]}, root / "MOT17-09" / "seqinfo.ini", "motchallenge.net"
    if case == "gt":
        (seq / "gt" / "gt.txt").unlink()
        return {}, seq / "gt" / "gt.txt", "motchallenge.net"
    if case == "img_dir":
        for p in (seq / "img1").iterdir():
            p.unlink()
        (seq / "img1").rmdir()
        return {}, seq / "img1", "motchallenge.net"
    if case == "img_missing":
        (seq / "img1" / "000002.jpg").unlink()
        return {}, seq / "seqinfo.ini", "seqLength=3"
    if case == "img_gap":
        (seq / "img1" / "000002.jpg").rename(seq / "img1" / "000007.jpg")
        return {}, seq / "img1", "000002.jpg is missing"
    if case == "seq_length":
        write_seq(root, "MOT17-05", 1, 2, 14, ".jpg", GT_B, seqLength=5)
        return {}, root / "MOT17-05" / "seqinfo.ini", "seqLength=5"
    if case in ("fps_missing", "fps_zero"):
        write_seq(root, "MOT17-05", 1, 2, None if case == "fps_missing" else 0, ".jpg", GT_B)
        return {}, root / "MOT17-05" / "seqinfo.ini", "frameRate"
    if case == "bad_line":
        (seq / "gt" / "gt.txt").write_text(GT_A + "\n4,1,oops\n")
        return {}, seq / "gt" / "gt.txt", "line 8: expected at least 6 comma-separated numbers, got '4,1,oops'"
    if case == "short_line":
        (seq / "gt" / "gt.txt").write_text("1,1,2,3\n")
        return {}, seq / "gt" / "gt.txt", "line 1: expected at least 6"
    raise AssertionError(case)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "case",
    [
        "root",
        "seqinfo",
        "gt",
        "img_dir",
        "img_missing",
        "img_gap",
        "seq_length",
        "fps_missing",
        "fps_zero",
        "bad_line",
        "short_line",
    ],
)
def test_mot_errors_name_the_path(tmp_path, case):
    root = make_mot(tmp_path / "mot")
    kwargs, path, text = _break_mot(root, case)
    with pytest.raises(DatasetError) as err:
        build_mot(**({"root": root} | kwargs), tmp_path=tmp_path)
    msg = str(err.value)
    assert str(path) in msg and text in msg and "\n" not in msg


@pytest.mark.timeout(60)
def test_mot_yaml_and_default_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("VCMBENCH_CACHE", str(tmp_path / "envcache"))
    cfg = OmegaConf.load(CONF_DIR / "dataset" / "mot_folder.yaml")
    cfg.root = str(make_mot(tmp_path / "mot"))
    cfg.seq_class = {"MOT17-04": "night"}
    ds = instantiate(cfg)
    assert ds.name == "mot_folder" and ds.classes == ["all", "night"]
    assert ds.annotation_file.parent == tmp_path / "envcache" / "mot"


# --- SFU-HW-Objects-v1 ------------------------------------------------------------------------------------------

TW, TH, TN = 64, 48, 5


def tiny_planes(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame k: flat grey Y = 50 + 10k with neutral chroma, except two hand-checked 2x2 blocks top left."""
    y = np.full((TH, TW), 50 + 10 * k, dtype=np.uint8)
    u = np.full((TH // 2, TW // 2), 128, dtype=np.uint8)
    v = np.full((TH // 2, TW // 2), 128, dtype=np.uint8)
    y[0, 0], y[0, 1], y[1, 0], y[1, 1] = 100, 235, 16, 100
    u[0, 0], v[0, 0] = 100, 150
    y[0, 2], y[0, 3] = 16, 235  # block (0, 1): neutral chroma, black and white
    return y, u, v


def write_yuv(path: Path, frames: int, planes=tiny_planes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for k in range(frames):
            for plane in planes(k):
                f.write(plane.tobytes())
    return path


TINY_ANN = {  # frame -> txt lines; frame 3 has no file (no objects), frame 0 an empty one
    0: "",
    1: "0 0.5 0.5 0.25 0.5\n2 0.25 0.25 0.125 0.25\n",
    2: "79 0.75 0.75 0.5 0.5\n\n",
    4: "2 0.5 0.5 1 1\n",
}


def make_sfu(root: Path, ann_folder: str = "annotations/Tiny") -> Path:
    write_yuv(root / "yuv" / "Tiny_64x48_30.yuv", TN)
    folder = root / ann_folder
    folder.mkdir(parents=True)
    for k, text in TINY_ANN.items():
        (folder / f"Tiny_64x48_30_{k:03d}.txt").write_text(text)
    (folder / "README.txt").write_text("not a frame")
    return root


def build_sfu(root: Path, tmp_path: Path, **kw):
    kw = {"extra_sequences": {"Tiny": {"class": "T"}}} | kw
    return sfu_hw.build(name="sfu_test", root=str(root), yuv_dir="yuv", cache_dir=str(tmp_path / "cache"), **kw)


def reference_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Textbook BT.601 limited range with 3-decimal coefficients (so within 1 of the exact matrix)."""
    cb = np.kron(u.astype(float) - 128, np.ones((2, 2)))
    cr = np.kron(v.astype(float) - 128, np.ones((2, 2)))
    yy = 1.164 * (y.astype(float) - 16)
    rgb = np.stack([yy + 1.596 * cr, yy - 0.392 * cb - 0.813 * cr, yy + 2.017 * cb])
    return np.clip(np.round(rgb), 0, 255)


@pytest.mark.timeout(60)
def test_sfu_frames_are_bt601_conversions_of_the_planes(tmp_path):
    ds = build_sfu(make_sfu(tmp_path / "sfu"), tmp_path)
    assert not ds.tracking and len(ds) == 1
    (seq,) = ds.sequences
    assert (seq.name, seq.seq_class, seq.fps, len(seq.frames)) == ("Tiny", "T", 30.0, TN)
    assert seq.frame_ids == [1_000_000 + k for k in range(TN)]
    assert seq.frames[2].file_name == "Tiny/00002" and (seq.frames[2].width, seq.frames[2].height) == (TW, TH)
    samples = list(ds.frames(seq))
    for k, s in enumerate(samples):
        assert s.image.shape == (3, TH, TW) and s.image.dtype == torch.uint8 and s.image_id == 1_000_000 + k
        grey = round((50 + 10 * k - 16) * 255 / 219)
        assert s.image[:, 20, 40].tolist() == [grey] * 3  # frame order: each frame's own grey
        diff = np.abs(s.image.numpy().astype(int) - reference_rgb(*tiny_planes(k)))
        assert diff.max() <= 1
    img = samples[0].image
    # by hand, Y=100 U=100 V=150: 1.16438*84 = 97.81; R = 97.81 + 1.59603*22 = 132.92; G = 97.81 + 0.39176*28
    # - 0.81297*22 = 90.89; B = 97.81 - 2.01723*28 = 41.33
    assert img[:, 0, 0].tolist() == [133, 91, 41]
    assert img[:, 1, 1].tolist() == [133, 91, 41]  # chroma repeated over its 2x2 block
    # Y=235 (luma 255): R clips; G = 255 + 10.97 - 17.89 = 248.08; B = 255 - 56.48 = 198.52
    assert img[:, 0, 1].tolist() == [255, 248, 199]
    assert img[:, 1, 0].tolist() == [35, 0, 0]  # Y=16 (luma 0): R = 35.11; G = -6.92 and B = -56.48 clip to 0
    assert img[:, 0, 2].tolist() == [0, 0, 0] and img[:, 0, 3].tolist() == [255, 255, 255]


@pytest.mark.timeout(60)
def test_sfu_boxes_and_category_ids(tmp_path):
    ds = build_sfu(make_sfu(tmp_path / "sfu"), tmp_path)
    coco = json.loads(ds.annotation_file.read_text())
    by_frame: dict[int, list] = {}
    for a in coco["annotations"]:
        by_frame.setdefault(a["image_id"] - 1_000_000, []).append((a["category_id"], a["bbox"], a["area"]))
    assert by_frame == {
        1: [(1, [24.0, 12.0, 16.0, 24.0], 384.0), (3, [12.0, 6.0, 8.0, 12.0], 96.0)],
        2: [(90, [32.0, 24.0, 32.0, 24.0], 768.0)],
        4: [(3, [0.0, 0.0, 64.0, 48.0], 3072.0)],
    }
    assert [i["id"] for i in coco["images"]] == [1_000_000 + k for k in range(TN)]  # frame 3 still a frame
    assert all((i["width"], i["height"]) == (TW, TH) for i in coco["images"])
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    assert len(cats) == 80 and cats[1] == "person" and cats[3] == "car" and cats[90] == "toothbrush"
    assert sfu_hw.SFU_TO_COCO[0] == 1 and sfu_hw.SFU_TO_COCO[2] == 3 and sfu_hw.SFU_TO_COCO[79] == 90
    from torchvision.models._meta import _COCO_CATEGORIES  # an independent copy of the COCO ids

    assert cats == {i: n for i, n in enumerate(_COCO_CATEGORIES) if n not in ("N/A", "__background__")}


@pytest.mark.timeout(60)
def test_sfu_window_max_frames_and_cache(tmp_path):
    root = make_sfu(tmp_path / "sfu")
    ds = build_sfu(root, tmp_path, frame_window={"Tiny": [1, 3]})
    (seq,) = ds.sequences
    assert seq.frame_ids == [1_000_001, 1_000_002, 1_000_003]
    grey = [s.image[0, 20, 40].item() for s in ds.frames(seq)]
    assert grey == [round((50 + 10 * k - 16) * 255 / 219) for k in (1, 2, 3)]
    stamp = ds.annotation_file.stat().st_mtime_ns
    again = build_sfu(root, tmp_path, frame_window={"Tiny": [1, 3]}, max_frames=2)
    assert again.annotation_file == ds.annotation_file and again.annotation_file.stat().st_mtime_ns == stamp
    assert again.sequences[0].frame_ids == [1_000_001, 1_000_002]
    (root / "annotations" / "Tiny" / "Tiny_64x48_30_003.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    rebuilt = build_sfu(root, tmp_path, frame_window={"Tiny": [1, 3]})
    coco = json.loads(rebuilt.annotation_file.read_text())
    assert any(a["image_id"] == 1_000_003 for a in coco["annotations"])


@pytest.mark.timeout(60)
def test_sfu_builtin_entry_found_by_name_and_class_folder(tmp_path):
    root = tmp_path / "sfu"
    blank = (np.full((240, 416), 128, np.uint8), np.full((120, 208), 128, np.uint8), np.full((120, 208), 128, np.uint8))
    write_yuv(root / "BQSquare_416x240_60.yuv", 2, planes=lambda k: blank)
    folder = root / "annotations" / "ClassD" / "BQSquare_416x240_60"
    folder.mkdir(parents=True)
    (folder / "BQSquare_416x240_60_001.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    with pytest.raises(DatasetError, match=r"holds 2 frames .* needs frames 471\.\.599") as err:
        sfu_hw.build(name="sfu", root=str(root), cache_dir=str(tmp_path / "c"))
    assert str(root / "BQSquare_416x240_60.yuv") in str(err.value)
    ds = sfu_hw.build(name="sfu", root=str(root), cache_dir=str(tmp_path / "c"), frame_window={"BQSquare": [0, 2]})
    (seq,) = ds.sequences
    assert (seq.name, seq.seq_class, seq.fps, seq.frame_ids) == ("BQSquare", "D", 60.0, [1_000_000, 1_000_001])
    gt = json.loads(ds.annotation_file.read_text())["annotations"]
    assert [(a["image_id"], a["bbox"]) for a in gt] == [(1_000_001, [104.0, 60.0, 208.0, 120.0])]
    assert next(ds.frames(seq)).image.shape == (3, 240, 416)
    with pytest.raises(DatasetError, match="classes"):
        sfu_hw.build(name="sfu", root=str(root), cache_dir=str(tmp_path / "c"), classes=["Z"])


def _break_sfu(root: Path, case: str) -> tuple[dict, Path, str]:
    yuv = root / "yuv" / "Tiny_64x48_30.yuv"
    ann = root / "annotations" / "Tiny"
    if case == "missing_yuv":
        return {"sequences": ["Traffic"]}, root / "yuv", "get SFU-HW-Objects-v1"
    if case == "missing_extra_yuv":
        yuv.unlink()
        return {}, root / "yuv", "Tiny_<W>x<H>_*.yuv"
    if case == "truncated":
        yuv.write_bytes(yuv.read_bytes()[:-10])
        return {}, yuv, "not a whole number"
    if case == "short":
        return {"frame_window": {"Tiny": [3, 4]}}, yuv, "holds 5 frames"
    if case == "bad_value":
        (ann / "Tiny_64x48_30_002.txt").write_text("79 0.75 0.75 0.5 0.5\n0 0.5 0.5 1.5 0.2\n")
        return {}, ann / "Tiny_64x48_30_002.txt", "line 2: expected 'class cx cy w h' with values in 0..1"
    if case == "bad_tokens":
        (ann / "Tiny_64x48_30_001.txt").write_text("\n\ncar 0.5 0.5 0.1 0.1\n")
        return {}, ann / "Tiny_64x48_30_001.txt", "line 3: expected 'class cx cy w h'"
    if case == "class_range":
        (ann / "Tiny_64x48_30_004.txt").write_text("80 0.5 0.5 0.1 0.1\n")
        return {}, ann / "Tiny_64x48_30_004.txt", "line 1: class id 80 is outside 0..79"
    if case == "no_annotations":
        for p in ann.iterdir():
            p.unlink()
        ann.rmdir()
        return {}, root / "annotations", "annotation"
    raise AssertionError(case)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "case",
    [
        "missing_yuv",
        "missing_extra_yuv",
        "truncated",
        "short",
        "bad_value",
        "bad_tokens",
        "class_range",
        "no_annotations",
    ],
)
def test_sfu_errors_name_the_path(tmp_path, case):
    root = make_sfu(tmp_path / "sfu")
    kwargs, path, text = _break_sfu(root, case)
    with pytest.raises(DatasetError) as err:
        build_sfu(root, tmp_path, **kwargs)
    msg = str(err.value)
    assert str(path) in msg and text in msg and "\n" not in msg


@pytest.mark.timeout(60)
def test_sfu_yaml(tmp_path):
    cfg = OmegaConf.load(CONF_DIR / "dataset" / "sfu_hw_objects.yaml")
    cfg.root = str(make_sfu(tmp_path / "sfu"))
    cfg.yuv_dir, cfg.cache_dir = "yuv", str(tmp_path / "cache")
    cfg.extra_sequences = {"Tiny": {"class": "T", "first": 2}}
    cfg.frame_window = None
    ds = instantiate(cfg)
    assert ds.name == "sfu_hw_objects" and ds.classes == ["T"]
    assert ds.sequences[0].frame_ids == [1_000_002, 1_000_003, 1_000_004]


@pytest.mark.timeout(60)
def test_sfu_racehorses_c_never_takes_the_class_d_folder(tmp_path):
    root = tmp_path / "sfu"
    grey = (np.full((480, 832), 90, np.uint8), np.full((240, 416), 128, np.uint8), np.full((240, 416), 128, np.uint8))
    write_yuv(root / "RaceHorses_832x480_30.yuv", 1, planes=lambda k: grey)
    (root / "annotations" / "RaceHorses").mkdir(parents=True)  # class D's folder
    (root / "annotations" / "RaceHorses" / "RaceHorses_000.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    kw = {"name": "sfu", "root": str(root), "cache_dir": str(tmp_path / "c"), "frame_window": {"RaceHorsesC": [0, 1]}}
    with pytest.raises(DatasetError, match="annotations of sequence 'RaceHorsesC' not found"):
        sfu_hw.build(**kw)
    (root / "annotations" / "RaceHorses_832x480_30").mkdir()
    ds = sfu_hw.build(**kw)
    assert [(s.name, s.seq_class) for s in ds.sequences] == [("RaceHorsesC", "C")]
    assert json.loads(ds.annotation_file.read_text())["annotations"] == []

"""Synthetic videos: deterministic bytes, persistent track ids, motion, occlusion, pan, spec errors."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tests.assets import CONF
from vcmbench.datasets import synthetic, synthetic_video
from vcmbench.datasets.sequences import SequenceDataset
from vcmbench.errors import ConfigError

SIZE = 128
SPECS = [
    {"name": "still", "class": "A", "frames": 10, "fps": 25, "objects": [9, 12]},
    {"name": "pan", "class": "B", "frames": 8, "fps": 30, "objects": 8, "pan": [2, 1]},
]


def _build(cache_dir: Path, specs=None, **kw) -> SequenceDataset:
    kw = {"seed": 7, "height": SIZE, "width": SIZE, **kw}
    return synthetic_video.build("t", sequences=specs if specs is not None else SPECS, cache_dir=cache_dir, **kw)


def _coco(ds: SequenceDataset) -> dict:
    return json.loads(ds.annotation_file.read_text())


def _by_frame(coco: dict) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = defaultdict(list)
    for a in coco["annotations"]:
        out[a["image_id"]].append(a)
    return out


def _pixels(ds: SequenceDataset, frame) -> np.ndarray:
    return ds.load_frame(frame).image.permute(1, 2, 0).numpy().astype(np.int16)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> SequenceDataset:
    return _build(tmp_path_factory.mktemp("video"))


@pytest.mark.timeout(120)
def test_same_settings_same_png_bytes_and_json(tmp_path, small, monkeypatch):
    again = _build(tmp_path / "b")
    assert again.image_dir != small.image_dir
    for sa, sb in zip(small.sequences, again.sequences, strict=True):
        for fa, fb in zip(sa.frames, sb.frames, strict=True):
            assert fa == fb and _sha(small.image_dir / fa.file_name) == _sha(again.image_dir / fb.file_name)
    assert _coco(small) == _coco(again)
    other = _build(tmp_path / "c", seed=8)
    assert not np.array_equal(
        _pixels(small, small.sequences[0].frames[0]), _pixels(other, other.sequences[0].frames[0])
    )
    # a second build in the same folder reads the cache: nothing is drawn
    monkeypatch.setattr(synthetic_video, "_render_all", lambda *a, **k: pytest.fail("cache not used"))
    cached = _build(tmp_path / "b")
    assert cached.annotation_file == again.annotation_file and cached.sequences == again.sequences


@pytest.mark.timeout(120)
def test_layout_ids_and_frames(small):
    coco = _coco(small)
    assert small.tracking and len(small) == 2 and small.classes == ["A", "B"]
    assert [s.sequence_id for s in small.sequences] == [1, 2]
    assert [(s.name, s.seq_class, s.fps, len(s.frames)) for s in small.sequences] == [
        ("still", "A", 25.0, 10),
        ("pan", "B", 30.0, 8),
    ]
    for i, s in enumerate(small.sequences):
        assert s.frame_ids == [(i + 1) * 100_000 + t for t in range(len(s.frames))]
    assert coco["categories"] == synthetic.categories(keypoints=False)  # the videos annotate boxes only
    for im in coco["images"]:
        assert im["frame_index"] == im["id"] % 100_000 and im["sequence_id"] == im["id"] // 100_000
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        assert 0 <= x and 0 <= y and x + w <= SIZE and y + h <= SIZE and min(w, h) >= synthetic.MIN_BOX, a
        assert 0 < a["area"] <= w * h and a["visible"] >= synthetic.MIN_VISIBLE and a["track_id"] >= 1
    frames = list(small.frames(small.sequences[1]))
    assert len(frames) == 8
    for f, rec in zip(frames, small.sequences[1].frames, strict=True):
        assert isinstance(f.image, torch.Tensor) and f.image.dtype == torch.uint8
        assert tuple(f.image.shape) == (3, SIZE, SIZE) and f.image_id == rec.image_id
    gt = small.ground_truth_tracks
    assert set(gt) == {1, 2} and sum(len(v) for s in gt.values() for v in s.values()) == len(coco["annotations"])


@pytest.mark.timeout(120)
def test_track_ids_persist_and_boxes_move_by_the_velocity(small):
    coco = _coco(small)
    by_frame = _by_frame(coco)
    vel = {(t["sequence_id"], t["track_id"]): t["velocity"] for t in coco["tracks"]}
    cats = {(t["sequence_id"], t["track_id"]): t["category_id"] for t in coco["tracks"]}
    checked = 0
    for s in small.sequences:
        pan = next(m["pan"] for m in coco["sequences"] if m["id"] == s.sequence_id)
        for a, b in zip(s.frame_ids, s.frame_ids[1:]):
            ta = {x["track_id"]: x for x in by_frame[a]}
            tb = {x["track_id"]: x for x in by_frame[b]}
            assert len(ta) == len(by_frame[a])  # a track id once per frame
            for tid, x in ta.items():
                assert x["category_id"] == cats[s.sequence_id, tid]
                y = tb.get(tid)
                if y is None or x["visible"] < 1 or y["visible"] < 1:
                    continue  # the visible box of a partly hidden object need not move with it
                vx, vy = vel[s.sequence_id, tid]
                assert 0.5 - 1e-6 <= np.hypot(vx, vy) <= 4 + 1e-6
                assert abs(y["bbox"][0] - x["bbox"][0] - (vx - pan[0])) <= 1.0 + 1e-6, (x, y, vx, pan)
                assert abs(y["bbox"][1] - x["bbox"][1] - (vy - pan[1])) <= 1.0 + 1e-6, (x, y, vy, pan)
                assert y["bbox"][2:] == x["bbox"][2:] and y["area"] == x["area"]  # same object, same shape
                checked += 1
    assert checked >= 20
    speeds = [np.hypot(*v) for v in vel.values()]
    assert min(speeds) < 1.5 and max(speeds) > 2.5  # some slow, some fast


@pytest.mark.timeout(120)
def test_objects_enter_and_leave(small):
    by_frame = _by_frame(_coco(small))
    entered = left = 0
    for s in small.sequences:
        ids = [{a["track_id"] for a in by_frame[f]} for f in s.frame_ids]
        entered += len(set().union(*ids[1:]) - ids[0])
        left += len(set().union(*ids[:-1]) - ids[-1])
    assert entered >= 1 and left >= 1


@pytest.mark.timeout(120)
def test_objects_occlude_each_other(small):
    specs = synthetic_video.parse_sequences(SPECS)
    occluded = 0
    for i, (spec, s) in enumerate(zip(specs, small.sequences, strict=True)):
        plan = synthetic_video.SequencePlan(7, i, spec, SIZE, SIZE)
        anns = _by_frame(_coco(small))
        for t, fid in enumerate(s.frame_ids):
            ox, oy = plan.offsets[t]
            for a in anns[fid]:
                ob = plan.objects[a["track_id"] - 1]
                mh, mw = ob.mask.shape
                x0 = round(ob.start[0] + ob.velocity[0] * t - ox - mw / 2)
                y0 = round(ob.start[1] + ob.velocity[1] * t - oy - mh / 2)
                inside = 0 <= x0 and 0 <= y0 and x0 + mw <= SIZE and y0 + mh <= SIZE
                if inside and a["area"] < int(ob.mask.sum()):  # wholly in the frame, yet partly hidden
                    occluded += 1
    assert occluded >= 3


@pytest.mark.timeout(120)
def test_pan_shifts_the_background(tmp_path):
    dx, dy = 3, 2
    specs = [
        {"name": "empty", "frames": 3, "objects": 0, "pan": [dx, dy]},
        {"name": "busy", "frames": 3, "objects": [6, 8], "pan": [dx, dy]},
    ]
    ds = _build(tmp_path, specs)
    empty, busy = ([_pixels(ds, f) for f in s.frames] for s in ds.sequences)
    for a, b in zip(empty, empty[1:]):  # no objects: all of frame t+1 is frame t shifted by the pan
        assert np.array_equal(b[: SIZE - dy, : SIZE - dx], a[dy:, dx:])
        assert not np.array_equal(b, a)
    for a, b in zip(busy, busy[1:]):  # with objects: the background away from them
        same = (b[: SIZE - dy, : SIZE - dx] == a[dy:, dx:]).all(-1)
        still = (b == a).all(-1)
        assert same.mean() > 0.3 and still.mean() < 0.05
        patches = same[: SIZE // 16 * 16 - 16, : SIZE // 16 * 16 - 16]
        p = patches.reshape(patches.shape[0] // 16, 16, patches.shape[1] // 16, 16).all((1, 3))
        assert p.any()  # some 16x16 background patch moved exactly by the pan


@pytest.mark.timeout(120)
def test_max_frames_keeps_the_same_pixels(tmp_path, small):
    cut = _build(tmp_path, max_frames=3)
    assert [len(s.frames) for s in cut.sequences] == [3, 3]
    full_anns, cut_anns = _by_frame(_coco(small)), _by_frame(_coco(cut))

    def without_id(anns: list[dict]) -> list[dict]:  # annotation ids count over the kept frames only
        return [{k: v for k, v in a.items() if k != "id"} for a in anns]

    for sf, sc in zip(small.sequences, cut.sequences, strict=True):
        assert sc.frames == sf.frames[:3]
        for f in sc.frames:
            assert _sha(cut.image_dir / f.file_name) == _sha(small.image_dir / f.file_name)
            assert without_id(cut_anns[f.image_id]) == without_id(full_anns[f.image_id])


@pytest.mark.parametrize(
    "change, match",
    [
        ({"frames": 0}, r"dataset\.sequences\[1\]\.frames=0: must be a whole number from 1"),
        ({"fps": 0}, r"dataset\.sequences\[1\]\.fps=0: must be a positive frame rate"),
        ({"fps": -5}, r"dataset\.sequences\[1\]\.fps=-5: must be a positive"),
        ({"colour": "red"}, r"dataset\.sequences\[1\]\.colour='red': not a sequence setting; the settings are"),
        ({"name": None}, r"dataset\.sequences\[1\]\.name=None: every sequence needs a name"),
        ({"name": "still"}, r"dataset\.sequences\[1\]\.name='still': the same name as dataset\.sequences\[0\]"),
        ({"objects": [5, 2]}, r"dataset\.sequences\[1\]\.objects=\[5, 2\]: .*\[min, max\]"),
        ({"pan": [1]}, r"dataset\.sequences\[1\]\.pan=\[1\]: give the camera pan as \[dx, dy\]"),
        ({"speed": [0, 2]}, r"dataset\.sequences\[1\]\.speed=\[0, 2\]: .*0 < min <= max"),
    ],
)
@pytest.mark.timeout(120)
def test_bad_specs_name_the_key(tmp_path, change, match):
    specs = [dict(SPECS[0]), {**SPECS[1], **change}]
    with pytest.raises(ConfigError, match=match):
        _build(tmp_path, specs)
    assert not any(tmp_path.iterdir())  # nothing drawn


@pytest.mark.timeout(120)
def test_other_bad_settings(tmp_path):
    with pytest.raises(ConfigError, match=r"dataset\.sequences\[1\]\.name"):
        _build(tmp_path, [SPECS[0], {"frames": 3}])
    with pytest.raises(ConfigError, match=r"dataset\.sequences\[0\]\.frames: missing"):
        _build(tmp_path, [{"name": "x"}])
    with pytest.raises(ConfigError, match=r"dataset\.sequences=\[\]"):
        _build(tmp_path, [])
    with pytest.raises(ConfigError, match=r"dataset\.max_frames=0"):
        _build(tmp_path, max_frames=0)


@pytest.fixture(scope="module")
def default_cfg():
    return OmegaConf.load(CONF / "dataset" / "synthetic_video.yaml")


@pytest.mark.timeout(120)
def test_default_yaml(default_cfg, tmp_path):
    cfg = default_cfg.copy()
    assert cfg._target_ == "vcmbench.datasets.synthetic_video.build" and cfg.name == "synthetic_video"
    assert cfg.seed == 2_000_000 and (cfg.height, cfg.width) == (256, 256) and cfg.max_frames == 6
    specs = synthetic_video.parse_sequences(cfg.sequences)
    assert len(specs) == 4 and len({s.seq_class for s in specs}) == 2
    assert 40 <= sum(s.frames for s in specs) <= 60 and len({s.frames for s in specs}) == 4
    assert any(s.pan != (0.0, 0.0) for s in specs)
    cfg.cache_dir, cfg.max_frames = str(tmp_path), 2
    ds = instantiate(cfg)
    assert [s.name for s in ds.sequences] == ["pan_fast", "crowd", "sparse", "slow"]
    assert all(len(s.frames) == 2 for s in ds.sequences) and ds.classes == ["A", "B"]


@pytest.mark.timeout(120)
def test_ci_frcnn_detects_the_objects(default_cfg, tmp_path):
    """The frames look like the detector's training scenes: it finds most annotated objects."""
    from torchvision.ops import box_iou

    from vcmbench.config import compose_config

    cfg = default_cfg.copy()
    cfg.cache_dir, cfg.max_frames = str(tmp_path), 1
    ds = instantiate(cfg)
    det = instantiate(compose_config("config", ["model=ci_frcnn"]).model)
    by_frame = _by_frame(_coco(ds))
    for s in ds.sequences:
        (sample,) = ds.frames(s)
        anns = by_frame[sample.image_id]
        assert len(anns) >= 3, s.name
        gt = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], dtype=torch.float32)
        with torch.no_grad():
            out = det.full(sample.image)
        boxes = out.boxes[out.scores >= 0.3]
        found = int((box_iou(gt, boxes) >= 0.5).any(1).sum()) if len(boxes) else 0
        assert found >= len(anns) / 2, (s.name, found, len(anns))

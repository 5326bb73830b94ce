"""One coding path: an image is a one-frame item of the loop that codes sequences, and sequences get
what images get (masks, task fidelity, image fidelity)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from vcmbench.config import compose_config
from vcmbench.datasets.base import ImageRecord
from vcmbench.datasets.sequences import SequenceDataset, SequenceRecord
from vcmbench.points import build_sequence_points
from vcmbench.records import Record, encode_masks, read_records
from vcmbench.run import run_sweep

SEQUENCE = "dataset.sequences=[{name: pan, class: A, frames: 2, fps: 30, pan: [2, 1]}]"
QUIET = ["sweep.workers=1", "sweep.progress=false", "report=false", "complexity=false"]


@pytest.mark.timeout(240)
def test_sequences_get_masks_and_fidelity_as_images_do(tmp_path):
    cfg = compose_config(
        "config",
        [
            "dataset=synthetic_video",
            SEQUENCE,
            f"dataset.cache_dir={tmp_path / 'cache'}",
            "model=ci_maskrcnn",
            "codec=[raw,image_vvc]",
            "codec.image_vvc.rates=[37]",
            *QUIET,
        ],
    )
    run_sweep(cfg, tmp_path / "run")
    records = {r.codec: r for r in read_records(tmp_path / "run" / "records.jsonl")}
    for rec in records.values():
        assert rec.frames == 2 and len(rec.frame_detections) == len(rec.frame_masks) == 2
        assert [len(m) for m in rec.frame_masks] == [len(d) for d in rec.frame_detections]  # a mask per box
        assert rec.mask_size == [256, 256]
    raw = records["raw"].extra
    # raw features are the front's: the back's output equals the pristine one on every frame
    assert raw["fid_recall50"] == 100.0 and raw["fid_precision50"] == 100.0 and raw["fid_mse"] == 0.0
    assert {"image_psnr", "image_msssim"} <= set(records["image_vvc"].extra)  # the image the receiver got
    points = pd.read_csv(tmp_path / "run" / "points.csv")
    assert points[["fid_ap50", "fid_mse"]].notna().all().all()
    assert "map_segm" not in points  # the synthetic videos annotate boxes only: no mask AP to compute


def test_a_sequence_sets_mask_ap_comes_from_its_frames_masks(tmp_path):
    """Mask AP of a sequence (and a class) over its frames' masks, where the set has mask ground truth:
    exact masks score 100, masks shifted off their objects score 0, on the same boxes."""
    frames, images, anns = [], [], []
    for k in range(2):
        frames.append(ImageRecord(10 + k, f"{k}.png", 16, 16))
        images.append({"id": 10 + k, "file_name": f"{k}.png", "height": 16, "width": 16})
        anns.append(
            {
                "id": k + 1,
                "image_id": 10 + k,
                "category_id": 1,
                "bbox": [2, 2, 8, 8],
                "area": 64,
                "iscrowd": 0,
                "segmentation": [[2, 2, 10, 2, 10, 10, 2, 10]],
            }
        )
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}]}))
    ds = SequenceDataset("hand", ann, tmp_path, [SequenceRecord(1, "s", "A", 30.0, tuple(frames))])
    inside, off = np.zeros((1, 16, 16), bool), np.zeros((1, 16, 16), bool)
    inside[0, 2:10, 2:10], off[0, 10:16, 10:16] = True, True
    recs = [
        Record(
            image_id=1,
            codec=c,
            rate="q=1",
            setup="x",
            bytes=100,
            pixels=512,
            enc_s=0,
            dec_s=0,
            front_s=0,
            back_s=0,
            frames=2,
            frame_ids=[10, 11],
            frame_detections=[[[2, 2, 8, 8, 0.9, 1]]] * 2,
            frame_masks=[encode_masks(m)] * 2,
            mask_size=[16, 16],
        )
        for c, m in (("exact", inside), ("off", off))
    ]
    points, classes = build_sequence_points(recs, ds, "m")
    by_codec = points.set_index("codec")
    assert by_codec.loc["exact", "map"] == by_codec.loc["off", "map"] == 100.0  # the same boxes
    assert by_codec.loc["exact", "map_segm"] == 100.0 and by_codec.loc["off", "map_segm"] == 0.0
    assert classes.set_index("codec").loc["exact", "ap50_segm"] == 100.0


@pytest.mark.timeout(240)
def test_an_image_item_is_coded_once_per_point_with_its_fidelity(tmp_path):
    """The image path of the same loop: one-shot payloads, detections and figures of the one frame."""
    run_sweep(
        compose_config("config", ["dataset.count=1", "codec=[raw,anchor_vvc]", "codec.anchor_vvc.rates=[45]", *QUIET]),
        tmp_path / "run",
    )
    records = {r.codec: r for r in read_records(tmp_path / "run" / "records.jsonl")}
    assert all(r.frames == 0 and not r.frame_detections and r.detections for r in records.values())
    assert records["raw"].extra["fid_mse"] == 0.0 and records["anchor_vvc"].extra["fid_mse"] > 0.0


@pytest.mark.timeout(240)
def test_a_crash_on_the_receiver_side_keeps_the_images_finished_points(tmp_path):
    """An image's points are written one by one as each is decoded: a crash in the third point's
    decoder leaves the first two points' records (none is held until the whole image is done)."""
    crashy = ["+codec.crashy._target_=tests.codecs_for_tests.CrashingDecodeRaw", "+codec.crashy.name=crashy"]
    cfg = compose_config("config", ["dataset.count=1", "codec=[raw,raw16]", *crashy, *QUIET])
    with pytest.raises(KeyboardInterrupt):
        run_sweep(cfg, tmp_path / "run")
    assert [r.codec for r in read_records(tmp_path / "run" / "records.jsonl")] == ["raw", "raw16"]

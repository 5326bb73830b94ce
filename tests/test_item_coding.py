"""One coding path: an image is a one-frame item of the loop that codes sequences, and sequences get
what images get (masks, task fidelity, image fidelity); a failure (an encoder's crash, a corrupt
payload, one the back rejects) costs its item and rate point only; a codec of its own kind runs
through the same loop."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.assets import SKIP_FIGURES, SMALL_NET, fast_run_cfg, video_run_cfg
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


def test_decode_failure_is_recorded_and_sweep_goes_on(tmp_path):
    cfg = fast_run_cfg(
        *SMALL_NET,
        "codec=raw",
        "+codec.bad._target_=tests.codecs_for_tests.CorruptingRaw",
        "+codec.bad.name=bad",
        *SKIP_FIGURES,
    )
    points = run_sweep(cfg, tmp_path).set_index("codec")
    assert points.loc["bad", "n_failed"] == 2 and points.loc["raw", "n_failed"] == 0
    assert points.loc["bad", "bytes"] == points.loc["raw", "bytes"]  # the bits were still spent
    recs = [json.loads(x) for x in (tmp_path / "records.jsonl").read_text().splitlines()]
    bad = [r for r in recs if r["codec"] == "bad"]
    assert all(r["status"] == "decode_failed" and "checksum" in r["error"] for r in bad)


def test_encode_failure_is_recorded_and_sweep_goes_on(tmp_path):
    """An encoder that crashes on one image costs that image and rate point only."""
    cfg = fast_run_cfg(
        *SMALL_NET,
        "codec=raw",
        "+codec.flaky._target_=tests.codecs_for_tests.FailingRaw",
        "+codec.flaky.name=flaky",
        *SKIP_FIGURES,
    )
    points = run_sweep(cfg, tmp_path).set_index("codec")
    recs = {(r["codec"], r["image_id"]): r for r in map(json.loads, (tmp_path / "records.jsonl").open())}
    failed = recs[("flaky", 802)]  # 000000000802.jpg, the portrait one of the first two
    assert failed["status"] == "encode_failed" and "simulated encoder crash" in failed["error"]
    assert failed["bytes"] == 0 and failed["detections"] == []
    assert recs[("flaky", 139)]["status"] == "ok"
    assert recs[("flaky", 139)]["bytes"] == recs[("raw", 139)]["bytes"]
    assert points.loc["flaky", "n_failed"] == 1 and points.loc["raw", "n_failed"] == 0
    assert points.loc["flaky", "bytes"] == recs[("raw", 139)]["bytes"]  # a lost payload sends nothing
    # the failed image has no detections in the evaluated results; the other image keeps all of its own
    dets = json.loads((tmp_path / "detections" / "flaky" / "dtype=float32.json").read_text())
    assert {d["image_id"] for d in dets} == {139} and len(dets) == len(recs[("raw", 139)]["detections"]) > 0
    # A rerun keeps the failure as a finished record: nothing is redone.
    before = (tmp_path / "records.jsonl").read_text()
    run_sweep(cfg, tmp_path)
    assert (tmp_path / "records.jsonl").read_text() == before


def test_a_codec_of_its_own_kind_runs_through_the_same_loop(tmp_path):
    """The runner only uses what a codec declares (takes, transmit_encode/decode): an image carried
    losslessly by a codec of no stock kind gives the raw features' detections exactly."""
    cfg = fast_run_cfg(
        *SMALL_NET, "codec=raw", "+codec.raw_image._target_=tests.codecs_for_tests.RawImage", *SKIP_FIGURES
    )
    points = run_sweep(cfg, tmp_path).set_index("codec")
    recs = {(r["codec"], r["image_id"]): r for r in map(json.loads, (tmp_path / "records.jsonl").open())}
    for image_id in (139, 802):
        carried, raw = recs[("raw_image", image_id)], recs[("raw", image_id)]
        assert carried["status"] == "ok" and len(raw["detections"]) > 0
        assert carried["detections"] == raw["detections"]
        assert carried["extra"]["image_psnr"] == float("inf")
    assert points.loc["raw_image", "bytes"] == sum(4 + 3 * h * w for h, w in [(426, 640), (640, 424)])


@pytest.mark.timeout(300)
def test_a_payload_the_back_rejects_is_that_items_decode_failure(tmp_path):
    """A header overwritten after encoding: the payload decodes, the back raises ShapeError;
    the item records decode_failed with the reason and the sweep finishes."""
    cfg = fast_run_cfg(
        *SMALL_NET,
        "codec=[raw,anchor_vvc]",
        "codec.anchor_vvc._target_=tests.codecs_for_tests.HeaderOverwrittenFrames",
        "codec.anchor_vvc.rates=[41]",
        *SKIP_FIGURES,
    )
    points = run_sweep(cfg, tmp_path).set_index("codec")
    assert points.loc["anchor_vvc", "n_failed"] == 2 and points.loc["raw", "n_failed"] == 0
    recs = [json.loads(x) for x in (tmp_path / "records.jsonl").read_text().splitlines()]
    bad = [r for r in recs if r["codec"] == "anchor_vvc"]
    assert len(bad) == 2 and all(
        r["status"] == "decode_failed" and r["error"].startswith("ShapeError: ") and "p5" in r["error"] for r in bad
    ), [r["error"] for r in bad]


@pytest.mark.timeout(300)
def test_a_corrupted_sequence_payload_is_a_failure_of_that_point_only(tmp_path):
    cfg = video_run_cfg(
        tmp_path,
        "codec=raw",
        "dataset.max_frames=2",
        "+codec.bad._target_=tests.codecs_for_tests.CorruptingRaw",
        "+codec.bad.name=bad",
    )
    points = run_sweep(cfg, tmp_path / "run")
    bad, good = points[points.codec == "bad"], points[points.codec == "raw"]
    assert (bad.n_failed == 1).all() and (good.n_failed == 0).all()
    assert list(bad.bytes) == list(good.bytes)  # the bits were spent
    recs = [json.loads(x) for x in (tmp_path / "run" / "records.jsonl").read_text().splitlines()]
    assert all(r["status"] == "decode_failed" and "checksum" in r["error"] for r in recs if r["codec"] == "bad")

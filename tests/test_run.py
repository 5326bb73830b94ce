"""The sweep runner: true bytes and bpp, resume after a crash, failures recorded, multirun."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tests.assets import COCO_MINI_DATASET
from tests.codecs_for_tests import CrashingRaw
from vcmbench.config import compose_config
from vcmbench.points import POINT_COLUMNS
from vcmbench.run import run_sweep
from vcmbench.vision.torchvision_split import TorchvisionSplit

FAST = [
    *COCO_MINI_DATASET,
    "dataset.max_images=2",
    "model=frcnn_r50_fpn",
    "model.weights=none",
    "model.min_size=256",
    "model.max_size=384",
    "sweep.progress=false",
    "sweep.workers=1",
]
HEADER_AND_CRC = 30 + 4


def cfg_with(*overrides: str):
    return compose_config("config", [*FAST, *overrides])


def test_cli_run_raw_gives_true_bytes_and_bpp(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "vcmbench", "run", *FAST, "codec=raw", "timing.items=1", f"hydra.run.dir={out}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    points = pd.read_csv(out / "points.csv")
    assert list(points.columns[: len(POINT_COLUMNS)]) == POINT_COLUMNS
    assert len(points) == 1 and points.loc[0, "rate"] == "dtype=float32"
    assert points.loc[0, "role"] == "uncompressed" and points.loc[0, "encoder"] == "none (float32 samples)"
    # complexity: the networks are counted, a codec torch does not run is time only (NaN, not 0)
    assert points.loc[0, "kmac_front"] > 1 and points.loc[0, "kmac_back"] > 1
    assert pd.isna(points.loc[0, "kmac_enc"]) and pd.isna(points.loc[0, "kmac_dec"])
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(records) == 2
    # Recompute the expected payload from the real front on the same images.
    cfg = cfg_with("codec=raw")
    from hydra.utils import instantiate

    ds, det = instantiate(cfg.dataset), instantiate(cfg.model)
    expected_bytes = 0
    for rec in ds.records:
        feats = det.front(ds.load(rec).image).features
        expected_bytes += 4 * sum(v.numel() for v in feats.values()) + HEADER_AND_CRC
    row = points.iloc[0]
    assert row["bytes"] == expected_bytes
    assert row["pixels"] == sum(r.height * r.width for r in ds.records)
    assert row["bpp"] == pytest.approx(8 * row["bytes"] / row["pixels"], rel=1e-12)
    assert (out / "detections" / "raw" / "dtype=float32.json").is_file()
    assert (out / "config.resolved.yaml").is_file()


def test_crash_then_rerun_resumes_without_redoing(tmp_path, monkeypatch):
    calls = {"front": 0}
    real_front = TorchvisionSplit.front

    def counting_front(self, image):
        calls["front"] += 1
        return real_front(self, image)

    monkeypatch.setattr(TorchvisionSplit, "front", counting_front)
    codec = [
        "+codec.crashy._target_=tests.codecs_for_tests.CrashingRaw",
        "+codec.crashy.name=crashy",
        "+codec.raw16._target_=vcmbench.codecs.raw.RawCodec",
        "+codec.raw16.name=raw16",
        "+codec.raw16.dtype=float16",
    ]
    cfg = cfg_with(*codec, "complexity=false")  # counted fronts: the sweep's only
    CrashingRaw.encodes, CrashingRaw.crash_after = 0, 1  # image 1 done, crash on image 2's first point
    with pytest.raises(KeyboardInterrupt):
        run_sweep(cfg, tmp_path)
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    assert len(lines) == 2  # crashy + raw16 of the first image survived the crash
    assert calls["front"] == 2
    CrashingRaw.crash_after = None
    points = run_sweep(cfg, tmp_path)
    assert calls["front"] == 3  # only the unfinished image ran the front again
    assert len((tmp_path / "records.jsonl").read_text().splitlines()) == 4
    assert sorted(points.codec) == ["crashy", "raw16"]
    assert (points.n_images == 2).all()
    # A third run redoes nothing at all.
    run_sweep(cfg, tmp_path)
    assert calls["front"] == 3


def test_torn_record_line_is_redone(tmp_path):
    cfg = cfg_with("codec=raw")
    run_sweep(cfg, tmp_path)
    path = tmp_path / "records.jsonl"
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])  # crash mid-write
    points = run_sweep(cfg, tmp_path)
    assert len(path.read_text().splitlines()) == 2 and points.n_images.tolist() == [2]


def test_decode_failure_is_recorded_and_sweep_goes_on(tmp_path):
    cfg = cfg_with("codec=raw", "+codec.bad._target_=tests.codecs_for_tests.CorruptingRaw", "+codec.bad.name=bad")
    points = run_sweep(cfg, tmp_path).set_index("codec")
    assert points.loc["bad", "n_failed"] == 2 and points.loc["raw", "n_failed"] == 0
    assert points.loc["bad", "bytes"] == points.loc["raw", "bytes"]  # the bits were still spent
    recs = [json.loads(x) for x in (tmp_path / "records.jsonl").read_text().splitlines()]
    bad = [r for r in recs if r["codec"] == "bad"]
    assert all(r["status"] == "decode_failed" and "checksum" in r["error"] for r in bad)


def test_encode_failure_is_recorded_and_sweep_goes_on(tmp_path):
    """An encoder that crashes on one image costs that image and rate point only."""
    cfg = cfg_with("codec=raw", "+codec.flaky._target_=tests.codecs_for_tests.FailingRaw", "+codec.flaky.name=flaky")
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
    cfg = cfg_with("codec=raw", "+codec.raw_image._target_=tests.codecs_for_tests.RawImage")
    points = run_sweep(cfg, tmp_path).set_index("codec")
    recs = {(r["codec"], r["image_id"]): r for r in map(json.loads, (tmp_path / "records.jsonl").open())}
    for image_id in (139, 802):
        carried, raw = recs[("raw_image", image_id)], recs[("raw", image_id)]
        assert carried["status"] == "ok" and len(raw["detections"]) > 0
        assert carried["detections"] == raw["detections"]
        assert carried["extra"]["image_psnr"] == float("inf")
    assert points.loc["raw_image", "bytes"] == sum(4 + 3 * h * w for h, w in [(426, 640), (640, 424)])


def test_retrained_checkpoint_at_the_same_path_is_another_setup(tmp_path):
    """The content of a codec's files (checkpoints) is in its resume fingerprint, not just their path."""
    from vcmbench.run import build_jobs

    weights = tmp_path / "w.pt"
    weights.write_bytes(b"first training")
    cfg = cfg_with("+codec.raw_w._target_=tests.codecs_for_tests.RawWithWeights", f"+codec.raw_w.weights={weights}")
    first = build_jobs(cfg)[0].setup
    assert build_jobs(cfg)[0].setup == first
    weights.write_bytes(b"retrained, same path")
    assert build_jobs(cfg)[0].setup != first


def test_front_runs_once_per_image_not_per_rate_point(tmp_path, monkeypatch):
    calls = {"front": 0}
    real_front = TorchvisionSplit.front
    monkeypatch.setattr(
        TorchvisionSplit, "front", lambda s, i: calls.__setitem__("front", calls["front"] + 1) or real_front(s, i)
    )
    run_sweep(cfg_with("codec=[raw,raw16]", "complexity=false"), tmp_path)
    assert calls["front"] == 2


def test_changed_codec_settings_are_not_reused(tmp_path):
    run_sweep(cfg_with("codec=raw"), tmp_path)
    points = run_sweep(cfg_with("codec=raw", "codec.raw.dtype=float16"), tmp_path)
    assert len((tmp_path / "records.jsonl").read_text().splitlines()) == 4
    assert points.rate.tolist() == ["dtype=float16"]


def test_bad_config_value_gives_clear_error(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vcmbench",
            "run",
            *FAST,
            "codec=raw",
            "codec.raw.dtype=int8",
            f"hydra.run.dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "codec.raw.dtype='int8'" in proc.stderr and "float16" in proc.stderr


def test_multirun_basic_launcher_writes_one_dir_per_job(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vcmbench",
            "run",
            "-m",
            *FAST,
            "dataset.max_images=1",
            "codec=raw,raw16",
            f"results_dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    tables = sorted(tmp_path.glob("multirun/*/*/points.csv"))
    assert len(tables) == 2
    merged = pd.concat([pd.read_csv(t) for t in tables])
    assert sorted(merged.codec) == ["raw", "raw16"]
    ratio = merged.set_index("codec").bytes
    assert np.isclose((ratio["raw"] - 34) / (ratio["raw16"] - 34), 2.0)


def test_parallel_workers_give_the_same_records(tmp_path):
    """Worker processes code whole images; one writer; the same records as a serial run, and
    the points table says the times were taken under contention."""
    serial = run_sweep(cfg_with("codec=[raw,raw16]", "sweep.workers=1"), tmp_path / "serial")
    parallel = run_sweep(cfg_with("codec=[raw,raw16]", "sweep.workers=2"), tmp_path / "parallel")
    cols = ["codec", "rate", "bytes", "pixels", "bpp", "map", "ap50", "n_failed"]
    pd.testing.assert_frame_equal(serial[cols], parallel[cols])
    assert serial.workers.tolist() == [1, 1] and not serial.contended.any()
    assert parallel.workers.tolist() == [2, 2] and parallel.contended.all()
    a = {
        (r["image_id"], r["codec"]): r["detections"]
        for r in map(json.loads, (tmp_path / "serial/records.jsonl").open())
    }
    b = {
        (r["image_id"], r["codec"]): r["detections"]
        for r in map(json.loads, (tmp_path / "parallel/records.jsonl").open())
    }
    assert a == b


@pytest.mark.timeout(300)
def test_a_payload_the_back_rejects_is_that_items_decode_failure(tmp_path):
    """A header overwritten after encoding: the payload decodes, the back raises ShapeError;
    the item records decode_failed with the reason and the sweep finishes."""
    cfg = cfg_with(
        "codec=[raw,anchor_vvc]",
        "codec.anchor_vvc._target_=tests.codecs_for_tests.HeaderOverwrittenFrames",
        "codec.anchor_vvc.rates=[41]",
    )
    points = run_sweep(cfg, tmp_path).set_index("codec")
    assert points.loc["anchor_vvc", "n_failed"] == 2 and points.loc["raw", "n_failed"] == 0
    recs = [json.loads(x) for x in (tmp_path / "records.jsonl").read_text().splitlines()]
    bad = [r for r in recs if r["codec"] == "anchor_vvc"]
    assert len(bad) == 2 and all(
        r["status"] == "decode_failed" and r["error"].startswith("ShapeError: ") and "p5" in r["error"] for r in bad
    ), [r["error"] for r in bad]

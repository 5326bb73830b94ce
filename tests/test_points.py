"""The points and classes tables of a sequence set (points.py): kbps, bpp and bytes that agree in every
row, per-class rates weighted by duration and metrics joint over the class's frames, checked on a
sweep over the synthetic videos and on a hand-made set."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.assets import video_run_cfg
from vcmbench.datasets.base import ImageRecord
from vcmbench.datasets.sequences import SequenceDataset, SequenceRecord
from vcmbench.points import build_sequence_points
from vcmbench.records import Record
from vcmbench.regress import regress_main
from vcmbench.render.cttc import export_main
from vcmbench.render.report import write_report
from vcmbench.run import run_sweep


@pytest.mark.timeout(300)
def test_video_sweep_gives_consistent_kbps_bpp_bytes_and_resumes(tmp_path):
    cfg = video_run_cfg(tmp_path, "codec=[anchor_vvc,raw]", "codec.anchor_vvc.rates=[37,45]", "fidelity=false")
    points = run_sweep(cfg, tmp_path / "run")
    classes = pd.read_csv(tmp_path / "run" / "classes.csv")
    recs = [json.loads(x) for x in (tmp_path / "run" / "records.jsonl").read_text().splitlines()]
    assert len(points) == 4 * 3 and len(recs) == 4 * 3
    assert all(r["frames"] == 3 and len(r["frame_detections"]) == 3 and r["status"] == "ok" for r in recs)
    by_key = {(r["codec"], r["rate"], r["image_id"]): r for r in recs}
    for row in points.itertuples():
        assert row.frames == 3 and row.n_images == 3
        assert row.kbps == 8 * row.bytes * row.fps / (1000 * row.frames)
        assert row.bpp == 8 * row.bytes / row.pixels
        assert row.pixels == 3 * 256 * 256
        assert row.metric == "mota" and row.map == row.mota
        assert (
            row.encoder
            == {
                "anchor_vvc": "libvvenc preset faster; low_delay, intra period auto",
                "raw": "none (float32 samples); framewise",
            }[row.codec]
        )
    seq_ids = {s: i + 1 for i, s in enumerate(["pan_fast", "crowd", "sparse", "slow"])}
    for row in points.itertuples():
        assert row.bytes == by_key[(row.codec, row.rate, seq_ids[row.sequence])]["bytes"]
    assert set(classes["class"]) == {"A", "B"} and len(classes) == 2 * 3
    for row in classes.itertuples():
        members = points[(points.codec == row.codec) & (points.rate == row.rate) & (points["class"] == row._5)]
        durations = members.frames / members.fps
        assert row.kbps == pytest.approx((members.kbps * durations).sum() / durations.sum(), rel=1e-12)
        assert row.bytes == members.bytes.sum() and row.frames == members.frames.sum()
    anchor = points[points.codec == "anchor_vvc"]
    for _, rows in anchor.groupby("sequence"):
        assert rows.set_index("rate").loc["qp=37", "bytes"] > rows.set_index("rate").loc["qp=45", "bytes"]
    assert (tmp_path / "run" / "detections" / "raw" / "dtype=float32.json").is_file()
    # the report, the per-class gate and the MPEG template export read the same run
    run = tmp_path / "run"
    text = write_report([run], run / "report").markdown.read_text()
    assert "BD-rate per class" in text and "BD-rate per sequence" in text and "### Class B" in text
    assert (run / "report" / "figures" / "rd_class_A.png").is_file()
    assert "data:image/png;base64," in (run / "report" / "report.html").read_text()
    assert regress_main([str(run), "--reference", str(run / "classes.csv"), "--tolerance", "1"]) == 0
    cheaper = classes.assign(kbps=classes.kbps * 0.9)  # a reference 10 % cheaper: the run is worse
    cheaper.to_csv(tmp_path / "cheaper.csv", index=False)
    assert regress_main([str(run), "--reference", str(tmp_path / "cheaper.csv"), "--tolerance", "1"]) == 1
    assert export_main([str(run), "--format", "cttc", "--out", str(tmp_path / "cttc")]) == 0
    assert any(p.name.endswith("-classes.csv") for p in (tmp_path / "cttc").iterdir())
    # resume: a rerun redoes nothing
    before = (tmp_path / "run" / "records.jsonl").read_text()
    again = run_sweep(cfg, tmp_path / "run")
    assert (tmp_path / "run" / "records.jsonl").read_text() == before
    pd.testing.assert_frame_equal(
        again[["codec", "rate", "sequence", "bytes", "map"]], points[["codec", "rate", "sequence", "bytes", "map"]]
    )


# ---------------------------------------------------------------- class aggregation, by hand


def _hand_dataset(tmp_path) -> SequenceDataset:
    """Class A: s1 (2 frames, 10 fps), s2 (4 frames, 20 fps); class B: s3 (2 frames, 25 fps).
    One 20x20 box per frame, one track per sequence."""
    specs = [(1, "s1", "A", 10.0, 2), (2, "s2", "A", 20.0, 4), (3, "s3", "B", 25.0, 2)]
    images, anns, seqs = [], [], []
    for sid, name, cls, fps, n in specs:
        frames = []
        for k in range(n):
            iid = sid * 100 + k
            images.append(
                {
                    "id": iid,
                    "file_name": f"{name}/{k}.png",
                    "height": 64,
                    "width": 64,
                    "sequence_id": sid,
                    "frame_index": k,
                }
            )
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": iid,
                    "category_id": 1,
                    "bbox": [10 + k, 10, 20, 20],
                    "area": 400,
                    "iscrowd": 0,
                    "track_id": 1,
                }
            )
            frames.append(ImageRecord(iid, f"{name}/{k}.png", 64, 64))
        seqs.append(SequenceRecord(sid, name, cls, fps, tuple(frames)))
    ann = tmp_path / "hand.json"
    ann.write_text(
        json.dumps(
            {
                "images": images,
                "annotations": anns,
                "categories": [{"id": 1, "name": "obj"}],
                "sequences": [{"id": s, "name": n, "class": c, "fps": f} for s, n, c, f, _ in specs],
            }
        )
    )
    return SequenceDataset("hand", ann, tmp_path, seqs, tracking=True)


def test_class_rates_are_duration_weighted_and_metrics_joint(tmp_path):
    ds = _hand_dataset(tmp_path)
    perfect = {
        s.sequence_id: [[[10.0 + k, 10.0, 20.0, 20.0, 1.0, 1.0]] for k in range(len(s.frames))] for s in ds.sequences
    }
    sent = {1: (1000, perfect[1]), 2: (3000, [[] for _ in range(4)]), 3: (500, perfect[3])}  # s2: nothing found
    recs = [
        Record(
            image_id=sid,
            codec="c",
            rate="q=1",
            setup="x",
            bytes=b,
            pixels=ds.sequences[sid - 1].pixels,
            enc_s=0.1 * sid,
            dec_s=0.0,
            front_s=0.0,
            back_s=0.0,
            frames=len(d),
            frame_detections=d,
            frame_ids=ds.sequences[sid - 1].frame_ids,
        )
        for sid, (b, d) in sent.items()
    ]
    points, classes = build_sequence_points(recs, ds, "m", tracker={})
    p = points.set_index("sequence")
    # kbps = 8 * bytes * fps / (1000 * frames): s1 8*1000*10/2000 = 40, s2 8*3000*20/4000 = 120, s3 8*500*25/2000 = 50
    assert list(p.kbps) == [40.0, 120.0, 50.0]
    assert p.loc["s1", "map"] == 100.0 and p.loc["s2", "map"] == 0.0  # MOTA per sequence
    a = classes.set_index("class").loc["A"]
    # durations 0.2 s and 0.2 s: (40 * 0.2 + 120 * 0.2) / 0.4 = 80 kbps
    assert a.kbps == pytest.approx(80.0, rel=1e-12) and a.duration_s == pytest.approx(0.4)
    # joint over the class's 6 frames: 2 TP, 4 FN -> MOTA 1 - 4/6 (not the mean of 100 and 0)
    assert a.mota == pytest.approx(100 * (1 - 4 / 6)) and a["map"] == a.mota
    # AP over the union: recall 2/6 at precision 1 -> 34 of COCO's 101 recall thresholds
    assert a.ap == pytest.approx(100 * 34 / 101)
    assert p.loc["s1", "ap"] == pytest.approx(100.0) and p.loc["s2", "ap"] == 0.0
    # per-frame times over the class's frames: (0.1 * 2 + 0.2 * 4) / 6
    assert a.enc_s == pytest.approx((0.1 * 2 + 0.2 * 4) / 6)
    b = classes.set_index("class").loc["B"]
    assert b.kbps == pytest.approx(50.0) and b.mota == pytest.approx(100.0) and b.frames == 2


def test_points_need_every_sequence(tmp_path):
    ds = _hand_dataset(tmp_path)
    rec = Record(
        image_id=1,
        codec="c",
        rate="q=1",
        setup="x",
        bytes=10,
        pixels=1,
        enc_s=0,
        dec_s=0,
        front_s=0,
        back_s=0,
        frames=2,
        frame_detections=[[], []],
        frame_ids=ds.sequences[0].frame_ids,
    )
    points, classes = build_sequence_points([rec], ds, "m", tracker={})
    assert points.empty and classes.empty

"""Video: the split on every frame, inter coding, sequence payloads, the sweep over sequences and
the per-sequence and per-class numbers (kbps, joint metrics)."""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest
import torch

from tests.codecs_for_tests import fake_vtm
from vcmbench.codecs.sequence import SequenceInfo, decode_sequence, open_sequence
from vcmbench.config import compose_config
from vcmbench.datasets.base import ImageRecord
from vcmbench.datasets.sequences import SequenceDataset, SequenceRecord
from vcmbench.datasets.synthetic_video import build as build_video
from vcmbench.errors import ConfigError, PayloadError
from vcmbench.points import build_sequence_points
from vcmbench.records import Record
from vcmbench.regress import regress_main
from vcmbench.render.cttc import export_main
from vcmbench.render.report import write_report
from vcmbench.run import run_sweep
from vcmbench.types import LEVELS
from vcmbench.vision.ci_frcnn import DEFAULT_WEIGHTS
from vcmbench.vision.ci_frcnn import build as build_ci_frcnn

SPEC = [{"name": "pan", "class": "A", "frames": 6, "fps": 30, "pan": [2, 1]}]


@pytest.fixture(scope="module")
def detector():
    return build_ci_frcnn(weights=DEFAULT_WEIGHTS)


@pytest.fixture(scope="module")
def sequence_fronts(tmp_path_factory, detector):
    """The ci_frcnn front on the 6 frames of a panning synthetic sequence, their ranges and images."""
    ds = build_video(sequences=SPEC, cache_dir=tmp_path_factory.mktemp("video"))
    images = [s.image for s in ds.frames(ds.sequences[0])]
    fronts = [detector.front(image) for image in images]
    ranges = tuple(
        (min(float(f.features[k].min()) for f in fronts), max(float(f.features[k].max()) for f in fronts))
        for k in LEVELS
    )
    return fronts, ranges, images


def _code(codec, rate, fronts, ranges, images=None, fps=30.0, pause=0.0) -> bytes:
    enc = open_sequence(codec, rate, SequenceInfo(len(fronts), fps, ranges))
    for k, f in enumerate(fronts):
        time.sleep(pause)  # the sweep's front and other codecs run between two frames of one encoder
        enc.add(None if images is None else images[k], f)
    return enc.finish()


@pytest.mark.timeout(120)
def test_split_is_exact_on_every_frame(tmp_path, detector):
    ds = build_video(sequences=SPEC, cache_dir=tmp_path, max_frames=3)
    for sample in ds.frames(ds.sequences[0]):
        ref = detector.full(sample.image)
        front = detector.front(sample.image)
        out = detector.back(front.features, front.meta)
        assert len(ref) > 0
        assert torch.equal(ref.boxes, out.boxes) and torch.equal(ref.scores, out.scores)
        assert torch.equal(ref.labels, out.labels)


@pytest.mark.timeout(180)
def test_low_delay_spends_fewer_bytes_than_all_intra_and_bytes_fall_as_qp_rises(codec_from_yaml, sequence_fronts):
    fronts, ranges, _ = sequence_fronts
    intra = codec_from_yaml("anchor_vvc", rates=[37], sequence_gop="all_intra")
    low_delay = codec_from_yaml("anchor_vvc", rates=[35, 41, 47])
    n_intra = len(_code(intra, intra.rates[0], fronts, ranges))
    sizes = [len(_code(low_delay, rp, fronts, ranges)) for rp in low_delay.rates]
    low_delay_37 = codec_from_yaml("anchor_vvc", rates=[37])
    assert len(_code(low_delay_37, low_delay_37.rates[0], fronts, ranges)) < n_intra
    assert sizes[0] > sizes[1] > sizes[2]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", ["anchor_vvc", "anchor_hevc", "image_vvc"])
def test_pauses_between_frames_do_not_change_the_bitstream(codec_from_yaml, sequence_fronts, name):
    """libvvenc fed live through a pipe wrote parameter sets and no picture when frames came 0.2 s
    apart; a sequence's bytes must not depend on how fast the front delivers its frames."""
    fronts, ranges, images = sequence_fronts
    codec = codec_from_yaml(name)
    rate = codec.rates[len(codec.rates) // 2]
    assert _code(codec, rate, fronts, ranges, images, pause=0.2) == _code(codec, rate, fronts, ranges, images)


@pytest.mark.timeout(180)
def test_the_image_anchor_codes_the_video_with_inter_prediction(codec_from_yaml, sequence_fronts):
    fronts, ranges, images = sequence_fronts
    low_delay = codec_from_yaml("image_vvc", rates=[37])
    intra = codec_from_yaml("image_vvc", rates=[37], sequence_gop="all_intra")
    per_frame = sum(len(intra.encode(image, intra.rates[0])) for image in images)
    n_intra = len(_code(intra, intra.rates[0], fronts, ranges, images))
    n_low_delay = len(_code(low_delay, low_delay.rates[0], fronts, ranges, images))
    assert n_low_delay < n_intra
    assert abs(n_intra - per_frame) < 0.1 * per_frame  # the all-intra video is the frames' own pictures


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    "name,overrides",
    [
        ("anchor_vvc", {"sequence_gop": "random_access"}),
        ("pack_concat", {}),
        ("raw", {}),
        ("image_vvc", {"rates": [37]}),
        ("image_lossless", {}),
    ],
)
def test_sequence_payload_round_trips_and_bad_payloads_fail_cleanly(codec_from_yaml, sequence_fronts, name, overrides):
    fronts, ranges, images = sequence_fronts
    codec = codec_from_yaml(name, **overrides)
    rate = codec.rates[0]
    payload = _code(codec, rate, fronts, ranges, images)
    metas = [f.meta for f in fronts]
    decoded = list(decode_sequence(codec, payload, metas))
    assert len(decoded) == len(fronts)
    for got, sent, image in zip(decoded, fronts, images):
        if got.features is None:  # an image codec: the receiver gets the frame itself
            assert got.image.shape == image.shape and got.image.dtype == torch.uint8
            if name == "image_lossless":
                assert torch.equal(got.image, image)
            continue
        for k in LEVELS:
            assert got.features[k].shape == sent.features[k].shape
            if name == "raw":
                assert torch.equal(got.features[k], sent.features[k])
    for bad in (payload[: len(payload) // 2], payload[: len(payload) * 3 // 4], payload[:20]):
        with pytest.raises(PayloadError):
            list(decode_sequence(codec, bad, metas))
    with pytest.raises(PayloadError):  # a sequence of another length
        list(decode_sequence(codec, payload, metas[:-1]))


def _video_cfg(tmp_path, *overrides):
    return compose_config(
        "config",
        [
            "dataset=synthetic_video",
            f"dataset.cache_dir={tmp_path / 'cache'}",
            "dataset.max_frames=3",
            "sweep.progress=false",
            "sweep.workers=1",
            "report=false",
            *overrides,
        ],
    )


@pytest.mark.timeout(300)
def test_video_sweep_gives_consistent_kbps_bpp_bytes_and_resumes(tmp_path):
    cfg = _video_cfg(tmp_path, "codec=[anchor_vvc,raw]", "codec.anchor_vvc.rates=[37,45]")
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


@pytest.mark.timeout(300)
def test_a_corrupted_sequence_payload_is_a_failure_of_that_point_only(tmp_path):
    cfg = _video_cfg(
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


@pytest.mark.timeout(120)
def test_vtm_codes_a_sequence_with_its_low_delay_cfg(tmp_path, codec_from_yaml, sequence_fronts):
    """VTM (fake binaries recording their command line): one EncoderApp call for the whole
    sequence, with the sequence cfg and the CTC intra period; without that cfg, a clear error."""
    fronts, ranges, _ = sequence_fronts
    enc, dec, log = fake_vtm(tmp_path)
    lowdelay = tmp_path / "encoder_lowdelay_vtm.cfg"
    lowdelay.write_text("GOPSize : 8\n")
    settings = {"rates": [37], "backend__encoder_app": str(enc), "backend__decoder_app": str(dec)}
    codec = codec_from_yaml("anchor_vtm", backend__sequence_cfg=str(lowdelay), **settings)
    payload = _code(codec, codec.rates[0], fronts, ranges, fps=30.0)
    call = json.loads(log.read_text())
    assert call["argv"][:2] == ["-c", str(lowdelay.resolve())]
    assert call["opts"]["FramesToBeEncoded"] == str(len(fronts)) and call["opts"]["IntraPeriod"] == "32"
    decoded = list(decode_sequence(codec, payload, [f.meta for f in fronts]))
    assert len(decoded) == len(fronts)
    with pytest.raises(ConfigError, match=r"codec\.anchor_vtm\.backend\.sequence_cfg"):
        no_cfg = codec_from_yaml("anchor_vtm", **settings)
        _code(no_cfg, no_cfg.rates[0], fronts, ranges)


@pytest.mark.timeout(300)
def test_parallel_workers_code_sequences_as_a_serial_run_does(tmp_path):
    overrides = [
        "codec=[anchor_vvc,learned_interleaved]",
        "codec.anchor_vvc.rates=[41]",
        "codec.learned_interleaved.rates=[2]",
        "dataset.max_frames=2",
    ]
    serial = run_sweep(_video_cfg(tmp_path, *overrides, "sweep.workers=1"), tmp_path / "serial")
    parallel = run_sweep(_video_cfg(tmp_path, *overrides, "sweep.workers=2"), tmp_path / "parallel")
    columns = ["codec", "rate", "sequence", "bytes", "kbps", "map", "ap", "mota", "idf1"]
    pd.testing.assert_frame_equal(serial[columns], parallel[columns])
    assert (parallel.workers == 2).all() and (serial.workers == 1).all()

"""records.jsonl: a sweep killed part-way resumes without redoing finished work, and a torn last
line is redone."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.assets import SKIP_FIGURES, SMALL_NET, fast_run_cfg
from tests.codecs_for_tests import CrashingRaw
from vcmbench.records import Record, decode_embeddings, encode_embeddings, read_records, write_records
from vcmbench.run import run_sweep
from vcmbench.vision.torchvision_split import TorchvisionSplit


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
    cfg = fast_run_cfg(*codec, *SMALL_NET, "complexity=false")  # counted fronts: the sweep's only
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
    cfg = fast_run_cfg("codec=raw", *SMALL_NET, *SKIP_FIGURES)
    run_sweep(cfg, tmp_path)
    path = tmp_path / "records.jsonl"
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])  # crash mid-write
    points = run_sweep(cfg, tmp_path)
    assert len(path.read_text().splitlines()) == 2 and points.n_images.tolist() == [2]


@pytest.mark.timeout(60)
def test_embeddings_round_trip_as_float16_and_lines_without_them_keep_their_fields(tmp_path):
    rng = np.random.default_rng(0)
    unit = rng.normal(size=(3, 512)).astype(np.float32)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    stored = encode_embeddings(torch.from_numpy(unit))
    assert stored.startswith("f16:512:")
    # 3 rows x 512 float16: 3072 bytes, 4096 characters of base64
    assert len(stored) == len("f16:512:") + 4096
    back = decode_embeddings(stored)
    assert back.dtype == np.float32 and back.shape == (3, 512)
    assert np.array_equal(back, unit.astype(np.float16).astype(np.float32))  # exactly the float16 values
    assert encode_embeddings(np.zeros((0, 512))) == "f16:512:" and decode_embeddings("f16:512:").shape == (0, 512)
    rows = [[1.0, 2.0, 3.0, 4.0, 0.9, 1.0]] * 3
    image = Record(1, "c", "q=1", "s", 10, 100, 0.0, 0.0, 0.0, 0.0, detections=rows, embeddings=stored)
    seq = Record(2, "c", "q=1", "s", 10, 100, 0.0, 0.0, 0.0, 0.0, frames=2, frame_ids=[5, 6],
                 frame_detections=[rows, []], frame_embeddings=[stored, "f16:512:"])  # fmt: skip
    plain = Record(3, "c", "q=1", "s", 10, 100, 0.0, 0.0, 0.0, 0.0, frames=1, frame_ids=[7], frame_detections=[rows])
    path = tmp_path / "records.jsonl"
    write_records(path, [image, seq, plain])
    got = {r.image_id: r for r in read_records(path)}
    assert got[1] == image and got[2] == seq and got[3] == plain
    assert got[1].has_embeddings and got[2].has_embeddings and not got[3].has_embeddings
    first, second = got[2].embedding_arrays()
    assert np.array_equal(first, back) and second.shape == (0, 512)
    assert got[3].embedding_arrays() == [None] and got[2].frame_results()[0].embeddings == stored
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["embeddings"] == stored and lines[1]["frame_embeddings"] == [stored, "f16:512:"]
    # a sequence line without embeddings holds the fields it held before they were kept, in their order
    assert list(lines[2]) == [
        "image_id", "codec", "rate", "setup", "bytes", "pixels", "enc_s", "dec_s", "front_s", "back_s", "status",
        "error", "detections", "masks", "mask_size", "extra", "layer_bytes", "workers", "frames", "frame_ids",
        "frame_detections", "feature_hash", "decoded_hash",
    ]  # fmt: skip
    for bad in ("png:abc", "f16:0:", "f16:512:AAA", "f16:x:"):
        with pytest.raises(ValueError, match="not stored embeddings"):
            decode_embeddings(bad)

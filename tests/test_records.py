"""records.jsonl: a sweep killed part-way resumes without redoing finished work, and a torn last
line is redone."""

from __future__ import annotations

import pytest

from tests.assets import fast_run_cfg
from tests.codecs_for_tests import CrashingRaw
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
    cfg = fast_run_cfg(*codec, "complexity=false")  # counted fronts: the sweep's only
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
    cfg = fast_run_cfg("codec=raw")
    run_sweep(cfg, tmp_path)
    path = tmp_path / "records.jsonl"
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])  # crash mid-write
    points = run_sweep(cfg, tmp_path)
    assert len(path.read_text().splitlines()) == 2 and points.n_images.tolist() == [2]

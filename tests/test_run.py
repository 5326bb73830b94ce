"""The sweep: item-major (each image through the front once, whatever the rate points) and worker
processes that give the records a serial run gives."""

from __future__ import annotations

import json

import pandas as pd

from tests.assets import SKIP_FIGURES, SMALL_NET, fast_run_cfg
from vcmbench.run import run_sweep
from vcmbench.vision.torchvision_split import TorchvisionSplit

SMALL = ["codec=[raw,raw16]", *SMALL_NET]


def test_front_runs_once_per_image_not_per_rate_point(tmp_path, monkeypatch):
    calls = {"front": 0}
    real_front = TorchvisionSplit.front
    monkeypatch.setattr(
        TorchvisionSplit, "front", lambda s, i: calls.__setitem__("front", calls["front"] + 1) or real_front(s, i)
    )
    run_sweep(fast_run_cfg(*SMALL, "complexity=false"), tmp_path)
    assert calls["front"] == 2


def test_parallel_workers_give_the_same_records(tmp_path):
    """Worker processes code whole images; one writer; the same records as a serial run, and
    the points table says the times were taken under contention."""
    serial = run_sweep(fast_run_cfg(*SMALL, "sweep.workers=1", *SKIP_FIGURES), tmp_path / "serial")
    parallel = run_sweep(fast_run_cfg(*SMALL, "sweep.workers=2", *SKIP_FIGURES), tmp_path / "parallel")
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

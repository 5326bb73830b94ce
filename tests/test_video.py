"""The sweep over sequences: worker processes code sequences as a serial run does."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.assets import SKIP_FIGURES, video_run_cfg
from vcmbench.run import run_sweep


@pytest.mark.timeout(300)
def test_parallel_workers_code_sequences_as_a_serial_run_does(tmp_path):
    overrides = [
        "codec=[anchor_vvc,learned_interleaved]",
        "codec.anchor_vvc.rates=[41]",
        "codec.learned_interleaved.rates=[2]",
        # two 2-frame sequences of two classes, one per worker
        "dataset.sequences=[{name: pan, class: A, frames: 2, fps: 30, pan: [2, 1]},"
        " {name: still, class: B, frames: 2, fps: 25}]",
        *SKIP_FIGURES,
    ]
    serial = run_sweep(video_run_cfg(tmp_path, *overrides, "sweep.workers=1"), tmp_path / "serial")
    parallel = run_sweep(video_run_cfg(tmp_path, *overrides, "sweep.workers=2"), tmp_path / "parallel")
    columns = ["codec", "rate", "sequence", "bytes", "kbps", "map", "ap", "mota", "idf1"]
    pd.testing.assert_frame_equal(serial[columns], parallel[columns])
    assert (parallel.workers == 2).all() and (serial.workers == 1).all()

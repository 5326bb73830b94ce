"""The video default users start, which CI gates against anchors/ci/video-classes.csv.

`vcmbench run dataset=synthetic_video` is the video default (the first 6 frames of each of the 4
synthetic sequences, every default codec: about 4 minutes on 2 cores); CI runs it through the
command line, reads the report it writes, and gates the per-class table with `vcmbench regress`
like the image default.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.assets import assert_same_numbers
from vcmbench.regress import EXIT_OK, regress_main

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "anchors" / "ci" / "video-classes.csv"
TOLERANCE = "2.0"  # as the image gate; the reference itself is reproduced exactly

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def video_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("video") / "run"
    cache = tmp_path_factory.mktemp("video-cache")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vcmbench",
            "run",
            "dataset=synthetic_video",
            f"dataset.cache_dir={cache}",
            "sweep.progress=false",
            "timing.items=0",  # the pass of a sequence set and its report section: tests/test_timing_pass.py
            f"hydra.run.dir={out}",
        ],
        capture_output=True,
        text=True,
        timeout=1600,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return out


def test_the_video_default_passes_the_regression_gate(video_run):
    assert regress_main([str(video_run), "--reference", str(REFERENCE), "--tolerance", TOLERANCE]) == EXIT_OK


def test_the_video_default_reproduces_its_references_exactly(video_run):
    assert_same_numbers(video_run / "classes.csv", REFERENCE)
    assert_same_numbers(video_run / "points.csv", REPO / "anchors" / "ci" / "video-points.csv")


def test_the_video_run_writes_its_tables_and_report(video_run):
    points = pd.read_csv(video_run / "points.csv")
    classes = pd.read_csv(video_run / "classes.csv")
    assert set(points.sequence) == {"pan_fast", "crowd", "sparse", "slow"} and (points.frames == 6).all()
    assert set(classes["class"]) == {"A", "B"} and (points.n_failed == 0).all()
    # the uncompressed features track as well as the detector allows: every class has a MOTA and an HOTA
    raw = classes[classes.codec == "raw"]
    assert (raw.mota > 0).all() and (raw.hota > 0).all() and (raw.idf1 > 0).all()
    report = (video_run / "report" / "report.md").read_text()
    assert "BD-rate per class" in report and (video_run / "report" / "figures" / "rd_class_B.png").is_file()

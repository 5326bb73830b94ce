"""The offline default run itself: the table, the AP, the CI gate.

`vcmbench run` is the README's main job (`make demo`): 20 synthetic val scenes, which are the
scenes ci_frcnn's `val_small` AP was measured on, every default codec, worker processes over
the images. One run serves three checks: one points-table row per default codec and rate point,
the uncompressed (`raw`) mAP equal to the AP recorded beside the checkpoint, and `vcmbench
regress` against the committed reference anchors/ci/points.csv.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tests.assets import CHECKPOINTS, assert_same_numbers
from vcmbench.config import selected_codec_configs
from vcmbench.regress import EXIT_OK, regress_main

REPO = Path(__file__).resolve().parents[1]
INFO = CHECKPOINTS / "ci_frcnn" / "ci_frcnn.json"
REFERENCE = REPO / "anchors" / "ci" / "points.csv"
REFERENCE_50 = REPO / "anchors" / "ci" / "points-50.csv"
DEFAULT_IMAGES = 20
# `vcmbench regress`'s gate as a user runs it (a changed codec against the reference); the reference
# itself is reproduced exactly (test_default_run_reproduces_the_reference_exactly)
TOLERANCE = "2.0"


pytestmark = [pytest.mark.slow, pytest.mark.timeout(3000)]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("default") / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "vcmbench", "run", "sweep.progress=false", f"hydra.run.dir={out}"],
        capture_output=True,
        text=True,
        timeout=2700,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return out


def _default_codecs() -> dict[str, list[str]]:
    """codec name -> its rate labels, for every codec a plain `vcmbench run` sweeps."""
    out = {}
    for name, node in selected_codec_configs(OmegaConf.create({"codec": None})).items():
        codec = instantiate(node)
        out[name] = [rp.label for rp in codec.rates]
    return out


def test_one_row_per_default_codec_and_rate_point(default_run):
    points = pd.read_csv(default_run / "points.csv")
    expected = {(c, r) for c, rates in _default_codecs().items() for r in rates}
    got = list(zip(points.codec, points.rate))
    assert len(got) == len(set(got)) and set(got) == expected
    assert (points.dataset == "synthetic_val").all() and (points.model == "ci_frcnn").all()
    assert (points.n_images == DEFAULT_IMAGES).all() and (points.n_failed == 0).all()
    assert (points.bpp > 0).all() and points["map"].notna().all()
    for name in ("report.md", "report.html"):
        assert (default_run / "report" / name).is_file()
    # the report's times: every point timed again alone after the sweep (its two workers shared the cores)
    timing = pd.read_csv(default_run / "timing.csv")
    assert set(zip(timing.codec, timing.rate)) == expected and (timing["items"] == 2).all()
    assert "a timing pass after the sweep" in (default_run / "report" / "report.md").read_text()


def test_uncompressed_map_is_the_checkpoints_recorded_ap(default_run):
    small = json.loads(INFO.read_text())["val_small"]
    assert small["count"] == DEFAULT_IMAGES and small["seed_start"] == 1_000_000
    raw = pd.read_csv(default_run / "points.csv").set_index("codec").loc["raw"]
    # the json rounds to 3 decimals; anything beyond that would be another model or other images
    assert raw["map"] == pytest.approx(small["map"], abs=2e-3)
    assert raw["ap50"] == pytest.approx(small["ap50"], abs=2e-3)


def test_default_run_passes_the_regression_gate(default_run, capsys):
    assert regress_main([str(default_run), "--reference", str(REFERENCE), "--tolerance", TOLERANCE]) == EXIT_OK
    assert "no regression" in capsys.readouterr().out


def test_default_run_reproduces_the_reference_exactly(default_run):
    """determinism=exact (the default): every byte count, mAP, fidelity figure and hash of the reference,
    made on another machine, to the last bit."""
    assert json.loads((default_run / "run.json").read_text())["machine_independent"] is True
    assert_same_numbers(default_run / "points.csv", REFERENCE)


@pytest.mark.parametrize("path, images", [(REFERENCE, DEFAULT_IMAGES), (REFERENCE_50, 50)])
def test_references_hold_every_default_codec(path, images):
    """anchors/ci/points.csv (the default run) and points-50.csv (the same over 50 scenes)."""
    ref = pd.read_csv(path)
    expected = {(c, r) for c, rates in _default_codecs().items() for r in rates}
    assert set(zip(ref.codec, ref.rate)) == expected
    assert (ref.n_images == images).all() and (ref.dataset == "synthetic_val").all()
    small = json.loads(INFO.read_text())["val"]
    assert ref.set_index("codec").loc["raw", "map"] > 0.9 * small["map"]  # same detector as the checkpoint

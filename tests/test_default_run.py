"""The offline default run, reduced to the checkpoint's small val set: the table, the AP, the CI gate.

`vcmbench run dataset.max_images=20` is the README's main job on the first 20 of its 50 synthetic
val scenes, which are the scenes ci_frcnn's `val_small` AP was measured on. One run serves three
checks: one points-table row per default codec and rate point, the uncompressed (`raw`) mAP equal
to the AP recorded beside the checkpoint, and `vcmbench regress` against the committed reduced
reference anchors/ci/points-reduced.csv.
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

from vcmbench.config import selected_codec_configs
from vcmbench.regress import EXIT_OK, regress_main

REPO = Path(__file__).resolve().parents[1]
INFO = REPO / "checkpoints" / "ci_frcnn" / "ci_frcnn.json"
REDUCED_REFERENCE = REPO / "anchors" / "ci" / "points-reduced.csv"
FULL_REFERENCE = REPO / "anchors" / "ci" / "points.csv"
REDUCED_IMAGES = 20
# The CI gate's tolerance: the reference was made on another CPU; float rounding in the front may move
# a detection score, never a whole percent of BD-rate.
TOLERANCE = "2.0"


@pytest.fixture(scope="module")
def reduced_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("default") / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "vcmbench.cli", "run", f"dataset.max_images={REDUCED_IMAGES}", "progress=false",
         "workers=2", f"hydra.run.dir={out}"],
        capture_output=True, text=True, timeout=1200, cwd=REPO,
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


def test_one_row_per_default_codec_and_rate_point(reduced_run):
    points = pd.read_csv(reduced_run / "points.csv")
    expected = {(c, r) for c, rates in _default_codecs().items() for r in rates}
    got = list(zip(points.codec, points.rate))
    assert len(got) == len(set(got)) and set(got) == expected
    assert (points.dataset == "synthetic_val").all() and (points.model == "ci_frcnn").all()
    assert (points.n_images == REDUCED_IMAGES).all() and (points.n_failed == 0).all()
    assert (points.bpp > 0).all() and points["map"].notna().all()
    for name in ("report.md", "report.html"):
        assert (reduced_run / "report" / name).is_file()


def test_uncompressed_map_is_the_checkpoints_recorded_ap(reduced_run):
    small = json.loads(INFO.read_text())["val_small"]
    assert small["count"] == REDUCED_IMAGES and small["seed_start"] == 1_000_000
    raw = pd.read_csv(reduced_run / "points.csv").set_index("codec").loc["raw"]
    # the json rounds to 3 decimals; anything beyond that would be another model or other images
    assert raw["map"] == pytest.approx(small["map"], abs=2e-3)
    assert raw["ap50"] == pytest.approx(small["ap50"], abs=2e-3)


def test_reduced_run_passes_the_regression_gate(reduced_run, capsys):
    assert regress_main([str(reduced_run), "--reference", str(REDUCED_REFERENCE), "--tolerance", TOLERANCE]) == EXIT_OK
    assert "no regression" in capsys.readouterr().out


def test_full_reference_is_the_default_run():
    """anchors/ci/points.csv: every default codec and rate point over all 50 default scenes."""
    ref = pd.read_csv(FULL_REFERENCE)
    expected = {(c, r) for c, rates in _default_codecs().items() for r in rates}
    assert set(zip(ref.codec, ref.rate)) == expected
    assert (ref.n_images == 50).all() and (ref.dataset == "synthetic_val").all()
    small = json.loads(INFO.read_text())["val"]
    assert ref.set_index("codec").loc["raw", "map"] > 0.9 * small["map"]  # same detector as the checkpoint

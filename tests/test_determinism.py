"""determinism=exact: the same features, bytes and metrics whatever the thread count (and, by
construction, the CPU); loose runs say they are machine-dependent; feature hashes in records and
points; regress telling "the environment differs" from "the codec regressed"."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.assets import numbers_of
from vcmbench import determinism
from vcmbench.errors import ConfigError
from vcmbench.regress import ENV_DIFFERS, regress_main

REPO = Path(__file__).resolve().parents[1]
COMMON = ["dataset.count=2", "sweep.workers=1", "report=false", "sweep.progress=false", "complexity=false"]
SMALL = [
    *COMMON,
    "codec=[anchor_vvc,pack_tile,learned_interleaved,hybrid_vvc,image_vvc,raw]",
    "codec.anchor_vvc.rates=[37,45]",
    "codec.hybrid_vvc.rates=[37]",
    "codec.pack_tile.rates=[37]",
    "codec.learned_interleaved.rates=[2]",
    "codec.image_vvc.rates=[37]",
]


def _run(out: Path, *extra: str, base: list[str] = SMALL) -> Path:
    proc = subprocess.run(
        [sys.executable, "-m", "vcmbench", "run", *base, *extra, f"hydra.run.dir={out}"],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_exact_runs_are_identical_whatever_the_thread_count(tmp_path):
    """4 torch threads in one process (the reductions' split; the learned encode on its own 2), and 2
    workers of 1 thread each with their codecs capped at 1 (vcmbench.thread_budget), give the same
    points table, every non-time column (bytes, mAP, fidelity, feature and decoded hashes) to the last bit."""
    runs = {
        key: _run(tmp_path / key, *extra)
        for key, extra in (("t4", ["sweep.threads=4"]), ("workers2", ["sweep.threads=1", "sweep.workers=2"]))
    }
    tables = {key: numbers_of(run / "points.csv") for key, run in runs.items()}
    pd.testing.assert_frame_equal(tables["t4"], tables["workers2"], check_exact=True)
    one = tables["t4"]
    assert (one.features_hash != "").all() and one.features_hash.nunique() == 1
    env = json.loads((runs["t4"] / "run.json").read_text())
    assert env["determinism"] == "exact" and env["machine_independent"] is True and env["torch_threads"] == 4
    assert env["cpu_model"]


@pytest.mark.timeout(300)
def test_a_loose_run_says_its_numbers_depend_on_the_machine(tmp_path):
    run = _run(tmp_path / "loose", "determinism=loose", base=[*COMMON, "codec=raw"])
    env = json.loads((run / "run.json").read_text())
    assert env["determinism"] == "loose" and env["machine_independent"] is False and env["cpu_model"]


def test_modes_and_their_old_names():
    assert determinism.check_mode("exact") == "exact" and determinism.check_mode("loose") == "loose"
    assert determinism.check_mode("strict") == "exact" and determinism.check_mode("off") == "loose"
    with pytest.raises(ConfigError, match=r"determinism='sometimes'"):
        determinism.check_mode("sometimes")


def _table(path: Path, bpp: float, features: str, bytes_: int = 1000) -> Path:
    rows = [
        {
            "dataset": "d",
            "model": "m",
            "codec": "c",
            "rate": "qp=37",
            "n_images": 2,
            "n_failed": 0,
            "bytes": bytes_,
            "pixels": 8000 * 1000 / bpp / 8 if bpp else 1,
            "bpp": bpp,
            "map": 40.0,
            "ap50": 60.0,
            "features_hash": features,
        }
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_regress_blames_the_environment_when_the_features_differ(tmp_path, capsys):
    ref = _table(tmp_path / "ref.csv", 1.0, "aaaa")
    worse_other_features = _table(tmp_path / "run1.csv", 1.1, "bbbb", 1100)
    assert regress_main([str(worse_other_features), "--reference", str(ref), "--tolerance", "1"]) == 2
    out = capsys.readouterr()
    assert ENV_DIFFERS in out.out + out.err and "REGRESSION:" not in out.err
    worse_same_features = _table(tmp_path / "run2.csv", 1.1, "aaaa", 1100)
    assert regress_main([str(worse_same_features), "--reference", str(ref), "--tolerance", "1"]) == 1
    out = capsys.readouterr()
    assert "the codec is not deterministic" in out.out and "REGRESSION: c" in out.err

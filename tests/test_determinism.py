"""determinism=strict: the same features, bytes and metrics whatever the thread count; feature hashes
in records and points; regress telling "the environment differs" from "the codec regressed"."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from vcmbench import determinism
from vcmbench.errors import ConfigError
from vcmbench.regress import ENV_DIFFERS, regress_main

REPO = Path(__file__).resolve().parents[1]
COMMON = ["dataset.count=2", "workers=1", "report=false", "progress=false", "complexity=false", "fidelity=false"]
SMALL = [*COMMON, "codec=[anchor_vvc,pack_tile,learned_interleaved]", "codec.anchor_vvc.rates=[37,45]",
         "codec.pack_tile.rates=[37]", "codec.learned_interleaved.rates=[2]"]
# features only: the front's hash is in every codec's points, so the cheapest codec shows it
FEATURES_ONLY = [*COMMON, "codec=raw"]
TIME = ("enc_s", "dec_s", "front_s", "back_s")


def _run(out: Path, *extra: str, base: list[str] = SMALL) -> pd.DataFrame:
    proc = subprocess.run([sys.executable, "-m", "vcmbench", "run", *base, *extra, f"hydra.run.dir={out}"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    points = pd.read_csv(out / "points.csv")
    return points[[c for c in points.columns if not c.endswith("_s") and c not in ("workers", "contended")]]


@pytest.mark.timeout(600)
def test_strict_runs_are_identical_whatever_the_thread_count_and_loose_ones_are_not(tmp_path):
    one = _run(tmp_path / "strict1", "determinism=strict", "threads=1")
    two = _run(tmp_path / "strict2", "determinism=strict", "threads=2")
    pd.testing.assert_frame_equal(one, two)  # every non-time column, to the last digit
    assert (one.features_hash != "").all() and one.features_hash.nunique() == 1
    env = json.loads((tmp_path / "strict2" / "run.json").read_text())
    assert env["determinism"] == "strict" and env["cpu_capability"] in ("AVX2", "DEFAULT")
    assert env["mkldnn_enabled"] is False and env["deterministic_algorithms"] is True
    # the measurement strict exists for: without it the thread count changes the features
    loose1 = _run(tmp_path / "loose1", "threads=1", base=FEATURES_ONLY)
    loose2 = _run(tmp_path / "loose2", "threads=2", base=FEATURES_ONLY)
    assert loose1.features_hash.iloc[0] != loose2.features_hash.iloc[0]
    assert loose1.features_hash.iloc[0] != one.features_hash.iloc[0]


def test_strict_refuses_a_torch_loaded_without_its_environment(monkeypatch):
    for key in determinism.STRICT_ENV:
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ConfigError, match=r"determinism=strict: torch was loaded without ATEN_CPU_CAPABILITY=avx2"):
        determinism.apply(True)
    determinism.apply(False)  # off changes nothing


def test_the_command_line_asks_for_strict_before_torch_loads():
    assert determinism.wants_strict(["determinism=strict", "codec=raw"])
    assert not determinism.wants_strict(["determinism=off"])
    with pytest.raises(ConfigError, match=r"determinism='sometimes'"):
        determinism.check_mode("sometimes")


def _table(path: Path, bpp: float, features: str, bytes_: int = 1000) -> Path:
    rows = [{"dataset": "d", "model": "m", "codec": "c", "rate": "qp=37", "n_images": 2, "n_failed": 0,
             "bytes": bytes_, "pixels": 8000 * 1000 / bpp / 8 if bpp else 1, "bpp": bpp, "map": 40.0, "ap50": 60.0,
             "features_hash": features}]
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

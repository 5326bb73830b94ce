"""An installed wheel works from any directory: configs and checkpoints ship inside it.

Builds the wheel from a copy of the repository's package sources, installs it (no deps) into a
throwaway venv that sees this environment's packages, and runs the offline default on one
scene with `codec=raw` from an empty temporary directory, far from the repository.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from tests.assets import REPO

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.timeout(600)
def test_wheel_runs_the_offline_default_from_any_directory(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "vcmbench", src / "vcmbench", ignore=shutil.ignore_patterns("__pycache__"))
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        cwd=tmp_path,
    )
    (wheel,) = (tmp_path / "dist").glob("vcmbench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "vcmbench/conf/config.yaml" in names and "vcmbench/conf/codec/anchor_vvc.yaml" in names
    assert "vcmbench/checkpoints/ci_frcnn/ci_frcnn.pt" in names
    assert "vcmbench/checkpoints/learned_interleaved/q4.pt" in names

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], cwd=tmp_path)
    py = venv / "bin" / "python"
    # The dependencies (torch, ...) come from the environment running the tests: when that is itself
    # a venv, --system-site-packages alone would only show the base interpreter's packages.
    purelib = Path(
        _run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path).stdout.strip()
    )
    (purelib / "_vcmbench_test_parent_env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", str(wheel)], cwd=tmp_path)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run([str(py), "-c", "import vcmbench; print(vcmbench.__file__)"], cwd=elsewhere).stdout.strip()
    assert Path(where).is_relative_to(venv), f"imported the repository's vcmbench, not the wheel's: {where}"
    _run(
        [
            str(venv / "bin" / "vcmbench"),
            "run",
            "codec=raw",
            "dataset.max_images=1",
            "sweep.progress=false",
            "sweep.workers=1",
        ],
        cwd=elsewhere,
    )
    points = pd.read_csv(elsewhere / "results" / "synthetic_val-ci_frcnn" / "points.csv")
    assert points.codec.tolist() == ["raw"] and points.n_images.tolist() == [1] and points["map"].iloc[0] > 0
    assert (elsewhere / "results" / "synthetic_val-ci_frcnn" / "report" / "report.md").is_file()

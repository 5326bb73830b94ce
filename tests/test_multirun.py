"""Sweeps past one process: Hydra multirun on the basic launcher (one run folder per job) and on joblib
for real; the SLURM and Ray launcher configs compose.

No cluster here: the SLURM (submitit) and Ray presets are checked by composing them with the
run config and validating the launcher node; the joblib path runs two jobs in parallel on the
real pipeline, then `vcmbench report` merges their run folders and `vcmbench regress` checks
them against a reference made from the same numbers.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from omegaconf import MISSING, OmegaConf

from tests.assets import FAST_RUN, SKIP_FIGURES, SMALL_NET
from vcmbench.config import compose_config
from vcmbench.regress import regress_main
from vcmbench.render.report_cli import report_main

FAST = [*FAST_RUN, "sweep.threads=1"]
RUN_NAME = "mr"


def launcher_cfg(launcher: str, *overrides: str):
    return compose_config(
        "config",
        [f"hydra/launcher={launcher}", "results_dir=/sweeps", "codec=raw", *overrides],
        return_hydra_config=True,
    )


@pytest.mark.slow
def test_joblib_multirun_two_codecs_then_report_and_regress(tmp_path, capsys):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vcmbench",
            "run",
            "-m",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            *FAST,
            *SKIP_FIGURES,  # the launcher, the report and the gate are checked here, not kmac_* or fid_*
            "dataset.max_images=1",
            "codec=raw,raw16",
            f"results_dir={tmp_path}",
            f"run_name={RUN_NAME}",
        ],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout + proc.stderr  # really the joblib launcher
    sweep = tmp_path / "multirun" / RUN_NAME
    jobs = sorted(p.parent for p in sweep.glob("*/points.csv"))
    assert [j.name.split(",")[0] for j in jobs] == ["codec=raw", "codec=raw16"]  # one run folder per job
    for job in jobs:
        hydra_cfg = yaml.safe_load((job / ".hydra" / "hydra.yaml").read_text())["hydra"]
        assert hydra_cfg["launcher"]["_target_"].endswith("JoblibLauncher")
        assert (job / "config.resolved.yaml").is_file() and (job / "run.json").is_file()

    out = tmp_path / "report"
    assert report_main([str(sweep), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    for codec in ("raw (anchor)", "raw16"):
        assert f"| {codec} |" in md
    assert "single rate point" in md  # raw16 vs raw: no BD curve, said so in the table
    assert len(list((out / "figures").glob("*.png"))) == 2 and len(list((out / "figures").glob("*.svg"))) == 2
    assert "data:image/png;base64," in (out / "report.html").read_text()

    # regress on the real run folders: the same numbers pass, a reference with fewer bits fails
    merged = pd.concat([pd.read_csv(j / "points.csv", dtype={"rate": str}) for j in jobs])
    ref = tmp_path / "ref.csv"
    merged.to_csv(ref, index=False)
    capsys.readouterr()
    assert regress_main([str(sweep), "--reference", str(ref), "--tolerance", "0.5"]) == 0
    leaner = merged.assign(bpp=merged.bpp * 0.98)  # the reference spent 2 % fewer bits
    leaner.to_csv(ref, index=False)
    assert regress_main([str(sweep), "--reference", str(ref), "--tolerance", "0.5"]) == 1
    err = capsys.readouterr().err
    assert "REGRESSION: raw:" in err and "REGRESSION: raw16:" in err and "bpp +2.04%" in err


def test_joblib_launcher_config_composes():
    cfg = launcher_cfg("joblib", "hydra.launcher.n_jobs=2")
    assert cfg.hydra.launcher._target_ == "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    assert cfg.hydra.launcher.n_jobs == 2
    assert cfg.hydra.sweep.dir == "/sweeps/multirun/synthetic_val-ci_frcnn"


@pytest.mark.parametrize("launcher", ["submitit_slurm", "slurm_gpu"])
def test_slurm_launcher_configs_compose(launcher):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install hydra-submitit-launcher==1.2.0")
    from hydra.utils import instantiate

    cfg = launcher_cfg(launcher, "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=30")
    node = cfg.hydra.launcher
    assert node._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert node.partition == "gpu" and node.timeout_min == 30
    assert node.submitit_folder == "/sweeps/multirun/synthetic_val-ci_frcnn/.submitit/%j"
    if launcher == "slurm_gpu":
        assert node.gpus_per_node == 1 and node.mem_gb == 48
    launcher_obj = instantiate(node)  # the plugin accepts every field (nothing is submitted)
    assert type(launcher_obj).__name__ == "SlurmLauncher"


@dataclass
class _RayConf:  # what hydra-ray-launcher 1.2 reads from hydra.launcher (its RayLauncherConf)
    init: dict[str, Any] = field(default_factory=dict)
    remote: dict[str, Any] = field(default_factory=dict)


@dataclass
class _RayLauncherConf:
    _target_: str = MISSING
    ray: _RayConf = field(default_factory=_RayConf)


def test_ray_launcher_config_composes_without_ray(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    cfg = launcher_cfg("ray_cluster", "hydra.launcher.ray.remote.num_gpus=0")
    node = cfg.hydra.launcher
    # structured check: no unknown or misplaced keys, the right types
    checked = OmegaConf.merge(OmegaConf.structured(_RayLauncherConf), node)
    assert checked._target_ == "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
    assert checked.ray.init.address == "ray://head:10001"
    assert checked.ray.remote == {"num_cpus": 4, "num_gpus": 0}
    bad = OmegaConf.create({"_target_": "x", "ray": {"init": {}, "remotes": {}}})
    with pytest.raises(Exception, match="remotes"):
        OmegaConf.merge(OmegaConf.structured(_RayLauncherConf), bad)
    try:  # with the plugin installed, the preset also fits the plugin's own schema
        from hydra_plugins.hydra_ray_launcher._config import RayLauncherConf
    except Exception:
        return
    OmegaConf.merge(OmegaConf.structured(RayLauncherConf), node)


def test_multirun_basic_launcher_writes_one_dir_per_job(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vcmbench",
            "run",
            "-m",
            *FAST,
            "dataset.max_images=1",
            *SMALL_NET,
            *SKIP_FIGURES,
            "codec=raw,raw16",
            f"results_dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    tables = sorted(tmp_path.glob("multirun/*/*/points.csv"))
    assert len(tables) == 2
    merged = pd.concat([pd.read_csv(t) for t in tables])
    assert sorted(merged.codec) == ["raw", "raw16"]
    ratio = merged.set_index("codec").bytes
    assert np.isclose((ratio["raw"] - 34) / (ratio["raw16"] - 34), 2.0)

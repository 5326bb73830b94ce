"""Sweeps past one machine: shards of the items, merged exactly, run by real launchers.

- 4 shards of 5 scenes (raw, anchor_vvc, learned_interleaved) merged give the unsharded run's
  points, every column but the times;
- a merge refuses a missing shard, a changed setting and overlapping shards with one line;
- `vcmbench sweep --launcher local` reports a shard that failed by shard and, run again, codes
  only that shard;
- `vcmbench sweep --launcher slurm` submits the shards to a real one-node SLURM cluster
  (scripts/slurm_local.sh: Debian's slurm-wlm and munge) through hydra-submitit-launcher.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from vcmbench.config import compose_config
from vcmbench.datasets.base import ImageRecord
from vcmbench.datasets.shards import Shard, parse_shard, partition, shard_item_ids
from vcmbench.errors import ConfigError
from vcmbench.merge import MergeError, merge_runs, merge_sharded
from vcmbench.records import RunLock, read_records
from vcmbench.run import run_sweep

REPO = Path(__file__).resolve().parents[1]
QUIET = ["sweep.progress=false", "report=false", "sweep.workers=1", "fidelity=false"]
# the case every sharding rule must hold on: 5 scenes (4 shards: one of 2 scenes, three of 1), an
# uncompressed, a VVC and a learned codec (a rate point each)
FIVE = [
    "dataset.count=5",
    "codec=[raw,anchor_vvc,learned_interleaved]",
    "codec.anchor_vvc.rates=[37]",
    "codec.learned_interleaved.rates=[4]",
    *QUIET,
]


def _not_times(points: pd.DataFrame) -> pd.DataFrame:
    """Every column but the times (enc_s, dec_s, front_s, back_s, dec_*_s) and the shard columns."""
    keep = [c for c in points.columns if not c.endswith("_s") and c not in ("partial", "shard")]
    return points[keep].sort_values(["codec", "rate"]).reset_index(drop=True)


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"rate": str}, float_precision="round_trip")


# ---------------------------------------------------------------------------------------- parts


@pytest.mark.timeout(30)
def test_parts_are_disjoint_balanced_and_deterministic():
    sizes = [(256, 256), (480, 640), (256, 256), (1080, 1920), (100, 100), (512, 512), (480, 640), (64, 64), (2, 2)]
    items = [ImageRecord(10 + i, f"{i}.png", h, w) for i, (h, w) in enumerate(sizes)]
    for n in (1, 2, 3, 4, 9, 12):
        parts = partition(items, n)
        ids = [i.image_id for part in parts for i in part]
        assert sorted(ids) == [i.image_id for i in items]  # disjoint and covering
        loads = [sum(i.height * i.width for i in part) for part in parts]
        assert max(loads) - min(loads) <= max(h * w for h, w in sizes)  # balanced within one item
        for part in parts:  # each part in the dataset's order
            assert [i.image_id for i in part] == sorted(i.image_id for i in part)
        assert partition(list(reversed(items)), n) == [list(reversed(p)) for p in parts]  # not order-dependent
    assert [i.image_id for i in partition(items, 2)[0]] == shard_item_ids(Shard(1, 2), items)


@pytest.mark.timeout(30)
def test_shard_setting_forms_and_refusals():
    assert parse_shard("2/4") == Shard(2, 4) and parse_shard("3of4") == Shard(3, 4) and parse_shard(None) is None
    assert Shard(2, 4).label == "2/4" and Shard(2, 4).tag == "shard2of4"
    for bad in ("0/4", "5/4", "a/b", "2", "1/0"):
        with pytest.raises(ConfigError, match="dataset.shard="):
            parse_shard(bad)
    proc = subprocess.run(
        [sys.executable, "-m", "vcmbench", "run", "dataset.shard=5/4", "codec=raw"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "dataset.shard='5/4'" in lines[0] and "K must be from 1 to N" in lines[0]


@pytest.mark.timeout(60)
def test_a_sequence_set_is_cut_by_sequences(tmp_path):
    cfg = compose_config(
        "config",
        ["dataset=synthetic_video", "dataset.max_frames=1", f"dataset.cache_dir={tmp_path}", "dataset.shard=2/2"],
    )
    from hydra.utils import instantiate

    part = instantiate(cfg.dataset)
    cfg.dataset.shard = None
    whole = instantiate(cfg.dataset)
    assert 0 < len(part) < len(whole)
    assert [s.name for s in part.sequences] == [s.name for s in partition(whole.sequences, 2)[1]]
    assert set(part.classes) <= set(whole.classes)


# ------------------------------------------------------------------------- merge == unsharded


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """The 5-scene sweep run whole and as 4 shards (each its own run folder)."""
    root = tmp_path_factory.mktemp("shards")
    whole = run_sweep(compose_config("config", FIVE), root / "whole")
    shards = []
    for k in range(1, 5):
        run_sweep(compose_config("config", [*FIVE, f"dataset.shard={k}/4"]), root / f"shard{k}of4")
        shards.append(root / f"shard{k}of4")
    return root, whole, shards


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_four_shards_merged_equal_the_unsharded_run(sharded):
    root, whole, shards = sharded
    assert len(whole) == 3 and set(whole.codec) == {"raw", "anchor_vvc", "learned_interleaved"}
    sizes = [int(_read(s / "points.csv").n_images.iloc[0]) for s in shards]
    assert sizes == [2, 1, 1, 1]  # equal-size scenes: balanced within one scene
    part = _read(shards[0] / "points.csv")
    assert set(part["shard"]) == {"1/4"} and part["partial"].all()  # a shard's own table says what it is
    merged = merge_runs(shards, root / "merged")
    assert not merged["partial"].any() and (merged.n_images == 5).all()
    pd.testing.assert_frame_equal(
        _not_times(_read(root / "merged" / "points.csv")),
        _not_times(_read(root / "whole" / "points.csv")),
        check_exact=True,
    )
    assert "kmac_enc" in merged.columns  # complexity counted on the whole set's first scene, by every shard
    # mAP is the union's, not the mean of the shards' mAPs
    vvc = [
        float(_read(s / "points.csv").set_index(["codec", "rate"]).loc[("anchor_vvc", "qp=37"), "map"]) for s in shards
    ]
    union = float(merged.set_index(["codec", "rate"]).loc[("anchor_vvc", "qp=37"), "map"])
    assert abs(union - sum(vvc) / len(vvc)) > 1e-6
    # the merged folder is a run folder: records and detections of every point, and it lists its shards
    assert len(read_records(root / "merged" / "records.jsonl")) == 5 * 3
    assert len(list((root / "merged" / "detections").rglob("*.json"))) == 3
    info = json.loads((root / "merged" / "run.json").read_text())
    assert [s["shard"] for s in info["shards"]] == ["1/4", "2/4", "3/4", "4/4"]
    assert all(s["host"] and "git_commit" in s for s in info["shards"])
    one = json.loads((shards[1] / "run.json").read_text())  # provenance of every run folder
    assert one["shard"] == "2/4" and one["finished"] and one["host"] and one["git_commit"] and "git_dirty" in one


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_merge_refuses_missing_changed_and_overlapping_shards(sharded, tmp_path, capsys):
    from vcmbench.merge import merge_main

    root, _, shards = sharded
    assert merge_main([str(s) for s in shards[:3]] + ["--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "shard 4/4 is missing (1 of 5 images)" in err[0] and "--allow-partial" in err[0]

    partial = merge_runs(shards[:3], tmp_path / "partial", allow_partial=True)
    assert partial["partial"].all() and (partial.n_images == 4).all()
    assert json.loads((tmp_path / "partial" / "run.json").read_text())["partial"] is True

    changed = tmp_path / "changed"
    shutil.copytree(shards[3], changed)
    cfg = OmegaConf.load(changed / "config.resolved.yaml")
    cfg.sweep.threads = 2  # features depend on the thread count: another setting, not another shard
    (changed / "config.resolved.yaml").write_text(OmegaConf.to_yaml(cfg))
    with pytest.raises(
        MergeError, match=r"sweep.threads=2, but .* has sweep.threads=1; merge the shards of one sweep only"
    ):
        merge_runs([*shards[:3], changed], tmp_path / "m")

    with pytest.raises(MergeError, match="overlapping shards: .* are both shard 2/4"):
        merge_runs([*shards, shards[1]], tmp_path / "m")
    with pytest.raises(MergeError, match="overlapping shards: .*cut into 1 and of one into 4"):
        merge_runs([root / "whole", shards[0]], tmp_path / "m")

    unfinished = tmp_path / "unfinished"
    shutil.copytree(shards[0], unfinished)  # the shard of 2 scenes
    lines = (unfinished / "records.jsonl").read_text().splitlines(keepends=True)
    (unfinished / "records.jsonl").write_text("".join(lines[:-3]))
    with pytest.raises(MergeError, match=r"shard 1/4 \(.*unfinished\) is unfinished: 3 of 6 images x rate points"):
        merge_runs([unfinished, *shards[1:]], tmp_path / "m")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_report_on_a_sharded_sweep_merges_its_shards(sharded, tmp_path):
    _, _, shards = sharded
    sweep = tmp_path / "sweep"
    for s in shards:
        shutil.copytree(s, sweep / s.name)
    inputs = merge_sharded([sweep])
    assert inputs == [sweep / "merged"]
    assert (_read(sweep / "merged" / "points.csv").n_images == 5).all()
    assert merge_sharded([sweep]) == [sweep / "merged"]  # a merged folder stands for its shards


# ------------------------------------------------------------------------ launchers, for real

TINY = [
    "dataset.count=4",
    "codec=[raw,anchor_vvc]",
    "codec.anchor_vvc.rates=[41]",
    "complexity=false",
    "sweep.progress=false",
    "fidelity=false",
]
RAW_ONLY = ["dataset.count=2", "codec=raw", "complexity=false", "sweep.progress=false", "fidelity=false"]


def _sweep(*args: str, env: dict | None = None, timeout: int = 400) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vcmbench", "sweep", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.mark.timeout(600)
def test_local_sweep_reports_a_failed_shard_and_reruns_only_it(tmp_path):
    out = tmp_path / "sweep"
    lock = RunLock(out / "shard2of2").acquire()  # shard 2's folder is busy: its job fails
    try:
        first = _sweep("--shards", "2", "--launcher", "local", "--out", str(out), *RAW_ONLY)
    finally:
        lock.release()
    assert first.returncode == 1, first.stderr[-3000:]
    assert "shard 2/2 did not finish" in first.stderr and "in use by" in first.stderr
    assert "shard 1/2 did not finish" not in first.stderr
    done = (out / "shard1of2" / "records.jsonl").stat().st_mtime_ns

    second = _sweep("--shards", "2", "--launcher", "local", "--out", str(out), *RAW_ONLY)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "running shard(s) 2/2 with the local launcher" in second.stdout
    assert (out / "shard1of2" / "records.jsonl").stat().st_mtime_ns == done  # shard 1 was not run again
    merged = _read(out / "merged" / "points.csv")
    assert (merged.n_images == 2).all() and len(merged) == 1


def _slurm_cluster():
    """Start the local one-node cluster (scripts/slurm_local.sh); None where SLURM is not installed
    and this is not CI (CI installs it: there the test must run)."""
    if shutil.which("slurmctld") is None or os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("CI must run the SLURM test: .ci/run installs slurm-wlm and munge (as root)")
        pytest.skip("SLURM is not installed here (sudo bash scripts/slurm_local.sh install)")
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "slurm_local.sh"), "start"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().split("=", 1)[1]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_slurm_sweep_of_two_shards_equals_one_process(tmp_path):
    conf = _slurm_cluster()
    env = {**os.environ, "SLURM_CONF": conf}
    out = tmp_path / "slurm"
    args = (
        "--shards",
        "2",
        "--launcher",
        "slurm",
        "--out",
        str(out),
        *TINY,
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=4",
        "hydra.launcher.timeout_min=20",
    )
    try:
        lock = RunLock(out / "shard2of2").acquire()  # shard 2's job fails under SLURM: its folder is busy
        try:
            first = _sweep(*args, env=env, timeout=420)
        finally:
            lock.release()
        assert first.returncode == 1, (first.stdout + first.stderr)[-4000:]
        assert "shard 2/2 did not finish: SLURM job" in first.stderr and "in use by" in first.stderr
        assert "shard 1/2 did not finish" not in first.stderr
        second = _sweep(*args, env=env, timeout=420)  # resubmits shard 2 only
        assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]
        assert "running shard(s) 2/2 with the slurm launcher" in second.stdout
        # three array tasks ran under SLURM: shards 1 and 2, then shard 2 again
        assert len(list((out / ".submitit").glob("*/*_log.out"))) == 3
        for k in (1, 2):
            job = json.loads((out / f"shard{k}of2" / "run.json").read_text())["job"]
            assert job["scheduler"] == "slurm" and job["slurm_job_id"]  # shard 2's rerun: a job, not an array
    finally:
        subprocess.run(["bash", str(REPO / "scripts" / "slurm_local.sh"), "stop"], timeout=60)
    run_sweep(compose_config("config", [*TINY, "sweep.workers=1", "report=false"]), tmp_path / "whole")
    whole, merged = _read(tmp_path / "whole" / "points.csv"), _read(out / "merged" / "points.csv")
    pd.testing.assert_frame_equal(
        _not_times(merged).drop(columns=["workers", "contended"]),
        _not_times(whole).drop(columns=["workers", "contended"]),
        check_exact=True,
    )


@pytest.mark.timeout(300)
def test_shards_coded_with_vtm_merge_where_no_vtm_exists(tmp_path):
    """The merge builds no codec and no model: it reads the shards' run.json, so shards coded with
    VTM merge on a host without the VTM binaries (the fake VTM is removed before the merge)."""
    from tests.codecs_for_tests import fake_vtm

    (tmp_path / "vtm").mkdir()
    enc, dec, _ = fake_vtm(tmp_path / "vtm")
    vtm = [
        "dataset.count=2",
        "codec=[raw,anchor_vtm]",
        "codec.anchor_vtm.rates=[37]",
        f"codec.anchor_vtm.backend.encoder_app={enc}",
        f"codec.anchor_vtm.backend.decoder_app={dec}",
        "complexity=false",
        *QUIET,
    ]
    whole = run_sweep(compose_config("config", vtm), tmp_path / "whole")
    shards = [tmp_path / f"shard{k}" for k in (1, 2)]
    for k, folder in enumerate(shards, start=1):
        run_sweep(compose_config("config", [*vtm, f"dataset.shard={k}/2"]), folder)
    shutil.rmtree(tmp_path / "vtm")
    merged = merge_runs(shards, tmp_path / "merged")
    assert (merged.n_images == 2).all() and set(merged.codec) == {"raw", "anchor_vtm"}
    pd.testing.assert_frame_equal(_not_times(merged), _not_times(whole), check_exact=True)
    info = json.loads((tmp_path / "merged" / "run.json").read_text())
    assert [c["name"] for c in info["description"]["codecs"]] == ["raw", "anchor_vtm"]

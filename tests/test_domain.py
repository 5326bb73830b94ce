"""A trained codec meeting another network's features: refused when named, left out of the
default selection, or coded and marked with allow_foreign (vcmbench.domain)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from vcmbench.config import compose_config
from vcmbench.domain import DomainCheck
from vcmbench.run import build_jobs, run_sweep

REPO = Path(__file__).resolve().parents[1]
# a real-size torchvision network, at a small input size so that a test can run it
OTHER = ["model=frcnn_r50_fpn", "model.weights=none", "model.min_size=128", "model.max_size=128"]
QUIET = [
    "sweep.progress=false",
    "report=false",
    "sweep.workers=1",
    "fidelity=false",
    "complexity=false",
    "dataset.count=1",
]


@pytest.mark.timeout(120)
def test_naming_a_codec_trained_for_another_network_stops_the_run_in_one_line(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vcmbench",
            "run",
            *OTHER,
            *QUIET,
            "codec=learned_interleaved",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        timeout=100,
        cwd=REPO,
    )
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("vcmbench: error: codec learned_interleaved: "), proc.stderr
    line = lines[0]
    # what it was trained on, what the run uses, and the two ways out
    assert (
        "trained on features of ci_frcnn (fpn, weights b3a4331f6afb, 256-channel levels, data synthetic_train)" in line
    )
    assert "this run's network is frcnn_r50_fpn (fpn, weights random-seed-0)" in line
    assert "vcmbench train codec=learned_interleaved" in line and "codec.learned_interleaved.allow_foreign=true" in line
    assert not (tmp_path / "run" / "records.jsonl").exists()  # stopped before the first item


@pytest.mark.timeout(60)
def test_the_default_selection_leaves_the_trained_codecs_out_and_says_so():
    cfg = compose_config("config", [*OTHER, *QUIET])
    verdict = DomainCheck([], set())
    names = [j.codec.name for j in build_jobs(cfg, verdict)]
    assert verdict.left_out == ["hybrid_vvc", "joint_interleaved_vvc", "learned_interleaved"]
    assert not set(verdict.left_out) & set(names) and "anchor_vvc" in names and "raw" in names
    assert verdict.note().startswith(
        "left out hybrid_vvc, joint_interleaved_vvc, learned_interleaved: trained for another network "
        "than "
        "frcnn_r50_fpn"
    )
    # on the network they were trained for, nothing is left out
    own = DomainCheck([], set())
    assert "learned_interleaved" in [j.codec.name for j in build_jobs(compose_config("config", QUIET), own)]
    assert own.left_out == [] and own.foreign == set()


@pytest.mark.timeout(120)
def test_sweep_workers_build_the_codecs_the_sweep_kept_not_the_ones_it_left_out():
    """A default selection on another network, coded by worker processes: each worker's config names
    only the kept codecs, in the jobs' order, so it builds them (it used to rebuild the whole
    selection as named and refuse the left-out codecs, killing the sweep)."""
    from vcmbench.run import worker_config

    cfg = compose_config("config", [*OTHER, *QUIET])
    kept = [j.codec.name for j in build_jobs(cfg, DomainCheck([], set()))]
    worker = worker_config(cfg, kept)
    assert list(worker.codec) == kept
    assert [j.codec.name for j in build_jobs(worker, DomainCheck([], set()))] == kept


@pytest.mark.timeout(300)
def test_allow_foreign_codes_anyway_and_marks_the_rows(tmp_path):
    from vcmbench.render.report import write_report

    cfg = compose_config(
        "config",
        [
            *OTHER,
            *QUIET,
            "codec=[raw,learned_interleaved]",
            "codec.learned_interleaved.rates=[4]",
            "codec.learned_interleaved.allow_foreign=true",
        ],
    )
    points = run_sweep(cfg, tmp_path / "run").set_index("codec")
    assert bool(points.loc["learned_interleaved", "foreign"]) and not bool(points.loc["raw", "foreign"])
    assert points.loc["learned_interleaved", "bpp"] > 0
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert [c["foreign"] for c in info["description"]["codecs"]] == [False, True]
    # what a merge reads back is what the sweep wrote, the mark included
    from vcmbench.aggregate import RunDescription

    described = RunDescription.from_json(info)
    assert [c.foreign for c in described.codecs] == [False, True]
    assert json.loads(json.dumps(described.to_json())) == info["description"]
    rep = write_report([tmp_path / "run"], tmp_path / "report", bootstrap=None)
    md = rep.markdown.read_text()
    assert "learned_interleaved ⚠ foreign" in md  # the rate-points table
    assert "coded features of frcnn_r50_fpn, a network their checkpoints were not trained for" in md
    assert "left out of the BD-rate tables" in md
    assert pd.read_csv(tmp_path / "run" / "points.csv")["foreign"].dtype == bool


@pytest.mark.timeout(60)
def test_a_network_with_the_same_front_is_the_same_domain():
    """ci_maskrcnn is ci_frcnn's front, frozen, with a mask head: the same features, so the codecs
    trained on ci_frcnn's features fit it (the fronts' tensors are compared, not the files)."""
    from vcmbench.codecs.learned.features import front_digest

    mask = compose_config("config", ["model=ci_maskrcnn", *QUIET, "codec=[learned_interleaved,joint_interleaved_vvc]"])
    box = compose_config("config", QUIET)
    assert front_digest(mask.model) == front_digest(box.model) is not None
    verdict = DomainCheck([], set())
    assert [j.codec.name for j in build_jobs(mask, verdict)] == ["learned_interleaved", "joint_interleaved_vvc"]
    assert verdict.left_out == [] and verdict.foreign == set()

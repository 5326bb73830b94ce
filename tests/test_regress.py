"""`vcmbench regress`: exit 0 on the same run, 1 on a worse one (naming the codec), 2 on unusable input."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from vcmbench.regress import EXIT_OK, EXIT_REGRESSION, EXIT_UNUSABLE, regress_main

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "vcmbench-regression.yml"


def points(points_tables, vvc_scale=1.0, learned_scale=1.0, raw16_map=37.4, raw_bpp=396.8, learned=True):
    rows = points_tables.curve("anchor_vvc", points_tables.BPP * vvc_scale, points_tables.MAP)
    if learned:
        rows += points_tables.curve("learned", points_tables.BPP * 0.7 * learned_scale, points_tables.MAP)
    rows += points_tables.lossless("raw", raw_bpp, 37.4, "dtype=float32")
    rows += points_tables.lossless("raw16", 198.4, raw16_map, "dtype=float16")
    return rows


@pytest.fixture
def reference(tmp_path, points_tables):
    return points_tables.write_csv(tmp_path / "anchors" / "ci" / "points.csv", points(points_tables))


def regress(run, reference, *extra):
    return regress_main([str(run), "--reference", str(reference), *extra])


def test_same_run_passes(tmp_path, reference, capsys, points_tables):
    run = points_tables.write_run(tmp_path / "run", points(points_tables))
    assert regress(run, reference, "--tolerance", "1") == EXIT_OK
    out = capsys.readouterr().out
    table = {line.split()[0]: line for line in out.splitlines()[3:7]}
    assert set(table) == {"anchor_vvc", "learned", "raw", "raw16"}
    assert re.search(r"BD-rate\s+\+0\.00\s+ok", table["anchor_vvc"])
    assert re.search(r"per point \(single rate point\)\s+\+0\.00\s+ok", table["raw"])
    assert "no regression: 4 codec(s) within +1%" in out


def test_worse_run_fails_naming_the_codec_and_its_figure(tmp_path, reference, capsys, points_tables):
    run = points_tables.write_run(
        tmp_path / "run", points(points_tables, learned_scale=1.05)
    )  # 5 % more bits at every mAP
    assert regress(run, reference, "--tolerance", "2") == EXIT_REGRESSION
    captured = capsys.readouterr()
    assert re.search(r"learned\s+BD-rate\s+\+5\.00\s+REGRESSION", captured.out)
    assert re.search(r"anchor_vvc\s+BD-rate\s+\+0\.00\s+ok", captured.out)
    assert "REGRESSION: learned: BD-rate +5.00% (tolerance 2%)" in captured.err
    assert "anchor_vvc" not in captured.err
    # within a looser tolerance it passes; a better run passes and says so
    assert regress(run, reference, "--tolerance", "6") == EXIT_OK
    better = points_tables.write_run(tmp_path / "better", points(points_tables, learned_scale=0.9))
    assert regress(better, reference, "--tolerance", "1") == EXIT_OK
    assert re.search(r"learned\s+BD-rate\s+-10\.00\s+ok \(better\)", capsys.readouterr().out)


def test_single_point_codecs_compare_bpp_and_map(tmp_path, reference, capsys, points_tables):
    run = points_tables.write_run(tmp_path / "run", points(points_tables, raw16_map=37.4 * 0.95, raw_bpp=396.8 * 1.02))
    assert regress(run, reference, "--tolerance", "1") == EXIT_REGRESSION
    err = capsys.readouterr().err
    assert "REGRESSION: raw16: dtype=float16 map -5.00%" in err
    assert "REGRESSION: raw: dtype=float32 bpp +2.00%" in err
    assert regress(run, reference, "--tolerance", "5.5") == EXIT_OK


def test_missing_codec_is_unusable(tmp_path, reference, capsys, points_tables):
    run = points_tables.write_run(tmp_path / "run", points(points_tables, learned=False))
    assert regress(run, reference) == EXIT_UNUSABLE
    captured = capsys.readouterr()
    assert re.search(r"learned\s+-\s+–\s+MISSING", captured.out)
    assert "codec(s) of the reference missing in the run: learned" in captured.err


def test_too_few_points_and_no_overlap_are_unusable(tmp_path, reference, capsys, points_tables):
    short = [
        r for r in points(points_tables) if not (r["codec"] == "learned" and r["rate"] in ("qp=40", "qp=37", "qp=34"))
    ]
    assert regress(points_tables.write_run(tmp_path / "short", short), reference) == EXIT_UNUSABLE
    assert "learned: cannot compare: learned has 3 rate points, BD-rate needs 4" in capsys.readouterr().err

    apart = [r for r in points(points_tables) if r["codec"] != "learned"] + points_tables.curve(
        "learned", points_tables.BPP * 9, points_tables.MAP + 20
    )
    assert regress(points_tables.write_run(tmp_path / "apart", apart), reference) == EXIT_UNUSABLE
    assert "ranges do not overlap" in capsys.readouterr().err

    no_rate = [dict(r, rate="dtype=bfloat16") if r["codec"] == "raw16" else r for r in points(points_tables)]
    assert regress(points_tables.write_run(tmp_path / "no_rate", no_rate), reference) == EXIT_UNUSABLE
    assert "rate point dtype=float16 of the reference is not in the run" in capsys.readouterr().err


def test_bad_inputs_are_unusable(tmp_path, reference, capsys, points_tables):
    run = points_tables.write_run(tmp_path / "run", points(points_tables))
    assert regress(run, tmp_path / "nope.csv") == EXIT_UNUSABLE
    assert "no such file" in capsys.readouterr().err
    assert regress(tmp_path / "no_run", reference) == EXIT_UNUSABLE
    assert regress(run, reference, "--tolerance", "-1") == EXIT_UNUSABLE
    other = points_tables.write_run(
        tmp_path / "other", [dict(r, dataset="openimages_mpeg") for r in points(points_tables)]
    )
    assert regress(other, reference) == EXIT_UNUSABLE
    assert "run the sweep with the reference's dataset and model" in capsys.readouterr().err


def test_a_run_csv_works_as_well_as_a_run_folder(tmp_path, reference, points_tables):
    run_csv = points_tables.write_csv(tmp_path / "run.csv", points(points_tables, vvc_scale=1.2))
    assert regress(run_csv, reference, "--tolerance", "10") == EXIT_REGRESSION


def test_cli_entry_exits_with_the_status(tmp_path, reference, points_tables):
    import subprocess
    import sys

    run = points_tables.write_run(tmp_path / "run", points(points_tables, learned_scale=1.05))
    proc = subprocess.run(
        [sys.executable, "-m", "vcmbench", "regress", str(run), "--reference", str(reference), "--tolerance", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "REGRESSION: learned" in proc.stderr


def test_example_workflow_runs_these_commands():
    wf = yaml.safe_load(WORKFLOW.read_text())
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads the key `on` as True
    assert {"push", "pull_request"} <= set(on)
    steps = {job: [s.get("run", "") for s in spec["steps"]] for job, spec in wf["jobs"].items()}
    assert set(steps) == {"regression", "sweep", "docker-lint"}
    regress_line = next(r for r in steps["regression"] if "vcmbench regress" in r)
    argv = shlex.split(regress_line.replace('"$TOLERANCE"', wf["env"]["TOLERANCE"]))
    assert argv[:3] == ["vcmbench", "regress", "results/ci"]
    assert argv[argv.index("--reference") + 1] == "anchors/ci/points.csv"
    float(argv[argv.index("--tolerance") + 1])
    sweep = " ".join(steps["sweep"])
    assert "hydra/launcher=joblib" in sweep and "vcmbench report results/multirun/ci-sweep" in sweep
    assert "hadolint docker/Dockerfile docker/Dockerfile.gpu" in " ".join(steps["docker-lint"])


def test_runs_on_other_image_counts_are_unusable(tmp_path, reference, capsys, points_tables):
    run = points_tables.write_run(tmp_path / "run", [dict(r, n_images=20) for r in points(points_tables)])
    assert regress(run, reference) == EXIT_UNUSABLE
    err = capsys.readouterr().err
    assert "reference was measured on 8 image(s), the run on 20: rerun with dataset.max_images=8" in err


def test_an_anchor_coded_with_another_preset_is_named_as_such(tmp_path, reference, capsys, points_tables):
    rows = points(points_tables, vvc_scale=0.87)  # medium spends fewer bits than faster
    for r in rows:
        if r["codec"] == "anchor_vvc":
            r["encoder"] = "libvvenc preset medium"
    run = points_tables.write_run(tmp_path / "run", rows)
    assert regress(run, reference, "--tolerance", "1") == EXIT_OK
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("anchor_vvc"))
    assert "the encoder differs: libvvenc preset medium here, libvvenc preset faster in the reference" in line


# ------------------------------------------------------------------ the gate on significance


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory):
    """Real sweeps of anchor_hevc (the anchor's frame over x265: quick) and pack_tile on 4 default
    scenes, every rate point of each (the BD curves the gate and the report need): the reference and
    a deliberately worse codec under the same name (the same HEVC streams with 25 % padding:
    tests.codecs_for_tests.WastefulFrameCodec). (A rerun with another thread count is the reference
    itself in exact mode: test_determinism shows it, and the gate's verdict on a run against itself
    is checked below.)"""
    from vcmbench.config import compose_config
    from vcmbench.run import run_sweep

    root = tmp_path_factory.mktemp("gate")
    base = [
        "dataset.max_images=4",
        "codec=[anchor_hevc,pack_tile]",
        "sweep.progress=false",
        "report=false",
        "fidelity=false",
        "complexity=false",
        "sweep.workers=1",
    ]
    runs = {}
    for name, extra in (
        ("reference", ["sweep.threads=1"]),
        (
            "worse",
            [
                "sweep.threads=1",
                "codec.anchor_hevc._target_=tests.codecs_for_tests.WastefulFrameCodec",
                "+codec.anchor_hevc.waste=0.25",
            ],
        ),
    ):
        if name == "worse":  # pack_tile is the same codec in both: the worse run resumes its records
            (root / name).mkdir()
            lines = (root / "reference" / "records.jsonl").read_text().splitlines(keepends=True)
            (root / name / "records.jsonl").write_text(
                "".join(x for x in lines if json.loads(x)["codec"] == "pack_tile")
            )
        run_sweep(compose_config("config", base + extra), root / name)
        runs[name] = root / name
    return runs


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_significance_gate_flags_a_worse_codec_and_not_noise(real_runs, capsys):
    ref = str(real_runs["reference"])
    gate = ["--alpha", "0.05", "--resamples", "300", "--tolerance", "1"]
    assert regress_main([ref, "--reference", ref, *gate]) == EXIT_OK  # itself: BD 0, interval of width 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("anchor_hevc"))
    assert "95% sure BD-rate > +0.00% and < +0.00%" in line
    assert regress_main([str(real_runs["worse"]), "--reference", ref, *gate]) == EXIT_REGRESSION
    captured = capsys.readouterr()
    assert "paired with the reference run" in captured.out
    assert re.search(r"REGRESSION: anchor_hevc: BD-rate \+2[45]\.\d\d%, above \+1% with 95% confidence", captured.err)
    assert re.search(r"95% sure BD-rate > \+2[45]\.\d\d% and < \+2[45]\.\d\d%", captured.out)  # the same on any images
    # the reference as a points table only: held fixed, the run's images resampled
    assert regress_main(
        [str(real_runs["worse"]), "--reference", str(real_runs["reference"] / "points.csv"), *gate]
    ) in (EXIT_OK, EXIT_REGRESSION)
    assert "reference curve held fixed" in capsys.readouterr().out


def test_the_significance_gate_needs_records_and_a_sane_alpha(tmp_path, reference, capsys, points_tables):
    run = points_tables.write_csv(tmp_path / "run.csv", points(points_tables))
    assert regress(run, reference, "--alpha", "0.7") == EXIT_UNUSABLE
    assert "--alpha 0.7: give the accepted chance of a false alarm in (0, 0.5)" in capsys.readouterr().err
    assert regress(run, reference, "--alpha", "0.05") == EXIT_UNUSABLE
    assert "no bootstrap: no per-item records of it in the run" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_report_gives_each_bd_rate_its_interval_and_says_how(real_runs, tmp_path):
    from vcmbench.render.report_cli import report_main

    ref = str(real_runs["reference"])
    args = [ref, "--resamples", "200", "--seed", "3"]
    assert report_main([*args, "--out", str(tmp_path / "a")]) == 0
    assert report_main([*args, "--out", str(tmp_path / "b")]) == 0
    md = (tmp_path / "a" / "report.md").read_text()
    assert "Intervals: paired bootstrap over the 4 images: 200 resamples, seed 3, 95% percentile intervals." in md

    def bd_row(text: str) -> str:
        return next(
            line for line in text[text.index("### BD-rate vs") :].splitlines() if line.startswith("| pack_tile")
        )

    row = bd_row(md)
    cells = [c.strip() for c in row.strip("|").split("|")]
    lo, hi = (float(x) for x in cells[2].split(" … "))
    assert lo < float(cells[1]) < hi and 0.0 <= float(cells[3]) <= 1.0
    assert bd_row((tmp_path / "b" / "report.md").read_text()) == row  # the same seed, the same interval
    assert report_main([ref, "--resamples", "0", "--out", str(tmp_path / "c")]) == 0
    assert "Intervals: off." in (tmp_path / "c" / "report.md").read_text()

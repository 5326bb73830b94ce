"""Bad command lines: one `vcmbench: error:` line naming the setting, the bad value and the fix,
exit status 2, and nothing started (no progress bar, no run folder)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.assets import FAST_RUN
from vcmbench.cli import main

# (command line after `vcmbench run`, words the one line must contain)
BAD_COMMAND_LINES = {
    "missing_mandatory_value": (
        ["dataset=coco_folder", "dataset.root=/nonexistent"],
        ["dataset.annotation_file", "???", "dataset.annotation_file=..."],
    ),
    "unknown_group_option": (
        ["codec=nonexistent"],
        ["codec=nonexistent", "choose one of", "anchor_vvc", "raw16", "image_vvc"],
    ),
    "unknown_option_in_a_list": (["codec=[raw,nonexistent]"], ["codec=nonexistent", "choose one of", "raw16"]),
    "wrong_type": (["sweep.workers=abc"], ["sweep.workers='abc'", "not an integer", ">= 1"]),
    "rate_out_of_range": (
        ["codec=anchor_vvc", "codec.anchor_vvc.rates=[99]"],
        ["codec.anchor_vvc.rates", "qp=99", "0..63"],
    ),
    "negative_max_images": (["dataset.max_images=-3"], ["dataset.max_images=-3", ">= 1 or null"]),
    "missing_checkpoint": (
        ["codec=raw", "model.weights=/nonexistent/ci_frcnn.pt"],
        ["model.weights=/nonexistent/ci_frcnn.pt", "no such checkpoint", "model.weights=none"],
    ),
    "unknown_setting": (["codec=raw", "wokers=2"], ["wokers=2", "no setting 'wokers'", "+wokers=2"]),
    "sweep_without_multirun": (["codec=raw,raw16"], ["codec=raw,raw16", "-m"]),
    "bad_boolean": (["codec=raw", "sweep.progress=maybe"], ["sweep.progress='maybe'", "sweep.progress=true"]),
}


@pytest.mark.parametrize("case", sorted(BAD_COMMAND_LINES))
def test_bad_command_line_is_one_line_and_exit_2(case, tmp_path, capfd, monkeypatch):
    """In this process, through main() (what `python -m vcmbench` runs); fd-level capture, so any
    log line or traceback on the process's stderr would count."""
    args, words = BAD_COMMAND_LINES[case]
    monkeypatch.chdir(tmp_path)
    try:
        code = main(["run", *args, f"hydra.run.dir={tmp_path / 'run'}"])
    except SystemExit as exc:  # an error inside the Hydra app exits
        code = exc.code
    out, err = capfd.readouterr()
    assert code == 2, out + err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("vcmbench: error: ")
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert "images x rate points" not in out + err  # failed before any progress bar
    assert not (tmp_path / "run" / "records.jsonl").exists()


@pytest.mark.parametrize("case", ["wrong_type", "missing_checkpoint"])
def test_a_real_process_prints_the_same_one_line(case, tmp_path):
    """The same as a user meets it: `python -m vcmbench run ...` in a fresh process, exit status 2."""
    args, words = BAD_COMMAND_LINES[case]
    proc = subprocess.run(
        [sys.executable, "-m", "vcmbench", "run", *args, f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and all(word in lines[0] for word in words), proc.stderr


def test_checks_run_in_process_too(capsys):
    """main() returns 2 (no SystemExit, no traceback) for a bad setting caught before Hydra starts."""
    assert main(["run", "codec=raw", "dataset.max_images=0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vcmbench: error: dataset.max_images=0") and err.count("\n") == 1


def test_each_job_of_a_multirun_is_checked_before_any_runs(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vcmbench",
            "run",
            "-m",
            "codec=raw",
            "dataset.max_images=1,-1",
            f"results_dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and "dataset.max_images=-1" in proc.stderr
    assert not list(tmp_path.glob("multirun/*/*/records.jsonl"))  # the good job did not start either


def test_user_config_dir_adds_a_codec(tmp_path):
    """A user's codec yaml in their own folder, without touching the package."""
    (tmp_path / "mine" / "codec").mkdir(parents=True)
    (tmp_path / "mine" / "codec" / "raw_mine.yaml").write_text(
        "raw_mine:\n  _target_: vcmbench.codecs.raw.RawCodec\n  name: raw_mine\n  dtype: float16\n"
    )
    for how in (["--config-dir", str(tmp_path / "mine")], [f"hydra.searchpath=[file://{tmp_path / 'mine'}]"]):
        out = tmp_path / "run"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "vcmbench",
                "run",
                *how,
                "codec=raw_mine",
                "dataset.max_images=1",
                "sweep.progress=false",
                "report=false",
                "sweep.workers=1",
                "complexity=false",
                "fidelity=false",
                f"hydra.run.dir={out}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "raw_mine" in (out / "points.csv").read_text()


@pytest.mark.timeout(120)
def test_a_run_builds_each_codec_once(tmp_path, monkeypatch):
    """The command-line check builds every codec (its settings and rate points are checked before any
    work); the sweep takes those very objects instead of building them again."""
    from vcmbench import config

    built = []
    instantiate = config._instantiate
    monkeypatch.setattr(config, "_instantiate", lambda node: built.append(str(node.name)) or instantiate(node))
    argv = [
        "run",
        "codec=[raw,raw16]",
        "dataset.count=1",
        "sweep.progress=false",
        "report=false",
        "complexity=false",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    assert main(argv) == 0
    assert sorted(built) == ["raw", "raw16"]
    assert (tmp_path / "run" / "points.csv").is_file()


def test_bad_config_value_gives_clear_error(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vcmbench",
            "run",
            *FAST_RUN,
            "codec=raw",
            "codec.raw.dtype=int8",
            f"hydra.run.dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "codec.raw.dtype='int8'" in proc.stderr and "float16" in proc.stderr

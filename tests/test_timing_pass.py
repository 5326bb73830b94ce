"""The timing pass: the report's enc/dec times are each codec's alone, and say how they were taken."""

from __future__ import annotations

import pandas as pd
import pytest

from vcmbench.config import compose_config
from vcmbench.errors import ConfigError
from vcmbench.render.report import write_report
from vcmbench.run import run_sweep
from vcmbench.settings import RunSettings
from vcmbench.timing_table import COLUMNS, LOAD_COLUMNS, TIMING_FILE, describe

SMALL = [
    "dataset.count=2",
    "codec=[raw,raw16]",
    "sweep.progress=false",
    "complexity=false",
    "fidelity=false",
    "bootstrap.resamples=0",
]


@pytest.mark.timeout(240)
def test_the_report_shows_the_timing_pass_and_points_keep_the_sweeps_times(tmp_path):
    run_sweep(
        compose_config("config", [*SMALL, "sweep.workers=1", "timing.items=1"]), tmp_path / "run", timing_pass=True
    )
    timing = pd.read_csv(tmp_path / "run" / TIMING_FILE, dtype={"rate": str})
    points = pd.read_csv(tmp_path / "run" / "points.csv", dtype={"rate": str})
    assert list(timing.columns) == COLUMNS + LOAD_COLUMNS
    assert (timing.cores >= 1).all() and (timing.others_cores >= 0).all()
    assert set(zip(timing.codec, timing.rate)) == set(zip(points.codec, points.rate))
    assert (timing["items"] == 1).all() and (timing.arithmetic == "native").all()  # the sweep was exact
    assert (timing.enc_s > 0).all() and (timing.dec_s > 0).all()
    # points.csv keeps the sweep's clock readings, the pass has its own: two timings of the same work
    merged = points.merge(timing, on=["codec", "rate"], suffixes=("_sweep", "_alone"))
    assert (merged.enc_s_sweep != merged.enc_s_alone).all()
    report = write_report([tmp_path / "run"], tmp_path / "report", bootstrap=None).markdown.read_text()
    assert "a timing pass after the sweep, each codec alone in one process on the set's first 1 item(s)" in report
    raw_row = next(line for line in report.splitlines() if line.startswith("| raw (anchor) | dtype=float32"))
    assert f"{timing.set_index('codec').loc['raw', 'enc_s']:.3g}" in raw_row


@pytest.mark.timeout(240)
def test_no_pass_where_it_is_off_or_would_time_what_the_sweep_timed(tmp_path):
    run_sweep(
        compose_config("config", [*SMALL, "sweep.workers=1", "timing.items=0"]), tmp_path / "off", timing_pass=True
    )
    assert not (tmp_path / "off" / TIMING_FILE).exists()
    report = write_report([tmp_path / "off"], tmp_path / "report", bootstrap=None).markdown.read_text()
    assert "as the sweep measured them, one item at a time" in report
    # serial and in the arithmetic the pass would use: the sweep's own times are the uncontended ones
    run_sweep(
        compose_config("config", [*SMALL, "sweep.workers=1", "determinism=loose"]), tmp_path / "loose", timing_pass=True
    )
    assert not (tmp_path / "loose" / TIMING_FILE).exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("timing.arithmetic=fast", "timing.arithmetic='fast': choose native (torch's float kernels) or sweep"),
        ("timing.items=-1", "timing.items"),
    ],
)
def test_bad_timing_settings_name_the_setting(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RunSettings.from_config(compose_config("config", [override]))


@pytest.mark.timeout(240)
def test_a_sequence_sets_pass_times_its_first_sequence_per_frame(tmp_path):
    seqs = "dataset.sequences=[{name: a, class: A, frames: 2, fps: 30}, {name: b, class: A, frames: 2, fps: 30}]"
    cfg = compose_config(
        "config",
        [
            "dataset=synthetic_video",
            seqs,
            f"dataset.cache_dir={tmp_path / 'cache'}",
            "codec=raw",
            "sweep.workers=1",
            "sweep.progress=false",
            "complexity=false",
            "fidelity=false",
        ],
    )
    run_sweep(cfg, tmp_path / "run", timing_pass=True)
    timing = pd.read_csv(tmp_path / "run" / TIMING_FILE)
    assert len(timing) == 1 and timing["items"].tolist() == [1] and (timing.enc_s > 0).all()
    report = write_report([tmp_path / "run"], tmp_path / "report", bootstrap=None).markdown.read_text()
    assert "### Codec speed" in report and "a timing pass after the sweep" in report


@pytest.mark.timeout(60)
def test_a_pass_beside_a_busy_process_measures_it_and_the_report_warns():
    """What else ran during the pass is measured (the machine's busy CPU time less this process's),
    so a report never shows contended times as the codecs' own without saying so."""
    import subprocess
    import sys
    import time

    from vcmbench.timing_pass import _cpu_seconds, _others_cores

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        before = _cpu_seconds()
        time.sleep(1.5)
        others = _others_cores(before, _cpu_seconds())
    finally:
        busy.kill()
        busy.wait()
    assert others > 0.5  # the spinning process alone keeps one core busy
    row = {"codec": "raw", "rate": "x", "enc_s": 0.1, "dec_s": 0.1, "items": 2, "arithmetic": "native"}
    table = pd.DataFrame([{**row, "threads": 1, "cpu": "some CPU", "others_cores": others, "cores": 2}])
    assert "WARNING: other processes kept" in describe(table) and "contended too" in describe(table)
    idle = describe(table.assign(others_cores=0.01))
    assert "WARNING" not in idle and "other processes: 0.01 of its 2 cores busy during the pass" in idle
    assert "what else ran was not measured" in describe(table.assign(others_cores=float("nan")))
    assert "other processes" not in describe(table.drop(columns=LOAD_COLUMNS))  # a pass made before

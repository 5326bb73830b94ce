"""The reduced CI run of the offline CI JDE (model=ci_jde, JDE's own tracker): the first 3
frames of each synthetic sequence through the uncompressed features, the MPEG anchor and a packing
baseline at the network's own QPs (model.run_defaults), every non-time number of the per-sequence
and per-class tables equal to its reference in anchors/ci to the last bit, and a report with
per-class BD-rate tables on MOTA."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.assets import REPO, assert_same_numbers, run_command_line

#: the Makefile's JDE_CI_RUN (`make ci-reference`)
JDE_RUN = [
    "model=ci_jde",
    "dataset=synthetic_video",
    "dataset.max_frames=3",
    "codec=[raw,anchor_vvc,pack_tile]",
    "complexity=false",
    "timing.items=0",
]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_reduced_jde_run_equals_its_reference_and_reports_mota_per_class(tmp_path):
    out = run_command_line(tmp_path / "run", f"dataset.cache_dir={tmp_path / 'video-cache'}", *JDE_RUN, timeout=550)
    classes = pd.read_csv(out / "classes.csv")
    assert set(classes.codec) == {"raw", "anchor_vvc", "pack_tile"} and (classes.tracker == "jde").all()
    anchor_qps = sorted(int(r.split("=")[1]) for r in classes[classes.codec == "anchor_vvc"].rate.unique())
    assert anchor_qps == [22, 25, 28, 31, 34, 37]  # ci_jde's own QPs, not the EE1.2 ones
    assert_same_numbers(out / "classes.csv", REPO / "anchors" / "ci" / "jde-classes.csv")
    assert_same_numbers(out / "points.csv", REPO / "anchors" / "ci" / "jde-points.csv")
    report = (out / "report" / "report.md").read_text()
    assert "## synthetic_video / ci_jde@tvd" in report and "BD-rate per class" in report
    assert "JDE's own tracker" in report

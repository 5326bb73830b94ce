"""The reduced CI runs of the offline task defaults, ci_semseg (mIoU) and ci_keypoints (keypoint AP):
the first 4 default scenes through the uncompressed features, the MPEG anchor and a packing baseline,
every non-time number equal to its reference in anchors/ci to the last bit, and a report whose first
section is the task's, with BD-rates on its metric."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.assets import REPO, assert_same_numbers, run_command_line

#: the Makefile's SEMSEG_CI_RUN / KEYPOINTS_CI_RUN (`make ci-reference`), with the model in front
TASK_RUN = ["dataset.max_images=4", "codec=[raw,anchor_vvc,pack_tile]", "complexity=false", "timing.items=0"]
TASKS = {
    "ci_semseg": ("semseg-points.csv", "miou", "(semantic segmentation)"),
    "ci_keypoints": ("keypoints-points.csv", "map_kp", "(keypoints)"),
}


def task_run(model: str) -> list[str]:
    return [f"model={model}", *TASK_RUN, "bootstrap.resamples=0"]  # the intervals are not what this checks


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("model", sorted(TASKS))
def test_reduced_task_run_equals_its_reference_and_reports_the_task_first(model, tmp_path):
    reference_name, column, section = TASKS[model]
    out = run_command_line(tmp_path / "run", *task_run(model), timeout=850)
    points = pd.read_csv(out / "points.csv")
    assert set(points.codec) == {"raw", "anchor_vvc", "pack_tile"}
    assert points[column].notna().all() and (points[column] > 0).all()
    raw = points.set_index("codec").loc["raw"]
    assert raw[column] >= points[column].max() - 1.0  # coding loses, up to noise, what raw keeps
    assert_same_numbers(out / "points.csv", REPO / "anchors" / "ci" / reference_name)
    report = (out / "report" / "report.md").read_text()
    first = report.index(f"## synthetic_val / {model}")
    assert report[first:].startswith(f"## synthetic_val / {model} {section}"), report[first : first + 200]
    assert "BD-rate" in report and "pack_tile" in report

"""A video run's report: the one report, its section per class in kbps, per sequence, with the codec speed.

The run folder is the CI video run's tables (anchors/ci/video-*.csv, a tracking set: MOTA is its
task metric), so that the report is checked on real numbers without running a sweep.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from vcmbench.render.report import write_report
from vcmbench.render.report_cli import report_main
from vcmbench.timing_table import COLUMNS, TIMING_FILE

CI = Path(__file__).resolve().parents[2] / "anchors" / "ci"


@pytest.fixture
def video_run(tmp_path) -> Path:
    """A video run folder: per-sequence points, the classes table, a timing pass of every point."""
    run = tmp_path / "video"
    run.mkdir()
    shutil.copy(CI / "video-points.csv", run / "points.csv")
    shutil.copy(CI / "video-classes.csv", run / "classes.csv")
    points = pd.read_csv(run / "points.csv", dtype={"rate": str})
    timing = (
        points[["codec", "rate"]]
        .drop_duplicates()
        .assign(enc_s=0.5, dec_s=0.25, items=1, arithmetic="native", threads=1, cpu="a test CPU")
    )
    timing[COLUMNS].to_csv(run / TIMING_FILE, index=False)
    return run


def _section(md: str, heading: str) -> str:
    start = md.index(heading)
    end = md.find("\n### ", start + 1)
    return md[start : end if end >= 0 else len(md)]


def test_a_video_run_leads_with_the_class_curves_and_bd_rates(video_run, tmp_path, capsys):
    out = tmp_path / "report"
    assert report_main([str(video_run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "synthetic_video / ci_frcnn: BD-rate per class vs anchor_vvc (libvvenc preset faster" in printed
    assert str(out / "report.md") in printed and str(out / "figures" / "rd_class_A.png") in printed

    md, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert md.startswith("# vcmbench report\n") and "## synthetic_video / ci_frcnn" in md
    assert "BD-rates in kbps vs **anchor_vvc" in md and "MOTA (%) recomputed over the class's frames" in md
    # the answer first (curves, BD-rates per class, at equal AP on a tracking set, per sequence), then the details
    headings = [
        "### Rate-distortion",
        "### BD-rate per class",
        "### BD-rate per class at equal detection AP",
        "### BD-rate per sequence",
        "### Class A",
        "### Class B",
        "### Codec speed",
        "### Rate points per sequence",
        "## Sources",
    ]
    order = [md.index(h + "\n") for h in headings]
    assert order == sorted(order)
    html_order = [html.index(h.replace("### ", "<h3>").replace("## ", "<h2>")) for h in headings]
    assert html_order == sorted(html_order)
    for cls in ("A", "B"):
        assert f"![class {cls}: MOTA (%) vs kbps](figures/rd_class_{cls}.png)" in md
        assert (out / "figures" / f"rd_class_{cls}.svg").is_file()
    assert html.count('src="data:image/png;base64,') == 2

    # BD-rates in kbps: codec and note left-aligned, figures right
    by_class = _section(md, "### BD-rate per class\n")
    assert "| class | codec | BD-rate (%) | BD-metric | overlap | note |\n|:---|:---|---:|---:|---:|:---|" in by_class
    assert "| A | pack_tile |" in by_class and "| B | learned_interleaved |" in by_class
    assert "| pan_fast | image_vvc |" in _section(md, "### BD-rate per sequence")
    assert "| kbps |" in _section(md, "### Class A") and "| mota | idf1 | hota |" in _section(md, "### Class A")

    # the timing pass is the speed table; the per-sequence rows keep the sweep's own times
    speed = _section(md, "### Codec speed")
    assert "| anchor_vvc | qp=45 | 0.5 | 0.25 |" in speed and "a timing pass after the sweep" in speed
    first = pd.read_csv(video_run / "points.csv", dtype={"rate": str}).iloc[0]
    row = next(ln for ln in _section(md, "### Rate points per sequence").splitlines() if ln.startswith("| anchor_vvc"))
    assert f"| {first.enc_s:.4g} |" in row and row.endswith(f"| {first.sequence} |")
    # and the run's config and versions, as an image run's
    assert "- run folder: `" in md and "config.resolved.yaml" not in md  # the copied run has no config


def test_write_report_returns_the_video_runs_section_and_figures(video_run, tmp_path):
    rep = write_report([video_run], tmp_path / "r", bootstrap=None)
    assert [g.title for g in rep.groups] == ["synthetic_video / ci_frcnn"]
    assert sorted(p.name for p in rep.figures) == [f"rd_class_{c}.{x}" for c in "AB" for x in ("png", "svg")]


def test_a_video_run_is_reported_alone_and_needs_its_classes(video_run, tmp_path, capsys, points_tables):
    image = points_tables.write_run(
        tmp_path / "image", points_tables.curve("anchor_vvc", points_tables.BPP, points_tables.MAP)
    )
    assert report_main([str(video_run), str(image), "--out", str(tmp_path / "o")]) == 2
    assert "is a video run (points per sequence, compared per class): report it alone" in capsys.readouterr().err
    (video_run / "classes.csv").unlink()
    assert report_main([str(video_run), "--out", str(tmp_path / "o")]) == 2
    assert "without classes.csv" in capsys.readouterr().err

"""`--curve pareto|monotonic` reaches every BD entry point (bdrate, report, regress, the CTTC export)
and every heading of a BD table says when the monotonic rule made its figures.

The test codec's curve is a rising concave cubic at 0.8 x the anchor's rates plus noise that no
cubic sees (tests/metrics/test_curve_fitting.py): its monotonic fit is the anchor's curve at 80 %
of the bits, BD-rate -20 %, while the pareto rule leaves it 3 points and no BD-rate.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vcmbench.regress import EXIT_OK, EXIT_UNUSABLE, regress_main
from vcmbench.render.cttc import export_cttc
from vcmbench.render.report_cli import bdrate_main, report_main

G = [20.0 + 12.0 * i - i * i for i in range(6)]  # 20, 31, 40, 47, 52, 55
WOBBLY = [g + w for g, w in zip(G, [-1.0, 5.0, -10.0, 10.0, -5.0, 1.0], strict=True)]
BAD = "error: --curve='fit': choose one of ['pareto', 'monotonic']"


def _rows(points_tables) -> tuple[list[dict], list[dict]]:
    anchor = points_tables.curve("anchor_vvc", points_tables.BPP, G)
    return anchor, points_tables.curve("wobbly", points_tables.BPP * 0.8, WOBBLY)


@pytest.mark.timeout(120)
def test_bdrate_takes_the_rule_and_names_it(tmp_path, capsys, points_tables):
    anchor_rows, test_rows = _rows(points_tables)
    anchor = points_tables.write_csv(tmp_path / "anchor.csv", anchor_rows)
    test = points_tables.write_csv(tmp_path / "test.csv", test_rows)
    assert bdrate_main([str(anchor), str(test)]) == 2  # pareto: 3 points left
    captured = capsys.readouterr()
    assert "curve:" not in captured.out and "wobbly has 3 rate points, BD-rate needs 4" in captured.err
    assert bdrate_main([str(anchor), str(test), "--curve", "monotonic"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "curve: monotonic curve fit (curves whose map does not rise with rate)"
    row = next(line for line in lines if line.startswith("wobbly"))
    assert row.split()[:3] == ["wobbly", "anchor_vvc", "-20.000"] and "monotonic cubic fit: wobbly" in row
    assert bdrate_main([str(anchor), str(test), "--curve", "fit"]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [f"vcmbench bdrate: {BAD}"] and not captured.out


@pytest.mark.timeout(120)
def test_report_takes_the_rule_and_names_it_in_the_header_and_each_bd_heading(tmp_path, capsys, points_tables):
    run = points_tables.write_run(tmp_path / "run", sum(_rows(points_tables), []))
    default, fitted = tmp_path / "default", tmp_path / "fitted"
    assert report_main([str(run), "--out", str(default), "--resamples", "0"]) == 0
    assert "monotonic" not in (default / "report.md").read_text()
    assert report_main([str(run), "--out", str(fitted), "--resamples", "0", "--curve", "monotonic"]) == 0
    printed = capsys.readouterr().out
    assert "BD-rate vs anchor_vvc (libvvenc preset faster), monotonic curve fit" in printed
    md = (fitted / "report.md").read_text()
    assert "BD interpolation: pchip; RD curves: monotonic, a curve whose metric does not rise" in md.splitlines()[2]
    assert "### BD-rate vs anchor_vvc (libvvenc preset faster) (anchor), monotonic curve fit" in md
    row = next(line for line in md.splitlines() if line.startswith("| wobbly |") and "%" in line)
    assert "| -20.00 |" in row and "monotonic cubic fit: wobbly" in row
    assert "RD curves: monotonic" in (fitted / "report.html").read_text()
    assert report_main([str(run), "--out", str(fitted), "--curve", "fit"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"vcmbench report: {BAD}"]


@pytest.mark.timeout(120)
def test_regress_takes_the_rule_and_names_it(tmp_path, capsys, points_tables):
    anchor_rows, test_rows = _rows(points_tables)
    reference = points_tables.write_csv(tmp_path / "ref.csv", anchor_rows)
    # the run's anchor_vvc is the wobbly curve at 80 % of the bits
    run = points_tables.write_run(tmp_path / "run", [{**r, "codec": "anchor_vvc"} for r in test_rows])
    assert regress_main([str(run), "--reference", str(reference)]) == EXIT_UNUSABLE
    capsys.readouterr()
    assert regress_main([str(run), "--reference", str(reference), "--curve", "monotonic"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "BD-rate via pchip, monotonic curve fit;" in out.splitlines()[0]
    assert "-20.00" in out and "ok (better)" in out and "monotonic cubic fit of anchor_vvc" in out
    assert regress_main([str(run), "--reference", str(reference), "--curve", "fit"]) == EXIT_UNUSABLE
    assert capsys.readouterr().err.strip().splitlines() == [f"vcmbench regress: {BAD}"]


def _video_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """One sequence of one class: its points and a class row per point (the same numbers)."""
    rows = []
    for codec, role, factor, maps in (("anchor_vtm", "feature_anchor", 1.0, G), ("test_codec", "test", 0.8, WOBBLY)):
        for i, m in enumerate(maps):
            kbps = 100.0 * 2.0**i * factor
            rows.append(
                {
                    "dataset": "sfu_mini",
                    "model": "frcnn",
                    "codec": codec,
                    "rate": str(42 - 5 * i),
                    "sequence": "Seq_416x240_30",
                    "class": "CLASS-D",
                    "frames": 30,
                    "fps": 30,
                    "kbps": kbps,
                    "bpp": kbps / (416 * 240 * 30),
                    "map": m,
                    "enc_s": 0.01,
                    "dec_s": 0.01,
                    "front_s": 0.05,
                    "back_s": 0.07,
                    "role": role,
                    "metric": "coco",
                }
            )
    points = pd.DataFrame(rows)
    return points, points.drop(columns=["sequence"])


@pytest.mark.timeout(120)
def test_cttc_export_takes_the_rule_and_its_summary_names_it(tmp_path, capsys):
    points, classes = _video_tables()
    default = {p.name: p for p in export_cttc(points, classes, tmp_path / "default")}
    bd = pd.read_csv(default["sfu_mini__frcnn__test_codec-bdrate.csv"])
    assert "curve" not in bd.columns and bd["BD-rate (%)"].isna().all()
    capsys.readouterr()
    fitted = {p.name: p for p in export_cttc(points, classes, tmp_path / "fitted", curve="monotonic")}
    assert "(BD-rate on kbps, per class, monotonic curve fit)" in capsys.readouterr().out
    bd = pd.read_csv(fitted["sfu_mini__frcnn__test_codec-bdrate.csv"])
    assert list(bd.columns)[-2:] == ["curve", "note"] and set(bd["curve"]) == {"monotonic"}
    assert bd["BD-rate (%)"].tolist() == [pytest.approx(-20.0, abs=1e-4)] * 2
    # the template's own CSVs keep the measured accuracies
    seqs = pd.read_csv(fitted["sfu_mini__frcnn__test_codec-sequences.csv"])
    assert np.sort(seqs["end_accuracy"].to_numpy()).tolist() == sorted(WOBBLY)


@pytest.mark.timeout(120)
def test_a_video_sections_bd_headings_name_the_rule(tmp_path):
    from vcmbench.render.video_sections import VideoSection

    points, classes = _video_tables()
    section = VideoSection(tmp_path, points, classes, "anchor_vtm", "pchip", "coco", "mAP (%)", curve="monotonic")
    ctx = section.context(tmp_path, [])
    headings = [b["heading"] for b in ctx["answer"]]
    assert headings == ["BD-rate per class, monotonic curve fit", "BD-rate per sequence, monotonic curve fit"]
    assert "(pchip, monotonic curve fit)" in ctx["lead"][0]
    assert ctx["answer"][0]["table"]["BD-rate (%)"].tolist() == ["-20.00"]
    assert section.summary()[0].endswith(", monotonic curve fit") and "vs anchor_vtm" in section.summary()[0]
    plain = VideoSection(tmp_path, points, classes, "anchor_vtm", "pchip", "coco", "mAP (%)")
    assert [b["heading"] for b in plain.context(tmp_path, [])["answer"]] == [
        "BD-rate per class",
        "BD-rate per sequence",
    ]

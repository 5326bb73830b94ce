"""`vcmbench report` and `vcmbench bdrate`: merged tables, BD-rate tables, figures, md/html."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from vcmbench.analysis import bd_rows, choose_anchor
from vcmbench.points import POINT_COLUMNS
from vcmbench.render.plots import codec_styles
from vcmbench.render.report import write_report
from vcmbench.render.report_cli import bdrate_main, report_main
from vcmbench.tables import load_sources, md_table, merge_points

REPO = Path(__file__).resolve().parents[2]
PUBLISHED = REPO / "anchors" / "mpeg_vcm_image_anchor_oiv6_x101_vtm.csv"


@pytest.fixture
def two_runs(tmp_path, points_tables):
    """Run 1: the anchor and the lossless codecs; run 2: codecs to compare, with every awkward case."""
    run1 = points_tables.write_run(
        tmp_path / "run1",
        points_tables.curve("anchor_vvc", points_tables.BPP, points_tables.MAP, enc=0.8, dec=0.1)
        + points_tables.lossless("raw", 396.8, 37.4, "dtype=float32", enc=0.02, dec=0.01)
        + points_tables.lossless("raw16", 198.4, 37.4, "dtype=float16", enc=0.03, dec=0.015),
    )
    run2 = points_tables.write_run(
        tmp_path / "run2",
        points_tables.curve(
            "better", points_tables.BPP * 0.7, points_tables.MAP, failed={2: 1}
        )  # -30 %, one failed decode
        + points_tables.curve("short", points_tables.BPP[:3] * 0.9, points_tables.MAP[:3])  # 3 points: no BD
        + points_tables.curve("sliver", [1.0, 2.0, 4.0, 8.0], [36.0, 36.8, 37.1, 37.3])  # 6 % overlap
        + points_tables.curve("apart", [2.0, 3.0, 5.0, 9.0], [37.5, 38.0, 38.6, 39.0]),
    )  # no overlap
    return run1, run2


def _md_row(md: str, first_cell: str) -> list[str]:
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row starting with {first_cell!r}")


def _bd_section(md: str) -> str:
    return md[md.index("### BD-rate") : md.index("### Codecs")]


def _codecs_section(md: str) -> str:
    return md[md.index("### Codecs") : md.index("### Rate points")]


def test_report_on_two_runs_writes_md_html_png_svg(two_runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert report_main([str(p) for p in two_runs] + ["--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "BD-rate vs anchor_vvc (libvvenc preset faster)" in printed and str(out / "report.md") in printed

    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert figures == [f"coco_val2017_mini__frcnn_r50_fpn-{k}.{x}" for k in ("rd", "time") for x in ("png", "svg")]
    for png in (out / "figures").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    for svg in (out / "figures").glob("*.svg"):
        assert "<svg" in svg.read_text()[:2000]

    # one table of rate points with every codec, anchor marked, failed decodes flagged
    assert _md_row(md, "anchor_vvc (anchor)")[1:4] == ["qp=40", "0.05", "20.00"]
    assert any("1/8 ⚠" in line for line in md.splitlines() if line.startswith("| better |"))
    for codec in ("raw", "raw16", "better", "short", "sliver", "apart"):
        assert f"| {codec} |" in md

    bd = _bd_section(md)
    assert _md_row(bd, "better")[1:5] == ["-30.00", _md_row(bd, "better")[2], "20.00–37.10", "100%"]
    assert "not computed: short has 3 rate points" in _md_row(bd, "short")[5]
    assert "⚠ poor overlap" in _md_row(bd, "sliver")[5] and _md_row(bd, "sliver")[4] == "6%"
    assert "not computed" in _md_row(bd, "apart")[5] and "do not overlap" in _md_row(bd, "apart")[5]
    assert "single rate point" in _md_row(bd, "raw")[5]
    assert "poor overlap: below 50%" in bd  # the legend line

    # figures referenced from the markdown; the HTML embeds them (self-contained)
    assert "](figures/coco_val2017_mini__frcnn_r50_fpn-rd.png)" in md
    srcs = re.findall(r'<img [^>]*src="([^"]+)"', html)
    assert len(srcs) == 2 and all(s.startswith("data:image/png;base64,") for s in srcs)
    # it leads with the answer: the RD plot, then the BD-rates, then the details; names left-aligned
    order = [
        html.index(h) for h in ("<h3>Rate-distortion</h3>", "<h3>BD-rate vs", "<h3>Codecs</h3>", "<h3>Rate points</h3>")
    ]
    assert order == sorted(order)
    assert '<td class="t">anchor_vvc</td>' in html and '<td class="t">-30.00</td>' not in html
    assert "<link" not in html and "<script" not in html
    assert "<table" in html and "-30.00" in html and "⚠ poor overlap" in html

    # the runs' config and software versions
    assert "config.resolved.yaml" in md and "metric: coco" in md and "| torch | 2.14.1 |" in md
    assert "mAP: COCO AP@[.5:.95], in percent" in md


def test_rd_plot_content(two_runs, tmp_path):
    out = tmp_path / "report"
    rep = write_report(list(two_runs), out)
    svg = (out / "figures" / "coco_val2017_mini__frcnn_r50_fpn-rd.svg").read_text()
    texts = set(re.findall(r"<!-- (.*?) -->", svg))
    assert "bits per input-image pixel (bpp, log scale)" in texts
    assert "mAP (%, COCO AP@[.5:.95])" in texts
    assert "anchor_vvc (anchor)" in texts and "raw, 1 point" in texts and "better" in texts
    assert "uncompressed (raw) mAP: 37.40" in texts  # the horizontal line, from the codec of role uncompressed
    assert "point with failed decodes" in texts
    time_svg = (out / "figures" / "coco_val2017_mini__frcnn_r50_fpn-time.svg").read_text()
    assert "encode time per image (s, log scale)" in set(re.findall(r"<!-- (.*?) -->", time_svg))
    assert len(rep.figures) == 4


def test_styles_differ_by_marker_and_the_anchor_is_dashed():
    codecs = ["anchor_vvc"] + [f"c{i}" for i in range(10)]
    styles = codec_styles(codecs, "anchor_vvc")
    assert styles["anchor_vvc"].linestyle == "--" and styles["anchor_vvc"].anchor
    markers = [styles[c].marker for c in codecs]
    assert len(set(markers)) == len(markers)  # greyscale: every codec has its own marker
    assert all(styles[c].linestyle != "--" for c in codecs[1:])


def test_anchor_choice(two_runs):
    points, _ = merge_points(load_sources(list(two_runs)))
    assert choose_anchor(points) == ("anchor_vvc", None)
    assert choose_anchor(points, "better") == ("better", None)
    anchor, note = choose_anchor(points, "nope")
    assert anchor == "anchor_vvc" and "'nope'" in note
    without = points[points.codec != "anchor_vvc"]
    assert choose_anchor(without)[0] == "better"  # first codec with >= 4 points, not the 1-point raw
    rows = {r.codec: r for r in bd_rows(points, "better")}
    assert rows["anchor_vvc"].bd_rate == pytest.approx((1 / 0.7 - 1) * 100, abs=1e-9)


def test_report_with_explicit_anchor_and_a_sweep_folder(two_runs, tmp_path):
    sweep = two_runs[0].parent  # holds run1/ and run2/: searched for points.csv
    out = tmp_path / "rep"
    assert report_main([str(sweep), "--anchor", "better", "--out", str(out), "--method", "cubic"]) == 0
    md = (out / "report.md").read_text()
    assert "### BD-rate vs better (encoder not recorded) (anchor)" in md and "BD interpolation: cubic" in md
    assert _md_row(_bd_section(md), "anchor_vvc")[1] == "+42.86"
    # an anchor whose encoder is unnamed is said to be so, in the report and on the terminal
    assert "the points of the anchor better do not name its encoder and preset" in md


def test_report_names_each_codecs_encoder_and_the_anchors_in_the_bd_header(two_runs, tmp_path):
    out = tmp_path / "rep"
    assert report_main([str(p) for p in two_runs] + ["--out", str(out)]) == 0
    md, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert "### BD-rate vs anchor_vvc (libvvenc preset faster) (anchor)" in md
    assert "BD-rate vs anchor_vvc (libvvenc preset faster) (anchor)</h3>" in html
    codecs = _codecs_section(md)
    assert _md_row(codecs, "anchor_vvc")[1:3] == ["feature_anchor", "libvvenc preset faster"]
    assert _md_row(codecs, "better")[1:3] == ["test", "(not recorded)"]
    assert "do not name its encoder" not in md


def test_duplicate_points_keep_the_later_source(tmp_path, points_tables):
    a = points_tables.write_run(tmp_path / "a", points_tables.curve("x", points_tables.BPP, points_tables.MAP))
    b = points_tables.write_run(tmp_path / "b", points_tables.curve("x", points_tables.BPP * 2, points_tables.MAP))
    points, notes = merge_points(load_sources([a, b]))
    assert len(points) == len(points_tables.BPP) and (points.bpp == points_tables.BPP * 2).all()
    assert len(notes) == len(points_tables.BPP) and "points of b (given later) are used" in notes[0]


def test_published_anchor_table(tmp_path, points_tables):
    df = pd.read_csv(PUBLISHED, dtype={"rate": str})
    assert list(df.columns) == POINT_COLUMNS + ["role", "encoder", "metric", "source"]
    assert set(df.role) == {"image_anchor"} and set(df.metric) == {"oid"}  # what a report needs of it
    assert df.rate.tolist() == [f"qp={q}" for q in (47, 42, 37, 32, 27, 22)]
    assert df.bpp.tolist() == [0.0378, 0.0783, 0.1546, 0.2893, 0.5118, 0.8601]
    assert df["map"].tolist() == [57.55, 68.40, 74.25, 76.61, 77.98, 78.67]
    assert set(df.dataset) == {"openimages_mpeg"} and set(df.model) == {"d2_frcnn_x101_fpn"}
    assert set(df.codec) == {"image_vtm"} and df.source.str.startswith("published").all()
    assert df[["ap50", "enc_s", "dec_s", "bytes"]].isna().all().all()  # unknown stays empty
    # a feature codec on the same data, 20 % fewer bits at equal mAP, against it
    run = points_tables.write_run(
        tmp_path / "run",
        points_tables.curve("feat", df.bpp * 0.8, df["map"], dataset="openimages_mpeg", model="d2_frcnn_x101_fpn"),
        metric="oid",
    )
    out = tmp_path / "rep"
    assert report_main([str(PUBLISHED), str(run), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert _md_row(_bd_section(md), "feat")[1] == "-20.00"
    assert "bpp provisional" in md and "OpenImages challenge mAP@0.5" in md


def test_report_errors_are_exit_2(tmp_path, capsys):
    assert report_main([str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert report_main([str(tmp_path / "empty")]) == 2
    assert "no points.csv" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("codec,bpp\nx,1\n")
    assert report_main([str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "not a points table" in capsys.readouterr().err


def test_md_table_escapes_and_aligns():
    md = md_table(pd.DataFrame({"a": ["x|y"], "b": ["1"]}), "lr")
    assert md.splitlines() == ["| a | b |", "|:---|---:|", "| x\\|y | 1 |"]


# ------------------------------------------------------------------------------ bdrate


def test_bdrate_prints_the_table(tmp_path, capsys, points_tables):
    anchor = points_tables.write_csv(
        tmp_path / "anchor.csv", points_tables.curve("anchor_vvc", points_tables.BPP, points_tables.MAP)
    )
    test = points_tables.write_csv(
        tmp_path / "test.csv",
        points_tables.curve("a", points_tables.BPP * 0.7, points_tables.MAP)
        + points_tables.curve("b", points_tables.BPP * 1.1, points_tables.MAP),
    )
    assert bdrate_main([str(anchor), str(test)]) == 0
    out = capsys.readouterr().out
    named, header, _, row_a, row_b = out.splitlines()[:5]
    assert named == "anchor: anchor_vvc (libvvenc preset faster)"
    assert header.split()[:5] == ["codec", "anchor", "bd_rate_%", "bd_map", "overlap"]
    assert row_a.split()[:3] == ["a", "anchor_vvc", "-30.000"] and "20.000..37.100" in row_a
    assert row_b.split()[:3] == ["b", "anchor_vvc", "10.000"]
    assert bdrate_main([str(anchor), str(test), "--codec", "b", "--method", "cubic"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[3].split()[:3] == ["b", "anchor_vvc", "10.000"]


def test_bdrate_unusable_inputs_exit_2(tmp_path, capsys, points_tables):
    anchor = points_tables.write_csv(
        tmp_path / "anchor.csv",
        points_tables.curve("anchor_vvc", points_tables.BPP, points_tables.MAP)
        + points_tables.curve("other", points_tables.BPP, points_tables.MAP),
    )
    test = points_tables.write_csv(
        tmp_path / "test.csv",
        points_tables.curve("a", points_tables.BPP * 0.7, points_tables.MAP)
        + points_tables.curve("short", points_tables.BPP[:2], points_tables.MAP[:2]),
    )
    assert bdrate_main([str(anchor), str(test)]) == 2
    assert "choose one with --anchor-codec" in capsys.readouterr().err
    assert bdrate_main([str(anchor), str(test), "--anchor-codec", "anchor_vvc"]) == 2
    captured = capsys.readouterr()
    assert "-30.000" in captured.out  # the good row is still printed
    assert "short: short has 2 rate points, BD-rate needs 4" in captured.err
    assert bdrate_main([str(anchor), str(test), "--anchor-codec", "anchor_vvc", "--codec", "nope"]) == 2
    assert "no codec(s) ['nope']" in capsys.readouterr().err


def test_bdrate_accepts_a_run_folder(tmp_path, capsys, points_tables):
    anchor = points_tables.write_csv(
        tmp_path / "anchor.csv", points_tables.curve("anchor_vvc", points_tables.BPP, points_tables.MAP)
    )
    run = points_tables.write_run(
        tmp_path / "run", points_tables.curve("a", points_tables.BPP * 0.5, points_tables.MAP)
    )
    assert bdrate_main([str(anchor), str(run)]) == 0
    assert "-50.000" in capsys.readouterr().out


def test_table_helper_columns(points_tables):
    assert list(points_tables.table(points_tables.curve("x", points_tables.BPP, points_tables.MAP)).columns) == [
        *POINT_COLUMNS,
        "role",
        "encoder",
    ]

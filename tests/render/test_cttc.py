"""`vcmbench export --format cttc`: vcmbench's extras (a video run's tables in the template's columns,
the BD-rate summary) and the CLI. The platform's own `final_<SET>.csv` is checked against hand-made
files in test_cttc_platform.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from vcmbench.errors import VcmbenchError
from vcmbench.render.cttc import BD_COLUMNS, CTTC_COLUMNS, export_cttc

EXPECTED_HEADER = [
    "Dataset", "qp", "bitrate (kbps)", "end_accuracy", "nn_part_1", "encode", "decode", "nn_part_2",
]  # fmt: skip

# The dataset's order: class CLASS-C before CLASS-AB and Traffic before Kimono, on purpose not alphabetical.
SEQUENCES = [  # name, class, frames, fps, bytes at the highest rate point, mAP offset
    ("Traffic", "CLASS-C", 33, 30.0, 90_000, 0.0),
    ("Kimono", "CLASS-C", 17, 24.0, 60_000, 3.0),
    ("BQSquare", "CLASS-AB", 20, 60.0, 20_000, -2.0),
]
QPS = ["37", "32", "27", "22"]  # listed from the lowest bitrate up: the export must reverse them
MAPS = [30.0, 36.0, 40.0, 42.0]
SCALE = [0.125, 0.25, 0.5, 1.0]
CODECS = [("anchor_vtm", "feature_anchor", 1.0), ("test_codec", "test", 0.8)]


def _points() -> pd.DataFrame:
    rows = []
    for codec, role, factor in CODECS:
        for name, cls, frames, fps, top_bytes, offset in SEQUENCES:
            for i, qp in enumerate(QPS):
                nbytes = top_bytes * SCALE[i]
                rows.append(
                    {
                        "dataset": "sfu_mini",
                        "model": "frcnn",
                        "codec": codec,
                        "rate": qp,
                        "sequence": name,
                        "class": cls,
                        "frames": frames,
                        "fps": fps,
                        "n_images": frames,
                        "n_failed": 0,
                        "bytes": nbytes * factor,
                        "pixels": frames * 416 * 240,
                        "bpp": 8 * nbytes * factor / (frames * 416 * 240),
                        "kbps": 8 * nbytes * fps / (1000 * frames) * factor,
                        "map": MAPS[i] + offset,
                        "ap50": MAPS[i] + offset + 20,
                        "enc_s": 0.01 * (i + 1),
                        "dec_s": 0.002 * (i + 1),
                        "front_s": 0.05,
                        "back_s": 0.07,
                        "role": role,
                        "metric": "coco",
                        "workers": 1,
                        "contended": False,
                    }
                )
    return pd.DataFrame(rows)


def _classes(points: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (codec, qp, cls), g in points.groupby(["codec", "rate", "class"], sort=False):
        duration = (g.frames / g.fps).sum()
        frames = g.frames.sum()
        rows.append(
            {
                "dataset": "sfu_mini",
                "model": "frcnn",
                "codec": codec,
                "rate": qp,
                "class": cls,
                "sequences": len(g),
                "frames": frames,
                "duration_s": duration,
                "bytes": g.bytes.sum(),
                "pixels": g.pixels.sum(),
                "bpp": 8 * g.bytes.sum() / g.pixels.sum(),
                "kbps": 8 * g.bytes.sum() / duration / 1000,
                "map": g["map"].mean() + 0.5,
                "ap50": g.ap50.mean() + 0.5,  # stands in for the joint evaluation
                "enc_s": (g.enc_s * g.frames).sum() / frames,
                "dec_s": (g.dec_s * g.frames).sum() / frames,
                "front_s": 0.05,
                "back_s": 0.07,
                "role": g.role.iloc[0],
                "metric": "coco",
            }
        )
    return pd.DataFrame(rows)


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"Dataset": str, "qp": str, "name": str, "class": str})


@pytest.fixture
def exported(tmp_path):
    points = _points()
    classes = _classes(points)
    paths = export_cttc(points, classes, tmp_path / "cttc")
    return points, classes, {p.relative_to(tmp_path / "cttc").as_posix(): p for p in paths}


@pytest.mark.timeout(120)
def test_files_and_exact_header(exported):
    _, _, files = exported
    stems = ["sfu_mini__frcnn__anchor_vtm", "sfu_mini__frcnn__test_codec"]
    assert sorted(files) == sorted(
        [f"{s}-sequences.csv" for s in stems]
        + [f"{s}-classes.csv" for s in stems]
        + [f"{s}/final_SFU.csv" for s in stems]  # the platform's file (Traffic, Kimono, BQSquare: SFU's names)
        + [f"{stems[1]}-bdrate.csv"]
    )  # no BD-rate file for the anchor itself
    assert CTTC_COLUMNS == EXPECTED_HEADER
    for name, path in files.items():
        header = path.read_text().splitlines()[0].split(",")
        if name.endswith("final_SFU.csv"):
            assert header == ["", *EXPECTED_HEADER]  # pandas' unnamed index first
            continue
        expected = BD_COLUMNS if name.endswith("-bdrate.csv") else EXPECTED_HEADER
        assert [h.strip('"') for h in header] == expected, name


@pytest.mark.timeout(120)
def test_row_order_class_sequence_then_rate_high_to_low(exported):
    _, _, files = exported
    seq = _read(files["sfu_mini__frcnn__test_codec-sequences.csv"])
    names = [n for n, *_ in SEQUENCES]
    assert list(seq.Dataset) == [n for n in names for _ in QPS]
    assert list(seq.qp) == list(reversed(QPS)) * len(names)
    for name in names:
        kbps = list(seq[seq.Dataset == name]["bitrate (kbps)"])
        assert kbps == sorted(kbps, reverse=True)
    cls = _read(files["sfu_mini__frcnn__test_codec-classes.csv"])
    assert list(cls.Dataset) == ["CLASS-C"] * 4 + ["CLASS-AB"] * 4
    assert list(cls.qp) == list(reversed(QPS)) * 2


@pytest.mark.timeout(120)
def test_values_are_the_tables(exported):
    points, classes, files = exported
    for codec, _, _ in CODECS:
        seq = _read(files[f"sfu_mini__frcnn__{codec}-sequences.csv"])
        for _, row in seq.iterrows():
            src = points[(points.codec == codec) & (points.sequence == row.Dataset) & (points.rate == row.qp)]
            assert len(src) == 1
            src = src.iloc[0]
            assert row["bitrate (kbps)"] == pytest.approx(src.kbps, abs=1e-6)
            assert row["end_accuracy"] == pytest.approx(src["map"], abs=1e-4)
            # times: seconds over all the sequence's frames (the tables hold seconds per frame)
            assert row["encode"] == pytest.approx(src.enc_s * src.frames, abs=1e-4)
            assert row["decode"] == pytest.approx(src.dec_s * src.frames, abs=1e-4)
            assert row["nn_part_1"] == pytest.approx(src.front_s * src.frames, abs=1e-4)
            assert row["nn_part_2"] == pytest.approx(src.back_s * src.frames, abs=1e-4)
        cls = _read(files[f"sfu_mini__frcnn__{codec}-classes.csv"])
        for _, row in cls.iterrows():
            src = classes[(classes.codec == codec) & (classes["class"] == row.Dataset) & (classes.rate == row.qp)]
            assert len(src) == 1
            src = src.iloc[0]
            assert row["bitrate (kbps)"] == pytest.approx(src.kbps, abs=1e-6)  # duration-weighted, from classes.csv
            assert row["end_accuracy"] == pytest.approx(src["map"], abs=1e-4)  # the joint one, not a mean
            assert row["encode"] == pytest.approx(src.enc_s * src.frames, abs=1e-4)


@pytest.mark.timeout(120)
def test_bd_rate_of_a_curve_at_80_percent_of_the_bits_is_minus_20(exported):
    _, _, files = exported
    bd = _read(files["sfu_mini__frcnn__test_codec-bdrate.csv"])
    assert list(bd.level) == ["sequence"] * 3 + ["class"] * 2
    assert list(bd.name) == [n for n, *_ in SEQUENCES] + ["CLASS-C", "CLASS-AB"]
    assert list(bd["class"]) == ["CLASS-C", "CLASS-C", "CLASS-AB", "CLASS-C", "CLASS-AB"]
    assert set(bd.anchor) == {"anchor_vtm"} and set(bd.codec) == {"test_codec"}
    assert list(bd["BD-rate (%)"]) == [-20.0] * 5
    assert (bd["BD-accuracy"] > 0).all()  # fewer bits at the same accuracy: a gain at the same rate


@pytest.mark.timeout(120)
def test_anchor_can_be_overridden(tmp_path):
    points = _points()
    paths = export_cttc(points, _classes(points), tmp_path, anchor="test_codec")
    bd = [p for p in paths if p.name.endswith("-bdrate.csv")]
    assert [p.name for p in bd] == ["sfu_mini__frcnn__anchor_vtm-bdrate.csv"]
    table = _read(bd[0])
    assert table["BD-rate (%)"].tolist() == [pytest.approx(25.0, abs=1e-4)] * 5  # 1 / 0.8 - 1


@pytest.mark.timeout(120)
def test_image_run_points_give_only_the_platform_file(tmp_path):
    image_points = _points().drop(columns=["sequence", "class", "kbps", "frames", "fps"])
    image_points = image_points.drop_duplicates(["codec", "rate"])
    paths = export_cttc(image_points, None, tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in paths) == [
        "anchor_vtm/final_sfu_mini.csv",
        "test_codec/final_sfu_mini.csv",
    ]


@pytest.mark.timeout(120)
def test_missing_classes_table_is_refused(tmp_path):
    with pytest.raises(VcmbenchError, match="classes.csv"):
        export_cttc(_points(), None, tmp_path)


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vcmbench", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )


@pytest.mark.timeout(120)
def test_cli_exports_a_run_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    points = _points()
    points.to_csv(run / "points.csv", index=False)
    _classes(points).to_csv(run / "classes.csv", index=False)
    proc = _run_cli("export", "--format", "cttc", str(run))
    assert proc.returncode == 0, proc.stderr
    out = run / "export" / "cttc"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "sfu_mini__frcnn__anchor_vtm",  # final_SFU.csv
            "sfu_mini__frcnn__test_codec",
            "sfu_mini__frcnn__anchor_vtm-sequences.csv",
            "sfu_mini__frcnn__anchor_vtm-classes.csv",
            "sfu_mini__frcnn__test_codec-sequences.csv",
            "sfu_mini__frcnn__test_codec-classes.csv",
            "sfu_mini__frcnn__test_codec-bdrate.csv",
        ]
    )
    bd = _read(out / "sfu_mini__frcnn__test_codec-bdrate.csv")
    assert list(bd["BD-rate (%)"]) == [-20.0] * 5


@pytest.mark.timeout(120)
def test_cli_refuses_a_video_run_without_classes(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    _points().to_csv(run / "points.csv", index=False)
    proc = _run_cli("export", "--format", "cttc", str(run))
    assert proc.returncode == 2
    assert proc.stderr.count("vcmbench: error:") == 1 and "classes.csv" in proc.stderr


@pytest.mark.timeout(120)
def test_cli_missing_folder_is_one_error_line(tmp_path):
    proc = _run_cli("export", "--format", "cttc", str(tmp_path / "nope"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vcmbench: error: ") and "nope" in lines[0]

"""`vcmbench export --format cttc` writes MPEG's `final_<SET>.csv` as the platform's script does:
compared byte for byte with files made by hand (tests/data/cttc/README.md)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from vcmbench.errors import VcmbenchError
from vcmbench.render.cttc import export_cttc, export_main
from vcmbench.render.cttc_tables import platform_set, qp_value

DATA = Path(__file__).resolve().parents[1] / "data" / "cttc"


@pytest.mark.timeout(120)
def test_sfu_video_run_gives_the_platforms_file(tmp_path):
    assert export_main([str(DATA / "sfu_run"), "--format", "cttc", "--out", str(tmp_path)]) == 0
    written = tmp_path / "sfu_hw_objects__frcnn__vtm" / "final_SFU.csv"
    assert written.read_text() == (DATA / "final_SFU.csv").read_text()
    # vcmbench's own files stay beside it
    assert (tmp_path / "sfu_hw_objects__frcnn__vtm-sequences.csv").is_file()
    assert (tmp_path / "sfu_hw_objects__frcnn__vtm-classes.csv").is_file()


@pytest.mark.timeout(120)
def test_openimages_image_run_gives_the_platforms_file(tmp_path):
    assert export_main([str(DATA / "oiv6_run"), "--format", "cttc", "--out", str(tmp_path)]) == 0
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.csv")) == ["vtm/final_OIV6.csv"]
    assert (tmp_path / "vtm" / "final_OIV6.csv").read_text() == (DATA / "final_OIV6.csv").read_text()


@pytest.mark.timeout(120)
def test_letter_classes_cannot_give_class_ab_and_say_so_in_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(DATA / "sfu_run", run)
    points = pd.read_csv(run / "points.csv")
    points["class"] = points["sequence"].map({"Traffic": "A"}).fillna(points["class"].str.replace("CLASS-AB", "B"))
    points.to_csv(run / "points.csv", index=False)
    classes = pd.read_csv(run / "classes.csv")
    classes = pd.concat([classes, classes[classes["class"] == "CLASS-AB"].assign(**{"class": "A"})])
    classes["class"] = classes["class"].str.replace("CLASS-AB", "B")
    classes.to_csv(run / "classes.csv", index=False)
    assert export_main([str(run), "--format", "cttc", "--out", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"vcmbench: error: {run / 'points.csv'}: ")
    assert "CLASS-AB" in lines[0] and "dataset.class_labels=cttc" in lines[0]


def _tracking_points(names: list[tuple[str, str]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = [
        {"dataset": "hieve_tracking", "model": "m", "codec": "vtm", "rate": f"qp={qp}", "sequence": s, "class": c,
         "frames": 30, "fps": 30.0, "bpp": 0.1, "kbps": 100.0 - qp, "map": 50.0, "role": "feature_anchor"}
        for s, c in names for qp in (42, 37)
    ]  # fmt: skip
    points = pd.DataFrame(rows)
    classes = points.groupby(["dataset", "model", "codec", "rate", "class"], as_index=False, sort=False).agg(
        frames=("frames", "sum"), kbps=("kbps", "mean"), map=("map", "mean"), role=("role", "first")
    )
    return points, classes


@pytest.mark.timeout(120)
def test_hieve_rows_are_sorted_by_name_and_grouped_by_resolution(tmp_path):
    names = [("hieve-2", "HIEVE-720P"), ("hieve-18", "HIEVE-720P"), ("hieve-13", "HIEVE-1080P")]
    names += [("hieve-17", "HIEVE-720P"), ("hieve-16", "HIEVE-1080P")]
    points, classes = _tracking_points(names)
    export_cttc(points, classes, tmp_path)
    out = pd.read_csv(tmp_path / "hieve_tracking__m__vtm" / "final_HIEVE.csv", dtype={"qp": str})
    seqs = ["hieve-13", "hieve-16", "hieve-17", "hieve-18", "hieve-2"]  # as text: hieve-2 last
    assert list(out.Dataset) == [s for s in seqs for _ in range(2)] + ["HIEVE-1080P"] * 2 + ["HIEVE-720P"] * 2
    assert list(out.qp) == ["37", "42"] * 5 + ["0", "1"] * 2


@pytest.mark.timeout(120)
def test_a_set_the_platform_does_not_know_keeps_vcmbench_names(tmp_path):
    points, classes = _tracking_points([("zeta", "K"), ("alpha", "K")])
    points["dataset"] = classes["dataset"] = "synthetic_video"
    export_cttc(points, classes, tmp_path)
    out = pd.read_csv(tmp_path / "synthetic_video__m__vtm" / "final_synthetic_video.csv")
    assert list(out.Dataset) == ["alpha", "alpha", "zeta", "zeta", "K", "K"]


@pytest.mark.timeout(120)
def test_platform_names_and_qp_values():
    found = platform_set(["RaceHorsesC", "RaceHorses", "Kimono"])
    assert found is not None and found[0].tag == "SFU"
    assert found[1] == {
        "RaceHorsesC": "RaceHorses_832x480_30",
        "RaceHorses": "RaceHorses_416x240_30",
        "Kimono": "Kimono_1920x1080_24",
    }
    assert platform_set(["TVD-02"])[0].tag == "TVD"
    assert platform_set(["057", "124"])[0].tag == "PANDASET"
    assert platform_set(["Traffic", "MyOwnSequence"]) is None
    labels = ("qp=37", "37", "lambda=0.025", "quality=2+qp=42", "abc")
    assert [qp_value(x) for x in labels] == [37, 37, 0.025, None, None]


@pytest.mark.timeout(120)
def test_a_missing_rate_point_is_one_error(tmp_path):
    points, classes = _tracking_points([("hieve-13", "HIEVE-1080P"), ("hieve-16", "HIEVE-1080P")])
    with pytest.raises(VcmbenchError, match="no row for sequence hieve-13 at qp=42"):
        export_cttc(points.iloc[1:], classes, tmp_path)


@pytest.mark.timeout(120)
def test_pandaset_rows_carry_miou_and_each_class_the_mean_of_its_sequences(tmp_path):
    """final_PANDASET.csv as gen_mpeg_cttc_csv.py writes it: sequences in pandaset.json's order, then
    PANDAM1..3, whose end_accuracy is the mean of their sequences' mIoUs (compute_per_class_miou.py;
    the run's classes.csv holds it) and whose bitrate is duration-weighted."""
    seqs = [("058", "PANDAM1", 80), ("057", "PANDAM1", 40), ("003", "PANDAM2", 80), ("124", "PANDAM3", 80)]
    miou = {"057": 30.0, "058": 45.5, "003": 12.25, "124": 60.0}
    rows = [
        {"dataset": "pandaset", "model": "m", "codec": "vtm", "rate": f"qp={qp}", "sequence": s, "class": c,
         "frames": n, "fps": 30.0, "bpp": 0.1, "kbps": 1000.0 / qp * (2 if s == "057" else 1),
         "map": miou[s] - (qp - 37) / 2, "role": "feature_anchor", "metric": "miou"}
        for s, c, n in seqs for qp in (42, 37)
    ]  # fmt: skip
    points = pd.DataFrame(rows)
    points["miou"] = points["map"]
    classes = points.groupby(["dataset", "model", "codec", "rate", "class"], as_index=False, sort=False).agg(
        frames=("frames", "sum"), kbps=("kbps", "mean"), map=("map", "mean"), role=("role", "first")
    )  # the mean of the sequences' mIoUs, as semseg_evaluator gives a points set's class
    export_cttc(points, classes, tmp_path)
    out = pd.read_csv(tmp_path / "pandaset__m__vtm" / "final_PANDASET.csv", dtype={"Dataset": str})
    order = ["057", "058", "003", "124"]  # pandaset.json's order, not the run's or the names'
    assert list(out.Dataset) == [s for s in order for _ in range(2)] + [
        c for c in ("PANDAM1", "PANDAM2", "PANDAM3") for _ in range(2)
    ]
    assert list(out.qp) == [37, 42] * 4 + [0, 1] * 3
    pandam1 = out[out.Dataset == "PANDAM1"]
    assert pandam1.end_accuracy.tolist() == [(30.0 + 45.5) / 2, (27.5 + 43.0) / 2]
    # bitrate: the duration-weighted mean (057 is half as long as 058 and twice the kbps)
    assert pandam1["bitrate (kbps)"].iloc[0] == pytest.approx((2000 / 37 * 40 + 1000 / 37 * 80) / 120)
    assert out[out.Dataset == "124"].end_accuracy.tolist() == [60.0, 57.5]

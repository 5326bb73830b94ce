"""A PandaSet run end to end: `dataset=pandaset` (the tiny fixture tests/data/pandaset-mini) through
`raw` and `anchor_vvc` with `model=d2_panoptic_fpn_r101` on random weights at 64 pixels, in the default
exact mode. The records carry each frame's panoptic map, the points and classes are scored by mIoU (the
platform's rule, recomputed here from the npz with the tables' scalar functions), the report shows it
and the CTTC export writes it where the platform's final_PANDASET.csv has it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vcmbench.config import compose_config
from vcmbench.datasets.pandaset import read_points
from vcmbench.datasets.pandaset_categories import (
    COCO_STUFF,
    VCM_CATEGORIES,
    VCM_EVAL_CATEGORIES,
    vcm_of_coco,
    vcm_of_pandaset,
)
from vcmbench.metrics.semseg import confusion_matrix, score
from vcmbench.records import read_records
from vcmbench.render.cttc import export_main
from vcmbench.render.report import write_report
from vcmbench.run import run_sweep

MINI = Path(__file__).parent / "data" / "pandaset-mini"
COCO_PANOPTIC = {0, *range(1, 91), *(cid for cid, _, _ in COCO_STUFF)}  # void, things (with gaps), stuff


@pytest.mark.timeout(300)
def test_a_pandaset_run_is_scored_by_miou_reported_and_exported(tmp_path):
    cfg = compose_config(
        "config",
        [
            "dataset=pandaset", f"dataset.root={MINI}", f"dataset.cache_dir={tmp_path / 'cache'}",
            "model=d2_panoptic_fpn_r101", "model.min_size=64", "model.max_size=128", "model.score_thresh=0.0",
            "model.detections_per_img=20",
            # 64x36 frames: the merge's 4096-pixel stuff limit would leave no stuff segment
            "+model.opts={MODEL.PANOPTIC_FPN.COMBINE.STUFF_AREA_LIMIT: 64}",
            "codec=[raw,anchor_vvc]", "codec.anchor_vvc.rates=[35,45]",
            "sweep.progress=false", "sweep.workers=1", "report=false", "complexity=false", "fidelity=false",
        ],
    )  # fmt: skip
    run = tmp_path / "run"
    points = run_sweep(cfg, run)
    classes = pd.read_csv(run / "classes.csv", dtype={"class": str})

    # the records: one panoptic map per frame, of the frame's size, in COCO panoptic ids
    records = read_records(run / "records.jsonl")
    assert len(records) == 2 * 3 and all(r.status == "ok" for r in records)
    seen: set[int] = set()
    for r in records:
        maps = r.semantic_maps()
        assert len(maps) == r.frames and all(m.shape == (36, 64) for m in maps)
        seen |= {int(v) for m in maps for v in np.unique(m)}
    assert seen <= COCO_PANOPTIC and len(seen - {0}) >= 2, f"maps of ids {seen} would make the checks vacuous"

    # the points: mIoU is the headline, per sequence from the npz's points as the platform computes it
    assert set(points.metric) == {"miou"} and points["map"].equals(points.miou) and points.ap.isna().all()
    names = {1: "057", 2: "003"}
    for r in records:
        npz = MINI / "PandaSet" / names[r.image_id] / "annotations" / f"{names[r.image_id]}.npz"
        gt, pred = [], []
        for rows, m in zip(read_points(npz), r.semantic_maps(), strict=True):
            gt += [vcm_of_pandaset(int(c)) for c in rows[:, 2]]
            pred += [vcm_of_coco(int(m[y, x])) for x, y in rows[:, :2]]
        want = score(confusion_matrix(gt, pred, len(VCM_CATEGORIES)), VCM_EVAL_CATEGORIES).miou
        row = points[(points.codec == r.codec) & (points.rate == r.rate) & (points.sequence == names[r.image_id])]
        assert row.miou.tolist() == [want]
    assert sorted(set(classes["class"])) == ["PANDAM1", "PANDAM2"] and set(classes.metric) == {"miou"}

    # the report: the classes' curves and BD tables on mIoU
    write_report([run], run / "report", bootstrap=None)
    md = (run / "report" / "report.md").read_text()
    assert "class PANDAM1: mIoU (%) vs kbps" in md and "| miou |" in md and "| 057 |" in md

    # the CTTC export: final_PANDASET.csv, sequences in the CTTC's order, then PANDAM1 and PANDAM2 rows
    out = tmp_path / "export"
    assert export_main([str(run), "--format", "cttc", "--out", str(out)]) == 0
    final = pd.read_csv(
        out / "pandaset__d2_panoptic_fpn_r101__anchor_vvc" / "final_PANDASET.csv", dtype={"Dataset": str}
    )
    assert final.Dataset.tolist() == ["057", "057", "003", "003", "PANDAM1", "PANDAM1", "PANDAM2", "PANDAM2"]
    anchor = classes[classes.codec == "anchor_vvc"].set_index(["class", "rate"])["map"]
    assert final.qp.tolist() == [35, 45, 35, 45, 0, 1, 0, 1]  # a class's operating points in QP order
    assert final.end_accuracy.iloc[4:].tolist() == [
        anchor[(c, r)] for c in ("PANDAM1", "PANDAM2") for r in ("qp=35", "qp=45")
    ]

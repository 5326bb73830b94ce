"""ci_maskrcnn, the offline segmentation default: ci_frcnn with a light mask head, trained by the
project's own command."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

from tests.assets import CHECKPOINTS, REPO, assert_same_numbers
from vcmbench.config import compose_config
from vcmbench.errors import CheckpointError
from vcmbench.records import read_records
from vcmbench.regress import EXIT_OK, regress_main

pytestmark = pytest.mark.timeout(600)

CKPT = CHECKPOINTS / "ci_maskrcnn" / "ci_maskrcnn.pt"
INFO = CHECKPOINTS / "ci_maskrcnn" / "ci_maskrcnn.json"
MASK_HEAD = ("roi_heads.mask_head.", "roi_heads.mask_predictor.")
# CI's reduced segmentation run (anchors/ci/maskrcnn-points.csv, `make ci-reference`): the first 4
# default scenes, the uncompressed features, the MPEG anchor and the learned codec
MASK_RUN = [
    "model=ci_maskrcnn",
    "dataset.max_images=4",
    "codec=[raw,anchor_vvc,learned_interleaved]",
    "complexity=false",
]
MASK_REFERENCE = REPO / "anchors" / "ci" / "maskrcnn-points.csv"


def _run(out, overrides: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "vcmbench", "run", "sweep.progress=false", f"hydra.run.dir={out}", *overrides],
        capture_output=True,
        text=True,
        timeout=1600,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


@pytest.fixture(scope="module")
def random_segmenter():
    from hydra.utils import instantiate

    cfg = compose_config("config", ["model=ci_maskrcnn", "model.weights=none", "model.score_thresh=0.0"])
    return instantiate(cfg.model)


def test_front_back_equals_unsplit_model_masks_included(random_segmenter):
    from vcmbench.datasets.synthetic import render

    for seed in (1_000_000, 1_000_001):
        img, _ = render(seed, 256, 256)
        image = torch.from_numpy(img).permute(2, 0, 1).contiguous()
        front = random_segmenter.front(image)
        split, whole = random_segmenter.back(front.features, front.meta), random_segmenter.full(image)
        assert len(split) >= 50 and split.masks is not None and split.masks.shape == (len(split), 256, 256)
        for a, b in (
            (split.boxes, whole.boxes),
            (split.scores, whole.scores),
            (split.labels, whole.labels),
            (split.masks, whole.masks),
        ):
            assert torch.equal(a, b)


def test_missing_checkpoint_names_its_training_command(tmp_path):
    from vcmbench.vision.ci_frcnn import build

    with pytest.raises(CheckpointError, match="vcmbench train-detector model=ci_maskrcnn"):
        build(name="ci_maskrcnn", weights=str(tmp_path / "missing.pt"), mask_head=True)


def test_training_learns_masks_and_records_mask_ap(tmp_path):
    from vcmbench.train.detector import train_detector

    common = [
        "model=ci_maskrcnn",
        "model.weights=none",
        "model.image_size=128",
        "batch_size=2",
        "progress=false",
        "threads=1",
        "optimizer.warmup_steps=2",
        "log_every=1",
        "checkpoint_every=0",
        "val.count=2",
        "val.small_count=0",
    ]
    info = train_detector(compose_config("train_detector", common + ["steps=8"]), str(tmp_path / "a"))
    rows = (tmp_path / "a" / "loss.csv").read_text().splitlines()
    assert "loss_mask" in rows[0]
    col = rows[0].split(",").index("loss_mask")
    mask_losses = [float(r.split(",")[col]) for r in rows[1:]]
    assert len(mask_losses) == 8 and mask_losses[-1] < mask_losses[0]
    saved = json.loads((tmp_path / "a" / "ci_maskrcnn.json").read_text())
    assert saved["model"] == "ci_maskrcnn" and (tmp_path / "a" / "ci_maskrcnn.pt").is_file()
    assert {"map", "ap50", "map_segm", "ap50_segm"} <= set(saved["val"])
    assert info["val"]["map_segm"] >= 0.0


def test_committed_checkpoint_is_small_described_and_reached_its_targets():
    assert CKPT.is_file(), f"{CKPT} missing: train it with the command in {INFO.name}"
    assert CKPT.stat().st_size <= 10 * 1024 * 1024
    info = json.loads(INFO.read_text())
    assert info["val"]["count"] == 200
    assert info["val"]["map_segm"] >= 35.0 and info["val"]["map"] >= 45.0, info["val"]
    assert info["started_from"]["train_only"] == [p.rstrip(".") for p in MASK_HEAD]


def test_its_front_and_box_heads_are_ci_frcnn_tensor_for_tensor():
    """Only the mask head was trained: every other tensor (batch-norm statistics included) is
    ci_frcnn's, so P2..P5 are the detection default's and every learned codec applies unchanged."""
    mine = torch.load(CKPT, map_location="cpu", weights_only=True)
    frcnn = torch.load(CHECKPOINTS / "ci_frcnn" / "ci_frcnn.pt", map_location="cpu", weights_only=True)
    shared = [k for k in mine if not k.startswith(MASK_HEAD)]
    assert sorted(shared) == sorted(frcnn) and len(shared) < len(mine)
    for k in shared:
        assert torch.equal(mine[k], frcnn[k]), k


@pytest.fixture(scope="module")
def mask_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("maskrun") / "run"
    # the report's times and intervals are not what this run checks
    _run(out, [*MASK_RUN, "timing.items=0", "bootstrap.resamples=0"])
    return out


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_reduced_mask_run_gives_both_curves_and_passes_the_gate_on_boxes_and_masks(mask_run, capsys):
    points = pd.read_csv(mask_run / "points.csv")
    assert set(points.codec) == {"raw", "anchor_vvc", "learned_interleaved"}
    assert points["map_segm"].notna().all() and points["ap50_segm"].notna().all()
    raw = points.set_index("codec").loc["raw"]
    assert 0 < raw["map_segm"] < raw["ap50_segm"]
    for metric in ("map", "map_segm"):
        assert (
            regress_main([str(mask_run), "--reference", str(MASK_REFERENCE), "--tolerance", "2.0", "--metric", metric])
            == EXIT_OK
        )
        assert "no regression" in capsys.readouterr().out
    assert_same_numbers(mask_run / "points.csv", MASK_REFERENCE)  # every non-time column, to the last bit
    report = (mask_run / "report" / "report.md").read_text()
    assert "## synthetic_val / ci_maskrcnn (masks)" in report and "## synthetic_val / ci_maskrcnn (boxes)" in report
    assert "masks (instance segmentation), the task metric (task_metric=auto)" in report
    assert report.index("(masks)") < report.index("(boxes)")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_mask_records_stay_under_twice_the_box_records(mask_run, tmp_path):
    """Masks are stored as COCO RLE counts: the reduced mask run's records (8 images, every codec and
    rate) stay under 2x the size of the same records without their masks (box-only records,
    written the same way)."""
    from vcmbench.records import RecordStore

    records = read_records(mask_run / "records.jsonl")
    assert all(len(r.masks) == len(r.detections) for r in records)
    assert sum(len(r.masks) for r in records) > 10 * len(records)  # a segmenting run: masks on most records
    boxes = RecordStore(tmp_path / "boxes.jsonl")
    for r in records:
        boxes.append(dataclasses.replace(r, masks=[], mask_size=[]))
    boxes.close()
    size, box_size = (mask_run / "records.jsonl").stat().st_size, (tmp_path / "boxes.jsonl").stat().st_size
    assert size < 2 * box_size, (size, box_size)


def test_train_only_leaves_every_frozen_tensor_as_its_checkpoint(tmp_path):
    """init_from + train_only: after training, every tensor outside the mask head (batch-norm running
    statistics included) is still ci_frcnn's, and the mask head did change."""
    from vcmbench.train.detector import train_detector

    cfg = compose_config(
        "train_detector",
        [
            "model=ci_maskrcnn",
            "init_from=checkpoints/ci_frcnn/ci_frcnn.pt",
            "train_only=[roi_heads.mask_head,roi_heads.mask_predictor]",
            "steps=3",
            "batch_size=2",
            "progress=false",
            "threads=1",
            "optimizer.warmup_steps=1",
            "log_every=1",
            "checkpoint_every=0",
            "val.count=0",
        ],
    )
    train_detector(cfg, str(tmp_path))
    mine = torch.load(tmp_path / "ci_maskrcnn.pt", map_location="cpu", weights_only=True)
    frcnn = torch.load(CHECKPOINTS / "ci_frcnn" / "ci_frcnn.pt", map_location="cpu", weights_only=True)
    for k, v in frcnn.items():
        assert torch.equal(mine[k], v), k
    committed = torch.load(CKPT, map_location="cpu", weights_only=True)
    assert any(not torch.equal(mine[k], committed[k]) for k in mine if k.startswith(MASK_HEAD))

"""ci_maskrcnn (issue 15, part 3): ci_frcnn with a light mask head, trained by the project's own command."""

from __future__ import annotations

import json

import pytest
import torch

from vcmbench.config import compose_config
from vcmbench.errors import CheckpointError

pytestmark = pytest.mark.timeout(600)


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
        for a, b in ((split.boxes, whole.boxes), (split.scores, whole.scores), (split.labels, whole.labels),
                     (split.masks, whole.masks)):
            assert torch.equal(a, b)


def test_missing_checkpoint_names_its_training_command(tmp_path):
    from vcmbench.vision.ci_frcnn import build

    with pytest.raises(CheckpointError, match="vcmbench train-detector model=ci_maskrcnn"):
        build(name="ci_maskrcnn", weights=str(tmp_path / "missing.pt"), mask_head=True)


def test_training_learns_masks_and_records_mask_ap(tmp_path):
    from vcmbench.train.detector import train_detector

    common = ["model=ci_maskrcnn", "model.weights=none", "model.image_size=128", "batch_size=2", "progress=false",
              "threads=1", "optimizer.warmup_steps=2", "log_every=1", "checkpoint_every=0", "val.count=2",
              "val.small_count=0"]
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

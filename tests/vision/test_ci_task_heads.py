"""ci_semseg and ci_keypoints, the offline defaults of semantic segmentation and pose estimation:
ci_frcnn with a light semantic FPN head or keypoint head, trained by the project's own command on
the synthetic scenes' visible masks and keypoints with the detector frozen."""

from __future__ import annotations

import json

import pytest
import torch

from tests.assets import CHECKPOINTS
from vcmbench.config import compose_config

pytestmark = pytest.mark.timeout(300)

HEADS = {
    "ci_semseg": ("semantic_head",),
    "ci_keypoints": ("roi_heads.keypoint_head", "roi_heads.keypoint_predictor"),
}
LOSS = {"ci_semseg": "loss_semantic", "ci_keypoints": "loss_keypoint"}


def _random(name: str):
    from hydra.utils import instantiate

    cfg = compose_config("config", [f"model={name}", "model.weights=none", "model.score_thresh=0.0"])
    return instantiate(cfg.model)


@pytest.mark.parametrize("name", sorted(HEADS))
def test_front_back_equals_unsplit_model_with_its_task_output(name):
    from vcmbench.datasets.synthetic import render

    model = _random(name)
    for seed in (1_000_000, 1_000_001):
        img, _ = render(seed, 256, 256)
        image = torch.from_numpy(img).permute(2, 0, 1).contiguous()
        front = model.front(image)
        split, whole = model.back(front.features, front.meta), model.full(image)
        assert len(split) >= 20
        pairs = [(split.boxes, whole.boxes), (split.scores, whole.scores), (split.labels, whole.labels)]
        if name == "ci_semseg":
            assert split.semantic is not None and split.semantic.shape == (256, 256)
            assert split.semantic.dtype == torch.int64 and int(split.semantic.max()) <= 8
            pairs.append((split.semantic, whole.semantic))
        else:
            assert split.keypoints is not None and split.keypoints.shape == (len(split), 4, 3)
            pairs += [(split.keypoints, whole.keypoints), (split.keypoint_scores, whole.keypoint_scores)]
        for a, b in pairs:
            assert torch.equal(a, b)


@pytest.mark.parametrize("name", sorted(HEADS))
def test_training_the_head_alone_lowers_its_loss_and_leaves_ci_frcnn_as_it_was(name, tmp_path):
    from vcmbench.train.detector import train_detector

    cfg = compose_config(
        "train_detector",
        [
            f"model={name}",
            "init_from=checkpoints/ci_frcnn/ci_frcnn.pt",
            f"train_only=[{','.join(HEADS[name])}]",
            "steps=8",
            "batch_size=2",
            "progress=false",
            "threads=1",
            "optimizer.warmup_steps=1",
            "log_every=1",
            "checkpoint_every=0",
            "val.count=2",
            "val.small_count=0",
        ],
    )
    info = train_detector(cfg, str(tmp_path))
    rows = (tmp_path / "loss.csv").read_text().splitlines()
    col = rows[0].split(",").index(LOSS[name])
    losses = [float(r.split(",")[col]) for r in rows[1:]]
    assert len(losses) == 8 and losses[-1] < losses[0]
    mine = torch.load(tmp_path / f"{name}.pt", map_location="cpu", weights_only=True)
    frcnn = torch.load(CHECKPOINTS / "ci_frcnn" / "ci_frcnn.pt", map_location="cpu", weights_only=True)
    for k, v in frcnn.items():
        assert torch.equal(mine[k], v), k
    assert set(mine) - set(frcnn) and all(k.startswith(HEADS[name]) for k in set(mine) - set(frcnn))
    task = {"ci_semseg": "miou", "ci_keypoints": "map_kp"}[name]
    assert 0.0 <= info["val"][task] <= 100.0 and info["val"]["map"] > 30.0  # ci_frcnn's boxes


def test_the_semantic_target_is_the_scene_s_visible_masks_with_unlabeled_objects_ignored():
    import numpy as np

    from vcmbench.datasets.synthetic import render_scene
    from vcmbench.train.detector import semantic_target
    from vcmbench.vision.ci_heads import IGNORE

    scene = render_scene(1_000_003, 256, 256)
    target = semantic_target(scene).numpy()
    assert set(np.unique(target)) <= {0, IGNORE, *range(1, 9)}
    assert (target == IGNORE).sum() == scene.unlabeled.sum()
    assert (target > 0).sum() == sum(a.area for a in scene.annotations) + scene.unlabeled.sum()


def test_one_extra_head_at_most():
    from vcmbench.errors import ConfigError
    from vcmbench.vision.ci_frcnn import build_model

    with pytest.raises(ConfigError, match="one extra head at most"):
        build_model(mask_head=True, semantic_head=True)


@pytest.mark.parametrize("name", sorted(HEADS))
def test_committed_checkpoint_is_small_described_and_reached_its_targets(name):
    ckpt, info_file = CHECKPOINTS / name / f"{name}.pt", CHECKPOINTS / name / f"{name}.json"
    assert ckpt.is_file(), f"{ckpt} missing: train it with the command in {info_file.name}"
    assert ckpt.stat().st_size <= 10 * 1024 * 1024
    info = json.loads(info_file.read_text())
    assert info["val"]["count"] == 200 and info["started_from"]["train_only"] == list(HEADS[name])
    target = {"ci_semseg": ("miou", 50.0), "ci_keypoints": ("map_kp", 30.0)}[name]
    assert info["val"][target[0]] >= target[1] and info["val"]["map"] >= 45.0, info["val"]
    mine = torch.load(ckpt, map_location="cpu", weights_only=True)
    frcnn = torch.load(CHECKPOINTS / "ci_frcnn" / "ci_frcnn.pt", map_location="cpu", weights_only=True)
    for k, v in frcnn.items():  # only the head was trained: P2..P5 and the boxes are ci_frcnn's
        assert torch.equal(mine[k], v), k

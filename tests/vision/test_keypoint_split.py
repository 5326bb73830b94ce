"""torchvision's Keypoint R-CNN R50-FPN through the split: front + back must return what the
unsplit model returns, keypoints included, bit for bit, and its yaml must build through Hydra."""

from __future__ import annotations

import pytest
import torch

from tests.assets import coco_mini_image_paths
from vcmbench.errors import ConfigError
from vcmbench.types import LEVELS
from vcmbench.vision.torchvision_split import build

ARCH = "keypointrcnn_resnet50_fpn"
# A small input and few detections: the keypoint head (eight 512-channel 3x3 convs per box) costs
# about 0.1 s per detection on 2 cores, so 100 boxes would take the test past 10 s.
SMALL = {"min_size": 128, "max_size": 160, "detections_per_img": 5}


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    from vcmbench.datasets.images import read_rgb

    return read_rgb(coco_mini_image_paths(1)[0])


@pytest.mark.timeout(120)
def test_front_back_equals_unsplit_model_keypoints_included(image):
    # score threshold 0: random weights score every box low, and an empty comparison proves nothing
    det = build(arch=ARCH, weights="none", num_classes=2, seed=0, score_thresh=0.0, **SMALL)
    ref = det.full(image)
    front = det.front(image)
    out = det.back(front.features, front.meta)
    assert len(ref) >= 1, "score threshold 0 must leave at least one detection to compare"
    assert list(front.features) == list(LEVELS)
    assert ref.keypoints is not None and ref.keypoint_scores is not None and ref.masks is None
    assert ref.keypoints.shape == (len(ref), 17, 3) and ref.keypoints.dtype == torch.float32
    assert ref.keypoint_scores.shape == (len(ref), 17) and ref.keypoint_scores.dtype == torch.float32
    for field in ("boxes", "scores", "labels", "keypoints", "keypoint_scores"):
        assert torch.equal(getattr(ref, field), getattr(out, field)), field


@pytest.mark.timeout(60)
def test_yaml_builds_through_hydra():
    from hydra.utils import instantiate

    from vcmbench.config import compose_config

    cfg = compose_config("config", ["model=keypointrcnn_r50_fpn", "model.min_size=128", "model.max_size=160"])
    det = instantiate(cfg.model)
    assert det.name == "keypointrcnn_r50_fpn" and det.split == "fpn" and det.out_channels == 256
    assert det.model.roi_heads.keypoint_predictor.kps_score_lowres.out_channels == 17
    assert det.model.roi_heads.box_predictor.cls_score.out_features == 2  # background + person
    assert det.to_category_id(torch.tensor([1, 1])) == [1, 1]  # person -> COCO category 1
    assert det.model.transform.min_size == (128,) and det.model.transform.max_size == 160


@pytest.mark.timeout(60)
def test_coco_weights_with_another_keypoint_count_fail_before_downloading(monkeypatch):
    def offline(*a, **k):
        raise AssertionError("nothing may be downloaded")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(ConfigError, match="model.num_keypoints=14.*predict 17 keypoints"):
        build(arch=ARCH, weights="coco", num_classes=2, num_keypoints=14)


@pytest.mark.timeout(300)
def test_a_run_of_the_keypoint_network_keeps_each_detection_s_keypoints(tmp_path):
    """`vcmbench run model=keypointrcnn_r50_fpn` through a real codec: every record holds one list of
    17 x (x, y, v) per detection row, and the same again from the raw features as from the anchor's
    decoded ones would be a coincidence (the keypoints come from the decoded features)."""
    import json
    import subprocess
    import sys

    from tests.assets import COCO_MINI_DATASET, REPO

    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "vcmbench", "run", *COCO_MINI_DATASET, "dataset.max_images=1",
        "model=keypointrcnn_r50_fpn", "model.min_size=128", "model.max_size=160", "model.score_thresh=0.0",
        "model.detections_per_img=5", "codec=[raw,anchor_vvc]", "codec.anchor_vvc.rates=[45]", "report=false",
        "sweep.workers=1", "sweep.progress=false", "complexity=false", "fidelity=false", f"hydra.run.dir={out}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert {r["codec"] for r in records} == {"raw", "anchor_vvc"}
    for r in records:
        assert r["status"] == "ok" and len(r["detections"]) >= 1
        assert len(r["keypoints"]) == len(r["detections"]) and all(len(k) == 17 * 3 for k in r["keypoints"])
    by_codec = {r["codec"]: r["keypoints"] for r in records}
    assert by_codec["raw"] != by_codec["anchor_vvc"]

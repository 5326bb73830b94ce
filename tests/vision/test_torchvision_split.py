"""The torchvision split must reproduce the unsplit detector bit for bit."""

from __future__ import annotations

import pytest
import torch

from vcmbench.errors import CheckpointError, ShapeError
from vcmbench.types import LEVELS
from vcmbench.vision.torchvision_split import build


@pytest.mark.parametrize("arch", ["fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2"])
def test_front_back_equals_unsplit_model(arch, val_images):
    det = build(arch=arch, weights="none", seed=0, score_thresh=0.0, min_size=192, max_size=320)
    # fewer proposals (1000 by default): the box head runs once per proposal, and with random weights it
    # is most of the time; exactness does not depend on how many, and 100 still give 100 detections
    det.model.rpn._pre_nms_top_n["testing"] = 200
    det.model.rpn._post_nms_top_n["testing"] = 100
    for image in val_images:
        ref = det.full(image)
        front = det.front(image)
        out = det.back(front.features, front.meta)
        assert len(ref) >= 50, "random weights with score threshold 0 must give many detections"
        assert torch.equal(ref.boxes, out.boxes)
        assert torch.equal(ref.scores, out.scores)
        assert torch.equal(ref.labels, out.labels)


def test_front_gives_p2_to_p5_at_strides_4_to_32(small_frcnn, val_images):
    front = small_frcnn.front(val_images[0])
    ph, pw = front.meta.padded_size
    assert list(front.features) == list(LEVELS)
    for i, lvl in enumerate(LEVELS):
        c, h, w = front.features[lvl].shape
        assert c == 256 and (h, w) == (ph // 4 // 2**i, pw // 4 // 2**i)
    assert front.meta.original_size == tuple(val_images[0].shape[-2:])


def test_back_depends_on_features(small_frcnn, val_images):
    front = small_frcnn.front(val_images[0])
    ref = small_frcnn.back(front.features, front.meta)
    noisy = {k: v + torch.randn_like(v) for k, v in front.features.items()}
    out = small_frcnn.back(noisy, front.meta)
    assert not torch.equal(ref.scores, out.scores)


def test_back_rejects_wrong_shapes(small_frcnn, val_images):
    front = small_frcnn.front(val_images[0])
    bad = dict(front.features)
    bad["p3"] = bad["p3"][:128]
    with pytest.raises(ShapeError, match="p3 has 128 channels"):
        small_frcnn.back(bad, front.meta)
    with pytest.raises(ShapeError, match="lack levels"):
        small_frcnn.back({"p2": bad["p2"]}, front.meta)


def test_weights_errors_name_the_fix(tmp_path, monkeypatch):
    with pytest.raises(CheckpointError, match="model.weights=.*no such file"):
        build(weights=str(tmp_path / "missing.pth"))

    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(CheckpointError, match="pass model.weights=/path/to/fasterrcnn_resnet50_fpn_coco"):
        build(weights="coco")


def test_local_checkpoint_loads(tmp_path):
    det = build(weights="none", seed=1, min_size=320, max_size=512)
    path = tmp_path / "w.pth"
    torch.save({k: v.half() for k, v in det.model.state_dict().items()}, path)
    again = build(weights=str(path), seed=2, min_size=320, max_size=512)
    a = det.model.state_dict()["roi_heads.box_predictor.cls_score.weight"]
    b = again.model.state_dict()["roi_heads.box_predictor.cls_score.weight"]
    assert torch.equal(a.half().float(), b)

"""detectron2 Panoptic FPN R101 split (the MPEG FCM CTTC's semantic segmentation network): front then back on
untouched features must give exactly what the unsplit PanopticFPN returns: its instances and its panoptic
result ("panoptic_seg": things pasted over the semantic head's stuff), as a map of COCO category ids.

Like test_detectron2_split.py, these tests do not skip without detectron2: CI installs it first, and a
silent skip would hide a broken install. The model is random-init (seeded) and runs at 128/160 pixels,
so R101 plus the semantic head takes seconds on 2 cores.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torchvision.io import ImageReadMode, read_image

from tests.assets import COCO_MINI_IMAGES
from vcmbench.datasets.pandaset_categories import COCO_STUFF
from vcmbench.types import Detections
from vcmbench.vision.detectron2_split import (
    PANOPTIC_CONFIG,
    Detectron2Split,
    build,
    coco80_category_ids,
    coco_stuff_ids,
)

IMAGE = "000000000139.jpg"
SMALL = dict(
    score_thresh=0.0,
    detections_per_img=30,
    min_size=128,
    max_size=160,
    # random-init scores are ~0.02, under the merge's default 0.5: no thing would reach the panoptic map
    opts={"MODEL.RPN.POST_NMS_TOPK_TEST": 100, "MODEL.PANOPTIC_FPN.COMBINE.INSTANCES_CONFIDENCE_THRESH": 0.0},
)
MIN_DETECTIONS = 10  # so an empty instance output cannot pass the equality checks vacuously
YAML = Path(__file__).resolve().parents[2] / "vcmbench" / "conf" / "model" / "d2_panoptic_fpn_r101.yaml"


def condition_random_init(det: Detectron2Split) -> Detectron2Split:
    """Give a random-init R101 informative outputs.

    conv1 is divided by an RGB std, as for the R50 configs (PIXEL_STD = 1 expects MSRA weights with 1/std
    folded in). Random R101 then still yields FPN levels of magnitude ~1e4, which send the box deltas out
    of the image (empty boxes, dropped) and saturate the class softmax: the FPN output convs are divided
    by 1e4 so p2..p5 are of order 1. Both changes are to the weights, so front, back and the unsplit
    model all see them.
    """
    with torch.no_grad():
        det.model.backbone.bottom_up.stem.conv1.weight.div_(57.375)
        for level in range(2, 6):
            conv = getattr(det.model.backbone, f"fpn_output{level}")
            conv.weight.div_(1e4)
            conv.bias.div_(1e4)
    return det


@pytest.fixture(scope="module")
def panoptic():
    """The model, the image, the split's front output and detections, the unsplit model's raw output and `full`."""
    path = COCO_MINI_IMAGES / IMAGE
    assert path.is_file(), f"test image missing: {path}"
    image = read_image(str(path), ImageReadMode.RGB)
    det = condition_random_init(build(PANOPTIC_CONFIG, seed=0, **SMALL))
    front = det.front(image)
    split = det.back(front.features, front.meta)
    with torch.inference_mode():
        raw = det.model([det.model_input(image)])[0]  # PanopticFPN.inference itself, not our wrapper
    return det, image, front, split, raw, det.full(image)


@pytest.mark.timeout(300)
def test_front_back_equals_unsplit_panoptic_fpn(panoptic):
    det, image, _front, split, raw, full = panoptic
    assert det.semantic and det.cfg.MODEL.META_ARCHITECTURE == "PanopticFPN"
    inst = raw["instances"]
    assert len(split) >= MIN_DETECTIONS, f"only {len(split)} instances; the test would be vacuous"
    assert len(split) == len(inst)
    assert torch.equal(split.boxes, inst.pred_boxes.tensor)
    assert torch.equal(split.scores, inst.scores)
    assert torch.equal(split.labels, inst.pred_classes)
    assert split.masks is not None and torch.equal(split.masks, inst.pred_masks)
    assert bool(split.masks.any()), "every mask is empty; the mask comparison would be vacuous"

    # the panoptic result's segments as category ids: things by their COCO id, stuff by its COCO panoptic id
    segments, info = raw["panoptic_seg"]
    things, stuff = coco80_category_ids(), coco_stuff_ids()
    want = torch.zeros(segments.shape, dtype=torch.int64)
    for s in info:
        want[segments == s["id"]] = things[s["category_id"]] if s["isthing"] else stuff[s["category_id"] - 1]
    assert {s["isthing"] for s in info} == {True, False}, "things and stuff must both be in the map"
    assert split.semantic is not None and torch.equal(split.semantic, want)
    assert split.semantic.dtype == torch.int64 and split.semantic.shape == tuple(image.shape[-2:])
    assert split.semantic.unique().numel() > 2, "a map of few categories would make the comparison vacuous"
    assert set(split.semantic.unique().tolist()) <= {0, *things, *stuff}

    assert full.semantic is not None and torch.equal(full.semantic, split.semantic)  # `full` is the same model
    assert torch.equal(full.boxes, split.boxes) and torch.equal(full.masks, split.masks)


@pytest.mark.timeout(300)
def test_semantic_map_follows_the_received_features(panoptic):
    """The back's semantic head reads the (decoded) features it is given, not anything kept from the front."""
    det, _image, front, split, _raw, _full = panoptic
    torch.manual_seed(0)
    feats = dict(front.features)
    feats["p2"] = feats["p2"] + 2.0 * feats["p2"].std() * torch.randn_like(feats["p2"])
    out = det.back(feats, front.meta)
    assert out.semantic is not None and not torch.equal(out.semantic, split.semantic)


@pytest.mark.timeout(300)
def test_exact_mode_runs_panoptic_fpn(panoptic):
    """determinism=exact (the default) takes the semantic head's GroupNorm and upsampling through, and
    its map is close to the float model's."""
    from vcmbench.exact import ExactArithmetic

    det, image, _front, split, _raw, _full = panoptic
    with ExactArithmetic():
        front = det.front(image)
        exact = det.back(front.features, front.meta)
    assert exact.semantic is not None and exact.semantic.shape == split.semantic.shape
    assert float((exact.semantic == split.semantic).float().mean()) > 0.99
    assert abs(len(exact) - len(split)) <= 0.2 * len(split)


def test_stuff_ids_are_coco_panoptic_s_as_the_pandaset_table_has_them():
    """Stuff class k of the semantic head is COCO panoptic's k-th stuff id: the ids the PandaSet tables key."""
    assert coco_stuff_ids() == [cid for cid, _, _ in COCO_STUFF]


def test_detections_without_semantic_keep_positional_construction():
    """Detections is built positionally (boxes, scores, labels, masks) elsewhere: semantic comes last, None."""
    d = Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), None)
    assert d.masks is None and d.semantic is None and len(d) == 0


def test_model_yaml_names_the_cttc_network():
    """The yaml follows the other d2 yamls: random init by default, the zoo's checkpoint via weights=model_zoo."""
    from detectron2 import model_zoo

    cfg = OmegaConf.load(YAML)
    assert cfg._target_ == "vcmbench.vision.detectron2_split.build"
    assert cfg.name == "d2_panoptic_fpn_r101" and cfg.config_name == PANOPTIC_CONFIG
    assert cfg.weights == "none" and cfg.split == "fpn" and cfg.category_ids == "coco80"
    url = model_zoo.get_checkpoint_url(cfg.config_name)  # what weights=model_zoo downloads (not fetched here)
    assert url.endswith(".pkl") and "panoptic_fpn_R_101_3x" in url

"""detectron2 split exactness: front then back on untouched features must give exactly `full`.

detectron2 is an optional extra, but these tests do not skip without it: CI runs
`bash scripts/install_detectron2.sh` first, and a silent skip would hide a broken install.
Models are random-init (seeded) and run at a small input size so the file stays fast on 2 cores.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torchvision.io import ImageReadMode, read_image

from tests.assets import COCO_MINI_IMAGES
from vcmbench.errors import CheckpointError, MissingDependencyError
from vcmbench.types import LEVELS
from vcmbench.vision.detectron2_split import CONFIGS, Detectron2Split, build

IMAGES = ("000000000139.jpg", "000000000802.jpg")  # one landscape, one portrait
# Small inputs and 300 instead of 1000 proposals: with a 0.0 threshold every proposal x class
# reaches NMS, which dominates the CPU time; exactness does not depend on either setting.
SMALL = dict(
    score_thresh=0.0,
    detections_per_img=100,
    min_size=256,
    max_size=512,
    opts={"MODEL.RPN.POST_NMS_TOPK_TEST": 300},
)
MIN_DETECTIONS = 50  # so an empty or near-empty output cannot pass the equality checks vacuously


def condition_random_init(det: Detectron2Split) -> Detectron2Split:
    """Make a random-init model's scores informative.

    The R50 configs take raw 0..255 BGR (PIXEL_STD = 1: detectron2's MSRA weights fold 1/std
    into conv1). With random conv1 weights that input drives the logits so high that softmax
    saturates to exactly 0 or 1, and only a handful of boxes pass a 0.0 threshold. Dividing
    conv1 by an RGB std (what the folding does) keeps scores below 1; X101 (std in config) is left as is.
    """
    if max(det.cfg.MODEL.PIXEL_STD) == 1.0:
        with torch.no_grad():
            det.model.backbone.bottom_up.stem.conv1.weight.div_(57.375)
    return det


@pytest.fixture(scope="module")
def images() -> list[torch.Tensor]:
    paths = [COCO_MINI_IMAGES / name for name in IMAGES]
    missing = [str(p) for p in paths if not p.is_file()]
    assert not missing, f"test images missing: {missing}"
    return [read_image(str(p), ImageReadMode.RGB) for p in paths]


Run = tuple[Detectron2Split, list]


@pytest.fixture(scope="module")
def cache():
    """One entry per config: its model and (image, front, back, full) per image; freed after the module."""
    runs: dict[str, Run] = {}
    yield runs
    runs.clear()


def run_model(cache: dict[str, Run], config: str, images: list[torch.Tensor]) -> Run:
    """Build one model and run front, back and full once per image; the tests share the results."""
    if config not in cache:
        det = condition_random_init(build(config, seed=0, **SMALL))
        runs = []
        for image in images:
            front = det.front(image)
            runs.append((image, front, det.back(front.features, front.meta), det.full(image)))
        cache[config] = (det, runs)
    return cache[config]


@pytest.fixture(scope="module", params=CONFIGS, ids=lambda c: Path(c).stem)
def split_run(request, cache, images) -> Run:
    return run_model(cache, request.param, images)


def test_front_back_equals_full(split_run):
    det, runs = split_run
    for _image, _front, split, full in runs:
        assert len(full) >= MIN_DETECTIONS, f"{det.name}: only {len(full)} detections; the test would be vacuous"
        assert full.scores.unique().numel() > len(full) // 2, f"{det.name}: scores are saturated"
        assert torch.equal(split.boxes, full.boxes)
        assert torch.equal(split.scores, full.scores)
        assert torch.equal(split.labels, full.labels)
        assert split.boxes.dtype == torch.float32 and split.labels.dtype == torch.int64
        if det.cfg.MODEL.MASK_ON:
            assert split.masks is not None and split.masks.shape == (len(split), *_image.shape[1:])
            assert torch.equal(split.masks, full.masks)
        else:
            assert split.masks is None


def test_front_output_shapes_and_meta(split_run):
    det, runs = split_run
    for image, front, split, _ in runs:
        meta = front.meta
        assert meta.original_size == tuple(image.shape[-2:])
        assert min(meta.resized_size) == SMALL["min_size"] or max(meta.resized_size) == SMALL["max_size"]
        assert all(p % 32 == 0 and p >= r for p, r in zip(meta.padded_size, meta.resized_size))
        assert list(front.features) == list(LEVELS)
        for i, lvl in enumerate(LEVELS):
            stride = 4 * 2**i
            feat = front.features[lvl]
            assert feat.dtype == torch.float32
            assert tuple(feat.shape) == (256, meta.padded_size[0] // stride, meta.padded_size[1] // stride)
        # boxes are in original-image coordinates
        h, w = meta.original_size
        assert float(split.boxes[:, 2].max()) <= w and float(split.boxes[:, 3].max()) <= h
        assert float(split.boxes.max()) > max(meta.resized_size)  # not left in resized coordinates


def test_back_uses_every_level(cache, images):
    """Checked on R50-FPN only, to keep the file fast; p5 also feeds the rebuilt p6."""
    det, runs = run_model(cache, CONFIGS[0], images)
    _, front, split, _ = runs[0]
    torch.manual_seed(0)
    for lvl in LEVELS:
        feats = dict(front.features)
        feats[lvl] = feats[lvl] + 0.5 * feats[lvl].std() * torch.randn_like(feats[lvl])
        out = det.back(feats, front.meta)
        same = len(out) == len(split) and torch.equal(out.boxes, split.boxes) and torch.equal(out.scores, split.scores)
        assert not same, f"perturbing {lvl} did not change the back's output"


def test_category_ids_are_coco(split_run):
    det, runs = split_run
    ids = det.category_ids
    assert ids is not None and len(ids) == 80 and ids[0] == 1 and ids[-1] == 90
    assert len(set(ids)) == 80 and 12 not in ids and 83 not in ids  # COCO's gaps
    labels = runs[0][2].labels
    assert int(labels.max()) < 80
    assert det.to_category_id(labels[:3]) == [ids[int(v)] for v in labels[:3]]


def test_local_checkpoint_roundtrip_and_missing_file(tmp_path):
    ref = build(CONFIGS[0], seed=0, **SMALL)
    path = tmp_path / "model.pth"
    torch.save({"model": ref.model.state_dict()}, path)
    loaded = build(CONFIGS[0], weights=str(path), seed=1, **SMALL)  # seed 1: differs unless loading works
    for (name, a), b in zip(ref.model.state_dict().items(), loaded.model.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(CheckpointError, match=r"model\.weights=.*no such file"):
        build(CONFIGS[0], weights=str(tmp_path / "absent.pkl"), **SMALL)


def test_missing_detectron2_names_install_script(monkeypatch):
    monkeypatch.setitem(sys.modules, "detectron2", None)  # makes `import detectron2` raise ImportError
    with pytest.raises(MissingDependencyError, match="bash scripts/install_detectron2.sh"):
        build(CONFIGS[0], **SMALL)


@pytest.mark.timeout(600)
def test_exact_mode_runs_detectron2_and_its_detections_do_not_follow_the_threads(cache, images):
    """determinism=exact takes detectron2's Mask R-CNN through (no operation refused: grid_sample's mask
    pasting and argsort included) and gives the same features, boxes and masks at 1 and 2 threads, close
    to the float model's."""
    from vcmbench.exact import ExactArithmetic

    det, runs = run_model(cache, CONFIGS[-1], images)
    image, _, loose, _ = runs[0]
    outputs = []
    for threads in (1, 2):
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            with ExactArithmetic():
                front = det.front(image)
                outputs.append((front, det.back(front.features, front.meta)))
        finally:
            torch.set_num_threads(before)
    (f1, d1), (f2, d2) = outputs
    assert all(torch.equal(f1.features[k], f2.features[k]) for k in LEVELS)
    assert len(d1) >= MIN_DETECTIONS and torch.equal(d1.boxes, d2.boxes) and torch.equal(d1.masks, d2.masks)
    assert torch.equal(d1.scores, d2.scores) and torch.equal(d1.labels, d2.labels)
    assert abs(len(d1) - len(loose)) <= 0.1 * len(loose)

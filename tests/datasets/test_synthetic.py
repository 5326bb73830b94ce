"""Synthetic scenes: deterministic bytes, consistent COCO annotations, disjoint seed ranges."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from tests.assets import COCO_MINI_IMAGES, CONF
from vcmbench.datasets import synthetic
from vcmbench.errors import DatasetError

PHOTOS = COCO_MINI_IMAGES  # any folder of real photographs serves as backgrounds


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_png_bytes(tmp_path):
    a = synthetic.build("a", seed_start=1_000_000, count=2, height=160, width=192, cache_dir=tmp_path / "a")
    b = synthetic.build("b", seed_start=1_000_000, count=2, height=160, width=192, cache_dir=tmp_path / "b")
    for ra, rb in zip(a.records, b.records):
        assert _sha(a.image_dir / ra.file_name) == _sha(b.image_dir / rb.file_name)
    assert json.loads(a.annotation_file.read_text()) == json.loads(b.annotation_file.read_text())
    # and straight from the renderer, without the cache
    img1, anns1 = synthetic.render(7, 160, 192)
    img2, anns2 = synthetic.render(7, 160, 192)
    assert synthetic.png_bytes(img1) == synthetic.png_bytes(img2) and anns1 == anns2
    img3, _ = synthetic.render(8, 160, 192)
    assert not np.array_equal(img1, img3)


def test_annotations_are_consistent(tmp_path):
    h, w, n = 256, 256, 24
    ds = synthetic.build("val", seed_start=1_000_000, count=n, height=h, width=w, cache_dir=tmp_path)
    data = json.loads(ds.annotation_file.read_text())
    cats = {c["id"] for c in data["categories"]}
    assert cats == set(range(1, len(synthetic.CATEGORIES) + 1)) and len(cats) >= 6
    assert [im["id"] for im in data["images"]] == ds.image_ids == list(range(1_000_000, 1_000_000 + n))
    per_image = {i: 0 for i in ds.image_ids}
    sizes, ids = [], set()
    for a in data["annotations"]:
        x, y, bw, bh = a["bbox"]
        assert 0 <= x and 0 <= y and bw > 0 and bh > 0 and x + bw <= w and y + bh <= h, a
        assert 0 < a["area"] <= bw * bh and a["iscrowd"] == 0
        assert a["category_id"] in cats and a["image_id"] in per_image
        assert a["id"] not in ids
        ids.add(a["id"])
        per_image[a["image_id"]] += 1
        sizes.append(max(bw, bh))
    assert min(per_image.values()) >= 1 and np.mean(list(per_image.values())) >= 4  # several objects per image
    assert min(sizes) <= 16 and max(sizes) >= 0.4 * min(h, w)  # ~12 px .. half the image
    assert len({a["category_id"] for a in data["annotations"]}) == len(cats)
    assert any(a["visible"] < 0.95 for a in data["annotations"])  # some are partly occluded
    # every object's visible mask: its pixel count is the area, its extent the box, masks never overlap
    from pycocotools import mask as mask_utils

    owner = {}
    for a in data["annotations"]:
        m = mask_utils.decode({"size": a["segmentation"]["size"], "counts": a["segmentation"]["counts"].encode()})
        ys, xs = np.nonzero(m)
        assert m.shape == (h, w) and int(m.sum()) == a["area"]
        assert [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1] == a["bbox"]
        seen = owner.setdefault(a["image_id"], np.zeros((h, w), bool))
        assert not (seen & m.astype(bool)).any()
        seen |= m.astype(bool)
    sample = ds.load(ds.records[0])
    assert tuple(sample.image.shape) == (3, h, w) and str(sample.image.dtype) == "torch.uint8"


def test_cache_reuses_files_and_subsets_share_images(tmp_path):
    big = synthetic.build("v", seed_start=1_000_000, count=6, height=96, width=96, cache_dir=tmp_path)
    stamp = (big.image_dir / big.records[0].file_name).stat().st_mtime_ns
    small = synthetic.build("v", seed_start=1_000_000, count=3, height=96, width=96, cache_dir=tmp_path)
    assert small.image_dir == big.image_dir
    assert (small.image_dir / small.records[0].file_name).stat().st_mtime_ns == stamp
    big_anns = json.loads(big.annotation_file.read_text())["annotations"]
    small_anns = json.loads(small.annotation_file.read_text())["annotations"]
    strip = lambda anns: [{k: v for k, v in a.items() if k != "id"} for a in anns]  # noqa: E731
    assert strip(small_anns) == strip([a for a in big_anns if a["image_id"] in small.image_ids])
    assert len(synthetic.build("v", 1_000_000, 6, 96, 96, tmp_path, max_images=2)) == 2


def test_train_and_val_seed_ranges_are_disjoint():
    val = OmegaConf.load(CONF / "dataset" / "synthetic_val.yaml")
    train = OmegaConf.load(CONF / "dataset" / "synthetic_train.yaml")
    td = OmegaConf.load(CONF / "train_detector.yaml")
    assert val.seed_start >= synthetic.VAL_SEED_START and td.val.seed_start >= synthetic.VAL_SEED_START
    assert train.seed_start + train.count <= synthetic.VAL_SEED_START
    assert td.train.seed_start + td.train.scenes <= synthetic.VAL_SEED_START


def test_bad_settings_name_the_field(tmp_path):
    with pytest.raises(DatasetError, match="dataset.backgrounds"):
        synthetic.build("x", 0, 1, 64, 64, tmp_path, backgrounds=tmp_path / "nope")
    with pytest.raises(DatasetError, match="dataset.count"):
        synthetic.build("x", 0, 0, 64, 64, tmp_path)


def test_photo_backgrounds_are_deterministic(tmp_path):
    a = synthetic.build("p", 0, 4, 96, 128, tmp_path / "a", backgrounds=str(PHOTOS))
    b = synthetic.build("p", 0, 4, 96, 128, tmp_path / "b", backgrounds=str(PHOTOS))
    plain = synthetic.build("p", 0, 4, 96, 128, tmp_path / "c")
    hashes = [_sha(a.image_dir / r.file_name) for r in a.records]
    assert hashes == [_sha(b.image_dir / r.file_name) for r in b.records]
    assert hashes != [_sha(plain.image_dir / r.file_name) for r in plain.records]


@pytest.mark.timeout(60)
def test_keypoints_are_the_shapes_extreme_pixels_and_unlabeled_pixels_are_the_unannotated_objects(tmp_path):
    """Each annotation's four keypoints lie on the object's box edges where visible (v=2: its own
    visible pixel), the set's categories name them with sigmas, and the image's unlabeled pixels are
    object pixels outside every annotated mask."""
    from pycocotools import mask as mask_utils

    from vcmbench.metrics.keypoints import keypoint_ap

    ds = synthetic.build("val", seed_start=1_000_000, count=12, height=256, width=256, cache_dir=tmp_path)
    data = json.loads(ds.annotation_file.read_text())
    assert all(c["keypoints"] == list(synthetic.KEYPOINTS) and len(c["sigmas"]) == 4 for c in data["categories"])
    hidden = unlabeled = 0
    for a in data["annotations"]:
        kp = np.array(a["keypoints"], float).reshape(4, 3)
        m = mask_utils.decode({"size": a["segmentation"]["size"], "counts": a["segmentation"]["counts"].encode()})
        assert a["num_keypoints"] == int((kp[:, 2] > 0).sum()) >= 1
        x, y, w, h = a["bbox"]
        for k, (px, py, v) in enumerate(kp):
            if v == 2:  # a visible extreme pixel is the object's own and on its visible box's edge
                col, row = int(px - 0.5), int(py - 0.5)
                assert m[row, col] == 1
                assert [row == y, col == x + w - 1, row == y + h - 1, col == x][k]
            hidden += v == 1
    for image in data["images"]:
        if "unlabeled" in image:
            rle = image["unlabeled"]
            free = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)
            annotated = np.zeros_like(free)
            for a in data["annotations"]:
                if a["image_id"] == image["id"]:
                    seg = a["segmentation"]
                    annotated |= mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()}) > 0
            assert free.any() and not (free & annotated).any()
            unlabeled += 1
    assert hidden > 0 and unlabeled > 0
    # the ground truth's own keypoints as results score 100 keypoint AP
    results = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "keypoints": a["keypoints"], "score": 1.0}
        for a in data["annotations"]
    ]
    assert keypoint_ap(ds.annotation_file, results, ds.image_ids)["map"] == pytest.approx(100.0)

"""Shared fixtures: real images from ../shared/assets and small, fast detectors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("VCMBENCH_ASSETS", REPO.parent / "shared" / "assets")).resolve()
VAL_DIR = ASSETS / "coco-val2017-mini"
VAL_IMAGES = VAL_DIR / "val2017"
VAL_ANN = VAL_DIR / "annotations" / "instances_val2017_subset.json"

os.environ.setdefault("VCMBENCH_ASSETS", str(ASSETS))
torch.set_num_threads(min(2, torch.get_num_threads()))


def val_image_paths(n: int) -> list[Path]:
    paths = sorted(VAL_IMAGES.glob("*.jpg"))[:n]
    assert len(paths) == n, f"expected {n} images in {VAL_IMAGES}"
    return paths


@pytest.fixture(scope="session")
def val_images() -> list[torch.Tensor]:
    from vcmbench.datasets.images import read_rgb

    return [read_rgb(p) for p in val_image_paths(2)]


@pytest.fixture(scope="session")
def small_frcnn():
    """torchvision R50-FPN, random weights, small input size: real features, fast."""
    from vcmbench.vision.torchvision_split import build

    return build(arch="fasterrcnn_resnet50_fpn", weights="none", seed=0, score_thresh=0.0, min_size=320, max_size=512)

"""Shared fixtures: real images from tests/data/coco-mini and small, fast detectors."""

from __future__ import annotations

import pytest
import torch

from tests.assets import coco_mini_image_paths

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def val_images() -> list[torch.Tensor]:
    from vcmbench.datasets.images import read_rgb

    return [read_rgb(p) for p in coco_mini_image_paths(2)]


@pytest.fixture(scope="session")
def small_frcnn():
    """torchvision R50-FPN, random weights, small input size: real features, fast."""
    from vcmbench.vision.torchvision_split import build

    return build(arch="fasterrcnn_resnet50_fpn", weights="none", seed=0, score_thresh=0.0, min_size=320, max_size=512)

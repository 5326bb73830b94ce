"""The one rule for where tests find data: inside the repository, never beside it.

`tests/data/coco-mini` holds 12 real COCO val2017 images and their annotations (its README
gives each image's license); configs and checkpoints come from the package itself
(`vcmbench/conf`, `vcmbench/checkpoints`), as they do for an installed wheel.
"""

from __future__ import annotations

from pathlib import Path

from vcmbench.paths import CHECKPOINTS_DIR, CONF_DIR

REPO = Path(__file__).resolve().parents[1]
CONF = CONF_DIR
CHECKPOINTS = CHECKPOINTS_DIR
COCO_MINI = REPO / "tests" / "data" / "coco-mini"
COCO_MINI_IMAGES = COCO_MINI / "val2017"
COCO_MINI_JSON = COCO_MINI / "annotations" / "instances_val2017_mini.json"
COCO_MINI_COUNT = 12

# The mini set as a `vcmbench run` dataset (Hydra overrides).
COCO_MINI_DATASET = [
    "dataset=coco_folder", "dataset.name=coco_mini", f"dataset.root={COCO_MINI}",
    "dataset.annotation_file=annotations/instances_val2017_mini.json", "dataset.image_dir=val2017",
]  # fmt: skip


def coco_mini_image_paths(n: int) -> list[Path]:
    """The first n mini-set images by file name."""
    paths = sorted(COCO_MINI_IMAGES.glob("*.jpg"))[:n]
    assert len(paths) == n, f"expected {n} images in {COCO_MINI_IMAGES}"
    return paths

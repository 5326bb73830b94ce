"""Image decoding shared by every dataset: one place that turns a file into uint8 RGB."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from vcmbench.errors import DatasetError


def read_rgb(path: Path) -> Tensor:
    """Decode an image file to a uint8 (3, H, W) RGB tensor (EXIF orientation ignored, as COCO does)."""
    from torchvision.io import ImageReadMode, decode_image, read_file

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"image not found: {path.resolve()}; check the dataset's image folder")
    try:
        return decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
    except RuntimeError as exc:
        raise DatasetError(f"{path}: cannot decode image ({exc}); the file is corrupt or not an image") from exc


def write_rgb_png(image: Tensor, path: Path) -> None:
    from torchvision.io import write_png

    write_png(image.to(torch.uint8).contiguous(), str(path))


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header only; no EXIF transpose, matching how images are decoded later."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return int(im.width), int(im.height)
    except (UnidentifiedImageError, OSError) as exc:
        raise DatasetError(
            f"{path}: cannot read the image header ({exc}); the file is corrupt or not an image"
        ) from exc

"""Dataset contract: images in, annotations kept as a COCO json for the evaluator.

Every dataset (COCO folders, the MPEG OpenImages subset converted to COCO json,
synthetic scenes) looks the same to the runner: an ordered list of images with
ids and original sizes, one annotation file, and the name of its task metric.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from vcmbench.errors import DatasetError


@dataclass
class Sample:
    image_id: int
    file_name: str
    image: Tensor  # uint8 RGB, (3, H, W), original resolution
    height: int
    width: int

    @property
    def pixels(self) -> int:
        """Original input-image pixels: the denominator of bpp."""
        return self.height * self.width


@dataclass(frozen=True)
class ImageRecord:
    image_id: int
    file_name: str
    height: int
    width: int


class Dataset:
    """An ordered image list plus a COCO-format annotation file.

    `metric` is 'coco' (AP@[.5:.95] and AP50 via pycocotools) or 'oid'
    (OpenImages challenge mAP@0.5 with group-of boxes).
    """

    name: str = "dataset"
    metric: str = "coco"

    def __init__(self, name: str, annotation_file: Path, image_dir: Path, records: list[ImageRecord]):
        self.name = name
        self.annotation_file = Path(annotation_file)
        self.image_dir = Path(image_dir)
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    @property
    def image_ids(self) -> list[int]:
        return [r.image_id for r in self.records]

    def subset(self, image_ids: list[int]) -> Dataset:
        """A view of this dataset holding only `image_ids` (a shard), in the dataset's order;
        annotations, metric and loading are the whole set's."""
        return item_view(self, "records", self.records, image_ids)

    def load(self, rec: ImageRecord) -> Sample:
        return load_sample(self.image_dir, rec, self.annotation_file)

    def __iter__(self) -> Iterator[Sample]:
        for rec in self.records:
            yield self.load(rec)


def item_view(dataset, attribute: str, items: list, ids: list[int]):
    """A shallow copy of `dataset` whose `attribute` (its item list) keeps only the items of `ids`."""
    import copy

    keep = set(ids)
    view = copy.copy(dataset)
    setattr(view, attribute, [item for item in items if item.image_id in keep])
    return view


def load_sample(image_dir: Path, rec: ImageRecord, annotation_file: Path, noun: str = "image") -> Sample:
    """The Sample of one record (an image, or a sequence's frame) read from `image_dir`, its size
    checked against what the annotation file says."""
    from vcmbench.datasets.images import read_rgb

    path = Path(image_dir) / rec.file_name
    image = read_rgb(path)
    h, w = int(image.shape[-2]), int(image.shape[-1])
    if (h, w) != (rec.height, rec.width):
        raise DatasetError(
            f"{path}: {noun} is {w}x{h} but {annotation_file} says {rec.width}x{rec.height}; "
            f"fix the 'width'/'height' of image id {rec.image_id} or replace the file"
        )
    return Sample(rec.image_id, rec.file_name, image, h, w)


def require_path(path: Path, what: str, how: str) -> Path:
    """Raise a DatasetError naming the missing path and how to get it."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{what} not found: {path.resolve()}. {how}")
    return path

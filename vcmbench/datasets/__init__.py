"""Datasets: COCO-format folders, the MPEG OpenImages subset, synthetic scenes."""

from vcmbench.datasets.base import Dataset, ImageRecord, Sample

__all__ = ["Dataset", "ImageRecord", "Sample"]

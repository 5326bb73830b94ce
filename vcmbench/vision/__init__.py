"""Split detectors: a front (image -> p2..p5) and a back (p2..p5 -> detections)."""

from vcmbench.types import LEVELS, Detections, Features, FrontOutput, ImageMeta
from vcmbench.vision.base import SplitDetector

__all__ = ["LEVELS", "Detections", "Features", "FrontOutput", "ImageMeta", "SplitDetector"]

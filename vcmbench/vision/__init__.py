"""Split detectors: a front (image -> p2..p5) and a back (p2..p5 -> detections)."""

from vcmbench.vision.base import LEVELS, Detections, Features, FrontOutput, ImageMeta, SplitDetector

__all__ = ["LEVELS", "Detections", "Features", "FrontOutput", "ImageMeta", "SplitDetector"]

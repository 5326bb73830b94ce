"""The split-detector contract: a front that stops after the FPN, a back that starts there.

The data it exchanges (levels, features, metadata, detections) is `vcmbench.types`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor

from vcmbench.types import Detections, Features, FrontOutput, ImageMeta


class SplitDetector(ABC):
    """A detector cut after its FPN.

    `front(image)` then `back(features, meta)` must give exactly `full(image)` when the
    features are passed through untouched; the exactness tests hold every backend to it.
    """

    name: str = "detector"
    #: label index (model output) -> dataset category id; None means identity.
    category_ids: list[int] | None = None
    #: whether `back` gives each detection an appearance embedding (`Detections.embeddings`: a
    #: re-identifying network's, JDE's), which JDE's tracker needs (vision.trackers)
    embeds: bool = False

    @abstractmethod
    def front(self, image: Tensor) -> FrontOutput:
        """image: uint8 RGB tensor (3, H, W) -> p2..p5 and preprocessing metadata."""

    @abstractmethod
    def back(self, features: Features, meta: ImageMeta) -> Detections:
        """Decoded p2..p5 -> detections in original-image coordinates."""

    @abstractmethod
    def full(self, image: Tensor) -> Detections:
        """The unsplit model on one image: the reference the split must reproduce."""

    def to_category_id(self, labels: Tensor) -> list[int]:
        if self.category_ids is None:
            return [int(v) for v in labels.tolist()]
        return [self.category_ids[int(v)] for v in labels.tolist()]
